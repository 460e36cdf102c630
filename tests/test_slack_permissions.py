"""Answers in Slack limited to what everyone who will see them may read: the real Bolt app over
the fake Slack's socket, the fake Confluence (Data Center) syncing permissions, the fake LLM."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import SlackBot
from tests.conftest import make_repo
from tests.fakes.confluence_server import PASSWORD, USERNAME
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_agent import AgentFakeSlack
from tests.fakes.slack_server import BOT_USER, TEAM
from tests.test_confluence_permissions import ADA, BOB, CY, Site, running

#: What only the restricted page says (the questions may name "zebra": that is the asker's own word).
SECRET = ("Pager bridge", "555 0199")


@pytest.fixture
def site() -> Iterator[Site]:
    with running("datacenter") as seeded:
        yield seeded


@pytest.fixture
def start_bot(
    tmp_path: Path, hash_bot: Callable[..., SlackBot], site: Site, slack: AgentFakeSlack
) -> Callable[[], SlackBot]:
    slack.users.update(
        {
            "UADA": {"team_id": TEAM, "profile": {"email": ADA}},
            "UBOB": {"team_id": TEAM, "profile": {"email": BOB}},
            "UCY": {"team_id": TEAM, "profile": {"email": CY}},
            "UNOMAIL": {"team_id": TEAM, "profile": {}},
            "UOTHERBOT": {"team_id": TEAM, "is_bot": True, "profile": {}},
        }
    )
    slack.members.update(
        {
            "CENG": ["UADA", "UBOB", BOT_USER],
            "CSEC": ["UADA", "UCY", "UOTHERBOT", BOT_USER],
            "COPS": ["UADA", "UNOMAIL", BOT_USER],
        }
    )
    repo = make_repo(tmp_path / "code", {"README.md": "# tools\nNothing to see here.\n"})
    return lambda: hash_bot(
        code_repo_path=repo,
        confluence_url=site.fake.url,
        confluence_space=["ENG", "SEC"],
        confluence_username=USERNAME,
        confluence_password=PASSWORD,
        confluence_permissions="sync",
    )


def mention(slack: AgentFakeSlack, channel: str, text: str, *, user: str) -> dict[str, Any]:
    msg = slack.user_message(channel, f"<@{BOT_USER}> {text}", user=user, team=TEAM)
    event = {k: v for k, v in msg.items() if k != "type"}
    env, _ = slack.send_event({"type": "app_mention", **event})
    slack.wait_for_ack(env)
    return msg


def dm(slack: AgentFakeSlack, user: str, text: str) -> dict[str, Any]:
    channel = f"D{user[1:]}"
    msg = slack.user_message(channel, text, user=user, team=TEAM)
    event = {k: v for k, v in msg.items() if k != "type"}
    env, _ = slack.send_event({"type": "message", "channel_type": "im", **event})
    slack.wait_for_ack(env)
    return msg


def answer_in(slack: AgentFakeSlack, channel: str, ts: str) -> dict[str, Any]:
    def done() -> list[dict[str, Any]]:
        return [
            m
            for m in slack.thread_messages(channel, ts)
            if m.get("bot_id") and m.get("blocks") and not m.get("streaming")
        ]

    (answer,) = slack.wait_for(done, what=f"the answer in {channel}")
    return answer


def private_answer(slack: AgentFakeSlack, text: str, *, user: str, channel: str) -> dict[str, Any]:
    """`/ragbot TEXT`: the answer only the asker sees, through the response_url."""
    env, path = slack.send_slash_command(text, command="/ragbot", user=user, channel=channel)
    slack.wait_for_ack(env)
    (reply,) = slack.wait_for(
        lambda: [r for r in slack.responses if r["path"] == path and r.get("blocks")],
        what="the private answer",
    )
    return dict(reply)


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    return next(
        e
        for b in blocks
        for e in b.get("elements") or []
        if isinstance(e, dict) and e.get("action_id") == action_id
    )


def everything_sent(slack: AgentFakeSlack, channel: str) -> str:
    """Every text the bot sent toward a channel: posts, updates, stream appends, status lines."""
    return json.dumps(
        [
            c.args
            for c in slack.calls
            if c.args.get("channel") == channel or c.args.get("channel_id") == channel
        ]
    )


def test_a_channel_with_a_member_who_lacks_access_never_sees_the_page(
    start_bot: Callable[[], SlackBot], slack: AgentFakeSlack, fake_llm: FakeLLM
) -> None:
    start_bot()
    # Ada may read the page: in her DM she gets it.
    asked = dm(slack, "UADA", "what is the zebra bridge number for sev1?")
    assert "Pager bridge" in str(answer_in(slack, "DADA", asked["ts"])["blocks"])  # cited to her
    # In a channel with Bob, who may not: no text, no title, no citation — nor to the model.
    sent_to_model = len(fake_llm.requests)
    asked = mention(slack, "CENG", "what is the zebra bridge number for sev1?", user="UADA")
    answer_in(slack, "CENG", asked["ts"])
    shown = everything_sent(slack, "CENG")
    assert not any(secret in shown for secret in SECRET), shown
    assert not any(secret in json.dumps(fake_llm.requests[sent_to_model:]) for secret in SECRET)
    # Its thread's memory has nothing of it either: a follow-up there cannot bring it back.
    follow = slack.user_message(
        "CENG", "and who answers it at night?", user="UADA", thread_ts=asked["ts"], team=TEAM
    )
    env, _ = slack.send_event(
        {"type": "message", "channel_type": "channel", **{k: v for k, v in follow.items() if k != "type"}}
    )
    slack.wait_for_ack(env)
    slack.wait_for(
        lambda: (
            len(
                [m for m in slack.thread_messages("CENG", asked["ts"]) if m.get("bot_id") and m.get("blocks")]
            )
            >= 2
        ),
        what="the follow-up's answer",
    )
    assert not any(secret in everything_sent(slack, "CENG") for secret in SECRET)
    # The Home tab of the member who may not read it names nothing of it.
    slack.open_home("UBOB")
    view = slack.wait_for(lambda: slack.views.get("UBOB"), what="Bob's Home tab")
    assert not any(secret in json.dumps(view) for secret in SECRET)


def test_a_private_answer_cannot_be_shared_where_someone_may_not_read_it(
    start_bot: Callable[[], SlackBot], slack: AgentFakeSlack
) -> None:
    start_bot()
    reply = private_answer(slack, "what is the zebra bridge number for sev1?", user="UADA", channel="CENG")
    assert "Pager bridge" in str(reply["blocks"])  # Ada alone sees it, as she may
    share = button(reply["blocks"], "ragbot_share")
    env = slack.send_block_action(
        user="UADA", channel="CENG", message={"ts": "1.0"}, action_id="ragbot_share", value=share["value"]
    )
    slack.wait_for_ack(env)
    slack.wait_for(
        lambda: [r for r in slack.responses if "not everyone here may read" in r.get("text", "")],
        what="the refusal",
    )
    assert not any(secret in json.dumps(slack.messages.get("CENG", [])) for secret in SECRET)


def test_a_member_joining_narrows_the_channel_at_the_next_question(
    start_bot: Callable[[], SlackBot], slack: AgentFakeSlack
) -> None:
    start_bot()
    asked = mention(slack, "CSEC", "how do I unseal the vault with platypus shards?", user="UCY")
    assert "Vault unsealing" in str(answer_in(slack, "CSEC", asked["ts"])["blocks"])  # Ada, Cy
    env = slack.member_event("member_joined_channel", "CSEC", "UBOB")
    slack.wait_for_ack(env)
    asked = mention(slack, "CSEC", "how do I unseal the vault with platypus shards?", user="UCY")
    answer = answer_in(slack, "CSEC", asked["ts"])
    assert "Vault unsealing" not in str(answer["blocks"])
    env = slack.member_event("member_left_channel", "CSEC", "UBOB")
    slack.wait_for_ack(env)
    asked = mention(slack, "CSEC", "how do I unseal the vault with platypus shards?", user="UCY")
    assert "Vault unsealing" in str(answer_in(slack, "CSEC", asked["ts"])["blocks"])


def test_a_member_without_an_email_keeps_the_channel_to_public_pages(
    start_bot: Callable[[], SlackBot], slack: AgentFakeSlack
) -> None:
    start_bot()
    asked = mention(slack, "COPS", "what is the zebra bridge number for sev1?", user="UADA")
    answer_in(slack, "COPS", asked["ts"])
    assert not any(secret in everything_sent(slack, "COPS") for secret in SECRET)
    del slack.members["CSEC"]  # Slack cannot say who is there (channel_not_found): public pages only
    asked = mention(slack, "CSEC", "how do I unseal the vault with platypus shards?", user="UCY")
    assert "Vault unsealing" not in str(answer_in(slack, "CSEC", asked["ts"])["blocks"])


@pytest.fixture
def cloud_site() -> Iterator[Site]:
    with running("cloud") as seeded:
        yield seeded


def test_ask_an_expert_names_no_page_the_channel_may_not_read(
    tmp_path: Path, hash_bot: Callable[..., SlackBot], cloud_site: Site, slack: AgentFakeSlack
) -> None:
    site = cloud_site
    site.fake.pages[site.oncall].editor = "u-cy"  # Cloud shows Cy's e-mail: Slack finds UCY by it
    slack.users.update(
        {
            "UADA": {"team_id": TEAM, "profile": {"email": ADA}},
            "UBOB": {"team_id": TEAM, "profile": {"email": BOB}},
            "UCY": {"team_id": TEAM, "profile": {"email": CY}},
        }
    )
    slack.members["CENG"] = ["UADA", "UBOB", BOT_USER]
    hash_bot(
        code_repo_path=make_repo(tmp_path / "code", {"README.md": "# tools\n"}),
        confluence_url=site.fake.url,
        confluence_space=["ENG", "SEC"],
        confluence_username=USERNAME,
        confluence_password=PASSWORD,
        confluence_permissions="sync",
    )
    reply = private_answer(slack, "what is the zebra bridge number for sev1?", user="UADA", channel="CENG")
    assert "Pager bridge" in str(reply["blocks"])
    escalate = button(reply["blocks"], "ragbot_escalate")
    env = slack.send_block_action(
        user="UADA",
        channel="CENG",
        message={"ts": "1.0"},
        action_id="ragbot_escalate",
        value=escalate["value"],
    )
    slack.wait_for_ack(env)
    slack.wait_for(  # a note to Ada (nobody to ask), or a mention posted in the channel
        lambda: len(slack.responses) >= 2 or slack.messages.get("CENG"), what="the click's outcome"
    )
    posted = json.dumps(slack.messages.get("CENG", []))
    assert "Pager bridge" not in posted and "UCY" not in posted  # Bob is in CENG: no title, no editor


def test_readers_page_through_members_and_keep_large_channels_to_public_pages(slack: AgentFakeSlack) -> None:
    from slack_sdk import WebClient

    from bot.readers import Readers

    slack.users.update(
        {f"U{i:03d}": {"team_id": TEAM, "profile": {"email": f"p{i}@example.com"}} for i in range(450)}
    )
    slack.members["CBIG"] = [f"U{i:03d}" for i in range(450)]
    client = WebClient(token="xoxb-test-token", base_url=slack.api_url)
    small = Readers(client, member_limit=500, bot_user_id=BOT_USER).channel("CBIG")
    assert not small.public_only and len(small.emails) == 450  # three pages of conversations.members
    assert len([c for c in slack.calls_to("conversations.members") if c.args.get("channel") == "CBIG"]) == 3
    large = Readers(client, member_limit=449, bot_user_id=BOT_USER).channel("CBIG")
    assert large.public_only and large.emails == ()
