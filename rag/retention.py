"""Retention: questions, answers, thread memory and votes older than RAGBOT_RETENTION_DAYS are deleted.

`ragbot run` and `ragbot worker` run `purge` at start and every PURGE_EVERY_SECONDS in a
background thread. What is purged lives in RAGBOT_DATA_DIR/slack: `slack.sqlite3` (thread
turns and answered questions) and `feedback.jsonl` (the votes, each with its question and
answer). The ingest run history (counts, no questions) is kept.
"""

from __future__ import annotations

import logging
import threading
import time

from rag.config import Settings

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 6 * 3600


def purge(settings: Settings, *, now: float | None = None) -> dict[str, int]:
    """Delete what is older than the retention period; returns how much of each kind went."""
    from bot.feedback import feedback_path, purge_votes
    from bot.memory import SlackState

    cutoff = (time.time() if now is None else now) - settings.ragbot_retention_days * 86_400
    data_dir = settings.ragbot_data_dir
    counts = {"turns": 0, "answers": 0, "votes": 0}
    if (data_dir / "slack" / "slack.sqlite3").exists():
        counts.update(SlackState(data_dir).purge(cutoff))
    counts["votes"] = purge_votes(feedback_path(data_dir), cutoff)
    if any(counts.values()):
        log.info(
            "retention (%d days): deleted %d thread turn(s), %d answer(s), %d vote(s)",
            settings.ragbot_retention_days,
            counts["turns"],
            counts["answers"],
            counts["votes"],
        )
    return counts


class RetentionJob:
    """`purge` now and then every `interval` seconds, until `stop()`."""

    def __init__(self, settings: Settings, *, interval: float = PURGE_EVERY_SECONDS) -> None:
        self.settings = settings
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
                purge(self.settings)
            except Exception as e:  # e.g. a locked or unreadable file: try again next time
                log.warning("retention purge failed: %s", e)
            if self._stop.wait(self.interval):
                return
