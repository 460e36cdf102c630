"""The fake Slack's agent-surface methods: App Home (views.publish), assistant threads'
suggested prompts, users.lookupByEmail, native feedback buttons and the `/ragbot` command.

Shapes follow Slack's reference (docs.slack.dev/reference/methods/views.publish,
assistant.threads.setSuggestedPrompts, users.lookupByEmail; block-kit context_actions /
feedback_buttons; events app_home_opened, assistant_thread_started).
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.slack_server import APP_ID, TEAM, FakeSlack

#: views.publish: a Home tab holds at most 100 blocks (Slack: "Views: up to 100 blocks").
MAX_VIEW_BLOCKS = 100
#: assistant.threads.setSuggestedPrompts: at most 4 prompts, each a title and a message.
MAX_PROMPTS = 4


def _feedback_ok(block: dict[str, Any]) -> bool:
    """A context_actions block: elements are feedback_buttons (positive/negative button, each
    with plain_text text and a value) or icon_button."""
    for element in block.get("elements") or []:
        kind = element.get("type")
        if kind == "feedback_buttons":
            for side in ("positive_button", "negative_button"):
                button = element.get(side) or {}
                if (button.get("text") or {}).get("type") != "plain_text" or not button.get("value"):
                    return False
        elif kind != "icon_button":
            return False
    return bool(block.get("elements"))


class AgentFakeSlack(FakeSlack):
    def __init__(self) -> None:
        super().__init__()
        self.views: dict[str, dict[str, Any]] = {}  # user → the Home view last published
        self.home_tab = True  # views.publish answers not_enabled while False
        self.native_feedback = True  # context_actions accepted; False: invalid_blocks
        self.suggested: list[dict[str, Any]] = []  # setSuggestedPrompts calls' args
        self.members: dict[str, list[str]] = {}  # channel → member ids (conversations.members)

    def api(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "chat.stopStream"):
            for block in args.get("blocks") or []:
                if block.get("type") == "context_actions" and not (
                    self.native_feedback and _feedback_ok(block)
                ):
                    return {"ok": False, "error": "invalid_blocks"}
        if method == "views.publish":
            view = args.get("view") or {}
            if not args.get("user_id") or view.get("type") != "home":
                return {"ok": False, "error": "invalid_arguments"}
            if not self.home_tab:
                return {"ok": False, "error": "not_enabled"}
            if len(view.get("blocks") or []) > MAX_VIEW_BLOCKS:
                return {"ok": False, "error": "invalid_blocks"}
            with self._lock:
                self.views[args["user_id"]] = view
            return {"ok": True, "view": {"id": f"V{uuid.uuid4().hex[:8].upper()}", **view}}
        if method == "assistant.threads.setSuggestedPrompts":
            prompts = args.get("prompts") or []
            # thread_ts is optional: under agent_view the prompts pin to the Messages tab.
            if not args.get("channel_id") or not prompts or len(prompts) > MAX_PROMPTS:
                return {"ok": False, "error": "invalid_arguments"}
            if any(not p.get("title") or not p.get("message") for p in prompts):
                return {"ok": False, "error": "invalid_arguments"}
            with self._lock:
                self.suggested.append(dict(args))
            return {"ok": True}
        if method == "conversations.members":
            # Paged by an opaque cursor (here: the offset), as Slack documents it.
            channel = str(args.get("channel") or "")
            if channel not in self.members:
                return {"ok": False, "error": "channel_not_found"}
            try:
                start = int(str(args.get("cursor") or "0") or "0")
                limit = max(1, min(int(args.get("limit") or 100), 1000))
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
            members = self.members[channel]
            window = members[start : start + limit]
            more = start + limit < len(members)
            return {
                "ok": True,
                "members": window,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        if method == "users.lookupByEmail":
            email = str(args.get("email") or "").lower()
            for user_id, user in self.users.items():
                if str((user.get("profile") or {}).get("email") or "").lower() == email:
                    return {"ok": True, "user": {"id": user_id, **user}}
            return {"ok": False, "error": "users_not_found"}
        return super().api(method, args, token)

    def member_event(self, kind: str, channel: str, user: str) -> str:
        """`member_joined_channel` / `member_left_channel`, after changing the member list."""
        with self._lock:
            members = self.members.setdefault(channel, [])
            if kind == "member_joined_channel" and user not in members:
                members.append(user)
            elif kind == "member_left_channel" and user in members:
                members.remove(user)
        event = {"type": kind, "user": user, "channel": channel, "channel_type": "C", "team": TEAM}
        envelope_id, _ = self.send_event({**event, "event_ts": self.next_ts()})
        return envelope_id

    def open_home(self, user: str, tab: str = "home") -> str:
        """`app_home_opened`: the Home tab, or (`tab="messages"`) the agent DM's Messages tab."""
        event = {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": tab}
        envelope_id, _ = self.send_event({**event, "event_ts": self.next_ts()})
        return envelope_id

    def click_in_view(self, *, user: str, action_id: str, value: str, team: str = TEAM) -> str:
        """A button in the App Home view (container type "view": no channel, no message)."""
        payload = {
            "type": "block_actions",
            "team": {"id": team, "domain": "fake"},
            "user": {"id": user, "name": user.lower(), "team_id": team},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {"type": "view", "view_id": "VHOME"},
            "trigger_id": "1.2.3",
            "view": {"id": "VHOME", "type": "home", "blocks": [], "hash": "1.2"},
            "actions": [
                {"type": "button", "action_id": action_id, "block_id": "home_ingest", "value": value}
            ],
        }
        return self.send_envelope("interactive", payload)
