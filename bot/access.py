"""Who may ask, and where: the bot's organisation only, allowed channels, no index in shared channels.

Decided before any retrieval from what Slack tells us, in this order:

1. the asker is external (a Slack Connect guest, another organisation) → refused, unless
   SLACK_ALLOW_EXTERNAL_USERS;
2. the channel is not in the allow-list (SLACK_ALLOWED_CHANNELS + the file's `[slack]
   allowed_channels`; empty = every channel) → "not enabled here"; DMs are always allowed;
3. the channel is externally shared and SLACK_SHARED_CHANNELS=refuse → "ask me in a DM".

Every lookup that cannot be made (users.info or conversations.info failing) refuses: the
bot fails closed, so an outage never leaks the index to the wrong people.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from rag.config import Settings

log = logging.getLogger(__name__)

USER_CACHE_SECONDS = 3600.0
CHANNEL_CACHE_SECONDS = 300.0
CACHE_SIZE = 5000


class Verdict(Enum):
    ALLOWED = "allowed"
    EXTERNAL_USER = "external_user"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    SHARED_CHANNEL = "shared_channel"


V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small bounded cache with a time-to-live; thread-safe (answers run in a pool)."""

    def __init__(self, ttl: float, size: int = CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or time.monotonic() - item[0] > self.ttl:
                self._items.pop(key, None)
                return None
            return item[1]

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class Identity:
    """The bot's organisation, from auth.test."""

    team_id: str | None
    enterprise_id: str | None

    @classmethod
    def from_auth_test(cls, data: dict[str, Any]) -> Identity:
        return cls(team_id=data.get("team_id") or None, enterprise_id=data.get("enterprise_id") or None)


class Access:
    """The who-may-ask / where decision for one event."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: WebClient,
        identity: Identity,
        allowed_channels: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.identity = identity
        self.allow_external = settings.slack_allow_external_users
        self.refuse_shared = settings.slack_shared_channels == "refuse"
        self.allowed_channels = frozenset(settings.slack_allowed_channels) | frozenset(allowed_channels)
        self.users: TtlCache[bool] = TtlCache(USER_CACHE_SECONDS)
        self.shared: TtlCache[bool] = TtlCache(CHANNEL_CACHE_SECONDS)

    def verdict(self, event: dict[str, Any], body: dict[str, Any]) -> Verdict:
        channel = str(event.get("channel") or "")
        if not self.allow_external and not self.is_internal(event, body):
            return Verdict.EXTERNAL_USER
        if is_dm(event):
            return Verdict.ALLOWED
        if self.allowed_channels and channel not in self.allowed_channels:
            return Verdict.CHANNEL_NOT_ALLOWED
        if self.refuse_shared and self.is_shared(channel, body):
            return Verdict.SHARED_CHANNEL
        return Verdict.ALLOWED

    # ----- who ---------------------------------------------------------------------------

    def _our_teams(self, body: dict[str, Any]) -> set[str]:
        teams = {self.identity.team_id} if self.identity.team_id else set()
        for auth in body.get("authorizations") or []:
            if auth.get("team_id"):
                teams.add(str(auth["team_id"]))
        return teams

    def is_internal(self, event: dict[str, Any], body: dict[str, Any]) -> bool:
        """The asker's team is ours (or in our Enterprise Grid organisation)."""
        user = str(event.get("user") or "")
        team = event.get("user_team") or event.get("team")
        ours = self._our_teams(body)
        if team and team in ours:
            return True
        if team and not self.identity.enterprise_id:
            return False  # another team, and we are no Grid organisation: nothing more to ask
        cached = self.users.get(user)
        if cached is not None:
            return cached
        try:
            info = self.client.users_info(user=user).get("user") or {}
        except Exception as e:  # fail closed, and ask again next time
            log.warning("cannot tell whether %s is internal (users.info failed: %s); refusing", user, e)
            return False
        internal = self._internal_from_profile(info, ours)
        self.users.put(user, internal)
        return internal

    def _internal_from_profile(self, info: dict[str, Any], ours: set[str]) -> bool:
        if info.get("is_stranger"):
            return False
        enterprise = (info.get("enterprise_user") or {}).get("enterprise_id")
        if self.identity.enterprise_id and enterprise == self.identity.enterprise_id:
            return True
        return bool(info.get("team_id")) and info.get("team_id") in ours

    # ----- where -------------------------------------------------------------------------

    def is_shared(self, channel: str, body: dict[str, Any]) -> bool:
        """Externally shared: the envelope says so, or a channel_shared event / conversations.info did."""
        if body.get("is_ext_shared_channel") is True:
            self.shared.put(channel, True)
            return True
        cached = self.shared.get(channel)
        if cached is not None:
            return cached
        if body.get("is_ext_shared_channel") is False:
            return False
        try:
            info = self.client.conversations_info(channel=channel).get("channel") or {}
        except Exception as e:  # fail closed
            log.warning("cannot tell whether %s is shared (conversations.info: %s); refusing", channel, e)
            return True
        shared = bool(info.get("is_ext_shared"))
        self.shared.put(channel, shared)
        return shared

    def on_channel_shared(self, event: dict[str, Any]) -> None:
        channel = str(event.get("channel") or "")
        log.info("channel %s is now shared with team %s", channel, event.get("connected_team_id"))
        self.shared.put(channel, True)

    def on_channel_unshared(self, event: dict[str, Any]) -> None:
        channel = str(event.get("channel") or "")
        log.info("channel %s is no longer shared with %s", channel, event.get("previously_connected_team_id"))
        # The event says whether it is still shared with someone else; without that, ask Slack next time.
        if "is_ext_shared" in event:
            self.shared.put(channel, bool(event["is_ext_shared"]))
        else:
            self.shared.forget(channel)


def is_dm(event: dict[str, Any]) -> bool:
    return event.get("channel_type") == "im" or str(event.get("channel") or "").startswith("D")
