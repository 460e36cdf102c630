"""The bot's listeners, as methods of one object that receives its dependencies.

Bolt acknowledges events itself; the listeners here only filter, deduplicate and queue, so
they return at once. Answers are produced in a bounded pool, streamed into one message,
and finished as Block Kit. Every outgoing call uses `self.client` (bot.app.SafeWebClient),
never Bolt's per-request client, so every message passes the broadcast-mention filter.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from bot import formatting, messages
from bot.access import Access, Verdict, is_dm
from bot.capabilities import Capabilities, without_retries
from bot.commands import Commands, command_event, new_error_id
from bot.dedupe import SeenKeys, event_key, message_key
from bot.escalation import Escalation
from bot.home import HomeTab
from bot.liveness import InFlight
from bot.memory import AnswerLog, ThreadMemory
from bot.private import PrivateAnswers
from bot.questions import Question, is_question
from bot.readers import Readers
from bot.safety import MAX_QUESTION_CHARS, RateLimiter, clip_question, strip_mentions_of
from bot.status import ThreadStatus, loading_messages, searching_status, source_list
from bot.streaming import NativeDelivery, UpdateDelivery, delivery_for
from bot.threads import Threads
from rag.errors import StoreError
from rag.models import Reader
from rag.service import answer_found

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_sdk import WebClient

    from rag.config import Settings
    from rag.models import Hit
    from rag.service import RagService

log = logging.getLogger(__name__)

#: message subtypes that are still a person writing a question
QUESTION_SUBTYPES = {None, "file_share", "thread_broadcast"}


class Handlers:
    """Listeners for mentions, thread follow-ups, DMs, support channels, the slash commands,
    the answer's buttons, the App Home and Slack's assistant threads.

    No listener calls the Web API itself: each filters, then hands the event to the intake pool
    (dedupe, access, rate limit, status), which queues the answer in the answer pool. A 429 or
    a slow users.info therefore never holds up Bolt's listener threads.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        service: RagService,
        client: WebClient,
        bot_user_id: str | None,
        bot_id: str | None,
        memory: ThreadMemory,
        answers: AnswerLog,
        limiter: RateLimiter | None = None,
        workers: int = 4,
        max_pending: int = 200,
        update_interval: float = 1.0,
        question_limit: int = MAX_QUESTION_CHARS,
        top_k: int = 5,
        access: Access | None = None,
        team_id: str | None = None,
        native_streaming: bool = True,
        quick: WebClient | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.client = client
        self.quick = quick or without_retries(client)  # progress calls: a 429 skips, never sleeps
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.memory = memory
        self.answers = answers
        self.limiter = limiter or RateLimiter()
        self.update_interval = update_interval
        self.question_limit = question_limit
        self.top_k = top_k
        self.access = access
        self.team_id = team_id
        self.caps = Capabilities()  # what Slack refused for good (streaming, status): for the process
        self.caps.streaming = native_streaming
        self.seen = SeenKeys()
        self.intake = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ragbot-intake")
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragbot-answer")
        # Questions beyond the busy workers wait in the pool's queue; only past `max_pending`
        # (far above a burst of 50 at once) does the asker get the "busy, ask again" reply.
        self._slots = threading.BoundedSemaphore(max_pending)
        self.threads = Threads(
            client=client, memory=memory, bot_user_id=bot_user_id, bot_id=bot_id, clean=self._clean_question
        )
        self.inflight = InFlight()  # accepted questions not answered yet (liveness, answer timing)
        self.commands = Commands(
            settings=settings, service=service, client=client, answers=answers, ask_privately=self.on_ragbot
        )
        self.escalation = Escalation(self)
        self.private = PrivateAnswers(self)
        self.home = HomeTab(self)
        #: Who reads an answer (synced Confluence permissions): people by e-mail, channels by members.
        self.readers = Readers(
            client, member_limit=settings.ragbot_member_check_limit, bot_user_id=bot_user_id
        )

    def register(self, app: App) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.event("channel_shared")(self.on_channel_shared)
        app.event("channel_unshared")(self.on_channel_unshared)
        app.event("app_home_opened")(self.home.on_opened)
        app.event("member_joined_channel")(self.readers.on_members_changed)
        app.event("member_left_channel")(self.readers.on_members_changed)
        app.command("/ragingest")(self.commands.on_ragingest)
        app.command("/ragbot")(self.commands.on_ragbot)
        app.action(formatting.FEEDBACK)(self.on_feedback)
        app.action(formatting.FEEDBACK_UP)(self.on_feedback)
        app.action(formatting.FEEDBACK_DOWN)(self.on_feedback)
        app.action(formatting.SHARE)(self.private.on_share)
        app.action(formatting.ESCALATE)(self.escalation.on_click)
        app.action(HomeTab.INGEST)(self.home.on_ingest)
        app.error(self.on_error)

    def shutdown(self) -> None:
        self.intake.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.commands.shutdown()

    # ----- events --------------------------------------------------------------------------

    def on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._ignored(event):
            return
        reply_thread = event.get("thread_ts") or event["ts"]
        private = self._channel_says(event.get("channel", ""), "private")
        self.intake.submit(self.guard, self._accept, event, body, reply_thread=reply_thread, private=private)

    def on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._ignored(event):
            return
        channel, ts, thread_ts = event.get("channel", ""), event.get("ts", ""), event.get("thread_ts")
        if event.get("channel_type") == "im":
            # Answered in a thread (Slack's agent surface; it gives DMs native streaming too).
            self.intake.submit(self.guard, self._accept, event, body, reply_thread=thread_ts or ts)
            return
        if thread_ts and thread_ts != ts:
            self.intake.submit(self.guard, self._follow_up, event, body)
            return
        # A top-level channel message: a question only by a mention (app_mention), or in a support channel.
        text = str(event.get("text") or "")
        mentioned = bool(self.bot_user_id) and f"<@{self.bot_user_id}" in text
        if not mentioned and self._channel_says(channel, "questions") and is_question(text):
            private = self._channel_says(channel, "private")
            self.intake.submit(
                self.guard, self._accept, event, body, reply_thread=ts, unprompted=True, private=private
            )

    def on_channel_shared(self, event: dict[str, Any]) -> None:
        if self.access:
            self.access.on_channel_shared(event)

    def on_channel_unshared(self, event: dict[str, Any]) -> None:
        if self.access:
            self.access.on_channel_unshared(event)

    def on_ragbot(self, command: dict[str, Any], respond: Any) -> None:
        """`/ragbot QUESTION` (acknowledged by bot.commands): a private answer."""
        event, body = command_event(command)
        self.intake.submit(
            self.guard, self._accept, event, body, reply_thread=None, private=True, respond=respond
        )

    def guard(self, work: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Run intake work, logging (with an error id) what escapes it: nothing is lost silently."""
        try:
            work(*args, **kwargs)
        except Exception:
            log.exception("handling a Slack event failed [error id %s]", new_error_id())

    def _channel_says(self, channel: str, what: str) -> bool:
        """`[[slack.channel]]`: "questions" (answer = "questions") or "private" (private = true)."""
        scope = self.service.registry.slack.channel(channel)
        if scope is None:
            return False
        return scope.answer == "questions" if what == "questions" else bool(scope.private)

    def _ignored(self, event: dict[str, Any]) -> bool:
        """Own and other bots' messages, edits, joins and every other non-question subtype."""
        return (
            event.get("subtype") not in QUESTION_SUBTYPES
            or bool(event.get("bot_id"))
            or bool(event.get("bot_profile"))
            or not event.get("user")
            or event.get("user") == self.bot_user_id
            or "edited" in event
        )

    def _follow_up(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        channel, thread_ts = event.get("channel", ""), str(event.get("thread_ts"))
        if self.threads.answered_in(channel, thread_ts):
            self._accept(event, body, reply_thread=thread_ts, private=self._channel_says(channel, "private"))

    def _clean_question(self, text: str) -> str:
        return strip_mentions_of(text, self.bot_user_id)

    def _accept(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        *,
        reply_thread: str | None,
        unprompted: bool = False,
        private: bool = False,
        respond: Any = None,
    ) -> None:
        """Dedupe, check who may ask and where, rate-limit, show that the bot is working, queue
        the answer. A support channel's unprompted question is refused silently."""
        channel, ts, user = event["channel"], event["ts"], event["user"]
        if not self.seen.claim(event_key(body.get("event_id")), message_key(channel, ts)):
            log.info("duplicate delivery of %s/%s ignored (event %s)", channel, ts, body.get("event_id"))
            return
        dm = is_dm(event)
        question = Question(
            channel=channel,
            ts=ts,
            user=user,
            text=self._clean_question(str(event.get("text") or "")),
            reply_thread=reply_thread,
            memory_key=reply_thread or ts,
            team=event.get("user_team") or event.get("team") or self.team_id,
            dm=dm,
            unprompted=unprompted,
            private=private,
            respond=respond,
        )
        metrics = self.service.metrics
        try:
            if self._refused(event, body, reply_thread, quietly=unprompted, respond=respond):
                return
            if not question.text:
                metrics.question("slack", "refused")
                self._post(channel, reply_thread, messages.EMPTY_QUESTION)
                return
            wait = self.limiter.check(user)
            if wait:
                metrics.question("slack", "rate_limited")
                if not unprompted:
                    self._private_note(question, messages.RATE_LIMITED.format(seconds=int(wait) + 1))
                return
            if not self._slots.acquire(blocking=False):
                metrics.question("slack", "refused")
                if not unprompted:
                    self._post(channel, reply_thread, messages.OVERLOADED)
                return
            self.inflight.start(f"{channel}:{ts}")
            status = ThreadStatus(
                self.client, self.caps, channel=channel, ts=ts, thread=reply_thread, quick=self.quick
            )
            if not unprompted and respond is None:  # an unprompted question shows nothing until it is found
                names = self.service.search_scope(None, self.scope_for(question))
                status.set(searching_status(names), loading=loading_messages(names))
        except Exception:
            metrics.question("slack", "error")
            error_id = new_error_id()
            log.exception("cannot accept question %s/%s [error id %s]", channel, ts, error_id)
            if not unprompted:
                self._apologise(channel, reply_thread, error_id)
            return
        self.pool.submit(self._answer, question, status)

    def reader_for(self, question: Question) -> Reader | None:
        """Who will see the answer (bot.readers); None when no Confluence site syncs its permissions."""
        return self.readers.for_question(question) if self.service.permissions_synced else None

    def scope_for(self, question: Question) -> tuple[str, ...] | None:
        """The sources a question may search: its channel's (`[[slack.channel]] sources`); a
        `/ragbot` question, answered to the asker alone, searches what a DM would."""
        if question.respond is not None:
            return None
        return self.service.registry.slack.sources_for(question.channel)

    def _refused(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        reply_thread: str | None,
        *,
        quietly: bool = False,
        respond: Any = None,
    ) -> bool:
        """Who may ask, and where (bot.access): a refusal is one ephemeral note (none when `quietly`)."""
        verdict = self.access.verdict(event, body) if self.access else Verdict.ALLOWED
        if respond is not None and verdict is Verdict.SHARED_CHANNEL:
            verdict = Verdict.ALLOWED  # /ragbot's answer is seen by the asker alone; sharing re-checks
        if verdict is Verdict.ALLOWED:
            return False
        channel, user = event["channel"], event["user"]
        log.info("refused a question from %s in %s: %s", user, channel, verdict.value)
        if not quietly:
            if respond is not None:
                self.private.reply(respond, user, REFUSALS[verdict])
            else:
                self._ephemeral(channel, user, reply_thread, REFUSALS[verdict])
        return True

    def _answer(self, q: Question, status: ThreadStatus) -> None:
        if q.private:
            try:
                self.private.answer(q)
            finally:
                status.clear()
                self.inflight.done(f"{q.channel}:{q.ts}")
                self._slots.release()
            return
        delivery: NativeDelivery | UpdateDelivery | None = None
        try:
            text, cut = clip_question(q.text, self.question_limit)
            reader = self.reader_for(q)
            # A turn citing what this reader may not see is left out of the model's history.
            history = self.memory.turns(q.channel, q.memory_key, admit=partial(self.service.visible, reader))
            delivery = delivery_for(
                q,
                self.client,
                self.caps,
                quick=self.quick,
                interval=self.update_interval,
                on_first_token=lambda: status.set(messages.STATUS_WRITING),
            )
            if not q.unprompted:
                delivery.begin()
                if q.reply_thread:
                    self.threads.add(q.channel, q.reply_thread)
            shown_in = delivery
            scope = self.scope_for(q)
            names = self.service.search_scope(None, scope)

            def on_retrieved(hits: list[Hit], found: bool) -> None:
                """Retrieval done: a completed task with the sources as links (native stream only)."""
                if found and hits:
                    if q.unprompted:
                        shown_in.begin()
                    shown_in.retrieved(
                        messages.SEARCHED.format(names=source_list(names) or "the index"), hits
                    )

            def on_step(step: str) -> None:
                """The answering loop's steps while they run: tasks in the native stream's
                timeline, else the thread's status line."""
                if not shown_in.step(step):
                    status.step(step)

            answer = self.service.ask(
                text,
                top_k=self.top_k,
                history=history,
                on_token=delivery.on_token,
                on_step=on_step,
                on_retrieved=on_retrieved,
                allowed=scope,  # a scoped channel and its threads
                require_found=q.unprompted,
                reader=reader,
            )
            if q.unprompted and not answer_found(answer):
                self.service.metrics.answered("slack", answer, seconds=0.0)
                log.info("support question %s/%s not covered by the index: staying quiet", q.channel, q.ts)
                self.escalation.offer_when_unanswered(q, answer)
                return
            if q.reply_thread:
                self.threads.add(q.channel, q.reply_thread)
            answer_id = uuid.uuid4().hex
            notes = formatting.note_text(answer, question_cut=cut, question_limit=self.question_limit)
            actions = ["escalate"] if self.escalation.offered(q.channel, answer, dm=q.dm) else []
            blocks = formatting.answer_blocks(answer, answer_id=answer_id, notes=notes, actions=actions)
            # Remembered before it is shown: a follow-up or a vote may arrive the moment it is.
            self.memory.add(q.channel, q.memory_key, text, answer.text, hits=answer.hits)
            self.answers.record_answer(
                answer_id,
                channel=q.channel,
                thread_ts=q.memory_key,
                user=q.user,
                question=text,
                answer=answer.text,
                mode=answer.mode,
                hits=answer.hits,
                found=answer_found(answer),
            )
            delivery.finish(answer, blocks, formatting.fallback_text(answer))
            shown = time.monotonic()
            received = self.inflight.started(f"{q.channel}:{q.ts}") or shown
            self.service.metrics.first_text((delivery.first_visible_at or shown) - received)
            self.service.metrics.answered("slack", answer, seconds=shown - received)
            log.info(
                "answered %s/%s (%s, %d sources, %d streaming updates, %s)",
                q.channel,
                q.ts,
                answer.mode,
                len(answer.hits),
                delivery.updates,
                "native stream"
                if isinstance(delivery, NativeDelivery) and not delivery.fallback
                else "chat.update",
            )
        except StoreError as e:  # the index (e.g. a Chroma server) is down: say so, stay up
            self.service.metrics.question("slack", "error")
            log.warning("answering %s/%s: the index is unavailable: %s", q.channel, q.ts, e)
            if not q.unprompted:
                replace = delivery.abort() if delivery else None
                self._tell(q.channel, q.reply_thread, messages.INDEX_UNAVAILABLE, replace=replace)
        except Exception:
            self.service.metrics.question("slack", "error")
            error_id = new_error_id()
            log.exception("answering %s/%s failed [error id %s]", q.channel, q.ts, error_id)
            replace = delivery.abort() if delivery else None
            if not q.unprompted or replace:
                self._apologise(q.channel, q.reply_thread, error_id, replace=replace)
        finally:
            status.clear()
            self.inflight.done(f"{q.channel}:{q.ts}")
            self._slots.release()

    # ----- feedback --------------------------------------------------------------------------

    def on_feedback(self, ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = (body.get("user") or {}).get("id", "")
        parsed = formatting.vote_of(action)
        if parsed is None:
            log.warning("unexpected feedback value %r from %s; ignored", action.get("value"), user)
            return
        vote, answer_id = parsed
        try:
            self.answers.record_vote(answer_id, user=user, vote=vote)
            self.service.metrics.vote(vote)
            channel = (body.get("channel") or {}).get("id")
            thread = (body.get("message") or {}).get("thread_ts")
            if channel:
                self._ephemeral(channel, user, thread, messages.FEEDBACK_THANKS)
        except Exception:
            log.exception("recording feedback from %s failed [error id %s]", user, new_error_id())

    def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        error_id, kind = new_error_id(), body.get("type")
        log.error(
            "unhandled error in a listener [error id %s] (%s): %s", error_id, kind, error, exc_info=error
        )

    # ----- small helpers ---------------------------------------------------------------------

    def _post(self, channel: str, thread_ts: str | None, text: str) -> None:
        self.client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text, unfurl_links=False, unfurl_media=False
        )

    def _ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)

    def _private_note(self, q: Question, text: str) -> None:
        """A note only the asker sees: through /ragbot's response_url, else an ephemeral message."""
        if q.respond is not None:
            self.private.reply(q.respond, q.user, text)
        else:
            self._ephemeral(q.channel, q.user, q.reply_thread, text)

    def _apologise(
        self, channel: str, thread_ts: str | None, error_id: str, *, replace: str | None = None
    ) -> None:
        self._tell(channel, thread_ts, messages.ERROR.format(error_id=error_id), replace=replace)

    def _tell(self, channel: str, thread_ts: str | None, text: str, *, replace: str | None = None) -> None:
        """Replace the placeholder with `text` (or post it when there is none), never raising."""
        try:
            if replace:
                self.client.chat_update(channel=channel, ts=replace, text=text, blocks=[])
            else:
                self._post(channel, thread_ts, text)
        except Exception:
            log.exception("could not tell the user in %s: %s", channel, text)


REFUSALS = {
    Verdict.EXTERNAL_USER: messages.EXTERNAL_USER,
    Verdict.SHARED_CHANNEL: messages.SHARED_CHANNEL,
    Verdict.CHANNEL_NOT_ALLOWED: messages.CHANNEL_NOT_ALLOWED,
}
