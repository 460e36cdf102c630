"""Who will read an answer in Slack, as a rag.models.Reader (docs/slack.md, "Who may see what").

Only when a Confluence site syncs its permissions (`permissions = "sync"`) does this ask Slack
anything. A person is their Slack profile's e-mail (`users.info`, scope `users:read.email`),
matched to a Confluence account by the permission sync. A channel's answer is seen by all its
members, so it may use only what every member may read: the intersection over
`conversations.members`. Bots, apps and deactivated accounts are not readers. Anything that
cannot be known — a member without an e-mail, Slack failing, a channel larger than
RAGBOT_MEMBER_CHECK_LIMIT — narrows to public pages (Reader.public), never widens.

Member lists are cached per channel and dropped on `member_joined_channel` /
`member_left_channel` (and after MEMBERS_TTL as a safety net, for events missed while the bot
was away); e-mails are cached per user for PROFILE_TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.errors import ConfigError, RagError
from rag.models import Reader

if TYPE_CHECKING:
    from bot.questions import Question

log = logging.getLogger(__name__)

PROFILE_TTL = 3600.0
MEMBERS_TTL = 900.0
PAGE = 200


@dataclass(frozen=True)
class _Profile:
    email: str | None  # None: no e-mail Slack will show
    person: bool  # False: a bot, an app or a deactivated account (not a reader)
    at: float


class Readers:
    """Slack users and channels → Readers, with the caches above."""

    def __init__(
        self,
        client: Any,
        *,
        member_limit: int = 500,
        bot_user_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.member_limit = member_limit
        self.bot_user_id = bot_user_id
        self._clock = clock
        self._lock = threading.Lock()
        self._profiles: dict[str, _Profile] = {}
        self._members: dict[str, tuple[list[str] | None, float]] = {}

    # ----- people ------------------------------------------------------------------------------

    def person(self, user: str) -> Reader:
        """What this one person may read (public pages only when they cannot be identified)."""
        profile = self._profile(user)
        if profile is None or not profile.person or not profile.email:
            return Reader.public(label=user)
        return Reader.person(profile.email, label=user)

    def email(self, user: str) -> str | None:
        profile = self._profile(user)
        return profile.email if profile is not None and profile.person else None

    def _profile(self, user: str) -> _Profile | None:
        now = self._clock()
        with self._lock:
            cached = self._profiles.get(user)
        if cached is not None and now - cached.at < PROFILE_TTL:
            return cached
        try:
            data = self.client.users_info(user=user)
        except Exception as e:  # unknown: the caller narrows to public pages
            log.warning("users.info %s failed (public pages only): %s", user, e)
            return None
        info = data.get("user") or {}
        person = not (
            info.get("is_bot") or info.get("deleted") or user == "USLACKBOT" or user == self.bot_user_id
        )
        email = str((info.get("profile") or {}).get("email") or "").strip().lower() or None
        profile = _Profile(email, person, now)
        with self._lock:
            self._profiles[user] = profile
        return profile

    def for_question(self, question: Question) -> Reader:
        """The asker alone (a DM, a private answer, /ragbot), else every member of the channel."""
        if question.dm or question.private or question.respond is not None:
            return self.person(question.user)
        return self.channel(question.channel)

    # ----- channels ----------------------------------------------------------------------------

    def channel(self, channel: str) -> Reader:
        """What every member of `channel` may read: the intersection of their permissions."""
        members = self.members(channel)
        label = f"#{channel}"
        if members is None:
            return Reader.public(label=label)
        if len(members) > self.member_limit:
            log.info(
                "%s has %d members, more than RAGBOT_MEMBER_CHECK_LIMIT=%d: public pages only",
                channel,
                len(members),
                self.member_limit,
            )
            return Reader.public(label=f"{label} ({len(members)} members)")
        emails: list[str] = []
        for user in members:
            if user == self.bot_user_id or user == "USLACKBOT":
                continue  # the bot itself reads nothing it was not allowed to find
            profile = self._profile(user)
            if profile is None:
                return Reader.public(label=label)
            if not profile.person:
                continue
            if not profile.email:
                log.info("%s: member %s has no visible e-mail: public pages only", channel, user)
                return Reader.public(label=label)
            emails.append(profile.email)
        return Reader.people(emails, label=f"{label} ({len(emails)} members)")

    def members(self, channel: str) -> list[str] | None:
        """The channel's members (cached); None when Slack does not say."""
        now = self._clock()
        with self._lock:
            cached = self._members.get(channel)
        if cached is not None and now - cached[1] < MEMBERS_TTL:
            return cached[0]
        found: list[str] = []
        cursor: str | None = None
        try:
            while True:
                data = self.client.conversations_members(channel=channel, limit=PAGE, cursor=cursor)
                found.extend(str(m) for m in data.get("members") or [])
                cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "") or None
                if not cursor or len(found) > self.member_limit:
                    break
        except Exception as e:
            log.warning("conversations.members %s failed (public pages only): %s", channel, e)
            return None
        with self._lock:
            self._members[channel] = (found, now)
        return found

    def forget_channel(self, channel: str) -> None:
        """A member joined or left: the next question reads the list again."""
        with self._lock:
            self._members.pop(channel, None)

    def on_members_changed(self, event: dict[str, Any]) -> None:
        """`member_joined_channel` / `member_left_channel` (a listener: no Web API call here)."""
        channel = str(event.get("channel") or "")
        if channel:
            self.forget_channel(channel)
            joined = event.get("type") == "member_joined_channel"
            log.info(
                "%s: %s %s; its members are read again at the next question",
                channel,
                event.get("user"),
                "joined" if joined else "left",
            )


def channel_readers(settings: Settings, channel: str) -> list[tuple[str, Reader]]:
    """`ragbot permissions explain --channel`: the channel as one reader, then each member, read
    from Slack with the bot's token and judged by the bot's rules."""
    from slack_sdk import WebClient

    if not settings.slack_bot_token:
        raise ConfigError("--channel needs SLACK_BOT_TOKEN (the channel's members are read from Slack)")
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    member_limit = settings.ragbot_member_check_limit
    readers = Readers(client, member_limit=member_limit)
    members = readers.members(channel)
    if members is None:
        raise RagError(f"Slack did not list the members of {channel} (is the bot in it?)")
    found: list[tuple[str, Reader]] = [(f"channel {channel}", readers.channel(channel))]
    for member in members[:member_limit]:
        email = readers.email(member)
        who = f"  {member}" + (f" <{email}>" if email else " (no e-mail)")
        found.append((who, Reader.person(email) if email else Reader.public(member)))
    return found
