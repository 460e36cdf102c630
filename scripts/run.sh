#!/usr/bin/env bash
# `make run`: the Slack bot when SLACK_BOT_TOKEN and SLACK_APP_TOKEN are set (env or .env);
# otherwise index CODE_REPO_PATH (and Confluence if configured) and open the console chat.
set -euo pipefail
VENV=${VENV:-.venv}
RAGBOT="$VENV/bin/ragbot"
slack=$("$VENV/bin/python" -c "from rag.config import load_settings; print(int(load_settings().slack_configured))" 2>/dev/null || echo 0)
if [ "$slack" = "1" ] && "$RAGBOT" run --help >/dev/null 2>&1; then
  exec "$RAGBOT" run
fi
"$RAGBOT" ingest all || echo "ragbot: ingest reported a problem (see above); opening chat on what is indexed" >&2
exec "$RAGBOT" chat
