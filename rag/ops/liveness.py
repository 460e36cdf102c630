"""Liveness records: a long-running process keeps a small JSON file fresh; the health check judges it.

`ragbot run` (bot/liveness.py writes it) keeps RAGBOT_DATA_DIR/liveness/run-<hostname>.json fresh:
whether the Socket Mode connection is up and since when, how often it was re-established, and
how many questions are in flight and for how long the oldest has been. One file per host, so
bot replicas sharing the data volume (one container each) do not overwrite each other's.
`python -m rag.healthcheck run` reads it with `read_heartbeat` and judges it with `problem`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

#: A record older than this belongs to a bot whose watchdog (or whole process) has stopped.
STALE_AFTER_SECONDS = 60.0


def heartbeat_path(data_dir: Path, role: str = "run", host: str | None = None) -> Path:
    return data_dir / "liveness" / f"{role}-{host or socket.gethostname()}.json"


def problem(
    record: dict[str, Any] | None, *, grace_seconds: float, wedged_after: float, now: float | None = None
) -> str | None:
    """Why the bot behind `record` is unhealthy, or None when it is healthy."""
    if record is None:
        return "no liveness record (the bot has not started, or has stopped)"
    now = time.time() if now is None else now
    beat = record.get("heartbeat")
    if not isinstance(beat, (int, float)) or now - beat > STALE_AFTER_SECONDS:
        return "the liveness record is stale (the bot's watchdog stopped)"
    down_for = now - float(record.get("since") or now)
    if not record.get("slack_connected") and down_for > grace_seconds:
        return f"the Socket Mode connection has been down for {down_for:.0f} s (grace {grace_seconds:.0f} s)"
    oldest = record.get("oldest_answer_seconds")
    if isinstance(oldest, (int, float)) and oldest + (now - beat) > wedged_after:
        return f"an answer has been in progress for {oldest:.0f} s: the answer pool looks wedged"
    return None


def read_heartbeat(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(heartbeat_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
