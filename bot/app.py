"""The Bolt app factory and the Socket Mode runner behind `ragbot run`."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.handlers import Handlers
    from bot.liveness import Heartbeat
    from rag.config import Settings
    from rag.service import RagService

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 30
RETRIES = 3
WATCHDOG_SECONDS = 1.0


def validate_slack_settings(settings: Settings) -> None:
    """ConfigError naming the first missing or malformed Slack token, before any work starts."""
    bot, app = settings.slack_bot_token, settings.slack_app_token
    if not bot:
        raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
    if not bot.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    if not app:
        raise ConfigError("SLACK_APP_TOKEN is not set (the app-level token, xapp-…, scope connections:write)")
    if not app.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")


def make_web_client(settings: Settings) -> WebClient:
    """A WebClient on SLACK_API_URL that retries 429s (Retry-After) and dropped connections,
    neutralises broadcast mentions in everything it sends, and turns native feedback buttons
    into classic ones from the first time Slack refuses them (invalid_blocks)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    from bot.capabilities import slack_error
    from bot.formatting import classic_feedback, has_native_feedback
    from bot.safety import neutralise_payload

    class SafeWebClient(WebClient):
        #: Shared by this client and its copies (bot.capabilities.without_retries): False once
        #: Slack refused a `feedback_buttons` block.
        native_feedback = True
        _allowed = threading.local()

        @contextlib.contextmanager
        def allowing_groups(self, groups: frozenset[str]) -> Iterator[None]:
            """Let exactly these user-group mentions through, in this thread, for this block."""
            self._allowed.groups = groups
            try:
                yield
            finally:
                self._allowed.groups = frozenset()

        def api_call(
            self,
            api_method: str,
            *,
            http_verb: str = "POST",
            files: dict[str, Any] | None = None,
            data: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None,
            json: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None,
            auth: dict[str, str] | None = None,
        ) -> Any:
            allow: frozenset[str] = getattr(self._allowed, "groups", frozenset())
            native = any(has_native_feedback((p or {}).get("blocks")) for p in (data, json))
            if native and not type(self).native_feedback:
                data, json = _classic(data), _classic(json)
            try:
                return super().api_call(
                    api_method,
                    http_verb=http_verb,
                    files=files,
                    data=neutralise_payload(data, allow),
                    params=neutralise_payload(params, allow),
                    json=neutralise_payload(json, allow),
                    headers=headers,
                    auth=auth,
                )
            except SlackApiError as e:
                if not (native and type(self).native_feedback and slack_error(e) == "invalid_blocks"):
                    raise
                type(self).native_feedback = False
                log.warning(
                    "Slack refused the native feedback buttons (%s); using classic buttons from now on", e
                )
                return self.api_call(
                    api_method,
                    http_verb=http_verb,
                    files=files,
                    data=data,
                    params=params,
                    json=json,
                    headers=headers,
                    auth=auth,
                )

    def _classic(payload: dict[str, Any] | None) -> dict[str, Any] | None:
        if not payload or not isinstance(payload.get("blocks"), list):
            return payload
        return {**payload, "blocks": classic_feedback(payload["blocks"])}

    base_url = (
        settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    )
    return SafeWebClient(
        token=settings.slack_bot_token,
        base_url=base_url,
        timeout=HTTP_TIMEOUT,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=RETRIES),
            ConnectionErrorRetryHandler(max_retry_count=RETRIES),
        ],
    )


def create_app(
    settings: Settings,
    service: RagService,
    *,
    client: WebClient | None = None,
    identity: dict[str, Any] | None = None,
    **handler_options: Any,
) -> App:
    """A Bolt app with the bot's listeners; `identity` is the auth.test result (fetched if None)."""
    from slack_bolt import App

    from bot.access import Access, Identity
    from bot.handlers import Handlers
    from bot.memory import AnswerLog, SlackState, ThreadMemory

    client = client or make_web_client(settings)
    if identity is None:
        identity = dict(client.auth_test().data)  # type: ignore[arg-type]
    app = App(
        client=client,
        token_verification_enabled=False,
        request_verification_enabled=False,
        ignoring_self_events_enabled=True,
        raise_error_for_unhandled_request=False,
    )
    state = SlackState(settings.ragbot_data_dir)
    handlers = Handlers(
        settings=settings,
        service=service,
        client=client,
        bot_user_id=identity.get("user_id"),
        bot_id=identity.get("bot_id"),
        memory=ThreadMemory(state),
        answers=AnswerLog(state),
        access=Access(
            settings=settings,
            client=client,
            identity=Identity.from_auth_test(identity),
            allowed_channels=service.registry.slack.allowed_channels,
        ),
        team_id=identity.get("team_id"),
        **handler_options,
    )
    handlers.register(app)
    app.ragbot_handlers = handlers  # type: ignore[attr-defined]  # for shutdown
    return app


