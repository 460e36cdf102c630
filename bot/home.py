"""The App Home tab: what the bot knows, how fresh it is, how to ask, and your recent questions.

Published with views.publish on every `app_home_opened` (tab "home"). It lists only what the
person may ask about: someone from another organisation (a Slack Connect guest), who may not
ask at all, sees no source; an internal person sees what a DM searches — every configured
source — with its size and last successful ingest. The people allowed to `/ragingest` get a
button that starts one (its report arrives as a DM, and the tab is refreshed).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bot import messages
from bot.feedback import excerpt, feedback_path, read_votes
from bot.formatting import escape, split_text
from bot.questions import set_suggested_prompts

if TYPE_CHECKING:
    from bot.context import BotContext

log = logging.getLogger(__name__)

RECENT_QUESTIONS = 5
MAX_SOURCES_SHOWN = 40
VOTE_MARK = {"up": "👍", "down": "👎"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def source_line(name: str, info: dict[str, Any]) -> str:
    kind = "code" if info.get("kind") == "code" else "Confluence"
    size = f"{info.get('documents', 0):,} documents, {info.get('chunks', 0):,} chunks"
    last = info.get("last_success")
    fresh = f"updated {last.replace('T', ' ').replace('Z', ' UTC')}" if last else "not indexed yet"
    return f"• *{escape(name)}* · _{kind}_ · {size} · {fresh}"


class HomeTab:
    INGEST = "ragbot_home_ingest"

    def __init__(self, handlers: BotContext) -> None:
        self.h = handlers

    def on_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """`app_home_opened`: the Home tab gets its view; the Messages tab (the agent DM under
        agent_view) gets suggested prompts."""
        if not event.get("user"):
            return
        if event.get("tab") == "messages":
            self.h.intake.submit(
                self.h.guard, self.suggest, str(event["user"]), str(event.get("channel") or ""), body
            )
        elif event.get("tab", "home") == "home":
            self.h.intake.submit(self.h.guard, self.publish, str(event["user"]), body)

    def suggest(self, user: str, channel: str, body: dict[str, Any]) -> None:
        if not self._internal(user, body):  # never a source name to someone who may not ask
            log.info("no suggested prompts for %s: not from our organisation", user)
            return
        set_suggested_prompts(self.h.quick, channel, self.h.service.registry.names())

    def _internal(self, user: str, body: dict[str, Any] | None) -> bool:
        if self.h.access is None or self.h.settings.slack_allow_external_users:
            return True
        return self.h.access.is_internal({"user": user}, body or {})

    def publish(self, user: str, body: dict[str, Any] | None = None) -> None:
        internal = self._internal(user, body)
        self.h.client.views_publish(
            user_id=user, view={"type": "home", "blocks": self.blocks(user, internal)}
        )

    def blocks(self, user: str, internal: bool) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [_header(messages.HOME_TITLE)]
        if not internal:
            blocks.append(_section(messages.HOME_EXTERNAL))
            return blocks
        blocks.append(_section(messages.HOME_HOW_TO_ASK))
        blocks += [{"type": "divider"}, _header(messages.HOME_SOURCES)]
        try:
            status = self.h.service.status()
            sources = {n: i for n, i in status["sources"].items() if i.get("configured")}
            lines = [source_line(n, i) for n, i in sorted(sources.items())[:MAX_SOURCES_SHOWN]]
            if len(sources) > MAX_SOURCES_SHOWN:
                lines.append(messages.HOME_MORE_SOURCES.format(count=len(sources) - MAX_SOURCES_SHOWN))
            blocks += [_section(piece) for piece in split_text("\n".join(lines) or messages.HOME_NO_SOURCES)]
        except Exception as e:  # the tab still opens, saying the index cannot be read right now
            log.warning("App Home: cannot read the index status: %s", e)
            blocks.append(_section(messages.INDEX_UNAVAILABLE))
        blocks += [{"type": "divider"}, _header(messages.HOME_RECENT)]
        blocks.append(_section(self.recent_text(user)))
        if self.h.commands.may_ingest(user):
            blocks += [
                {"type": "divider"},
                {
                    "type": "actions",
                    "block_id": "home_ingest",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": self.INGEST,
                            "text": {"type": "plain_text", "text": messages.HOME_INGEST_BUTTON},
                            "value": "all",
                        }
                    ],
                },
            ]
        return blocks

    def recent_text(self, user: str) -> str:
        recent = self.h.answers.recent(user, RECENT_QUESTIONS)
        if not recent:
            return messages.HOME_NO_QUESTIONS
        votes = {
            v.answer_id: v.vote
            for v in read_votes(feedback_path(self.h.settings.ragbot_data_dir))
            if v.user == user
        }
        lines = []
        for item in recent:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item["created"]))
            mark = VOTE_MARK.get(votes.get(item["answer_id"], ""), "")
            found = "" if item["found"] is not False else " _(not found)_"
            lines.append(f"• {escape(excerpt(item['question'], 150))}{found} · {when} UTC {mark}".rstrip())
        return "\n".join(lines)

    def on_ingest(self, ack: Any, body: dict[str, Any]) -> None:
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        self.h.intake.submit(self.h.guard, self._ingest, user)

    def _ingest(self, user: str) -> None:
        commands = self.h.commands
        if not commands.may_ingest(user):
            log.info("refused an App Home ingest from %s", user)
            return
        commands.jobs.submit(commands.ingest_then, arg="all", user=user, then=lambda: self.publish(user))
