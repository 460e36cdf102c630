"""Showing an answer while it is written: Slack's native streaming, or the v1 chat.update path.

`NativeDelivery` streams the model's Markdown with chat.startStream → chat.appendStream →
chat.stopStream (`markdown_text` and `task_update` chunks) and puts the notes, sources and
feedback buttons in chat.stopStream's blocks. `UpdateDelivery` is v1: a placeholder message
edited by chat.update at most once per interval, then replaced by the Block Kit answer.

What Slack refuses is told apart by its error (`unavailable`): an error that means "this app or
workspace does not have the feature" (missing_scope, not_allowed_token_type, feature_not_enabled,
method_deprecated, …) switches native streaming or the status line off for the process, through
`Capabilities`, logged once; anything else (a 429, a network blip, not_in_channel) costs only
this answer its stream. Progress calls made while tokens arrive go through a client without
retries (`quick`): a 429 there is not waited out inside the model's token callback, the text
simply goes with the next update after Retry-After. A stream that fails midway is stopped and
its message replaced by the whole answer (chat.update), or the answer is posted anew: never
left half-written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bot import formatting, messages
from bot.capabilities import Capabilities, retry_after

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.questions import Question
    from rag.models import Answer, Hit

log = logging.getLogger(__name__)

#: characters of markdown_text per chat.startStream / chat.appendStream call (Slack's limit)
CALL_LIMIT = 12_000
#: characters streamed into one message; the rest continues in follow-up messages
STREAM_LIMIT = 12_000
#: characters of a task's title in the stream's timeline ("Reading app/db.py:10-40")
TASK_TITLE_LIMIT = 200
#: sources linked under the retrieval task in the stream's timeline
TASK_SOURCES = 5


class UpdateDelivery:
    """v1: a placeholder, edited with the partial answer, replaced by the Block Kit answer."""

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread: str | None,
        interval: float,
        on_first_token: Callable[[], None] | None = None,
        quick: WebClient | None = None,
    ) -> None:
        self.client = client
        self.quick = quick or client
        self.on_first_token = on_first_token
        self.channel = channel
        self.thread = thread
        self.interval = interval
        self.parts: list[str] = []
        self.updates = 0
        self.ts: str | None = None
        self.first_visible_at: float | None = None  # monotonic: when answer text was first shown
        self._last = time.monotonic()

    def begin(self) -> None:
        posted = self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread,
            text=messages.PLACEHOLDER,
            unfurl_links=False,
            unfurl_media=False,
        )
        self.ts = str(posted["ts"])

    def step(self, text: str) -> bool:
        """The chat.update path has no task timeline: the status line shows the step."""
        return False

    def retrieved(self, title: str, hits: Sequence[Hit]) -> bool:
        return False

    def on_token(self, token: str) -> None:
        if not self.parts and self.on_first_token:
            self.on_first_token()
        self.parts.append(token)
        now = time.monotonic()
        if now - self._last < self.interval or self.ts is None:
            return
        self._last = now
        try:
            self.quick.chat_update(
                channel=self.channel, ts=self.ts, text=formatting.streaming_text("".join(self.parts))
            )
            self.updates += 1
            self.first_visible_at = self.first_visible_at or time.monotonic()
        except Exception as e:  # a failed progress update must not lose the answer
            wait = retry_after(e)
            if wait is not None:  # not slept here (the model's token callback): the next update waits
                self._last = now + wait
            log.warning("streaming update failed in %s: %s", self.channel, e)

    def finish(self, answer: Answer, blocks: list[dict[str, Any]], text: str) -> None:
        pages = formatting.paginate(blocks)
        if self.ts is None:
            self.begin()
        assert self.ts is not None
        self.client.chat_update(
            channel=self.channel,
            ts=self.ts,
            text=text,
            blocks=pages[0],
            unfurl_links=False,
            unfurl_media=False,
        )
        post_pages(self.client, self.channel, self.thread or self.ts, text, pages[1:])

    def abort(self) -> str | None:
        """The message to replace with an apology (the placeholder), if any."""
        return self.ts


def source_links(hits: Sequence[Hit], limit: int = TASK_SOURCES) -> list[dict[str, str]]:
    """A task's `sources` (Slack: url source elements) for the hits that have a link."""
    links: list[dict[str, str]] = []
    for hit in hits:
        if hit.url and not any(link["url"] == hit.url for link in links):
            links.append({"type": "url", "url": hit.url, "text": hit.citation()[:TASK_TITLE_LIMIT]})
        if len(links) >= limit:
            break
    return links


