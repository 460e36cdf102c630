"""The thread's status line while the bot works: assistant.threads.setStatus, or the ⏳ reaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot import messages
from bot.capabilities import Capabilities, retry_after

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)


class ThreadStatus:
    """assistant.threads.setStatus while working (with rotating `loading_messages`); the ⏳
    reaction where the status is unavailable or failed for this question."""

    def __init__(
        self,
        client: WebClient,
        caps: Capabilities,
        *,
        channel: str,
        ts: str,
        thread: str | None,
        quick: WebClient | None = None,
    ):
        self.client = client
        self.quick = quick or client
        self.caps = caps
        self.channel = channel
        self.ts = ts
        self.thread = thread
        self.reacted = False
        self.shown = False

    def set(self, text: str, *, loading: Sequence[str] = ()) -> None:
        if self.thread and self.caps.status:
            try:
                self.quick.assistant_threads_setStatus(
                    channel_id=self.channel,
                    thread_ts=self.thread,
                    status=text,
                    loading_messages=list(loading)[:10] if loading and text else None,
                )
                self.shown = bool(text)
                return
            except Exception as e:
                if retry_after(e) is not None:
                    return  # rate limited: this status update is skipped, the next one may go through
                self.caps.refuse("status", e)
        if text and not self.reacted:
            self.reacted = True
            self._react("reactions_add")

    def step(self, text: str) -> None:
        """A step of the answering loop while it runs: "Reading app/db.py:10-40…"."""
        self.set(f"{text}…")

    def clear(self) -> None:
        if self.reacted:
            self._react("reactions_remove")
        elif self.shown:
            self.set("")

    def _react(self, method: str) -> None:
        try:
            getattr(self.quick, method)(
                channel=self.channel, timestamp=self.ts, name=messages.WORKING_REACTION
            )
        except Exception as e:  # the indicator is a courtesy: never fail an answer over it
            log.debug("%s failed on %s/%s: %s", method, self.channel, self.ts, e)


def source_list(names: list[str]) -> str:
    """ "backend, eng-wiki" — at most four names, then "and N more"."""
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def searching_status(names: list[str]) -> str:
    return f"searching {source_list(names)}…" if names else "searching…"


def loading_messages(names: list[str]) -> list[str]:
    """What the status line rotates through while the bot searches (Slack: at most 10 lines of
    at most 50 characters; a long source name is cut)."""
    lines = [f"Searching {name if len(name) <= 39 else name[:38] + '…'}…" for name in names[:6]]
    return [*lines, "Ranking what matches…", "Reading the best passages…"][:10]
