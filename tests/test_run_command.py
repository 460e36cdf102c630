"""`ragbot run` as a user starts it: the bot connects, the scheduler fills an empty index, SIGTERM stops both."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.slack_server import BOT_USER, FakeSlack
from tests.servers import free_port

pytestmark = pytest.mark.slow

REPO: dict[str, str | bytes] = {
    "ops/rotate_keys.py": "def rotate_api_keys(vault):\n    '''Rotate every API key stored in the vault.'''\n    return vault.rotate()\n",
    "README.md": "# Keys service\n\nRotates keys nightly.\n",
}


def scheduler_runs(data_dir: Path) -> list[tuple[str, int, str]]:
    db = data_dir / "state.sqlite3"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [
                (r[0], r[1], r[2])
                for r in conn.execute("SELECT source, ok, report FROM runs WHERE trigger = 'scheduler'")
            ]
    except sqlite3.OperationalError:  # the file exists, its schema not yet
        return []


def test_run_starts_bot_and_scheduler_and_stops_on_sigterm(
    tmp_path: Path, git_repo: Any, slack: FakeSlack
) -> None:
    git_repo(REPO)
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-run-test",
        "SLACK_APP_TOKEN": "xapp-run-test",
        "SLACK_API_URL": slack.api_url,
        "CODE_REPO_PATH": str(tmp_path / "repo"),
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "INGEST_INTERVAL_MINUTES": "60",
        "RAGBOT_METRICS_PORT": str(port := free_port()),
    }
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ragbot"), "run"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # The index is empty, so the scheduler ingests at start-up, on its own.
        runs = slack.wait_for(
            lambda: scheduler_runs(tmp_path / "data"), timeout=240, what="the start-up ingest"
        )
        source, ok, report = runs[0]
        assert source == "code" and ok == 1 and json.loads(report)["documents_added"] == 2
        slack.wait_for(lambda: slack.connections_opened >= 1, what="the Socket Mode connection")

        msg = slack.user_message("CGENERAL", f"<@{BOT_USER}> how are API keys rotated?")
        slack.send_event({"type": "app_mention", **{k: v for k, v in msg.items() if k != "type"}})
        answer = slack.wait_for(
            lambda: [m for m in slack.thread_messages("CGENERAL", msg["ts"]) if m.get("blocks")],
            timeout=120,
            what="the answer",
        )
        assert "ops/rotate_keys.py" in json.dumps(answer[-1]["blocks"])

        def counted() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            line = 'ragbot_questions_total{outcome="answered",surface="slack"} 1.0'
            return text if line in text else None

        metrics = slack.wait_for(counted, what="the question in /metrics")
        assert 'ragbot_ingest_runs_total{outcome="ok",source_name="code"} 1.0' in metrics
        assert "ragbot_answer_seconds_count 1.0" in metrics and "ragbot_slack_connected 1.0" in metrics
        check = subprocess.run(
            [sys.executable, "-m", "rag.healthcheck", "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        slack.hang_up()
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert not (tmp_path / "data" / "ingest.lock.json").exists()
    assert not list((tmp_path / "data" / "liveness").glob("run-*.json"))  # stopped: not healthy
