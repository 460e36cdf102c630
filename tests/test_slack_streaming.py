"""Slack's native streaming and thread status, over the real socket, and the fallbacks to v1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import SlackBot
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, TEAM, FakeSlack

pytestmark = pytest.mark.slow

REPO = {
    "shop/payments.py": "def refund_payment(order_id, amount):\n"
    "    '''Refund a captured payment through the payment gateway.'''\n"
    "    return gateway.refund(order_id, amount)\n",
}
WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def start_bot(git_repo: Any, hash_bot: Callable[..., SlackBot]) -> Callable[[], SlackBot]:
    repo: Path = git_repo(REPO)
    return lambda: hash_bot(code_repo_path=repo)


def mention(slack: FakeSlack, channel: str, text: str) -> dict[str, Any]:
    msg = slack.user_message(channel, f"<@{BOT_USER}> {text}")
    event = {k: v for k, v in msg.items() if k != "type"}
    env1, _ = slack.send_event({"type": "app_mention", **event})
    env2, _ = slack.send_event({"type": "message", "channel_type": "channel", **event})
    slack.wait_for_ack(env1)
    slack.wait_for_ack(env2)
    return msg


def final_messages(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.thread_messages(channel, thread_ts)
        if m.get("bot_id") and m.get("blocks") and not m.get("streaming")
    ]


def wait_final(slack: FakeSlack, channel: str, thread_ts: str, count: int = 1) -> list[dict[str, Any]]:
    return slack.wait_for(
        lambda: (a := final_messages(slack, channel, thread_ts)) and len(a) >= count and a,
        what=f"{count} final answer(s) in {channel}/{thread_ts}",
    )


def all_text(message: dict[str, Any]) -> str:
    return message["text"] + str(message.get("blocks"))


def streamed_text(call: Any) -> str:
    chunks = call.args.get("chunks") or []
    return str(call.args.get("markdown_text") or "") + "".join(c.get("text", "") for c in chunks)


def test_answer_is_streamed_natively_with_status_and_final_blocks(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    slack.streaming = slack.status = True
    fake_llm.reply = lambda _messages: f"Refunds go through the gateway. {WORDS} [1]"
    fake_llm.chunk_delay = 0.01
    start_bot()
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    (answer,) = wait_final(slack, "CGENERAL", msg["ts"])
    (start,) = slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == msg["ts"]
    assert start.args["recipient_user_id"] == "UALICE" and start.args["recipient_team_id"] == TEAM
    assert slack.calls_to("chat.appendStream")  # the text arrived in pieces
    assert answer["text"].strip() == f"Refunds go through the gateway. {WORDS} [1]"
    blocks = answer["blocks"]
    assert [b["type"] for b in blocks][-1] == "context_actions"  # feedback buttons came with chat.stopStream
    assert "shop/payments.py" in str(blocks) and "Refunds go through" not in str(blocks)
    assert len(slack.calls_to("chat.stopStream")) == 1
    assert not [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]
    assert not slack.calls_to("chat.update")

    def statuses() -> list[str]:
        return [s for c, t, s in slack.statuses if (c, t) == ("CGENERAL", msg["ts"])]

    slack.wait_for(lambda: "" in statuses(), what="the status cleared after the answer")
    assert statuses() == ["searching code…", "writing…", ""]
    assert not slack.calls_to("reactions.add")  # the status replaces the ⏳ reaction


def test_streaming_refused_falls_back_to_chat_update_and_is_remembered(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    slack.status = True
    start_bot()
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    (one,) = wait_final(slack, "CGENERAL", first["ts"])
    second = mention(slack, "CGENERAL", "Where is the gateway?")
    wait_final(slack, "CGENERAL", second["ts"])
    assert len(slack.calls_to("chat.startStream")) == 1  # refused once, not asked again
    assert "Answer to: How is a payment refunded?" in all_text(one)
    posts = [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]
    assert len(posts) == 2 and slack.calls_to("chat.update")
    refusals = [r for r in caplog.records if "refused streaming" in r.getMessage()]
    assert len(refusals) == 1 and "feature_not_enabled" in refusals[0].getMessage()


def test_a_stream_broken_midway_is_replaced_by_the_whole_answer(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    slack.streaming = True
    slack.break_stream_after = 1  # the stream expires after one append
    fake_llm.reply = lambda _messages: f"Refunds go through the gateway. {WORDS} [1]"
    fake_llm.chunk_delay = 0.01
    start_bot()
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    (answer,) = wait_final(slack, "CGENERAL", msg["ts"])
    assert len(slack.calls_to("chat.appendStream")) >= 2  # the second one failed
    assert f"{WORDS} [1]" in str(answer["blocks"])  # the whole answer, as Block Kit
    assert [b["type"] for b in answer["blocks"]][-1] == "context_actions"
    bot_messages = [m for m in slack.thread_messages("CGENERAL", msg["ts"]) if m.get("bot_id")]
    assert bot_messages == [answer]  # nothing half-written left behind
    assert slack.calls_to("chat.update")[-1].args["ts"] == answer["ts"]


def test_status_refused_shows_the_reaction_instead(
    start_bot: Callable[[], SlackBot], slack: FakeSlack
) -> None:
    slack.streaming = True
    start_bot()
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_final(slack, "CGENERAL", first["ts"])
    slack.wait_for(lambda: slack.calls_to("reactions.remove"), what="the reaction removed")
    second = mention(slack, "CGENERAL", "Where is the gateway?")
    wait_final(slack, "CGENERAL", second["ts"])
    slack.wait_for(lambda: len(slack.calls_to("reactions.remove")) == 2, what="the second reaction removed")
    assert [c.args["timestamp"] for c in slack.calls_to("reactions.add")] == [first["ts"], second["ts"]]
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1  # refused once, remembered
    assert not slack.statuses


def test_a_long_answer_respects_the_per_call_limit_and_continues_below(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    slack.streaming = True
    long = " ".join(f"line{i:05d}" for i in range(1_800))  # ~17,000 characters
    fake_llm.reply = lambda _messages: long
    start_bot()
    msg = mention(slack, "CGENERAL", "Tell me everything about refunds")
    slack.wait_for(
        lambda: [c for c in slack.calls_to("chat.postMessage") if c.args.get("blocks")],
        what="the continuation message",
    )
    calls = slack.calls_to("chat.startStream") + slack.calls_to("chat.appendStream")
    assert calls and all(len(streamed_text(c)) <= 12_000 for c in calls)
    (streamed,) = slack.streamed_messages("CGENERAL")
    assert not streamed["streaming"] and len(streamed["text"]) <= 12_000
    (more,) = [c for c in slack.calls_to("chat.postMessage") if c.args.get("blocks")]
    assert more.args["thread_ts"] == msg["ts"]
    continued = str(more.args["blocks"])
    assert "line01799" in continued and "ragbot_feedback" in continued
    assert (streamed["text"] + continued).count("line00900") == 1


def test_streamed_text_gets_no_broadcast_mentions_through(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    slack.streaming = True
    fake_llm.reply = lambda _messages: f"Ping <!here> and <!channel> and @everyone now. {WORDS} [1]"
    fake_llm.chunk_delay = 0.01
    start_bot()
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    (answer,) = wait_final(slack, "CGENERAL", msg["ts"])
    assert slack.calls_to("chat.appendStream") and "Ping" in answer["text"]
    sent = "\n".join(slack.outgoing_texts())
    assert not any(b in sent for b in ("<!here", "<!channel", "@everyone"))
