"""Slack where engineers ask, over the real socket: support channels answered without a mention,
private answers and sharing, escalation to owners."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import SlackBot
from tests.conftest import make_repo
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_agent import AgentFakeSlack
from tests.fakes.slack_server import BOT_USER, TEAM, FakeSlack

pytestmark = pytest.mark.slow

BACKEND = {
    "app/payments.py": "def refund_payment(order_id, amount):\n"
    "    '''Refund a captured payment through the payment gateway.'''\n"
    "    return gateway.refund(order_id, amount)\n",
    "deploy/run.sh": "#!/bin/sh\n# Deploy the shop: build the image, push it, roll the pods.\n"
    "docker build -t shop . && docker push shop && kubectl rollout restart deploy/shop\n",
    ".github/CODEOWNERS": "# owners\n* @acme/platform\n/deploy/ @alice @bob @carol @dave\n",
}
#: Enough code for the grounding judgement to be made (it is not, below 30 indexed chunks).
TOPICS = (
    "invoice", "shipment", "inventory", "customer", "discount", "coupon", "warehouse", "catalog",
    "basket", "checkout", "receipt", "supplier", "tax", "currency", "loyalty", "review",
    "wishlist", "newsletter", "courier", "voucher", "subscription", "ledger", "audit", "session",
    "refundpolicy", "pricing", "barcode", "label", "pallet", "return", "exchange", "giftcard",
    "affiliate", "banner", "sitemap", "webhook", "quota", "tenant", "region", "locale",
)  # fmt: skip
for _topic in TOPICS:
    BACKEND[f"app/{_topic}.py"] = (
        f"def create_{_topic}(db, data):\n    '''Create a {_topic} record and store it.'''\n"
        f"    return db.insert('{_topic}', data)\n\n\n"
        f"def find_{_topic}(db, key):\n    '''Look a {_topic} up by its key.'''\n"
        f"    return db.get('{_topic}', key)\n"
    )
HR = {
    "hr/salaries.py": "# HR_SALARY_BANDS_2027: the salary bands and payroll advance rules\n"
    "def salary_band(level):\n    return BANDS[level]\n",
}


@pytest.fixture
def start_bot(tmp_path: Path, minilm_bot: Callable[..., SlackBot]) -> Callable[..., SlackBot]:
    """start(**settings) → a running bot over `backend` and `hr`, embedded with the real MiniLM
    (whose calibrated grounding judgement decides what a support channel answers)."""
    backend, hr = make_repo(tmp_path / "backend", BACKEND), make_repo(tmp_path / "hr", HR)
    sources = tmp_path / "ragbot.toml"
    sources.write_text(
        f'[[repository]]\nname = "backend"\npath = "{backend}"\n\n'
        f'[[repository]]\nname = "hr"\npath = "{hr}"\nexperts = ["UHRLEAD"]\n\n'
        "[slack.people]\n"
        '"@alice" = "UALICEX"\n"@bob" = "UBOBX"\n"@carol" = "UCAROLX"\n"@dave" = "UDAVEX"\n'
        '"@acme/platform" = "SPLATFORM"\n\n'
        '[[slack.channel]]\nid = "CSUPPORT"\nanswer = "questions"\n\n'
        '[[slack.channel]]\nid = "CPRIVATE"\nprivate = true\n\n'
        '[[slack.channel]]\nid = "CSCOPED"\nsources = ["backend"]\n'
    )
    return lambda **overrides: minilm_bot(ragbot_sources_file=sources, **overrides)


def post(slack: FakeSlack, channel: str, text: str, *, user: str = "UALICE") -> dict[str, Any]:
    """A person writes a top-level message, no mention: only the `message` event."""
    msg = slack.user_message(channel, text, user=user, team=TEAM)
    event = {k: v for k, v in msg.items() if k != "type"}
    env, _ = slack.send_event({"type": "message", "channel_type": "channel", **event})
    slack.wait_for_ack(env)
    return msg


def mention(slack: FakeSlack, channel: str, text: str, *, user: str = "UALICE") -> dict[str, Any]:
    msg = slack.user_message(channel, f"<@{BOT_USER}> {text}", user=user, team=TEAM)
    event = {k: v for k, v in msg.items() if k != "type"}
    env1, _ = slack.send_event({"type": "app_mention", **event})
    env2, _ = slack.send_event({"type": "message", "channel_type": "channel", **event})
    slack.wait_for_ack(env1)
    slack.wait_for_ack(env2)
    return msg


def answers_in(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread_messages(channel, thread_ts) if m.get("bot_id") and m.get("blocks")]


def bot_messages(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages.get(channel, []) if m.get("bot_id")]


def wait_log(caplog: pytest.LogCaptureFixture, fragment: str, count: int = 1) -> None:
    def seen() -> bool:
        return sum(fragment in r.getMessage() for r in caplog.records) >= count

    FakeSlack().wait_for(seen, what=f"log line {fragment!r}")


def test_a_support_channel_answers_questions_without_a_mention_and_is_quiet_otherwise(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    start_bot()
    question = post(slack, "CSUPPORT", "how do I refund a payment through the gateway?")
    (answer,) = slack.wait_for(lambda: answers_in(slack, "CSUPPORT", question["ts"]), what="the answer")
    assert "app/payments.py" in str(answer["blocks"])

    post(slack, "CSUPPORT", "thanks, that worked!")
    post(slack, "CSUPPORT", "lunch at noon, anyone?")
    off_topic = post(slack, "CSUPPORT", "what is the weather like in Lisbon tomorrow?")
    wait_log(caplog, "not covered by the index: staying quiet")
    assert len(bot_messages(slack, "CSUPPORT")) == 1  # only the first answer
    assert not [c for c in slack.calls_to("chat.postEphemeral") if c.args["channel"] == "CSUPPORT"]
    statuses = [c.args["thread_ts"] for c in slack.calls_to("assistant.threads.setStatus")]
    reactions = [c.args["timestamp"] for c in slack.calls_to("reactions.add")]
    assert off_topic["ts"] not in statuses + reactions  # not even a "working" sign

    # A mention in the same channel is always answered, once, found or not.
    asked = mention(slack, "CSUPPORT", "what is the weather like in Lisbon tomorrow?")
    slack.wait_for(lambda: answers_in(slack, "CSUPPORT", asked["ts"]), what="the mention's answer")
    assert len(answers_in(slack, "CSUPPORT", asked["ts"])) == 1


def test_an_ordinary_channel_still_needs_a_mention(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    start_bot()
    post(slack, "CGENERAL", "how do I refund a payment through the gateway?")
    asked = mention(slack, "CGENERAL", "how do I refund a payment?")
    slack.wait_for(lambda: answers_in(slack, "CGENERAL", asked["ts"]), what="the mention's answer")
    assert len(bot_messages(slack, "CGENERAL")) == 1


# ----- private answers and sharing ---------------------------------------------------------------


def ephemerals_to(slack: FakeSlack, user: str, channel: str) -> list[dict[str, Any]]:
    return [
        c.args
        for c in slack.calls_to("chat.postEphemeral")
        if (c.args["user"], c.args["channel"]) == (user, channel)
    ]


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button in {blocks}")


def click(slack: FakeSlack, *, user: str, channel: str, ts: str, action_id: str, value: str) -> None:
    env = slack.send_block_action(
        user=user, channel=channel, message={"ts": ts}, action_id=action_id, value=value
    )
    slack.wait_for_ack(env)


def test_a_private_channel_answers_the_asker_alone_and_share_posts_it_once(
    start_bot: Callable[..., SlackBot], slack: FakeSlack
) -> None:
    start_bot()
    asked = mention(slack, "CPRIVATE", "how do I refund a payment through the gateway?")
    (private,) = slack.wait_for(lambda: ephemerals_to(slack, "UALICE", "CPRIVATE"), what="the private answer")
    assert "app/payments.py" in str(private["blocks"]) and private["thread_ts"] == asked["ts"]
    assert not bot_messages(slack, "CPRIVATE")  # nobody else sees anything
    share = button(private["blocks"], "ragbot_share")

    click(
        slack, user="UBOB", channel="CPRIVATE", ts=asked["ts"], action_id="ragbot_share", value=share["value"]
    )
    slack.wait_for(
        lambda: any("Only the person who asked" in r.get("text", "") for r in slack.responses),
        what="the refusal",
    )
    assert not bot_messages(slack, "CPRIVATE")

    click(
        slack,
        user="UALICE",
        channel="CPRIVATE",
        ts=asked["ts"],
        action_id="ragbot_share",
        value=share["value"],
    )
    (shared,) = slack.wait_for(lambda: answers_in(slack, "CPRIVATE", asked["ts"]), what="the shared answer")
    assert "Shared by <@UALICE>" in str(shared["blocks"]) and "app/payments.py" in str(shared["blocks"])
    slack.wait_for(
        lambda: any(r.get("delete_original") for r in slack.responses),
        what="the private copy deleted",
    )

    click(
        slack,
        user="UALICE",
        channel="CPRIVATE",
        ts=asked["ts"],
        action_id="ragbot_share",
        value=share["value"],
    )
    slack.wait_for(
        lambda: any("already been shared" in r.get("text", "") for r in slack.responses),
        what="the note",
    )
    assert len(answers_in(slack, "CPRIVATE", asked["ts"])) == 1

    # A follow-up in the thread (no mention) is answered, privately too.
    follow = slack.user_message(
        "CPRIVATE", "and what does it return?", user="UALICE", thread_ts=asked["ts"], team=TEAM
    )
    event = {k: v for k, v in follow.items() if k != "type"}
    slack.wait_for_ack(slack.send_event({"type": "message", "channel_type": "channel", **event})[0])
    slack.wait_for(lambda: len(ephemerals_to(slack, "UALICE", "CPRIVATE")) >= 2, what="the private follow-up")
    assert len(answers_in(slack, "CPRIVATE", asked["ts"])) == 1


def test_ragbot_answers_privately_and_a_share_into_a_channel_that_may_not_see_the_source_is_refused(
    start_bot: Callable[..., SlackBot], slack: FakeSlack
) -> None:
    start_bot()
    assert isinstance(slack, AgentFakeSlack)
    slack.users["UALICE"] = {"team_id": TEAM}  # a command names no team: users.info decides
    slack.users["UGUEST"] = {"team_id": "TOTHERORG", "is_stranger": True}
    _, guest = slack.send_slash_command(
        command="/ragbot", text="what are the salary bands?", user="UGUEST", channel="CSCOPED"
    )
    (refusal,) = slack.wait_for(
        lambda: [r for r in slack.responses if r["path"] == guest], what="the refusal"
    )
    assert "our own organisation" in refusal["text"] and "blocks" not in refusal
    env, path = slack.send_slash_command(
        command="/ragbot",
        text="what are the HR_SALARY_BANDS_2027 salary bands?",
        user="UALICE",
        channel="CSCOPED",
    )
    assert "only you" in slack.wait_for_ack(env)["payload"]["text"]
    (reply,) = slack.wait_for(
        lambda: [r for r in slack.responses if r["path"] == path and r.get("blocks")],
        what="the private answer",
    )
    assert reply["response_type"] == "ephemeral" and "hr/salaries.py" in str(reply["blocks"])
    share = button(reply["blocks"], "ragbot_share")
    click(slack, user="UALICE", channel="CSCOPED", ts="1.0", action_id="ragbot_share", value=share["value"])
    refusal = slack.wait_for(
        lambda: [r["text"] for r in slack.responses if "can't share" in r.get("text", "")],
        what="the refusal",
    )
    assert "hr" in refusal[0]
    assert not bot_messages(slack, "CSCOPED")
    assert "HR_SALARY_BANDS" not in str([m for m in slack.messages.get("CSCOPED", [])])


# ----- Ask an expert ------------------------------------------------------------------------------


def test_ask_an_expert_mentions_the_codeowners_of_the_cited_file_and_never_more_than_three(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    from bot.feedback import feedback_path, read_escalations

    bot = start_bot()
    asked = mention(slack, "CGENERAL", "how is the shop deployed with docker build and kubectl rollout?")
    (answer,) = slack.wait_for(lambda: answers_in(slack, "CGENERAL", asked["ts"]), what="the answer")
    assert "deploy/run.sh" in str(answer["blocks"])
    escalate = button(answer["blocks"], "ragbot_escalate")
    click(
        slack,
        user="UALICE",
        channel="CGENERAL",
        ts=answer["ts"],
        action_id="ragbot_escalate",
        value=escalate["value"],
    )

    def pings() -> list[dict[str, Any]]:
        return [
            m
            for m in slack.thread_messages("CGENERAL", asked["ts"])
            if m.get("bot_id") and "<@U" in m["text"]
        ]

    (ping,) = slack.wait_for(pings, what="the escalation")
    assert "<@UALICEX>, <@UBOBX>, <@UCAROLX>" in ping["text"]  # the first three owners of /deploy/
    assert "UDAVEX" not in ping["text"] and "<@UALICE>" in ping["text"]  # …and who asked
    assert ".github/CODEOWNERS line 3: /deploy/" in ping["text"]
    (record,) = slack.wait_for(
        lambda: read_escalations(feedback_path(bot.settings.ragbot_data_dir)), what="the record"
    )
    assert record.escalated_to == ["UALICEX", "UBOBX", "UCAROLX"] and record.user == "UALICE"
    assert record.question and "deployed" in record.question

    click(
        slack,
        user="UBOB",
        channel="CGENERAL",
        ts=answer["ts"],
        action_id="ragbot_escalate",
        value=escalate["value"],
    )
    slack.wait_for(
        lambda: any("already been asked" in r.get("text", "") for r in slack.responses), what="the note"
    )
    assert len(pings()) == 1


def test_ask_an_expert_pings_one_user_group_alone_and_nothing_broader(
    start_bot: Callable[..., SlackBot], slack: FakeSlack
) -> None:
    start_bot()
    asked = mention(slack, "CGENERAL", "how is a payment refunded through the gateway?")
    (answer,) = slack.wait_for(lambda: answers_in(slack, "CGENERAL", asked["ts"]), what="the answer")
    escalate = button(answer["blocks"], "ragbot_escalate")
    click(
        slack,
        user="UALICE",
        channel="CGENERAL",
        ts=answer["ts"],
        action_id="ragbot_escalate",
        value=escalate["value"],
    )
    (ping,) = slack.wait_for(
        lambda: [m for m in slack.thread_messages("CGENERAL", asked["ts"]) if "subteam" in m.get("text", "")],
        what="the escalation",
    )
    assert "<!subteam^SPLATFORM>" in ping["text"]  # `* @acme/platform`, through [slack] people
    assert "<@U" not in ping["text"].replace("<@UALICE>", "")  # the group alone
    assert "<!here>" not in ping["text"] and "<!channel>" not in ping["text"]
