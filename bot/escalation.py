"""**Ask an expert**: the owners of what an answer cited, mentioned in its thread.

Who: the CODEOWNERS of the cited files (read from the indexed repository at the indexed commit),
the cited pages' last editors, the `experts` of the cited sources (all through
`RagService.owners`), then the channel's own `experts`. Each becomes a Slack id: `U…`/`W…`
(a person) and `S…` (a user group) as they are, a name in `[slack] people` through that table,
an e-mail through users.lookupByEmail. At most three people, or one user group alone, each once,
never the asker; broadcasts are impossible (bot.safety lets exactly the chosen group through).
An answer is escalated once; the escalation is appended to the feedback log
(`ragbot feedback`) and counted in `ragbot_escalations_total`.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from bot import formatting, messages
from bot.access import TtlCache
from bot.feedback import excerpt
from bot.private import hits_from_record
from rag.service import cited

if TYPE_CHECKING:
    from bot.context import BotContext
    from bot.questions import Question
    from rag.models import Answer

log = logging.getLogger(__name__)

MAX_PEOPLE = 3
SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
EMAIL_CACHE_SECONDS = 3600.0


class Escalation:
    def __init__(self, handlers: BotContext) -> None:
        self.h = handlers
        self._emails: TtlCache[str] = TtlCache(EMAIL_CACHE_SECONDS)  # "" = no Slack user has it

    def channel_experts(self, channel: str) -> tuple[str, ...]:
        scope = self.h.service.registry.slack.channel(channel)
        return tuple(scope.experts) if scope is not None else ()

    def offered(self, channel: str, answer: Answer, *, dm: bool) -> bool:
        """Whether an answer gets the button: not in a DM (nobody to mention there), and only
        when someone could be found (cited sources, or the channel's experts)."""
        return not dm and bool(answer.hits or self.channel_experts(channel))

    def offer_when_unanswered(self, q: Question, answer: Answer) -> None:
        """A support channel's question the index does not cover: the channel hears nothing; the
        asker alone is offered a person, when the channel names `experts`."""
        if not self.channel_experts(q.channel) or q.dm:
            return
        answer_id = uuid.uuid4().hex
        self.h.answers.record_answer(
            answer_id,
            channel=q.channel,
            thread_ts=q.reply_thread or "",
            user=q.user,
            question=q.text,
            answer="",
            mode=answer.mode,
            hits=[],
            found=False,
            private=True,
        )
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": messages.NOT_FOUND_PRIVATE_OFFER}},
            formatting.actions_block(answer_id, ["escalate"]),
        ]
        try:
            self.h.client.chat_postEphemeral(
                channel=q.channel,
                user=q.user,
                thread_ts=q.reply_thread,
                text=messages.NOT_FOUND_PRIVATE_OFFER,
                blocks=blocks,
            )
        except Exception as e:
            log.info("could not offer an expert to %s in %s: %s", q.user, q.channel, e)

    # ----- the click ---------------------------------------------------------------------------

    def on_click(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        ack()
        self.h.intake.submit(self.h.guard, self.escalate, body, str(action.get("value") or ""), respond)

    def escalate(self, body: dict[str, Any], answer_id: str, respond: Any) -> None:
        h = self.h
        user = str((body.get("user") or {}).get("id") or "")
        record = h.answers.answer(answer_id)
        if record is None:
            h.private.reply(respond, user, messages.SHARE_GONE)
            return
        channel = str(record["channel"])
        thread = str(record["thread_ts"] or "") or None
        candidates: list[tuple[str, str]] = []
        if record["found"] is not False:
            hits = hits_from_record(record["sources"])
            first = cited(str(record["answer"] or ""), len(hits))  # the passages the answer cites first
            order = [n - 1 for n in first] + [i for i in range(len(hits)) if i + 1 not in first]
            # The mention names why (a page's title): only pages everyone where it is posted may read.
            seen = self.visible_where_posted(channel, user, record["sources"])
            hits = [hits[i] for i in order if seen[i]]
            try:
                candidates += [(o.handle, o.why) for o in h.service.owners(hits, limit=10)]
            except Exception:
                log.exception(
                    "finding the owners of answer %s failed [error id %s]", answer_id, uuid.uuid4().hex[:8]
                )
        candidates += [(x, "expert for this channel") for x in self.channel_experts(channel)]
        people, reasons = self.choose(candidates, asker=user)
        if not people:
            h.service.metrics.escalation("nobody")
            h.private.reply(respond, user, messages.ESCALATE_NOBODY)
            return
        if not h.answers.claim(answer_id, "escalated"):
            h.private.reply(respond, user, messages.ESCALATE_DONE_ALREADY)
            return
        groups = frozenset(p for p in people if p.startswith("S"))
        mentions = ", ".join(f"<!subteam^{p}>" if p in groups else f"<@{p}>" for p in people)
        why = f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else ""
        question = excerpt(str(record["question"] or ""), 300)
        text = messages.ESCALATED.format(asker=f"<@{user}>", people=mentions, why=why)
        if record.get("answer") == "" or thread is None:
            text += f"\n> {question}"
        try:
            with h.client.allowing_groups(groups):  # type: ignore[attr-defined]
                h.client.chat_postMessage(channel=channel, thread_ts=thread, text=text, unfurl_links=False)
        except Exception:
            h.answers.release(answer_id, "escalated")
            raise
        h.answers.record_escalation(answer_id, user=user, escalated_to=people, reasons=reasons)
        h.service.metrics.escalation("mentioned")
        log.info("%s escalated answer %s in %s to %s", user, answer_id, channel, ", ".join(people))

    def visible_where_posted(self, channel: str, user: str, sources: list[dict[str, Any]]) -> list[bool]:
        """Per recorded source: may everyone in `channel` read it (synced Confluence permissions)?"""
        h = self.h
        if not h.service.permissions_synced:
            return [True] * len(sources)
        readers = h.readers.person(user) if channel.startswith("D") else h.readers.channel(channel)
        return [h.service.visible(readers, [source]) for source in sources]

    def choose(self, candidates: list[tuple[str, str]], *, asker: str) -> tuple[list[str], list[str]]:
        """At most three people, or one user group alone; each once; never the asker or the bot."""
        people: list[str] = []
        reasons: list[str] = []
        for handle, why in candidates:
            sid = self.slack_id(handle)
            if not sid or sid in (asker, self.h.bot_user_id) or sid in people:
                continue
            if sid.startswith("S"):
                if not people:
                    return [sid], [why]
                continue
            people.append(sid)
            reasons.append(why)
            if len(people) == MAX_PEOPLE:
                break
        return people, reasons

    def slack_id(self, handle: str) -> str | None:
        """A Slack user or group id for a CODEOWNERS owner, an e-mail or a configured id."""
        handle = handle.strip()
        if SLACK_ID.fullmatch(handle):
            return handle
        people = {k.lower(): v for k, v in self.h.service.registry.slack.people.items()}
        if handle.lower() in people:
            return people[handle.lower()]
        if EMAIL.fullmatch(handle) and not handle.startswith("@"):
            return self._by_email(handle.lower())
        return None

    def _by_email(self, email: str) -> str | None:
        cached = self._emails.get(email)
        if cached is not None:
            return cached or None
        try:
            user = self.h.client.users_lookupByEmail(email=email).get("user") or {}
            found = str(user.get("id") or "") if not user.get("deleted") else ""
        except Exception as e:  # users_not_found, or no users:read.email scope
            log.info("no Slack user for %s: %s", email, e)
            found = ""
        self._emails.put(email, found)
        return found or None
