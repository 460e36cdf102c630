#!/usr/bin/env bash
# `make run`: the Slack bot when SLACK_BOT_TOKEN and SLACK_APP_TOKEN are set (env or .env);
# otherwise index the configured sources and open the console chat. With no source configured
# at all, this ragbot checkout itself is indexed as the demo source `ragbot`, so the first
# question already has something to find.
set -euo pipefail
VENV=${VENV:-.venv}
RAGBOT="$VENV/bin/ragbot"
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
count=$("$VENV/bin/python" -c "from rag.config import load_settings; from rag.sources.registry import SourceRegistry; print(len(SourceRegistry.from_settings(load_settings())))" 2>/dev/null || echo 1)
if [ "$count" = "0" ]; then
  data_dir=$("$VENV/bin/python" -c "from rag.config import load_settings; print(load_settings().ragbot_data_dir)")
  mkdir -p "$data_dir"
  demo="$data_dir/demo-sources.toml"
  printf '# Written by `make run` because no source was configured.\n[[repository]]\nname = "ragbot"\npath = "%s"\n' "$CHECKOUT" > "$demo"
  export RAGBOT_SOURCES_FILE="$demo"
  echo "ragbot: no source configured, so this ragbot checkout is indexed as the demo source 'ragbot'; to index your own repositories, copy ragbot.example.toml to ragbot.toml (or set CODE_REPO_PATH) and run make run again." >&2
fi
slack=$("$VENV/bin/python" -c "from rag.config import load_settings; print(int(load_settings().slack_configured))" 2>/dev/null || echo 0)
if [ "$slack" = "1" ] && "$RAGBOT" run --help >/dev/null 2>&1; then
  exec "$RAGBOT" run
fi
"$RAGBOT" ingest all || echo "ragbot: ingest reported a problem (see above); opening chat on what is indexed" >&2
exec "$RAGBOT" chat
