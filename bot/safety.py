"""What keeps the bot polite: no broadcast pings, a per-user rate limit, bounded questions.

`neutralise` is applied to every outgoing payload by bot.app.SafeWebClient (the one place all
Web API calls pass through) and to response_url replies, so neither the model nor a quoted
document can make the bot notify a whole channel or a user group.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any

WORD_JOINER = "\u2060"  # invisible; breaks "@here" so Slack never reads it as a keyword

# <!channel>, <!here>, <!everyone> with an optional |label, and user-group pings <!subteam^S123|@team>.
_SPECIAL = re.compile(r"<!(channel|here|everyone|group)(?:\|[^>]*)?>", re.IGNORECASE)
_SUBTEAM = re.compile(r"<!subteam\^([A-Za-z0-9]+)(?:\|([^>]*))?>", re.IGNORECASE)
# Encoded forms survive a later unescape in some clients: neutralise them too.
_ENCODED = re.compile(
    r"&lt;!(channel|here|everyone|group|subteam\^[A-Za-z0-9]+)(?:\|[^&]*)?&gt;", re.IGNORECASE
)
_BARE = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)

MAX_QUESTION_CHARS = 2_000

# C0/C1 control characters (but tab and newline) and the bidirectional marks, embeddings,
# overrides and isolates that can make text display differently from what it says.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """Text without control characters or bidirectional formatting marks."""
    return _CONTROLS.sub("", text)


def neutralise(text: str, allow_groups: frozenset[str] = frozenset()) -> str:
    """Text with every broadcast or user-group mention turned into inert words (and no control
    characters or bidirectional marks, which could hide one or make text read backwards).
    `allow_groups`: the user-group ids an escalation chose to ping (bot/escalation.py); never
    a broadcast."""

    text = strip_controls(text)

    def subteam(m: re.Match[str]) -> str:
        if m.group(1) in allow_groups:
            return m.group(0)
        label = (m.group(2) or "@group").lstrip("@")
        return f"@{WORD_JOINER}{label}"

    text = _SPECIAL.sub(lambda m: f"@{WORD_JOINER}{m.group(1).lower()}", text)
    text = _SUBTEAM.sub(subteam, text)
    text = _ENCODED.sub(lambda m: f"@{WORD_JOINER}{m.group(1).split('^')[0].lower()}", text)
    return _BARE.sub(lambda m: f"@{WORD_JOINER}{m.group(1)}", text)


def neutralise_payload(value: Any, allow_groups: frozenset[str] = frozenset()) -> Any:
    """`neutralise` applied to every string inside a JSON-like value (text, blocks, attachments)."""
    if isinstance(value, str):
        return neutralise(value, allow_groups)
    if isinstance(value, dict):
        return {k: neutralise_payload(v, allow_groups) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [neutralise_payload(v, allow_groups) for v in value]
    return value


def clip_question(text: str, limit: int = MAX_QUESTION_CHARS) -> tuple[str, bool]:
    """The question cut to `limit` characters (at a word boundary when possible), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip(), True


def strip_mentions_of(text: str, user_id: str | None) -> str:
    """The question without the `<@BOT>` mention that addressed it (nor control characters)."""
    text = strip_controls(text)
    if user_id:
        text = re.sub(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class RateLimiter:
    """At most `limit` requests per user within a sliding `window` (seconds)."""

    def __init__(self, *, limit: int = 6, window: float = 60.0, clock: Any = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, user: str) -> float:
        """0 if `user` may go ahead now (and counts it), else the seconds until they may."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(user, deque())
            while hits and now - hits[0] >= self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.1, self.window - (now - hits[0]))
            hits.append(now)
            return 0.0
