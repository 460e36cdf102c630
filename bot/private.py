"""Private answers: seen by the asker alone, with a **Share in thread** button.

A channel with `private = true` answers its questions with an ephemeral message
(chat.postEphemeral); `/ragbot QUESTION` answers through the command's response_url. A `/ragbot`
question searches what a DM would (only the asker sees the answer); sharing re-checks everything
the channel's own questions obey — the allow-list, Slack Connect, and the channel's sources — so
an answer citing a source the channel may not see is never posted there. An answer is shared at
most once, publicly, credited to the asker ("Shared by @user").
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from bot import formatting, messages
from bot.access import Verdict
from bot.capabilities import slack_error
from bot.commands import new_error_id, respond_privately
from bot.safety import clip_question
from bot.streaming import post_pages
from rag.errors import StoreError
from rag.models import Answer, Hit
from rag.service import answer_found

if TYPE_CHECKING:
    from bot.context import BotContext
    from bot.questions import Question

log = logging.getLogger(__name__)


def hits_from_record(sources: list[dict[str, Any]]) -> list[Hit]:
    """The hits of a recorded answer (their texts are not kept: citations only)."""
    return [
        Hit(
            source=str(s.get("source") or ""),
            title=str(s.get("title") or ""),
            url=s.get("url"),
            path=s.get("path"),
            start_line=s.get("start_line"),
            end_line=s.get("end_line"),
            score=float(s.get("score") or 0.0),
            text="",
            source_name=str(s.get("source_name") or s.get("source") or ""),
            metadata=dict(s.get("metadata") or {}),
        )
        for s in sources
    ]


class PrivateAnswers:
    def __init__(self, handlers: BotContext) -> None:
        self.h = handlers

    # ----- answering ---------------------------------------------------------------------------

    def answer(self, q: Question) -> None:
        """Answer `q` for the asker's eyes only (runs in the answer pool)."""
        h = self.h
        received = time.monotonic()
        try:
            text, cut = clip_question(q.text, h.question_limit)
            reader = h.reader_for(q)
            history = (
                h.memory.turns(q.channel, q.memory_key, admit=partial(h.service.visible, reader))
                if q.reply_thread
                else []
            )
            answer = h.service.ask(
                text,
                top_k=h.top_k,
                history=history,
                allowed=h.scope_for(q),
                require_found=q.unprompted,
                reader=reader,
            )
            if q.unprompted and not answer_found(answer):
                h.service.metrics.answered("slack", answer, seconds=0.0)
                h.escalation.offer_when_unanswered(q, answer)
                return
            answer_id = uuid.uuid4().hex
            notes = [
                messages.PRIVATE_NOTE,
                *formatting.note_text(answer, question_cut=cut, question_limit=h.question_limit),
            ]
            actions = ["share", *(["escalate"] if h.escalation.offered(q.channel, answer, dm=q.dm) else [])]
            blocks = formatting.answer_blocks(answer, answer_id=answer_id, notes=notes, actions=actions)
            h.answers.record_answer(
                answer_id,
                channel=q.channel,
                thread_ts=q.reply_thread or "",
                user=q.user,
                question=text,
                answer=answer.text,
                mode=answer.mode,
                hits=answer.hits,
                found=answer_found(answer),
                private=True,
            )
            self.show(q, blocks, formatting.fallback_text(answer))
            h.service.metrics.answered("slack", answer, seconds=time.monotonic() - received)
            log.info(
                "answered %s/%s privately (%s, %d sources)", q.channel, q.ts, answer.mode, len(answer.hits)
            )
        except StoreError as e:
            h.service.metrics.question("slack", "error")
            log.warning("answering %s/%s: the index is unavailable: %s", q.channel, q.ts, e)
            self._note(q, messages.INDEX_UNAVAILABLE)
        except Exception:
            h.service.metrics.question("slack", "error")
            error_id = new_error_id()
            log.exception("answering %s/%s privately failed [error id %s]", q.channel, q.ts, error_id)
            self._note(q, messages.ERROR.format(error_id=error_id))

    def show(self, q: Question, blocks: list[dict[str, Any]], text: str) -> None:
        if q.respond is not None:
            self.reply(q.respond, q.user, text, blocks=blocks)
            return
        for page in formatting.paginate(blocks):
            self.h.client.chat_postEphemeral(
                channel=q.channel, user=q.user, thread_ts=q.reply_thread, text=text, blocks=page
            )

    def _note(self, q: Question, text: str) -> None:
        try:
            if q.respond is not None:
                self.reply(q.respond, q.user, text)
            else:
                self.h.client.chat_postEphemeral(
                    channel=q.channel, user=q.user, thread_ts=q.reply_thread, text=text
                )
        except Exception:
            log.exception("could not tell %s in %s: %s", q.user, q.channel, text)

    def reply(
        self, respond: Any, user: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """An ephemeral reply through a response_url (bot.commands.respond_privately)."""
        respond_privately(self.h.client, respond, user, text, blocks=blocks)

    # ----- sharing -------------------------------------------------------------------------------

    def on_share(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        ack()
        self.h.intake.submit(self.h.guard, self.share, body, str(action.get("value") or ""), respond)

    def share(self, body: dict[str, Any], answer_id: str, respond: Any) -> None:
        """Post a private answer publicly, once, where it was asked — if that place may see it."""
        h = self.h
        user = str((body.get("user") or {}).get("id") or "")
        record = h.answers.answer(answer_id)
        if record is None:
            self.reply(respond, user, messages.SHARE_GONE)
            return
        if record["asked_by"] != user:
            self.reply(respond, user, messages.SHARE_NOT_YOURS)
            return
        channel, thread = str(record["channel"]), str(record["thread_ts"] or "") or None
        refusal = self.refusal(channel, user, body, record)
        if refusal:
            log.info("refused to share answer %s in %s: %s", answer_id, channel, refusal)
            self.reply(respond, user, refusal)
            return
        if not h.answers.claim(answer_id, "shared"):
            self.reply(respond, user, messages.SHARE_DONE_ALREADY)
            return
        found = bool(record["found"]) if record["found"] is not None else True
        answer = Answer(
            str(record["answer"]), record["mode"] or "llm", hits_from_record(record["sources"]), found=found
        )
        shared_id = uuid.uuid4().hex
        actions = ["escalate"] if h.escalation.offered(channel, answer, dm=channel.startswith("D")) else []
        blocks = formatting.answer_blocks(answer, answer_id=shared_id, actions=actions, shared_by=user)
        text = formatting.fallback_text(answer)
        try:
            pages = formatting.paginate(blocks)
            posted = h.client.chat_postMessage(
                channel=channel,
                thread_ts=thread,
                text=text,
                blocks=pages[0],
                unfurl_links=False,
                unfurl_media=False,
            )
            thread = thread or str(posted["ts"])
            post_pages(h.client, channel, thread, text, pages[1:])
        except Exception as e:
            h.answers.release(answer_id, "shared")
            if slack_error(e) in ("not_in_channel", "channel_not_found"):
                self.reply(respond, user, messages.SHARE_NOT_IN_CHANNEL)
                return
            raise
        h.answers.record_answer(
            shared_id,
            channel=channel,
            thread_ts=thread,
            user=user,
            question=str(record["question"]),
            answer=answer.text,
            mode=answer.mode,
            hits=answer.hits,
            found=record["found"],
        )
        h.memory.add(
            channel, thread, str(record["question"]), answer.text, hits=answer.hits
        )  # follow-ups continue it
        h.threads.add(channel, thread)
        log.info("%s shared answer %s in %s/%s", user, answer_id, channel, thread)
        try:
            respond(delete_original=True)  # the private copy is gone: the thread has it now
        except Exception as e:
            log.debug("could not delete the private answer %s: %s", answer_id, e)

    def refusal(self, channel: str, user: str, body: dict[str, Any], record: dict[str, Any]) -> str | None:
        """Why this answer may not be posted in `channel` (None: it may)."""
        h = self.h
        if h.access is not None:
            event = {
                "channel": channel,
                "user": user,
                "channel_type": "im" if channel.startswith("D") else "channel",
            }
            team = (body.get("user") or {}).get("team_id") or (body.get("team") or {}).get("id")
            if team:
                event["user_team"] = team
            verdict = h.access.verdict(event, {"authorizations": body.get("authorizations") or []})
            if verdict is not Verdict.ALLOWED:
                return messages.SHARE_REFUSED_CHANNEL.format(reason=verdict.value.replace("_", " "))
        allowed = h.service.registry.slack.sources_for(channel)
        if allowed is not None:
            cited = {str(s.get("source_name") or s.get("source") or "") for s in record["sources"]}
            hidden = sorted(cited - set(allowed))
            if hidden:
                return messages.SHARE_REFUSED_SOURCES.format(names=", ".join(hidden))
        if h.service.permissions_synced:
            # Everyone in the place it would be posted must be allowed to read every page it cites.
            readers = h.readers.person(user) if channel.startswith("D") else h.readers.channel(channel)
            if not h.service.visible(readers, record["sources"]):
                return messages.SHARE_REFUSED_READERS
        return None
