"""Who may ask and where, over the real socket: external people, shared channels, allow-list, scopes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from bot.app import SlackBot
from tests.conftest import make_repo
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, TEAM, FakeSlack

pytestmark = pytest.mark.slow

BACKEND = {
    "app/payments.py": "def refund_payment(order_id, amount):\n"
    "    '''Refund a captured payment through the payment gateway.'''\n"
    "    return gateway.refund(order_id, amount)\n",
}
SECRET_TEXT = "HR_SALARY_BANDS_2027"
SECRETS = {
    "hr/salaries.py": f"# {SECRET_TEXT}: the salary bands, refund of payment advances\n"
    "def refund_payment_advance(employee_id):\n    return payroll.advance(employee_id)\n",
}


@pytest.fixture
def start_bot(tmp_path: Path, hash_bot: Callable[..., SlackBot]) -> Callable[..., SlackBot]:
    """start(**settings) → a running bot over two sources, `backend` and `hr` (CSCOPED sees backend only)."""
    backend, hr = make_repo(tmp_path / "backend", BACKEND), make_repo(tmp_path / "hr", SECRETS)
    sources = tmp_path / "ragbot.toml"
    sources.write_text(
        f'[[repository]]\nname = "backend"\npath = "{backend}"\n\n'
        f'[[repository]]\nname = "hr"\npath = "{hr}"\n\n'
        '[[slack.channel]]\nid = "CSCOPED"\nsources = ["backend"]\n'
    )
    return lambda **overrides: hash_bot(ragbot_sources_file=sources, **overrides)


def mention(
    slack: FakeSlack,
    channel: str,
    text: str,
    *,
    user: str = "UALICE",
    team: str | None = TEAM,
    thread_ts: str | None = None,
    ext_shared: bool | None = False,
) -> dict[str, Any]:
    msg = slack.user_message(channel, f"<@{BOT_USER}> {text}", user=user, team=team, thread_ts=thread_ts)
    event = {k: v for k, v in msg.items() if k != "type"}
    env1, _ = slack.send_event({"type": "app_mention", **event}, ext_shared=ext_shared)
    env2, _ = slack.send_event({"type": "message", "channel_type": "channel", **event}, ext_shared=ext_shared)
    slack.wait_for_ack(env1)
    slack.wait_for_ack(env2)
    return msg


def answers_in(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread_messages(channel, thread_ts) if m.get("bot_id") and m.get("blocks")]


def wait_answer(slack: FakeSlack, channel: str, thread_ts: str, count: int = 1) -> list[dict[str, Any]]:
    return slack.wait_for(
        lambda: (a := answers_in(slack, channel, thread_ts)) and len(a) >= count and a,
        what=f"{count} answer(s) in {channel}/{thread_ts}",
    )


def wait_ephemeral(slack: FakeSlack, text: str, count: int = 1) -> list[Any]:
    return slack.wait_for(
        lambda: (
            (e := [c for c in slack.calls_to("chat.postEphemeral") if c.args["text"] == text])
            and len(e) >= count
            and e
        ),
        what=f"{count} ephemeral note(s) {text!r}",
    )


def posted_in(slack: FakeSlack, channel: str) -> list[Any]:
    posts = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream")
    return [c for c in slack.calls if c.method in posts and c.args.get("channel") == channel]


def test_external_user_gets_one_ephemeral_refusal_and_nothing_else(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot()
    msg = mention(slack, "CGENERAL", "How is a payment refunded?", user="UVENDOR", team="TVENDOR")
    (note,) = wait_ephemeral(slack, messages.EXTERNAL_USER)
    assert note.args["user"] == "UVENDOR" and note.args["channel"] == "CGENERAL"
    assert note.args["thread_ts"] == msg["ts"]
    # The same person in a DM: refused too.
    dm = slack.user_message("DVENDOR", "How is a payment refunded?", user="UVENDOR", team="TVENDOR")
    slack.send_event({"channel_type": "im", **dm})
    wait_ephemeral(slack, messages.EXTERNAL_USER, count=2)
    # An internal question afterwards is answered, so the refused ones were fully handled.
    ok = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", ok["ts"])
    assert len(fake_llm.requests) == 1
    assert not posted_in(slack, "DVENDOR")
    assert not [c for c in posted_in(slack, "CGENERAL") if c.args.get("thread_ts") == msg["ts"]]
    assert len(slack.calls_to("chat.postEphemeral")) == 2  # once per question, not per twin event


def test_without_a_team_in_the_event_users_info_decides_and_enterprise_grid_is_internal(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    slack.enterprise_id = "E0GRID"
    slack.users["USTRANGER"] = {"team_id": "TVENDOR", "is_stranger": True}
    slack.users["UGRID"] = {"team_id": "T0SISTER", "enterprise_user": {"enterprise_id": "E0GRID"}}
    slack.users["UOTHERGRID"] = {"team_id": "T0ELSE", "enterprise_user": {"enterprise_id": "E0ELSE"}}
    start_bot()
    mention(slack, "CGENERAL", "How is a payment refunded?", user="USTRANGER", team=None)
    wait_ephemeral(slack, messages.EXTERNAL_USER)
    mention(slack, "CGENERAL", "How is a payment refunded?", user="UOTHERGRID", team="T0ELSE")
    wait_ephemeral(slack, messages.EXTERNAL_USER, count=2)
    sister = mention(slack, "CGENERAL", "How is a payment refunded?", user="UGRID", team="T0SISTER")
    wait_answer(slack, "CGENERAL", sister["ts"])
    again = mention(slack, "CGENERAL", "and the limit?", user="UGRID", team="T0SISTER")
    wait_answer(slack, "CGENERAL", again["ts"])
    assert len(fake_llm.requests) == 2
    looked_up = [c.args["user"] for c in slack.calls_to("users.info")]
    assert looked_up.count("UGRID") == 1  # cached
    assert sorted(set(looked_up)) == ["UGRID", "UOTHERGRID", "USTRANGER"]


def test_allow_external_users_turns_the_check_off(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot(slack_allow_external_users=True)
    msg = mention(slack, "CGENERAL", "How is a payment refunded?", user="UVENDOR", team="TVENDOR")
    wait_answer(slack, "CGENERAL", msg["ts"])
    assert not slack.calls_to("chat.postEphemeral")


def test_internal_user_in_an_externally_shared_channel_is_sent_to_a_dm(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot()
    msg = mention(slack, "CSHARED", "How is a payment refunded?", ext_shared=True)
    (note,) = wait_ephemeral(slack, messages.SHARED_CHANNEL)
    assert note.args["user"] == "UALICE" and note.args["thread_ts"] == msg["ts"]
    # Without the envelope flag, conversations.info says so.
    slack.ext_shared.add("CCONNECT")
    mention(slack, "CCONNECT", "How is a payment refunded?", ext_shared=None)
    wait_ephemeral(slack, messages.SHARED_CHANNEL, count=2)
    assert [c.args["channel"] for c in slack.calls_to("conversations.info")] == ["CCONNECT"]
    assert not posted_in(slack, "CSHARED") and not posted_in(slack, "CCONNECT")
    assert not fake_llm.requests


def test_shared_channels_answer_mode_answers(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot(slack_shared_channels="answer")
    msg = mention(slack, "CSHARED", "How is a payment refunded?", ext_shared=True)
    wait_answer(slack, "CSHARED", msg["ts"])


def test_a_thread_answered_before_its_channel_was_shared_gets_no_more_index_content(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot()
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", first["ts"])
    # The channel is shared with a vendor: Slack sends channel_shared (no envelope flag on it).
    slack.ext_shared.add("CGENERAL")
    shared = {"type": "channel_shared", "connected_team_id": "TVENDOR", "channel": "CGENERAL"}
    slack.wait_for_ack(slack.send_event({**shared, "event_ts": slack.next_ts()}, ext_shared=None)[0])
    follow = slack.user_message("CGENERAL", "and where is it configured?", thread_ts=first["ts"])
    slack.send_event({"channel_type": "channel", **follow}, ext_shared=None)
    wait_ephemeral(slack, messages.SHARED_CHANNEL)
    assert len(answers_in(slack, "CGENERAL", first["ts"])) == 1
    assert len(fake_llm.requests) == 1
    assert not slack.calls_to("conversations.info")  # the event said so; no lookup needed
    # Unshared again: the bot answers in the thread once more.
    slack.ext_shared.discard("CGENERAL")
    unshared = {
        "type": "channel_unshared",
        "previously_connected_team_id": "TVENDOR",
        "channel": "CGENERAL",
        "is_ext_shared": False,
    }
    slack.wait_for_ack(slack.send_event({**unshared, "event_ts": slack.next_ts()}, ext_shared=None)[0])
    again = slack.user_message("CGENERAL", "and the limit?", thread_ts=first["ts"])
    slack.send_event({"channel_type": "channel", **again})
    wait_answer(slack, "CGENERAL", first["ts"], count=2)


def test_channels_outside_the_allow_list_get_a_note_and_dms_still_work(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot(slack_allowed_channels=["CGENERAL", "CSCOPED"])
    msg = mention(slack, "CRANDOM", "How is a payment refunded?")
    (note,) = wait_ephemeral(slack, messages.CHANNEL_NOT_ALLOWED)
    assert note.args["channel"] == "CRANDOM" and note.args["thread_ts"] == msg["ts"]
    ok = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", ok["ts"])
    dm = slack.user_message("DALICE", "How is a payment refunded?")
    slack.send_event({"channel_type": "im", **dm})
    slack.wait_for(lambda: [m for m in slack.messages["DALICE"] if m.get("blocks")], what="the DM answer")
    assert not posted_in(slack, "CRANDOM")
    assert len(fake_llm.requests) == 2


def test_a_scoped_channel_never_sends_another_sources_text_to_the_llm(
    start_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot()
    question = f"What are the {SECRET_TEXT} salary bands and the refund of payment advances?"
    msg = mention(slack, "CSCOPED", question)
    (answer,) = wait_answer(slack, "CSCOPED", msg["ts"])
    follow = slack.user_message("CSCOPED", f"and {SECRET_TEXT} advances?", thread_ts=msg["ts"])
    slack.send_event({"channel_type": "channel", **follow})
    wait_answer(slack, "CSCOPED", msg["ts"], count=2)
    assert len(fake_llm.requests) >= 2
    answering = 0
    for request in fake_llm.requests:  # the answers, and the follow-up's query rewrite
        prompt = str(request["body"]["messages"])
        assert "hr/salaries.py" not in prompt and "refund_payment_advance" not in prompt
        if "Rewrite the user's last message" not in prompt:
            assert "app/payments.py" in prompt
            answering += 1
    assert answering == 2
    assert "hr/salaries.py" not in str(answers_in(slack, "CSCOPED", msg["ts"]))
    # The same question in a DM searches every source: the hr passage is there.
    dm = slack.user_message("DALICE", question)
    slack.send_event({"channel_type": "im", **dm})
    slack.wait_for(lambda: [m for m in slack.messages["DALICE"] if m.get("blocks")], what="the DM answer")
    assert "refund_payment_advance" in str(fake_llm.requests[-1]["body"]["messages"])
    assert answer["blocks"]