class SlackBot:
    """The Slack bot's lifecycle: validate, connect over Socket Mode, stop cleanly."""

    def __init__(
        self, settings: Settings, service: RagService, *, ping_interval: float = 5.0, **handler_options: Any
    ) -> None:
        validate_slack_settings(settings)
        self.ping_interval = ping_interval
        self.settings = settings
        self.service = service
        self.handler_options = handler_options
        self._socket: Any = None
        self._handlers: Handlers | None = None
        self._heartbeat: Heartbeat | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Connect (returns once the first Socket Mode session is open)."""
        # The builtin client (Slack's recommended one, no extra dependency) reconnects at once
        # on a `disconnect` envelope and closes cleanly, but reads EOF as "no data yet": it
        # notices a dropped socket only after 5 failed pings (or 4 intervals without a pong).
        # `_watch_connection` reconnects after the first failed ping instead. The
        # websocket-client handler opened duplicate sessions on `disconnect` and took up to
        # 10 s to close (measurements in docs/slack.md).
        from slack_bolt.adapter.socket_mode.builtin import SocketModeHandler

        from bot.liveness import Heartbeat

        client = make_web_client(self.settings)
        identity = dict(client.auth_test().data)  # type: ignore[arg-type]
        log.info(
            "connected to Slack as @%s (user %s, bot %s) in team %s",
            identity.get("user"),
            identity.get("user_id"),
            identity.get("bot_id"),
            identity.get("team"),
        )
        log.info("configured sources: %s", self.service.registry.describe_names())
        app = create_app(
            self.settings, self.service, client=client, identity=identity, **self.handler_options
        )
        self._handlers = app.ragbot_handlers  # type: ignore[attr-defined]
        self._heartbeat = Heartbeat(
            self.settings.ragbot_data_dir, metrics=self.service.metrics, inflight=self._handlers.inflight
        )
        self._heartbeat.write()  # "not connected yet": the grace period runs from here
        self._socket = SocketModeHandler(
            app, app_token=self.settings.slack_app_token, web_client=client, ping_interval=self.ping_interval
        )
        self._socket.connect()
        self._stopping.clear()
        self._observe_connection()
        threading.Thread(target=self._watch_connection, name="ragbot-socket-watchdog", daemon=True).start()
        log.info("Socket Mode session open; listening for mentions, DMs and /ragingest")

    def _observe_connection(self) -> bool:
        """Report the connection's state to the liveness record and metrics; True when up."""
        client = getattr(self._socket, "client", None)
        session = getattr(client, "current_session", None)
        connected = bool(
            client is not None
            and session is not None
            and not client.closed
            and client.is_connected()
            and getattr(session, "consecutive_check_state_error_count", 0) == 0
        )
        if self._heartbeat is not None and not self._stopping.is_set():
            self._heartbeat.observe(connected=connected, session_id=client.session_id() if client else None)
        return connected

    def _watch_connection(self) -> None:
        """Reconnect as soon as a ping could not be sent (the socket is dead), instead of
        after the builtin client's five failed pings."""
        while not self._stopping.wait(WATCHDOG_SECONDS):
            self._observe_connection()
            client = getattr(self._socket, "client", None)
            session = getattr(client, "current_session", None)
            if client is None or session is None or client.closed:
                continue
            if getattr(session, "consecutive_check_state_error_count", 0) > 0:
                log.warning("Socket Mode connection lost (a ping failed); reconnecting")
                try:
                    client.connect_to_new_endpoint(force=True)
                except Exception as e:  # the builtin monitor keeps trying too
                    log.warning("reconnecting failed, will retry: %s", e)

    def stop(self) -> None:
        self._stopping.set()
        if self._heartbeat is not None:
            self._heartbeat.remove()
            self.service.metrics.slack_connection(False)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._handlers is not None:
            self._handlers.shutdown()

    def run_forever(self) -> None:
        """Start, then block until SIGINT/SIGTERM."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            log.info("shutting down the Slack bot")
            self.stop()
