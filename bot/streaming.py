"""Showing an answer while it is written: Slack's native streaming, or the v1 chat.update path.

`NativeDelivery` streams the model's Markdown with slack_sdk's `client.chat_stream()`
(chat.startStream → chat.appendStream → chat.stopStream) and puts the notes, sources and
feedback buttons in chat.stopStream's blocks. `UpdateDelivery` is v1: a placeholder message
edited by chat.update at most once per interval, then replaced by the Block Kit answer.

An error from chat.startStream (the workspace or plan refuses streaming) switches the answer
to the update path and, through `Capabilities`, every later answer of this process; it is
logged once. A stream that fails midway is stopped and its message replaced by the whole
answer (chat.update), or the answer is posted anew: never left half-written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot import formatting, messages

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from slack_sdk.web.chat_stream import ChatStream

    from rag.models import Answer

log = logging.getLogger(__name__)

#: characters of markdown_text per chat.startStream / chat.appendStream call (Slack's limit)
CALL_LIMIT = 12_000
#: characters streamed into one message; the rest continues in follow-up messages
STREAM_LIMIT = 12_000
#: characters of a task's title in the stream's timeline ("Reading app/db.py:10-40")
TASK_TITLE_LIMIT = 200


class Capabilities:
    """What this workspace refused, remembered for the process (one Handlers per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.streaming = True
        self.status = True

    def refuse(self, what: str, error: Any) -> None:
        with self._lock:
            if not getattr(self, what):
                return
            setattr(self, what, False)
        fallback = "chat.update streaming" if what == "streaming" else "the ⏳ reaction"
        log.warning("Slack refused %s (%s); using %s from now on", what, error, fallback)


class ThreadStatus:
    """assistant.threads.setStatus while working; the ⏳ reaction where status is refused."""

    def __init__(self, client: WebClient, caps: Capabilities, *, channel: str, ts: str, thread: str | None):
        self.client = client
        self.caps = caps
        self.channel = channel
        self.ts = ts
        self.thread = thread
        self.reacted = False
        self.shown = False

    def set(self, text: str) -> None:
        if self.thread and self.caps.status:
            try:
                self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread, status=text
                )
                self.shown = bool(text)
                return
            except Exception as e:
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
            getattr(self.client, method)(
                channel=self.channel, timestamp=self.ts, name=messages.WORKING_REACTION
            )
        except Exception as e:  # the indicator is a courtesy: never fail an answer over it
            log.debug("%s failed on %s/%s: %s", method, self.channel, self.ts, e)


def searching_status(names: list[str]) -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"searching {shown}…" if names else "searching…"


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
    ) -> None:
        self.client = client
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

    def on_token(self, token: str) -> None:
        if not self.parts and self.on_first_token:
            self.on_first_token()
        self.parts.append(token)
        now = time.monotonic()
        if now - self._last < self.interval or self.ts is None:
            return
        self._last = now
        try:
            self.client.chat_update(
                channel=self.channel, ts=self.ts, text=formatting.streaming_text("".join(self.parts))
            )
            self.updates += 1
            self.first_visible_at = self.first_visible_at or time.monotonic()
        except Exception as e:  # a failed progress update must not lose the answer
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


class NativeDelivery:
    """chat.startStream / appendStream / stopStream through slack_sdk's ChatStream."""

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
    ) -> None:
        self.client = client
        self.caps = caps
        self.channel = channel
        self.thread = thread
        self.interval = interval
        self.on_first_token = on_first_token
        recipient = {} if is_dm else {"recipient_user_id": user, "recipient_team_id": team}
        self.stream: ChatStream = client.chat_stream(
            channel=channel, thread_ts=thread, buffer_size=1, task_display_mode="timeline", **recipient
        )
        self.tasks = 0  # the answering loop's steps shown as task_update chunks
        self.task: dict[str, str] | None = None  # the step in progress, completed by the next one
        self.raw = ""  # every token so far
        self.sent = 0  # characters of `raw` in the stream
        self.updates = 0
        self.broken = False
        self.stopped = False
        self.fallback: UpdateDelivery | None = None  # set when chat.startStream was refused
        self._first_visible_at: float | None = None
        self._last = 0.0

    @property
    def ts(self) -> str | None:
        return self.stream.ts

    @property
    def first_visible_at(self) -> float | None:
        """Monotonic time when answer text was first shown (streamed, or by the fallback)."""
        return self.fallback.first_visible_at if self.fallback is not None else self._first_visible_at

    def begin(self) -> None:
        """Nothing to post yet: the thread status shows the work; the text starts with the first token."""

    def step(self, text: str) -> bool:
        """A step of the answering loop as a task in the stream's timeline (chat.startStream /
        appendStream `task_update` chunks), the previous one completed. False when it cannot be
        shown there (streaming refused or broken, or the answer's text already streaming): the
        caller shows it in the status line instead."""
        if self.fallback is not None or self.broken or self.raw:
            return False
        self.tasks += 1
        done = self._finished_task()
        title = text[:TASK_TITLE_LIMIT]
        task_id = f"step-{self.tasks}"
        self.task = {"type": "task_update", "id": task_id, "title": title, "status": "in_progress"}
        chunks = [*done, self.task]
        started = self.ts is not None
        try:
            self.stream.append(chunks=chunks)
        except Exception as e:
            self.task = None
            if not started:
                self.caps.refuse("streaming", e)
                self._fall_back()
            else:
                log.warning("chat.appendStream (a task) failed in %s midway (%s)", self.channel, e)
                self.broken = True
            return False
        self.updates += 1
        return True

    def _finished_task(self, status: str = "complete") -> list[dict[str, str]]:
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

    def _send(self, text: str) -> None:
        """Append `text` (within the per-call and per-message limits); a failure is remembered."""
        if self.broken or (not text.strip() and self.ts is None):
            return
        text = text[: max(0, STREAM_LIMIT - self.sent)]
        for start in range(0, len(text), CALL_LIMIT):
            piece = text[start : start + CALL_LIMIT]
            started = self.ts is not None
            done = self._finished_task()  # the answer's text ends the last step
            try:
                self.stream.append(markdown_text=piece, chunks=done or None)
            except Exception as e:
                if not started:
                    self.caps.refuse("streaming", e)
                    self._fall_back()
                else:
                    log.warning(
                        "chat.appendStream failed in %s midway (%s); will replace the message",
                        self.channel,
                        e,
                    )
                    self.broken = True
                return
            self.sent += len(piece)
            self.updates += 1
            self._first_visible_at = self._first_visible_at or time.monotonic()

    def _fall_back(self) -> None:
        self.fallback = UpdateDelivery(
            self.client,
            channel=self.channel,
            thread=self.thread,
            interval=self.interval,
            # Refused at a step of the answering loop, before any text: the fallback says "writing".
            on_first_token=None if self.raw else self.on_first_token,
        )
        self.fallback.begin()
        if self.raw:
            self.fallback.on_token(self.raw)

    def finish(self, answer: Answer, blocks: list[dict[str, Any]], text: str) -> None:
        if self.fallback is None and not self.raw and not self.broken:
            # No text was streamed (no LLM, or it failed at once; perhaps after the loop's
            # steps were shown): stream the answer now.
            self.raw = answer.text
            self._send(answer.text)
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
            done = self._finished_task(task)
            self.stream.stop(blocks=blocks or None, markdown_text=markdown_text or None, chunks=done or None)
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
