"""slack-app-manifest.yaml carries every scope, event and command the bot uses, and no more."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: Web API method (slack_sdk name) → the bot scope Slack's reference lists for it (None: none needed).
METHOD_SCOPES: dict[str, str | None] = {
    "auth_test": None,
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_update": "chat:write",
    "chat_delete": "chat:write",
    "chat_startStream": "chat:write",
    "chat_appendStream": "chat:write",
    "chat_stopStream": "chat:write",
    "assistant_threads_setStatus": "chat:write",  # chat:write or assistant:write (changelog 2026-03-05)
    "assistant_threads_setSuggestedPrompts": "assistant:write",
    "reactions_add": "reactions:write",
    "reactions_remove": "reactions:write",
    "conversations_info": "channels:read groups:read",
    # Slack documents channels:read, groups:read, im:read, mpim:read; the bot asks channels and group DMs.
    "conversations_members": "channels:read groups:read mpim:read",
    "conversations_replies": "channels:history groups:history im:history mpim:history",
    "users_info": "users:read",
    "users_lookupByEmail": "users:read.email",
    "views_publish": None,
}
#: Events (as Bolt registers them) → the manifest's bot events and the scopes they need.
EVENTS: dict[str, tuple[list[str], list[str]]] = {
    "app_mention": (["app_mention"], ["app_mentions:read"]),
    "message": (
        ["message.channels", "message.groups", "message.im", "message.mpim"],
        ["channels:history", "groups:history", "im:history", "mpim:history"],
    ),
    "app_home_opened": (["app_home_opened"], []),
    "channel_shared": (["channel_shared"], ["channels:read"]),
    "channel_unshared": (["channel_unshared"], ["channels:read"]),
    "member_joined_channel": (["member_joined_channel"], ["channels:read", "groups:read"]),
    "member_left_channel": (["member_left_channel"], ["channels:read", "groups:read"]),
}


class RecordingApp:
    """Stands in for Bolt's App in `Handlers.register`: records what is registered."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.commands: list[str] = []

    def event(self, name: str) -> Any:
        self.events.append(name)
        return lambda f: f

    def command(self, name: str) -> Any:
        self.commands.append(name)
        return lambda f: f

    def action(self, _name: str) -> Any:
        return lambda f: f

    def error(self, f: Any) -> Any:
        return f


def manifest() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())


def registered(make_settings: Any, tmp_path: Path) -> RecordingApp:
    from slack_sdk import WebClient

    from bot.handlers import Handlers
    from bot.memory import AnswerLog, SlackState, ThreadMemory
    from rag.service import RagService

    settings = make_settings()
    state = SlackState(tmp_path)
    handlers = Handlers(
        settings=settings,
        service=RagService(settings),
        client=WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/api/"),
        bot_user_id="UBOT",
        bot_id="BBOT",
        memory=ThreadMemory(state),
        answers=AnswerLog(state),
    )
    app = RecordingApp()
    handlers.register(app)  # type: ignore[arg-type]
    handlers.shutdown()
    return app


def methods_called() -> set[str]:
    code = "\n".join(p.read_text() for p in sorted((ROOT / "bot").glob("*.py")))
    called = set(
        re.findall(
            r"\.((?:chat|assistant_threads|reactions|conversations|users|views|auth)_[A-Za-z]+)\(", code
        )
    )
    called |= set(re.findall(r"\"(reactions_(?:add|remove))\"", code))  # getattr(client, method)
    return called


def test_every_web_api_method_the_bot_calls_has_its_scope_in_the_manifest(
    make_settings: Any, tmp_path: Path
) -> None:
    called = methods_called()
    unknown = called - set(METHOD_SCOPES)
    assert not unknown, f"add these methods and their scopes to METHOD_SCOPES: {sorted(unknown)}"
    app = registered(make_settings, tmp_path)
    needed = {s for m in called for s in (METHOD_SCOPES[m] or "").split()}
    needed |= {s for e in app.events for s in EVENTS[e][1]}
    needed |= {"commands"} if app.commands else set()
    assert set(manifest()["oauth_config"]["scopes"]["bot"]) == needed


def test_every_event_and_command_the_bot_handles_is_subscribed_and_no_other(
    make_settings: Any, tmp_path: Path
) -> None:
    app = registered(make_settings, tmp_path)
    m = manifest()
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == {
        e for name in app.events for e in EVENTS[name][0]
    }
    assert {c["command"] for c in m["features"]["slash_commands"]} == set(app.commands)
    assert m["features"]["app_home"]["home_tab_enabled"] is True  # App Home
    assert m["features"]["agent_view"]["agent_description"]  # Slack's agent surface
    assert m["settings"]["interactivity"]["is_enabled"] is True  # the answer's buttons
