"""Retention: questions, answers, thread memory and votes are deleted after RAGBOT_RETENTION_DAYS.

`ragbot run` and `ragbot worker` run `purge` at start and every PURGE_EVERY_SECONDS in a
background thread. The core keeps no questions itself (the ingest run history holds counts
only), so what is purged is registered by the layers that keep them: the Slack layer passes
`bot.feedback.purge_slack_data` (thread turns and answered questions in `slack.sqlite3`, votes
in `feedback.jsonl`) through the CLI command that starts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.config import Settings

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 6 * 3600

#: Deletes what was stored under RAGBOT_DATA_DIR before a cutoff (Unix time); returns counts by kind.
Purger = Callable[[Path, float], dict[str, int]]


def purge(settings: Settings, purgers: Sequence[Purger], *, now: float | None = None) -> dict[str, int]:
    """Delete what is older than the retention period; returns how much of each kind went."""
    cutoff = (time.time() if now is None else now) - settings.ragbot_retention_days * 86_400
    counts: dict[str, int] = {}
    for purger in purgers:
        for kind, n in purger(settings.ragbot_data_dir, cutoff).items():
            counts[kind] = counts.get(kind, 0) + n
    if any(counts.values()):
        log.info(
            "retention (%d days): deleted %s",
            settings.ragbot_retention_days,
            ", ".join(f"{n} {kind}" for kind, n in counts.items()),
        )
    return counts


class RetentionJob:
    """`purge` now and then every `interval` seconds, until `stop()`."""

    def __init__(
        self, settings: Settings, purgers: Sequence[Purger], *, interval: float = PURGE_EVERY_SECONDS
    ) -> None:
        self.settings = settings
        self.purgers = tuple(purgers)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ragbot-retention", daemon=True)

    def start(self) -> RetentionJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while True:
            try:
                purge(self.settings, self.purgers)
            except Exception as e:  # e.g. a locked or unreadable file: try again next time
                log.warning("retention purge failed: %s", e)
            if self._stop.wait(self.interval):
                return
