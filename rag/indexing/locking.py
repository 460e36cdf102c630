"""The single-flight ingest lock, shared by the CLI, the scheduler, Slack and the HTTP API.

An OS file lock (flock) in RAGBOT_DATA_DIR: released by the kernel when the holder dies,
so a killed ingest never leaves a stale lock behind. A JSON file beside it says who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rag.errors import IngestBusyError


class IngestLock:
    def __init__(self, data_dir: Path, *, name: str = "ingest", holder: str = "cli") -> None:
        self.path = data_dir / f"{name}.lock"
        self.info_path = data_dir / f"{name}.lock.json"
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.current_holder()
            raise IngestBusyError(busy_message(info), info) from None
        self._fd = fd
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started_at": time.time(), "by": self.holder}))
        tmp.replace(self.info_path)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True when another holder has the lock right now (a probe, not an acquisition)."""
        if self._fd is not None:
            return False
        try:
            self.acquire()
        except IngestBusyError:
            return True
        self.release()
        return False

    def current_holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.info_path.read_text()))
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> IngestLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def busy_message(info: dict[str, Any]) -> str:
    message = "an ingest is already running"
    started = info.get("started_at")
    if isinstance(started, (int, float)):
        minutes = max(0, int((time.time() - started) // 60))
        message += f", started {minutes} min ago" if minutes else ", started less than a minute ago"
    if info.get("by"):
        message += f" by {info['by']}"
    return message
