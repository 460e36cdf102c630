"""An OpenAI-compatible chat-completions server on 127.0.0.1 that litellm really calls.

It speaks the Chat Completions tool-call format: a request may carry `tools` (and `tool_choice`);
a reply may be a message with `tool_calls: [{"id", "type": "function", "function": {"name",
"arguments": "<json string>"}}]` and `finish_reason: "tool_calls"` (streamed as deltas by index
when `stream` is set); the follow-up request carries `{"role": "tool", "tool_call_id", "content"}`
messages. A test scripts the model's turns with `script(...)`: each request that offers `tools`
takes the next scripted turn; every other request (the follow-up rewrite, a single-shot answer),
and a tools request once the script is spent, is answered by `reply`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[list[dict[str, Any]]], str]


def echo_sources_reply(messages: list[dict[str, Any]]) -> str:
    """A deterministic 'model': cites source [1] and repeats the question."""
    question = messages[-1]["content"].rsplit("Question:", 1)[-1].strip()
    return f"Answer to: {question} [1]"


@dataclass(frozen=True)
class ToolCall:
    """One tool call the fake model makes; `arguments` as a str is sent as it is (malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""

    def to_json(self, n: int) -> dict[str, Any]:
        args = self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        return {
            "id": self.id or f"call_{n}",
            "type": "function",
            "function": {"name": self.name, "arguments": args},
        }


@dataclass(frozen=True)
class ModelTurn:
    """A scripted model turn: text, tool calls, or both (text first, as some models think aloud)."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()


#: A scripted turn: final text, one call, several calls, a ModelTurn, or a function of the messages.
Scripted = str | ToolCall | list[ToolCall] | ModelTurn | Callable[[list[dict[str, Any]]], Any]


def _turn(item: Any, messages: list[dict[str, Any]]) -> ModelTurn:
    if callable(item) and not isinstance(item, (ToolCall, ModelTurn)):
        item = item(messages)
    if isinstance(item, ModelTurn):
        return item
    if isinstance(item, str):
        return ModelTurn(text=item)
    if isinstance(item, ToolCall):
        return ModelTurn(calls=(item,))
    return ModelTurn(calls=tuple(item))


@dataclass
class FakeLLM:
    """Records every request; `reply`, `status`, `delay`, `chunk_delay`, `tools_supported` and the
    script set its behaviour."""

    reply: Reply = echo_sources_reply
    status: int = 200
    delay: float = 0.0
    chunk_delay: float = 0.0
    #: False: a request that offers tools gets a 400, like a server started without tool parsing.
    tools_supported: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    queue: list[Scripted] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def script(self, *turns: Scripted) -> FakeLLM:
        """The model's next turns for requests that offer tools, in order."""
        self.queue.extend(turns)
        return self

    def bodies(self, *, with_tools: bool | None = None) -> list[dict[str, Any]]:
        """The request bodies received; only those with (or without) `tools` when asked."""
        bodies = [r["body"] for r in self.requests]
        return bodies if with_tools is None else [b for b in bodies if bool(b.get("tools")) == with_tools]

    def _next(self, body: dict[str, Any]) -> ModelTurn:
        messages = body.get("messages", [])
        if body.get("tools") and self.queue:
            return _turn(self.queue.pop(0), messages)
        return ModelTurn(text=self.reply(messages))

    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {
                        "path": self.path,
                        "body": body,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                if fake.delay:
                    time.sleep(fake.delay)
                if not self.path.rstrip("/").endswith("chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                if fake.status != 200:
                    self._json(fake.status, {"error": {"message": "fake failure", "type": "server_error"}})
                    return
                if body.get("tools") and not fake.tools_supported:
                    refusal = '"auto" tool choice requires --enable-auto-tool-choice to be set'
                    self._json(400, {"error": {"message": refusal, "type": "BadRequestError"}})
                    return
                turn = fake._next(body)
                if body.get("stream"):
                    self._stream(body, turn)
                    return
                message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
                if turn.calls:
                    message["tool_calls"] = [c.to_json(n) for n, c in enumerate(turn.calls)]
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": "tool_calls" if turn.calls else "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _json(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> None:
                chunk = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if fake.chunk_delay:
                    time.sleep(fake.chunk_delay)

            def _stream(self, body: dict[str, Any], turn: ModelTurn) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if turn.text or not turn.calls:
                    words = turn.text.split(" ")
                    for i, word in enumerate(words):
                        self._chunk(body, {"content": word if i == 0 else " " + word})
                for n, call in enumerate(turn.calls):
                    whole = call.to_json(n)
                    args = whole["function"]["arguments"]
                    first = {**whole, "index": n, "function": {"name": call.name, "arguments": ""}}
                    self._chunk(body, {"role": "assistant", "tool_calls": [first]})
                    for start in range(0, len(args), 7):  # the arguments arrive in pieces
                        piece = {"index": n, "function": {"arguments": args[start : start + 7]}}
                        self._chunk(body, {"tool_calls": [piece]})
                self._chunk(body, {}, "tool_calls" if turn.calls else "stop")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
