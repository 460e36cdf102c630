"""Slack's current surfaces over the real socket: the App Home tab, assistant threads and their
suggested prompts, DMs answered in a thread, native feedback buttons (and their fallback), and
retrieval shown as a task with its sources in the stream's timeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import SlackBot
from tests.conftest import make_repo
from tests.fakes.slack_agent import AgentFakeSlack
from tests.fakes.slack_server import BOT_USER, TEAM

pytestmark = pytest.mark.slow

WEB_URL = "https://git.example.com/acme/backend"
BACKEND = {
    "app/payments.py": "def refund_payment(order_id, amount):\n"
    "    '''Refund a captured payment through the payment gateway.'''\n"
    "    return gateway.refund(order_id, amount)\n",
}
WIKI = {"wiki/runbook.md": "# Runbook\n\nRestart the payment gateway with `make restart-gateway`.\n"}


@pytest.fixture
def start_bot(tmp_path: Path, hash_bot: Callable[..., SlackBot]) -> Callable[..., SlackBot]:
    backend, wiki = make_repo(tmp_path / "backend", BACKEND), make_repo(tmp_path / "wiki", WIKI)
    sources = tmp_path / "ragbot.toml"
    sources.write_text(
        f'[[repository]]\nname = "backend"\npath = "{backend}"\nweb_url = "{WEB_URL}"\n\n'
        f'[[repository]]\nname = "runbooks"\npath = "{wiki}"\n'
    )
    return lambda **overrides: hash_bot(ragbot_sources_file=sources, **overrides)


def dm(
    slack: AgentFakeSlack, text: str, *, user: str = "UALICE", thread_ts: str | None = None
) -> dict[str, Any]:
    msg = slack.user_message("DALICE", text, user=user, thread_ts=thread_ts)
    event = {k: v for k, v in msg.items() if k != "type"}
    slack.wait_for_ack(slack.send_event({"type": "message", "channel_type": "im", **event})[0])
    return msg


def final(slack: AgentFakeSlack, channel: str, thread_ts: str, count: int = 1) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]]:
        return [
            m
            for m in slack.thread_messages(channel, thread_ts)
            if m.get("bot_id") and m.get("blocks") and not m.get("streaming")
        ]

    return slack.wait_for(
        lambda: len(d := done()) >= count and d, what=f"{count} answer(s) in {channel}/{thread_ts}"
    )


# ----- App Home ----------------------------------------------------------------------------------


def test_the_home_tab_lists_sources_freshness_and_the_persons_questions(
    start_bot: Callable[..., SlackBot], slack: AgentFakeSlack
) -> None:
    slack.users["UALICE"] = slack.users["UADMIN"] = {
        "team_id": TEAM
    }  # users.info: app_home_opened has no team
    start_bot(ragingest_allowed_users=["UADMIN"])
    asked = dm(slack, "How is a payment refunded?")
    (answer,) = final(slack, "DALICE", asked["ts"])
    (feedback,) = next(b for b in answer["blocks"] if b["type"] == "context_actions")["elements"]
    slack.wait_for_ack(
        slack.send_block_action(
            user="UALICE",
            channel="DALICE",
            message=answer,
            action_id=feedback["action_id"],
            value=feedback["positive_button"]["value"],
        )
    )
    slack.wait_for_ack(slack.open_home("UALICE"))
    view = slack.wait_for(lambda: slack.views.get("UALICE"), what="the Home tab")
    text = json.dumps(view, ensure_ascii=False)
    assert "backend" in text and "runbooks" in text and "updated 20" in text  # last successful ingest
    assert "How is a payment refunded?" in text and "👍" in text
    assert "ragbot_home_ingest" not in text  # not allowed to /ragingest

    slack.wait_for_ack(slack.open_home("UADMIN"))
    admin = slack.wait_for(lambda: slack.views.get("UADMIN"), what="the admin's Home tab")
    assert "ragbot_home_ingest" in json.dumps(admin, ensure_ascii=False)
    runs = len(slack.calls_to("views.publish"))
    slack.wait_for_ack(slack.click_in_view(user="UADMIN", action_id="ragbot_home_ingest", value="all"))
    report = slack.wait_for(
        lambda: [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "UADMIN"],
        what="the DM report",
    )
    assert "Ingest finished" in report[0].args["text"]
    slack.wait_for(lambda: len(slack.calls_to("views.publish")) > runs, what="the tab refreshed")


def test_a_slack_connect_user_never_sees_a_home_tab_listing_sources(
    start_bot: Callable[..., SlackBot], slack: AgentFakeSlack
) -> None:
    slack.users["UGUEST"] = {"team_id": "TOTHERORG", "is_stranger": True}
    start_bot()
    slack.wait_for_ack(slack.open_home("UGUEST"))
    view = slack.wait_for(lambda: slack.views.get("UGUEST"), what="the guest's Home tab")
    text = json.dumps(view, ensure_ascii=False)
    assert "backend" not in text and "runbooks" not in text and "our own organisation" in text


# ----- the assistant surface, DMs in threads --------------------------------------------------


def test_the_agent_dm_gets_prompts_from_the_sources_and_dms_are_answered_in_a_thread(
    start_bot: Callable[..., SlackBot], slack: AgentFakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    slack.streaming = slack.status = True
    slack.users["UALICE"] = {"team_id": TEAM}
    slack.users["UGUEST"] = {"team_id": "TOTHERORG", "is_stranger": True}
    start_bot()
    slack.wait_for_ack(slack.open_home("UALICE", tab="messages"))
    (prompts,) = slack.wait_for(lambda: slack.suggested, what="suggested prompts")
    assert prompts["channel_id"] == "DALICE" and "thread_ts" not in prompts  # pinned to the Messages tab
    assert [p["title"] for p in prompts["prompts"]] == ["What's in backend?", "What's in runbooks?"]
    slack.wait_for_ack(slack.open_home("UGUEST", tab="messages"))
    slack.wait_for(
        lambda: any("no suggested prompts for UGUEST" in r.getMessage() for r in caplog.records),
        what="the guest refused prompts",
    )
    assert len(slack.suggested) == 1  # a Slack Connect guest gets no source names

    asked = dm(slack, "How is a payment refunded?")  # top level in the DM
    (answer,) = final(slack, "DALICE", asked["ts"])
    (start,) = slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == asked["ts"] and "recipient_user_id" not in start.args  # a DM thread
    statuses = [c.args for c in slack.calls_to("assistant.threads.setStatus") if c.args.get("status")]
    assert statuses[0]["loading_messages"][:2] == ["Searching backend…", "Searching runbooks…"]
    # Retrieval is a completed task in the timeline, its sources linked.
    search = [t for t in answer["tasks"] if t["id"] == "search"]
    assert search and search[0]["status"] == "complete"
    task_calls = [c for c in slack.calls_to("chat.startStream") + slack.calls_to("chat.appendStream")]
    sources = [s for c in task_calls for ch in c.args.get("chunks") or [] for s in ch.get("sources") or []]
    assert any(s["url"].startswith(f"{WEB_URL}/blob/") and "app/payments.py" in s["text"] for s in sources)


# ----- native feedback buttons ---------------------------------------------------------------------


def test_native_feedback_buttons_fall_back_to_classic_ones_where_slack_refuses_them(
    start_bot: Callable[..., SlackBot], slack: AgentFakeSlack
) -> None:
    slack.native_feedback = False
    bot = start_bot()
    first = slack.user_message("CGENERAL", f"<@{BOT_USER}> How is a payment refunded?", team=TEAM)
    slack.wait_for_ack(
        slack.send_event({"type": "app_mention", **{k: v for k, v in first.items() if k != "type"}})[0]
    )
    (one,) = final(slack, "CGENERAL", first["ts"])
    buttons = next(b for b in one["blocks"] if b.get("block_id") == "feedback")
    assert buttons["type"] == "actions" and [e["action_id"] for e in buttons["elements"]] == [
        "feedback_up",
        "feedback_down",
    ]
    second = slack.user_message("CGENERAL", f"<@{BOT_USER}> Where is the gateway restarted?", team=TEAM)
    slack.wait_for_ack(
        slack.send_event({"type": "app_mention", **{k: v for k, v in second.items() if k != "type"}})[0]
    )
    final(slack, "CGENERAL", second["ts"])
    refused = [c for c in slack.calls if "context_actions" in json.dumps(c.args.get("blocks") or [])]
    assert len(refused) == 1  # refused once, classic buttons from then on
    slack.wait_for_ack(
        slack.send_block_action(
            user="UBOB",
            channel="CGENERAL",
            message=one,
            action_id="feedback_down",
            value=buttons["elements"][1]["value"],
        )
    )
    path = bot.settings.ragbot_data_dir / "slack" / "feedback.jsonl"
    slack.wait_for(lambda: path.exists() and '"down"' in path.read_text(), what="the classic vote recorded")
