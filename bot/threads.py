"""Which threads the bot answers in: follow-ups there need no mention.

Known locally (this process posted there, or the thread memory has turns), else read once from
Slack (conversations.replies — called from the intake pool, never a Bolt listener thread), which
also rebuilds the thread's memory when the state file is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.dedupe import SeenKeys
from bot.memory import ThreadMemory, turns_from_replies

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)


class Threads:
    def __init__(
        self,
        *,
        client: WebClient,
        memory: ThreadMemory,
        bot_user_id: str | None,
        bot_id: str | None,
        clean: Callable[[str], str],
    ) -> None:
        self.client = client
        self.memory = memory
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.clean = clean
        self.ours: set[str] = set()  # "channel:thread_ts" where the bot has posted an answer
        self.not_ours = SeenKeys(ttl=300.0)  # threads recently checked in Slack: the bot is not in them

    def add(self, channel: str, thread_ts: str) -> None:
        self.ours.add(f"{channel}:{thread_ts}")

    def answered_in(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread: local memory first, then the thread itself."""
        key = f"{channel}:{thread_ts}"
        if key in self.ours or self.memory.knows(channel, thread_ts):
            return True
        if not self.not_ours.claim(key):
            return False
        try:
            replies = self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
        except Exception as e:
            log.warning("cannot read thread %s/%s to rebuild its memory: %s", channel, thread_ts, e)
            return False
        msgs = list(replies.get("messages") or [])
        ours = any(
            (self.bot_user_id and m.get("user") == self.bot_user_id)
            or (self.bot_id and m.get("bot_id") == self.bot_id)
            for m in msgs
        )
        if not ours:
            return False
        turns = turns_from_replies(msgs, bot_user_id=self.bot_user_id, bot_id=self.bot_id, strip=self.clean)
        self.memory.seed(channel, thread_ts, turns)
        self.ours.add(key)
        log.info("rebuilt memory of thread %s/%s from Slack: %d turn(s)", channel, thread_ts, len(turns))
        return True
