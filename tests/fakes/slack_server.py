"""A local fake Slack: the Web API over HTTP and Socket Mode over a websocket, both on 127.0.0.1.

The real Bolt app connects to it through SLACK_API_URL: `apps.connections.open` hands out a
ws:// URL of the websocket server, which greets with `hello`, sends envelopes (events_api,
slash_commands, interactive), records the app's acks, and can ask the app to reconnect
(`disconnect`, reason refresh_requested) or drop the socket without a close frame.
Every Web API request and every response_url post is recorded for assertions.

Native streaming (chat.startStream / appendStream / stopStream) and thread status
(assistant.threads.setStatus) follow Slack's reference: recipient ids required outside DMs,
markdown_text (or markdown_text chunks) at most 12,000 characters a call, appends to a stopped
stream refused. They are off by default, like a workspace that predates them (the v1 tests run
the chat.update path); `streaming` / `status` turn them on, `break_stream_after` makes a
stream expire after that many appends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

TEAM = "T0FAKE"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0FAKE"


#: A task_update chunk's statuses (Slack: chat.appendStream, "task_update chunks").
TASK_STATUSES = ("pending", "in_progress", "complete", "error")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # posts to response_url, with their path
        self.acks: dict[str, dict[str, Any]] = {}  # envelope_id → ack payload
        self.ack_times: dict[str, float] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}  # channel → messages
        self.enterprise_id: str | None = None  # set: the workspace is part of an Enterprise Grid org
        self.ext_shared: set[str] = set()  # channels shared with another organisation (Slack Connect)
        self.streaming = False  # chat.startStream accepted
        self.stream_refusal = "feature_not_enabled"  # the error while it is not
        self.status = False  # assistant.threads.setStatus accepted
        self.status_refusal = "missing_scope"
        self.break_stream_after: int | None = None  # appends before a stream expires server-side
        self.statuses: list[tuple[str, str, str]] = []  # (channel, thread_ts, status) as set
        self.fail_next: dict[str, int] = {}  # method → HTTP status to answer once (429 says Retry-After: 1)
        self.connections_opened = 0
        self.refuse_connections = False  # apps.connections.open fails (a Slack outage) while True
        self._ts = itertools.count(1)
        self._lock = threading.RLock()
        self._sockets: list[Any] = []
        self._http: ThreadingHTTPServer | None = None
        self._ws: Any = None

    # ----- lifecycle -----------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self._http is not None
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/api/"

    @property
    def ws_url(self) -> str:
        host, port = self._ws.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def start(self) -> FakeSlack:
        from websockets.sync.server import serve

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._http_handler())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._ws = serve(self._ws_session, "127.0.0.1", 0, ping_interval=None)
        threading.Thread(target=self._ws.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for conn in list(self._sockets):
            with contextlib.suppress(Exception):  # already gone
                conn.close()
        if self._ws is not None:
            self._ws.shutdown()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    # ----- what tests look at ----------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

    def outgoing_texts(self) -> list[str]:
        """Every string the bot sent anywhere: Web API arguments and response_url bodies."""
        texts: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        with self._lock:
            for c in self.calls:
                walk(c.args)
            for r in self.responses:
                walk(r)
        return texts

    def thread_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages.get(channel, []) if m.get("thread_ts", m["ts"]) == thread_ts]

    # ----- sending like Slack does -----------------------------------------------------------

    def next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "UALICE",
        thread_ts: str | None = None,
        team: str | None = TEAM,
    ) -> dict[str, Any]:
        """A message a person wrote (stored, so conversations.replies sees it); not yet delivered.

        Like Slack, the event names the writer's team (`team`, `user_team`); `team=None` leaves
        them out (older payloads), so the bot must ask users.info."""
        msg: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": self.next_ts()}
        if team:
            msg["team"] = msg["user_team"] = team
        if thread_ts:
            msg["thread_ts"] = thread_ts
        with self._lock:
            self.messages.setdefault(channel, []).append(msg)
        return {**msg, "channel": channel}

    def send_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        ext_shared: bool | None = False,
    ) -> tuple[str, str]:
        """Deliver an Events API envelope; returns (envelope_id, event_id).

        `is_ext_shared_channel` is true when the event's channel is in `ext_shared` (or
        `ext_shared=True`); `ext_shared=None` leaves the field out."""
        event_id = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
        payload = {
            "token": "verification-token",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": {**event, "event_ts": event.get("ts", self.next_ts())},
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }
        if ext_shared is not None:
            payload["is_ext_shared_channel"] = ext_shared or event.get("channel") in self.ext_shared
        envelope_id = self.send_envelope(
            "events_api",
            payload,
            retry_attempt=retry_attempt,
            retry_reason="timeout" if retry_attempt else "",
        )
        return envelope_id, event_id

    def send_slash_command(
        self, text: str, *, user: str, channel: str = "CGENERAL", command: str = "/ragingest"
    ) -> tuple[str, str]:
        """Deliver `command text` (`/ragingest` unless told); returns (envelope_id, response_url path)."""
        path = f"/response/{uuid.uuid4().hex[:8]}"
        assert self._http is not None
        host, port = self._http.server_address[:2]
        payload = {
            "token": "verification-token",
            "team_id": TEAM,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "response_url": f"http://{host}:{port}{path}",
            "trigger_id": f"1.2.{uuid.uuid4().hex[:6]}",
        }
        return self.send_envelope("slash_commands", payload), path

    def send_block_action(
        self, *, user: str, channel: str, message: dict[str, Any], action_id: str, value: str
    ) -> str:
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "fake"},
            "user": {"id": user, "name": user.lower(), "team_id": TEAM},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
            "trigger_id": "1.2.3",
            "channel": {"id": channel, "name": "general"},
            "message": message,
            "response_url": f"{self.api_url.rsplit('/api/', 1)[0]}/response/action",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "feedback",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.send_envelope("interactive", payload)

    def send_envelope(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "payload": payload,
            **extra,
        }
        self.current_socket().send(json.dumps(envelope))
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(lambda: self.acks.get(envelope_id), timeout, f"ack of {envelope_id}")

    def open_sockets(self) -> list[Any]:
        with self._lock:
            return list(self._sockets)

    def current_socket(self) -> Any:
        return self.wait_for(lambda: self._sockets[-1] if self._sockets else None, 30, "a socket connection")

    def request_disconnect(self) -> None:
        """Slack's `disconnect` (refresh_requested): the app should open a new connection."""
        self.current_socket().send(
            json.dumps({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}})
        )

    def hang_up(self) -> None:
        """Shut every open socket down (lets a closing client's blocking read return)."""
        with self._lock:
            conns = list(self._sockets)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.socket.shutdown(socket.SHUT_RDWR)

    def drop_socket(self) -> None:
        """Cut the TCP connection under the websocket, with no close frame (a network failure)."""
        conn = self.current_socket()
        with self._lock:
            if conn in self._sockets:
                self._sockets.remove(conn)
        conn.socket.shutdown(socket.SHUT_RDWR)

    # ----- servers ---------------------------------------------------------------------------

    def _ws_session(self, conn: Any) -> None:
        with self._lock:
            self._sockets.append(conn)
        conn.send(
            json.dumps(
                {"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}, "connection_info": {}}
            )
        )
        try:
            for raw in conn:
                message = json.loads(raw)
                if "envelope_id" in message:
                    self.ack_times[message["envelope_id"]] = time.monotonic()
                    self.acks[message["envelope_id"]] = message
        except Exception:  # noqa: S110 - a dropped socket ends the session
            pass
        finally:
            with self._lock:
                if conn in self._sockets:
                    self._sockets.remove(conn)

    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                args: dict[str, Any] = dict(parse_qsl(url.query))
                if raw:
                    if (self.headers.get("Content-Type") or "").startswith("application/json"):
                        args.update(json.loads(raw))
                    else:
                        args.update(dict(parse_qsl(raw.decode())))
                if url.path.startswith("/response/"):
                    with fake._lock:
                        fake.responses.append({"path": url.path, "at": time.monotonic(), **args})
                    self._reply(200, {"ok": True})
                    return
                method = url.path.rsplit("/", 1)[-1]
                auth = self.headers.get("Authorization") or ""
                token = auth.removeprefix("Bearer ") or args.get("token")
                with fake._lock:
                    fake.calls.append(Call(method, args, token))
                    status = fake.fail_next.pop(method, None)
                if status == 429:
                    self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
                    return
                if status:
                    self._reply(status, {"ok": False, "error": "fake_failure"})
                    return
                self._reply(200, fake.api(method, args, token))

            def _reply(
                self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def api(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        """The fake's Web API: enough of each method for the bot."""
        if method == "auth.test":
            data = {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "ragbot",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
            }
            if self.enterprise_id:
                data.update(enterprise_id=self.enterprise_id, is_enterprise_install=False)
            return data
        if method == "apps.connections.open":
            if not (token or "").startswith("xapp-"):
                return {"ok": False, "error": "not_allowed_token_type"}
            if self.refuse_connections:
                return {"ok": False, "error": "internal_error"}
            self.connections_opened += 1
            return {"ok": True, "url": f"{self.ws_url}?ticket={self.connections_opened}"}
        if method == "chat.postMessage":
            msg = {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": args.get("text", ""),
                "ts": self.next_ts(),
            }
            if args.get("thread_ts"):
                msg["thread_ts"] = args["thread_ts"]
            if args.get("blocks"):
                msg["blocks"] = args["blocks"]
            with self._lock:
                self.messages.setdefault(args["channel"], []).append(msg)
            return {"ok": True, "channel": args["channel"], "ts": msg["ts"], "message": msg}
        if method == "chat.update":
            with self._lock:
                for msg in self.messages.get(args["channel"], []):
                    if msg["ts"] == args["ts"]:
                        msg["text"] = args.get("text", msg["text"])
                        msg.pop("streaming", None)
                        if "blocks" in args:
                            msg["blocks"] = args["blocks"]
            return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
        if method.endswith("Stream"):
            return self._stream(method, args)
        if method == "assistant.threads.setStatus":
            if not self.status:
                return {"ok": False, "error": self.status_refusal}
            if not args.get("channel_id") or not args.get("thread_ts") or "status" not in args:
                return {"ok": False, "error": "invalid_arguments"}
            with self._lock:
                self.statuses.append((args["channel_id"], args["thread_ts"], args["status"]))
            return {"ok": True}
        if method == "chat.delete":
            with self._lock:
                msgs = self.messages.get(args["channel"], [])
                self.messages[args["channel"]] = [m for m in msgs if m["ts"] != args["ts"]]
            return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method in ("reactions.add", "reactions.remove"):
            return {"ok": True}
        if method == "conversations.replies":
            thread = self.thread_messages(args["channel"], args["ts"])
            return {"ok": True, "messages": thread, "has_more": False}
        if method == "conversations.info":
            channel = args.get("channel", "")
            shared = channel in self.ext_shared
            return {
                "ok": True,
                "channel": {"id": channel, "is_channel": True, "is_ext_shared": shared, "is_shared": shared},
            }
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            if user is None:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": args["user"], **user}}
        return {"ok": False, "error": "unknown_method"}

    def streamed_messages(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages.get(channel, []) if "streaming" in m]

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """chat.startStream / chat.appendStream / chat.stopStream, with Slack's checks and errors."""
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        text = str(args.get("markdown_text") or "")
        tasks: list[dict[str, Any]] = []
        for chunk in args.get("chunks") or []:
            # Slack's chunk types (chat.appendStream, "chunks"): markdown_text, task_update (id,
            # title, status pending|in_progress|complete|error, optional details/output/sources),
            # plan_update (title) and blocks.
            kind = chunk.get("type")
            if kind == "markdown_text":
                text += str(chunk.get("text") or "")
            elif kind == "task_update":
                if not (chunk.get("id") and chunk.get("title")) or chunk.get("status") not in TASK_STATUSES:
                    return {"ok": False, "error": "invalid_chunks"}
                tasks.append({k: chunk[k] for k in ("id", "title", "status") if k in chunk})
            elif kind not in ("plan_update", "blocks"):
                return {"ok": False, "error": "invalid_chunks"}
        if len(text) > 12_000:
            return {"ok": False, "error": "msg_too_long"}
        if args.get("task_display_mode") not in (None, "timeline", "plan"):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "chat.startStream":
            if not self.streaming:
                return {"ok": False, "error": self.stream_refusal}
            if not channel.startswith("D"):
                if not args.get("recipient_user_id"):
                    return {"ok": False, "error": "missing_recipient_user_id"}
                if not args.get("recipient_team_id"):
                    return {"ok": False, "error": "missing_recipient_team_id"}
            msg: dict[str, Any] = {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": text,
                "ts": self.next_ts(),
                "streaming": True,
                "appends": 0,
                "tasks": tasks,  # every task_update, in order
            }
            if args.get("thread_ts"):
                msg["thread_ts"] = args["thread_ts"]
            with self._lock:
                self.messages.setdefault(channel, []).append(msg)
            return {"ok": True, "channel": channel, "ts": msg["ts"]}
        with self._lock:
            found = [m for m in self.messages.get(channel, []) if m["ts"] == args.get("ts")]
            if not found:
                return {"ok": False, "error": "message_not_found"}
            msg = found[0]
            if not msg.get("streaming"):
                return {"ok": False, "error": "message_not_in_streaming_state"}
            if method == "chat.appendStream":
                if self.break_stream_after is not None and msg["appends"] >= self.break_stream_after:
                    msg["streaming"] = False  # expired: half-written until the app fixes it
                    return {"ok": False, "error": "message_not_in_streaming_state"}
                msg["appends"] += 1
                msg["text"] += text
                msg["tasks"] += tasks
                return {"ok": True, "channel": channel, "ts": msg["ts"]}
            if method == "chat.stopStream":
                msg["text"] += text
                msg["tasks"] += tasks
                msg["streaming"] = False
                if args.get("blocks"):
                    msg["blocks"] = args["blocks"]
                return {"ok": True, "channel": channel, "ts": msg["ts"], "message": dict(msg)}
        return {"ok": False, "error": "unknown_method"}
