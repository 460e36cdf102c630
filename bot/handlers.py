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
from typing import TYPE_CHECKING, Any

from bot import formatting, messages
from bot.access import Access, Verdict, is_dm
from bot.dedupe import SeenKeys, event_key, message_key
from bot.liveness import InFlight
from bot.memory import AnswerLog, ThreadMemory, turns_from_replies
from bot.reports import ingest_summary, status_text
from bot.safety import MAX_QUESTION_CHARS, RateLimiter, clip_question, neutralise, strip_mentions_of
from bot.streaming import Capabilities, NativeDelivery, ThreadStatus, UpdateDelivery, searching_status
from rag.errors import ConfigError, IngestBusyError, RagError, StoreError
from rag.service import answer_found

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_sdk import WebClient

    from rag.config import Settings
    from rag.service import RagService

log = logging.getLogger(__name__)

#: message subtypes that are still a person writing a question
QUESTION_SUBTYPES = {None, "file_share", "thread_broadcast"}
ADMIN_CACHE_SECONDS = 600.0


def new_error_id() -> str:
    return uuid.uuid4().hex[:8]


class Handlers:
    """Listeners for mentions, thread follow-ups, DMs, `/ragingest` and feedback buttons."""

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
    ) -> None:
        self.settings = settings
        self.service = service
        self.client = client
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
        self.caps = Capabilities()  # what Slack refused (streaming, status): remembered for the process
        self.caps.streaming = native_streaming
        self.seen = SeenKeys()
        self.not_ours = SeenKeys(ttl=300.0)  # threads recently checked in Slack: the bot is not in them
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragbot-answer")
        self.jobs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ragbot-command")
        # Questions beyond the busy workers wait in the pool's queue; only past `max_pending`
        # (far above a burst of 50 at once) does the asker get the "busy, ask again" reply.
        self._slots = threading.BoundedSemaphore(max_pending)
        self._admins: dict[str, tuple[float, bool]] = {}
        self._our_threads: set[str] = set()  # "channel:thread_ts" where the bot has posted an answer
        self.inflight = InFlight()  # accepted questions not answered yet (liveness, answer timing)

    def register(self, app: App) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.event("channel_shared")(self.on_channel_shared)
        app.event("channel_unshared")(self.on_channel_unshared)
        app.command("/ragingest")(self.on_ragingest)
        app.action(formatting.FEEDBACK_UP)(self.on_feedback)
        app.action(formatting.FEEDBACK_DOWN)(self.on_feedback)
        app.error(self.on_error)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.jobs.shutdown(wait=False, cancel_futures=True)

    # ----- events --------------------------------------------------------------------------

    def on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._ignored(event):
            return
        ts = event["ts"]
        self._accept(event, body, reply_thread=event.get("thread_ts") or ts)

    def on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._ignored(event):
            return
        channel, ts, thread_ts = event.get("channel", ""), event.get("ts", ""), event.get("thread_ts")
        if event.get("channel_type") == "im":
            self._accept(event, body, reply_thread=thread_ts, memory_key=thread_ts or "dm")
            return
        if not thread_ts or thread_ts == ts:
            return  # a top-level channel message: only a mention (app_mention) makes it a question
        if self._answered_in(channel, thread_ts):
            self._accept(event, body, reply_thread=thread_ts)

    def on_channel_shared(self, event: dict[str, Any]) -> None:
        if self.access:
            self.access.on_channel_shared(event)

    def on_channel_unshared(self, event: dict[str, Any]) -> None:
        if self.access:
            self.access.on_channel_unshared(event)

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

    def _answered_in(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread: local memory first, then the thread itself."""
        key = f"{channel}:{thread_ts}"
        if key in self._our_threads or self.memory.knows(channel, thread_ts):
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
        turns = turns_from_replies(
            msgs, bot_user_id=self.bot_user_id, bot_id=self.bot_id, strip=self._clean_question
        )
        self.memory.seed(channel, thread_ts, turns)
        self._our_threads.add(key)
        log.info("rebuilt memory of thread %s/%s from Slack: %d turn(s)", channel, thread_ts, len(turns))
        return True

    def _clean_question(self, text: str) -> str:
        return strip_mentions_of(text, self.bot_user_id)

    def _accept(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        *,
        reply_thread: str | None,
        memory_key: str | None = None,
    ) -> None:
        """Dedupe, rate-limit, show that the bot is working, queue the answer."""
        channel, ts, user = event["channel"], event["ts"], event["user"]
        if not self.seen.claim(event_key(body.get("event_id")), message_key(channel, ts)):
            log.info("duplicate delivery of %s/%s ignored (event %s)", channel, ts, body.get("event_id"))
            return
        question = self._clean_question(str(event.get("text") or ""))
        metrics = self.service.metrics
        try:
            if self._refused(event, body, reply_thread):
                return
            if not question:
                metrics.question("slack", "refused")
                self._post(channel, reply_thread, messages.EMPTY_QUESTION)
                return
            wait = self.limiter.check(user)
            if wait:
                metrics.question("slack", "rate_limited")
                self._ephemeral(
                    channel, user, reply_thread, messages.RATE_LIMITED.format(seconds=int(wait) + 1)
                )
                return
            if not self._slots.acquire(blocking=False):
                metrics.question("slack", "refused")
                self._post(channel, reply_thread, messages.OVERLOADED)
                return
            self.inflight.start(f"{channel}:{ts}")
            status = ThreadStatus(self.client, self.caps, channel=channel, ts=ts, thread=reply_thread)
            scope = self.service.registry.slack.sources_for(channel)
            status.set(searching_status(self.service.search_scope(None, scope)))
        except Exception:
            metrics.question("slack", "error")
            error_id = new_error_id()
            log.exception("cannot accept question %s/%s [error id %s]", channel, ts, error_id)
            self._apologise(channel, reply_thread, error_id)
            return
        self.pool.submit(
            self._answer,
            channel=channel,
            ts=ts,
            user=user,
            question=question,
            reply_thread=reply_thread,
            memory_key=memory_key or reply_thread or ts,
            status=status,
            team=event.get("user_team") or event.get("team") or self.team_id,
            dm=is_dm(event),
        )

    def _refused(self, event: dict[str, Any], body: dict[str, Any], reply_thread: str | None) -> bool:
        """Who may ask, and where (bot.access): a refusal is one ephemeral note, nothing else."""
        verdict = self.access.verdict(event, body) if self.access else Verdict.ALLOWED
        if verdict is Verdict.ALLOWED:
            return False
        channel, user = event["channel"], event["user"]
        log.info("refused a question from %s in %s: %s", user, channel, verdict.value)
        self._ephemeral(channel, user, reply_thread, REFUSALS[verdict])
        return True

    def _answer(
        self,
        *,
        channel: str,
        ts: str,
        user: str,
        question: str,
        reply_thread: str | None,
        memory_key: str,
        status: ThreadStatus,
        team: str | None,
        dm: bool,
    ) -> None:
        delivery: NativeDelivery | UpdateDelivery | None = None
        try:
            question, cut = clip_question(question, self.question_limit)
            history = self.memory.turns(channel, memory_key)
            delivery = self._delivery(channel, reply_thread, user=user, team=team, dm=dm, status=status)
            delivery.begin()
            if reply_thread:
                self._our_threads.add(f"{channel}:{reply_thread}")
            shown_in = delivery

            def on_step(step: str) -> None:
                """The answering loop's steps while they run: tasks in the native stream's
                timeline, else the thread's status line."""
                if not shown_in.step(step):
                    status.step(step)

            answer = self.service.ask(
                question,
                top_k=self.top_k,
                history=history,
                on_token=delivery.on_token,
                on_step=on_step,
                allowed=self.service.registry.slack.sources_for(channel),  # a scoped channel and its threads
            )
            answer_id = uuid.uuid4().hex
            notes = formatting.note_text(answer, question_cut=cut, question_limit=self.question_limit)
            blocks = formatting.answer_blocks(answer, answer_id=answer_id, notes=notes)
            text = formatting.fallback_text(answer)
            # Remembered before it is shown: a follow-up or a vote may arrive the moment it is.
            self.memory.add(channel, memory_key, question, answer.text)
            self.answers.record_answer(
                answer_id,
                channel=channel,
                thread_ts=memory_key,
                user=user,
                question=question,
                answer=answer.text,
                mode=answer.mode,
                hits=answer.hits,
                found=answer_found(answer),
            )
            delivery.finish(answer, blocks, text)
            shown = time.monotonic()
            received = self.inflight.started(f"{channel}:{ts}") or shown
            self.service.metrics.first_text((delivery.first_visible_at or shown) - received)
            self.service.metrics.answered("slack", answer, seconds=shown - received)
            log.info(
                "answered %s/%s (%s, %d sources, %d streaming updates, %s)",
                channel,
                ts,
                answer.mode,
                len(answer.hits),
                delivery.updates,
                "native stream"
                if isinstance(delivery, NativeDelivery) and not delivery.fallback
                else "chat.update",
            )
        except StoreError as e:  # the index (e.g. a Chroma server) is down: say so, stay up
            self.service.metrics.question("slack", "error")
            log.warning("answering %s/%s: the index is unavailable: %s", channel, ts, e)
            replace = delivery.abort() if delivery else None
            self._tell(channel, reply_thread, messages.INDEX_UNAVAILABLE, replace=replace)
        except Exception:
            self.service.metrics.question("slack", "error")
            error_id = new_error_id()
            log.exception("answering %s/%s failed [error id %s]", channel, ts, error_id)
            self._apologise(channel, reply_thread, error_id, replace=delivery.abort() if delivery else None)
        finally:
            status.clear()
            self.inflight.done(f"{channel}:{ts}")
            self._slots.release()

    def _delivery(
        self, channel: str, thread: str | None, *, user: str, team: str | None, dm: bool, status: ThreadStatus
    ) -> NativeDelivery | UpdateDelivery:
        """Native streaming in a thread unless Slack refused it before; else the v1 chat.update path."""
        writing = lambda: status.set(messages.STATUS_WRITING)  # noqa: E731
        if thread and self.caps.streaming:
            return NativeDelivery(
                self.client,
                self.caps,
                channel=channel,
                thread=thread,
                user=user,
                team=team,
                is_dm=dm,
                interval=self.update_interval,
                on_first_token=writing,
            )
        return UpdateDelivery(
            self.client, channel=channel, thread=thread, interval=self.update_interval, on_first_token=writing
        )

    # ----- /ragingest ------------------------------------------------------------------------

    def on_ragingest(self, ack: Callable[..., None], command: dict[str, Any], respond: Any) -> None:
        words = (command.get("text") or "").replace(",", " ").lower().split() or ["all"]
        user = command.get("user_id", "")
        arg = " ".join(words)
        if words == ["status"]:
            ack(text=messages.INGEST_STATUS_ACK)
            self.jobs.submit(self._status_job, respond=respond, user=user)
            return
        try:
            self.service.registry.resolve(words)
        except ConfigError as e:  # an unknown target: say which names exist (ephemeral, like every ack)
            ack(text=f"{e}\n" + messages.INGEST_USAGE.format(names=self.service.registry.describe_names()))
            return
        ack(text=messages.INGEST_ACK.format(arg=arg))
        self.jobs.submit(self._ingest_job, arg=arg, user=user, respond=respond)

    def _ingest_job(self, *, arg: str, user: str, respond: Any) -> None:
        try:
            if not self._may_ingest(user):
                log.info("refused /ragingest %s from %s", arg, user)
                self._respond(respond, user, messages.INGEST_REFUSED)
                return
            words = arg.split()
            targets = self.service.registry.resolve(words)
            self.service.ingestor.preflight(targets)  # a config problem is one clear line, not a failed run
            log.info("/ragingest %s by %s: ingesting %s", arg, user, ", ".join(s.name for s in targets))
            reports = self.service.ingest(targets, trigger=f"slack:{user}", prune_removed="all" in words)
            self._respond(respond, user, ingest_summary(reports))
        except IngestBusyError as e:
            self._respond(respond, user, messages.INGEST_BUSY.format(reason=str(e)))
        except RagError as e:
            log.warning("/ragingest %s by %s failed: %s", arg, user, e)
            self._respond(respond, user, messages.INGEST_FAILED.format(reason=str(e)))
        except Exception:
            error_id = new_error_id()
            log.exception("/ragingest %s by %s failed [error id %s]", arg, user, error_id)
            self._respond(respond, user, messages.INGEST_ERROR.format(error_id=error_id))

    def _status_job(self, *, respond: Any, user: str) -> None:
        from bot.feedback import read_votes, summary_line

        try:
            week = read_votes(self.answers.feedback_path, since=time.time() - 7 * 86_400)
            text = status_text(self.service.status()) + f"\n*Feedback, last 7 days*: {summary_line(week)}"
            self._respond(respond, user, text)
        except Exception:
            error_id = new_error_id()
            log.exception("/ragingest status failed [error id %s]", error_id)
            self._respond(respond, user, messages.INGEST_ERROR.format(error_id=error_id))

    def _may_ingest(self, user: str) -> bool:
        allowed = self.settings.ragingest_allowed_users
        if allowed:
            return user in allowed
        cached = self._admins.get(user)
        if cached and time.monotonic() - cached[0] < ADMIN_CACHE_SECONDS:
            return cached[1]
        info = self.client.users_info(user=user).get("user") or {}
        is_admin = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        self._admins[user] = (time.monotonic(), is_admin)
        return is_admin

    def _respond(self, respond: Any, user: str, text: str) -> None:
        """Reply to a slash command through its response_url; a DM when that has expired."""
        text = neutralise(text)
        try:
            respond(text=text, response_type="ephemeral", replace_original=False)
        except Exception as e:
            log.warning("response_url reply failed (%s); sending a direct message to %s instead", e, user)
            self.client.chat_postMessage(channel=user, text=text, unfurl_links=False, unfurl_media=False)

    # ----- feedback --------------------------------------------------------------------------

    def on_feedback(self, ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = (body.get("user") or {}).get("id", "")
        vote = "up" if action.get("action_id") == formatting.FEEDBACK_UP else "down"
        try:
            self.answers.record_vote(str(action.get("value", "")), user=user, vote=vote)
            self.service.metrics.vote(vote)
            channel = (body.get("channel") or {}).get("id")
            thread = (body.get("message") or {}).get("thread_ts")
            if channel:
                self._ephemeral(channel, user, thread, messages.FEEDBACK_THANKS)
        except Exception:
            log.exception("recording feedback from %s failed [error id %s]", user, new_error_id())

    def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "unhandled error in a listener [error id %s] (%s): %s",
            new_error_id(),
            body.get("type"),
            error,
            exc_info=error,
        )

    # ----- small helpers ---------------------------------------------------------------------

    def _post(self, channel: str, thread_ts: str | None, text: str) -> None:
        self.client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text, unfurl_links=False, unfurl_media=False
        )

    def _ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)

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
