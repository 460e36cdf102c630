"""Exactly one answer per question although Slack delivers some questions more than once.

Slack sends both `app_mention` and `message` for one mention (different event ids, same
channel and ts), and re-delivers an envelope it thinks was not acknowledged (same event id,
retry_attempt > 0). A question is therefore identified by its event id AND by its
channel + message ts; the first delivery carrying any unseen key claims all of them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class SeenKeys:
    """A bounded, thread-safe set of keys that forgets them after `ttl` seconds."""

    def __init__(
        self, *, ttl: float = 3600.0, max_keys: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, *keys: str | None) -> bool:
        """True the first time any of `keys` is offered; then every one of them counts as seen."""
        wanted = [k for k in keys if k]
        now = self.clock()
        with self._lock:
            self._expire(now)
            if any(k in self._seen for k in wanted):
                self._mark(wanted, now)  # remember the sibling keys too (e.g. the twin's event id)
                return False
            self._mark(wanted, now)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return True

    def _mark(self, keys: list[str], now: float) -> None:
        for k in keys:
            self._seen[k] = now
            self._seen.move_to_end(k)

    def _expire(self, now: float) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at < self.ttl:
                break
            del self._seen[key]


def message_key(channel: str | None, ts: str | None) -> str | None:
    return f"msg:{channel}:{ts}" if channel and ts else None


def event_key(event_id: str | None) -> str | None:
    return f"event:{event_id}" if event_id else None
