"""The slash commands: `/ragingest [TARGET ...|status]` and `/ragbot QUESTION` (a private answer).

Both acknowledge at once (an ephemeral line) and do their work in a small pool; replies go
through the command's response_url, or a DM when that has expired.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bot import messages
from bot.formatting import classic_feedback
from bot.reports import ingest_summary, status_text
from bot.safety import neutralise, neutralise_payload
from rag.errors import ConfigError, IngestBusyError, RagError

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.memory import AnswerLog
    from rag.config import Settings
    from rag.service import RagService

log = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 600.0


def new_error_id() -> str:
    return uuid.uuid4().hex[:8]


def respond_privately(
    client: WebClient, respond: Any, user: str, text: str, *, blocks: list[dict[str, Any]] | None = None
) -> None:
    """Reply to a slash command or a button through its response_url (ephemeral); a DM when there
    is none or it has expired. Everything passes the checks the Web API client applies: no
    broadcast mentions, classic feedback buttons once Slack refused the native ones."""
    native = getattr(type(client), "native_feedback", True)
    if blocks is not None and not native:
        blocks = classic_feedback(blocks)
    extra: dict[str, Any] = {"blocks": neutralise_payload(blocks)} if blocks is not None else {}
    try:
        if respond is None:
            raise RuntimeError("no response_url (started from the App Home)")
        sent = respond(text=neutralise(text), response_type="ephemeral", replace_original=False, **extra)
        status = getattr(sent, "status_code", 200)
        if status >= 400 and blocks and native and "invalid_blocks" in str(getattr(sent, "body", "")):
            type(client).native_feedback = False  # type: ignore[attr-defined]
            log.warning("Slack refused the native feedback buttons; using classic buttons from now on")
            respond_privately(client, respond, user, text, blocks=blocks)
            return
        if status >= 400:
            raise RuntimeError(f"response_url answered {status}: {getattr(sent, 'body', '')}")
    except Exception as e:
        log.warning("response_url reply failed (%s); sending a direct message to %s instead", e, user)
        client.chat_postMessage(channel=user, text=text, unfurl_links=False, unfurl_media=False, **extra)


def command_event(command: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A slash command as the message event and envelope the question path reads."""
    channel = str(command.get("channel_id") or "")
    event = {
        "channel": channel,
        "channel_type": "im" if channel.startswith("D") else "channel",
        # No "team": the command's team_id is the workspace it ran in, not necessarily the
        # person's (Slack Connect); bot.access asks users.info, and refuses when it cannot tell.
        "user": str(command.get("user_id") or ""),
        "text": command.get("text") or "",
        "ts": f"command:{command.get('trigger_id') or new_error_id()}",
    }
    return event, {"team_id": command.get("team_id")}


class Commands:
    """`/ragingest` (who may run it, the ingest job, the status) and `/ragbot` (handed to `ask_privately`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: RagService,
        client: WebClient,
        answers: AnswerLog,
        ask_privately: Callable[[dict[str, Any], Any], None],
    ) -> None:
        self.settings = settings
        self.service = service
        self.client = client
        self.answers = answers
        self.ask_privately = ask_privately
        self.jobs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ragbot-command")
        self._admins: dict[str, tuple[float, bool]] = {}

    def shutdown(self) -> None:
        self.jobs.shutdown(wait=False, cancel_futures=True)

    def on_ragbot(self, ack: Callable[..., None], command: dict[str, Any], respond: Any) -> None:
        if not (command.get("text") or "").strip():
            ack(text=messages.RAGBOT_USAGE)
            return
        ack(text=messages.PRIVATE_WORKING)
        self.ask_privately(command, respond)

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
            if not self.may_ingest(user):
                log.info("refused /ragingest %s from %s", arg, user)
                respond_privately(self.client, respond, user, messages.INGEST_REFUSED)
                return
            words = arg.split()
            targets = self.service.registry.resolve(words)
            self.service.ingestor.preflight(targets)  # a config problem is one clear line, not a failed run
            log.info("/ragingest %s by %s: ingesting %s", arg, user, ", ".join(s.name for s in targets))
            reports = self.service.ingest(targets, trigger=f"slack:{user}", prune_removed="all" in words)
            respond_privately(self.client, respond, user, ingest_summary(reports))
        except IngestBusyError as e:
            respond_privately(self.client, respond, user, messages.INGEST_BUSY.format(reason=str(e)))
        except RagError as e:
            log.warning("/ragingest %s by %s failed: %s", arg, user, e)
            respond_privately(self.client, respond, user, messages.INGEST_FAILED.format(reason=str(e)))
        except Exception:
            error_id = new_error_id()
            log.exception("/ragingest %s by %s failed [error id %s]", arg, user, error_id)
            respond_privately(self.client, respond, user, messages.INGEST_ERROR.format(error_id=error_id))

    def ingest_then(self, *, arg: str, user: str, then: Callable[[], None]) -> None:
        """An ingest started from the App Home: its report as a DM, then `then` (the tab refreshed)."""
        self._ingest_job(arg=arg, user=user, respond=None)
        then()

    def _status_job(self, *, respond: Any, user: str) -> None:
        from bot.feedback import read_votes, summary_line

        try:
            week = read_votes(self.answers.feedback_path, since=time.time() - 7 * 86_400)
            text = status_text(self.service.status()) + f"\n*Feedback, last 7 days*: {summary_line(week)}"
            respond_privately(self.client, respond, user, text)
        except Exception:
            error_id = new_error_id()
            log.exception("/ragingest status failed [error id %s]", error_id)
            respond_privately(self.client, respond, user, messages.INGEST_ERROR.format(error_id=error_id))

    def may_ingest(self, user: str) -> bool:
        """RAGINGEST_ALLOWED_USERS, or (when unset) workspace admins and owners (users.info, cached)."""
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