class NativeDelivery:
    """chat.startStream / appendStream / stopStream: markdown_text and task_update chunks."""

    def __init__(
        self,
        client: WebClient,
        caps: Capabilities,
        *,
        channel: str,
        thread: str,
        user: str,
        team: str | None,
        is_dm: bool,
        interval: float,
        on_first_token: Callable[[], None] | None = None,
        quick: WebClient | None = None,
    ) -> None:
        self.client = client
        self.quick = quick or client
        self.caps = caps
        self.channel = channel
        self.thread = thread
        self.interval = interval
        self.on_first_token = on_first_token
        recipient = {} if is_dm else {"recipient_user_id": user, "recipient_team_id": team}
        self.start_args: dict[str, Any] = {
            "channel": channel,
            "thread_ts": thread,
            "task_display_mode": "timeline",
            **recipient,
        }
        self.ts: str | None = None
        self.tasks = 0  # the answering loop's steps shown as task_update chunks
        self.task: dict[str, Any] | None = None  # the step in progress, completed by the next one
        self.raw = ""  # every token so far
        self.sent = 0  # characters of `raw` in the stream
        self.updates = 0
        self.broken = False
        self.stopped = False
        self.fallback: UpdateDelivery | None = None  # set when chat.startStream was refused
        self._first_visible_at: float | None = None
        self._last = 0.0
        self._hold_until = 0.0  # a 429's Retry-After: no progress call before then

    @property
    def first_visible_at(self) -> float | None:
        """Monotonic time when answer text was first shown (streamed, or by the fallback)."""
        return self.fallback.first_visible_at if self.fallback is not None else self._first_visible_at

    def begin(self) -> None:
        """Nothing to post yet: the thread status shows the work; the text starts with the first token."""

    def _call(self, chunks: list[dict[str, Any]], *, final: bool = False) -> str:
        """Start the stream or append `chunks`: "sent", "later" (rate limited; nothing waited for
        unless `final`), or "failed" (refused: fallen back; or broken midway)."""
        if not final and time.monotonic() < self._hold_until:
            return "later"
        client = self.client if final else self.quick
        try:
            if self.ts is None:
                response = client.chat_startStream(**self.start_args, chunks=chunks)
                self.ts = str(response["ts"])
            else:
                client.chat_appendStream(channel=self.channel, ts=self.ts, chunks=chunks)
        except Exception as e:
            wait = retry_after(e)
            if wait is not None and not final:
                self._hold_until = time.monotonic() + wait
                log.info("Slack rate-limited the stream in %s; next update in %.1f s", self.channel, wait)
                return "later"
            if self.ts is None:
                self.caps.refuse("streaming", e)
                self._fall_back()
            else:
                log.warning(
                    "chat.appendStream failed in %s midway (%s); will replace the message", self.channel, e
                )
                self.broken = True
            return "failed"
        self.updates += 1
        return "sent"

    def step(self, text: str) -> bool:
        """A step of the answering loop as a task in the stream's timeline, the previous one
        completed. False when it cannot be shown there (streaming refused, broken or rate-limited,
        or the answer's text already streaming): the caller shows it in the status line instead."""
        title = text[:TASK_TITLE_LIMIT]
        return self._task(
            {"type": "task_update", "id": f"step-{self.tasks + 1}", "title": title, "status": "in_progress"}
        )

    def retrieved(self, title: str, hits: Sequence[Hit]) -> bool:
        """Retrieval as a completed task in the timeline, with the sources found as its links."""
        task: dict[str, Any] = {
            "type": "task_update",
            "id": "search",
            "title": title[:TASK_TITLE_LIMIT],
            "status": "complete",
        }
        links = source_links(hits)
        if links:
            task["sources"] = links
        return self._task(task, ongoing=False)

    def _task(self, task: dict[str, Any], *, ongoing: bool = True) -> bool:
        if self.fallback is not None or self.broken or self.raw:
            return False
        previous = self.task
        done = self._finished_task()
        outcome = self._call([*done, task])
        if outcome != "sent":
            self.task = previous  # still to be completed, by the next call that goes through
            return False
        self.tasks += ongoing  # the loop's steps are numbered; retrieval's task is "search"
        self.task = task if ongoing else None
        return True

    def _finished_task(self, status: str = "complete") -> list[dict[str, Any]]:
        """The chunk that ends the step in progress, if any (sent with the next call)."""
        if self.task is None:
            return []
        done, self.task = {**self.task, "status": status}, None
        return [done]

    def on_token(self, token: str) -> None:
        if self.fallback is not None:
            self.fallback.on_token(token)
            return
        if not self.raw and self.on_first_token:
            self.on_first_token()
        self.raw += token
        now = time.monotonic()
        if self.ts is not None and now - self._last < self.interval:
            return
        self._last = now
        self._send(self.raw[self.sent :])

    def _send(self, text: str, *, final: bool = False) -> None:
        """Append `text` (within the per-call and per-message limits); a rate limit leaves the rest
        for the next call, a failure is remembered."""
        if self.broken or (not text.strip() and self.ts is None):
            return
        text = text[: max(0, STREAM_LIMIT - self.sent)]
        for start in range(0, len(text), CALL_LIMIT):
            piece = text[start : start + CALL_LIMIT]
            previous = self.task
            done = self._finished_task()  # the answer's text ends the last step
            outcome = self._call([*done, {"type": "markdown_text", "text": piece}], final=final)
            if outcome != "sent":
                if outcome == "later":
                    self.task = previous
                return
            self.sent += len(piece)
            self._first_visible_at = self._first_visible_at or time.monotonic()

    def _fall_back(self) -> None:
        self.fallback = UpdateDelivery(
            self.client,
            channel=self.channel,
            thread=self.thread,
            interval=self.interval,
            # Refused at a step of the answering loop, before any text: the fallback says "writing".
            on_first_token=None if self.raw else self.on_first_token,
            quick=self.quick,
        )
        self.fallback.begin()
        if self.raw:
            self.fallback.on_token(self.raw)

    def finish(self, answer: Answer, blocks: list[dict[str, Any]], text: str) -> None:
        if self.fallback is None and not self.raw and not self.broken:
            # No text was streamed (no LLM, or it failed at once; perhaps after the loop's
            # steps were shown): stream the answer now.
            self.raw = answer.text
        if self.fallback is None and not self.broken:
            pending = self.raw[self.sent :][: max(0, STREAM_LIMIT - self.sent)]
            if self.ts is None or len(pending) > CALL_LIMIT:
                # Start the stream, or send what one stopStream cannot carry (this is the worker
                # thread, after the model: waiting out a rate limit here stalls nothing).
                self._send(self.raw[self.sent :], final=True)
        if self.fallback is not None:
            self.fallback.finish(answer, blocks, text)
            return
        if not self.broken and answer.text == self.raw.strip():
            # The last tokens go with chat.stopStream (one call less), within both limits.
            last = self.raw[self.sent :][: min(CALL_LIMIT, STREAM_LIMIT - self.sent)]
            tail = answer_tail(blocks)
            rest = self.raw[self.sent + len(last) :].strip()
            if rest:  # longer than one streamed message: the rest continues below, as pagination does
                more = [
                    {"type": "section", "text": {"type": "mrkdwn", "text": p}}
                    for p in formatting.split_text(formatting.to_mrkdwn(rest))
                ]
                first, later = [], formatting.paginate(more + tail)
            else:
                pages = formatting.paginate(tail)
                first, later = pages[0], pages[1:]
            if self._stop(blocks=first, markdown_text=last):
                self.sent += len(last)
                post_pages(self.client, self.channel, self.thread, text, later)
                return
        self._replace(blocks, text)

    def _stop(self, *, blocks: list[dict[str, Any]], markdown_text: str = "", task: str = "complete") -> bool:
        self.stopped = True  # one try: a stream that cannot be stopped is replaced, not stopped again
        try:
            chunks = self._finished_task(task)
            if markdown_text:
                chunks.append({"type": "markdown_text", "text": markdown_text})
            assert self.ts is not None
            self.client.chat_stopStream(
                channel=self.channel, ts=self.ts, blocks=blocks or None, chunks=chunks or None
            )
            return True
        except Exception as e:
            log.warning("chat.stopStream failed in %s (%s); replacing the message", self.channel, e)
            return False

    def _replace(self, blocks: list[dict[str, Any]], text: str) -> None:
        """The stream is broken or says something else than the answer: the message becomes the answer."""
        if self.ts is not None and not self.stopped:
            self._stop(blocks=[])
        pages = formatting.paginate(blocks)
        try:
            if self.ts is None:
                raise RuntimeError("no message to replace")
            self.client.chat_update(
                channel=self.channel,
                ts=self.ts,
                text=text,
                blocks=pages[0],
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as e:
            log.warning(
                "cannot replace the broken stream in %s (%s); posting the answer anew", self.channel, e
            )
            self._delete()
            post_pages(self.client, self.channel, self.thread, text, pages[:1])
        post_pages(self.client, self.channel, self.thread, text, pages[1:])

    def _delete(self) -> None:
        try:
            if self.ts is not None:
                self.client.chat_delete(channel=self.channel, ts=self.ts)
        except Exception as e:
            log.warning("cannot delete the broken stream message in %s: %s", self.channel, e)

    def abort(self) -> str | None:
        """An error ends the answer: stop a running stream; its message is replaced by the apology."""
        if self.fallback is not None:
            return self.fallback.abort()
        if self.ts is not None and not self.stopped:
            self._stop(blocks=[], task="error")
        return self.ts


def answer_tail(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What follows the answer's text sections (notes, sources, feedback): stopStream's blocks."""
    for i, block in enumerate(blocks):
        if block.get("type") != "section":
            return blocks[i:]
    return []


def post_pages(
    client: WebClient, channel: str, thread: str | None, text: str, pages: list[list[dict[str, Any]]]
) -> None:
    for page in pages:
        client.chat_postMessage(
            channel=channel, thread_ts=thread, text=text, blocks=page, unfurl_links=False, unfurl_media=False
        )


def delivery_for(
    q: Question,
    client: WebClient,
    caps: Capabilities,
    *,
    quick: WebClient,
    interval: float,
    on_first_token: Callable[[], None],
) -> NativeDelivery | UpdateDelivery:
    """Native streaming in a thread unless Slack refused it for good; else the v1 chat.update path."""
    if q.reply_thread and caps.streaming:
        return NativeDelivery(
            client,
            caps,
            channel=q.channel,
            thread=q.reply_thread,
            user=q.user,
            team=q.team,
            is_dm=q.dm,
            interval=interval,
            on_first_token=on_first_token,
            quick=quick,
        )
    return UpdateDelivery(
        client,
        channel=q.channel,
        thread=q.reply_thread,
        interval=interval,
        on_first_token=on_first_token,
        quick=quick,
    )
