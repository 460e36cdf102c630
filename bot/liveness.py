"""The Slack bot's liveness record, judged by `python -m rag.healthcheck run` (rag.ops.liveness).

`ragbot run` keeps RAGBOT_DATA_DIR/liveness/run-<hostname>.json fresh (every few seconds, and
at once when the Socket Mode connection goes down or comes back): whether the connection is up
and since when, how often it was re-established, and how many questions are in flight and for
how long the oldest has been. One file per host, so bot replicas sharing the data volume (one
container each) do not overwrite each other's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rag.service import heartbeat_path

if TYPE_CHECKING:
    from rag.service import Metrics

log = logging.getLogger(__name__)

WRITE_EVERY_SECONDS = 5.0


class InFlight:
    """Questions accepted and not finished yet, with when each arrived (monotonic clock)."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, key: str) -> None:
        with self._lock:
            self._started[key] = time.monotonic()

    def started(self, key: str) -> float | None:
        with self._lock:
            return self._started.get(key)

    def done(self, key: str) -> None:
        with self._lock:
            self._started.pop(key, None)

    def snapshot(self) -> tuple[int, float | None]:
        """How many are in flight, and the age in seconds of the oldest."""
        with self._lock:
            oldest = min(self._started.values(), default=None)
            return len(self._started), None if oldest is None else time.monotonic() - oldest


class Heartbeat:
    """Tracks the Socket Mode connection (fed by the bot's watchdog) and persists it."""

    def __init__(self, data_dir: Path, *, metrics: Metrics, inflight: InFlight) -> None:
        self.path = heartbeat_path(data_dir)
        self.metrics = metrics
        self.inflight = inflight
        self.connected = False
        self.since = time.time()
        self.reconnects = 0
        self.started_at = self.since
        self._session: str | None = None
        self._written = 0.0

    def observe(self, *, connected: bool, session_id: str | None) -> None:
        """The connection's state now; writes the record on a change, else every few seconds."""
        reconnected = bool(connected and session_id and self._session and session_id != self._session)
        if connected and session_id:
            self._session = session_id
        if reconnected:
            self.reconnects += 1
        changed = connected != self.connected
        if changed:
            self.connected = connected
            self.since = time.time()
            if not connected:
                log.warning("Socket Mode connection is down")
            else:
                log.info("Socket Mode connection is up")
        self.metrics.slack_connection(connected, reconnected=reconnected)
        if changed or reconnected or time.monotonic() - self._written >= WRITE_EVERY_SECONDS:
            self.write()

    def write(self) -> None:
        pending, oldest = self.inflight.snapshot()
        data = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat": time.time(),
            "started_at": self.started_at,
            "slack_connected": self.connected,
            "since": self.since,
            "reconnects": self.reconnects,
            "answers_in_flight": pending,
            "oldest_answer_seconds": None if oldest is None else round(oldest, 3),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)
            self._written = time.monotonic()
        except OSError as e:
            log.warning("cannot write %s: %s", self.path, e)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
