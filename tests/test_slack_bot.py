"""The real Bolt app over real sockets against a local fake Slack, a real index and a fake LLM."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot.app import SlackBot
from rag.answering.generation import REWRITE_PROMPT
from rag.config import Settings
from rag.indexing.locking import IngestLock
from rag.service import RagService
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, FakeSlack

pytestmark = pytest.mark.slow

WEB_URL = "https://git.example.com/org/shop"
REPO = {
    "shop/payments.py": (
        "def refund_payment(order_id, amount):\n"
        '    """Refund a captured payment through the payment gateway."""\n'
        "    gateway = PaymentGateway.from_config()\n"
        "    return gateway.refund(order_id, amount)\n"
    ),
    "shop/settings.py": (
        "# Payment gateway configuration: the refund limit lives here.\n"
        "# <!here> ping the on-call channel before changing it\n"
        "REFUND_LIMIT_EUR = 500\n"
        "GATEWAY_URL = 'https://pay.example.com'\n"
    ),
    "README.md": "# Shop\n\nThe shop service sells things. Deploy with `make deploy`.\n",
}
BROADCASTS = ("<!channel", "<!here", "<!everyone", "<!subteam", "@channel", "@here", "@everyone")


@pytest.fixture
def settings(make_settings: Any, git_repo: Any, fake_llm: FakeLLM, slack: FakeSlack) -> Settings:
    repo = git_repo(REPO)
    return make_settings(
        code_repo_path=repo,
        code_repo_web_url=WEB_URL,
        litellm_model="openai/fake",
        litellm_api_base=fake_llm.url,
        litellm_api_key="x",
        slack_bot_token="xoxb-test-token",
        slack_app_token="xapp-test-token",
        slack_api_url=slack.api_url,
        ragingest_allowed_users=["UADMIN"],
    )


@pytest.fixture
def service(settings: Settings, embedders: Any) -> RagService:
    service = RagService(settings, embedders=embedders)
    (report,) = service.ingest(["code"])
    assert report.ok and report.documents_added == 3
    return service


@pytest.fixture
def bot(settings: Settings, service: RagService, slack: FakeSlack) -> Iterator[SlackBot]:
    bot = SlackBot(settings, service, update_interval=0.05, ping_interval=1.0)
    bot.start()
    yield bot
    stop(bot, slack)


def stop(bot: SlackBot, slack: FakeSlack) -> None:
    # The builtin client's close waits for its blocking recv (3 s timeout) unless the peer hangs up.
    slack.hang_up()
    bot.stop()


def answers_in(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's messages in a thread that reached their final Block Kit form."""
    return [m for m in slack.thread_messages(channel, thread_ts) if m.get("bot_id") and m.get("blocks")]


def wait_answer(slack: FakeSlack, channel: str, thread_ts: str, count: int = 1) -> list[dict[str, Any]]:
    return slack.wait_for(
        lambda: (a := answers_in(slack, channel, thread_ts)) and len(a) >= count and a,
        what=f"{count} answer(s) in {channel}/{thread_ts}",
    )


def block_texts(message: dict[str, Any]) -> str:
    out = []
    for block in message["blocks"]:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out.extend(e["text"] for e in block["elements"])
    return "\n".join(out)


def mention(slack: FakeSlack, channel: str, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
    """A person mentions the bot: Slack delivers app_mention AND message for the same ts."""
    msg = slack.user_message(channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts)
    event = {k: v for k, v in msg.items() if k != "type"}
    env1, _ = slack.send_event({"type": "app_mention", **event})
    env2, _ = slack.send_event({"type": "message", "channel_type": "channel", **event})
    slack.wait_for_ack(env1)
    slack.wait_for_ack(env2)
    return msg


def wait_log(caplog: pytest.LogCaptureFixture, fragment: str, count: int = 1) -> None:
    def seen() -> bool:
        return sum(fragment in r.getMessage() for r in caplog.records) >= count

    FakeSlack().wait_for(seen, what=f"log line {fragment!r}")


def test_mention_gets_one_threaded_answer_with_linked_sources(
    slack: FakeSlack, bot: SlackBot, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")

    (answer,) = wait_answer(slack, "CGENERAL", msg["ts"])
    text = block_texts(answer)
    assert "Answer to: How is a payment refunded?" in text
    assert f"<{WEB_URL}/blob/" in text and "|shop/payments.py:1-" in text
    (feedback,) = next(b for b in answer["blocks"] if b["type"] == "context_actions")["elements"]
    assert feedback["type"] == "feedback_buttons" and feedback["action_id"] == "ragbot_feedback"
    assert feedback["negative_button"]["value"].startswith("down:")
    posts = [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]
    assert len(posts) == 1 and posts[0].args["thread_ts"] == msg["ts"]
    assert posts[0].args["unfurl_links"] is False and posts[0].args["unfurl_media"] is False
    assert slack.calls_to("reactions.add")[0].args["timestamp"] == msg["ts"]
    slack.wait_for(lambda: slack.calls_to("reactions.remove"), what="the working reaction removed")
    assert all(c.token == "xoxb-test-token" for c in slack.calls_to("chat.postMessage"))
    assert len(fake_llm.requests) == 1 and fake_llm.requests[0]["body"]["stream"] is True


def test_redelivered_event_is_answered_once(
    slack: FakeSlack, bot: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    msg = slack.user_message("CGENERAL", f"<@{BOT_USER}> where is the refund limit?")
    event = {"type": "app_mention", **{k: v for k, v in msg.items() if k != "type"}}
    _, event_id = slack.send_event(event)
    wait_answer(slack, "CGENERAL", msg["ts"])
    retry, _ = slack.send_event(event, event_id=event_id, retry_attempt=1)
    slack.wait_for_ack(retry)
    wait_log(caplog, "duplicate delivery")
    assert len(answers_in(slack, "CGENERAL", msg["ts"])) == 1
    assert len([c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]) == 1


def test_follow_up_in_thread_without_mention_uses_thread_memory(
    slack: FakeSlack, bot: SlackBot, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", first["ts"])

    follow = slack.user_message("CGENERAL", "and where is it configured?", thread_ts=first["ts"])
    slack.send_event({"channel_type": "channel", **follow})
    wait_answer(slack, "CGENERAL", first["ts"], count=2)

    messages = fake_llm.requests[-1]["body"]["messages"]
    assert messages[1] == {"role": "user", "content": "How is a payment refunded?"}
    assert (
        messages[2]["role"] == "assistant"
        and "Answer to: How is a payment refunded?" in messages[2]["content"]
    )
    assert "and where is it configured?" in messages[-1]["content"]
    # The history-aware retrieval query carries the subject: the refund code is among the sources.
    assert "shop/payments.py" in messages[-1]["content"]

    # A mention inside that thread arrives twice (app_mention + message): answered once.
    again = mention(slack, "CGENERAL", "what is the refund limit?", thread_ts=first["ts"])
    wait_answer(slack, "CGENERAL", first["ts"], count=3)
    wait_log(caplog, "duplicate delivery")
    assert len(answers_in(slack, "CGENERAL", first["ts"])) == 3
    # Three answers, and one follow-up rewrite before each of the two answers in the thread.
    rewrites = [r for r in fake_llm.requests if r["body"]["messages"][0]["content"] == REWRITE_PROMPT]
    assert (len(fake_llm.requests), len(rewrites)) == (5, 2)
    assert again["ts"] != first["ts"]


def test_thread_without_the_bot_and_top_level_messages_are_ignored(
    slack: FakeSlack, bot: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    top = slack.user_message("CGENERAL", "lunch anyone?")
    slack.wait_for_ack(slack.send_event({"channel_type": "channel", **top})[0])
    reply = slack.user_message("CGENERAL", "sure", thread_ts=top["ts"])
    slack.wait_for_ack(slack.send_event({"channel_type": "channel", **reply})[0])
    slack.wait_for(lambda: slack.calls_to("conversations.replies"), what="the thread check")
    # A DM afterwards is answered, so the events before it have been handled.
    dm = slack.user_message("DALICE", "How is a payment refunded?")
    slack.send_event({"channel_type": "im", **dm})
    slack.wait_for(lambda: [m for m in slack.messages["DALICE"] if m.get("blocks")], what="the DM answer")
    assert not [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]


def test_bot_ignores_its_own_and_other_bots_messages(slack: FakeSlack, bot: SlackBot) -> None:
    own = {
        "type": "message",
        "channel": "DSELF",
        "channel_type": "im",
        "user": BOT_USER,
        "text": "hi",
        "ts": "1.1",
    }
    other = {**own, "user": "UOTHER", "bot_id": "BOTHER", "ts": "1.2"}
    edit = {**own, "user": "UALICE", "subtype": "message_changed", "ts": "1.3"}
    join = {**own, "user": "UALICE", "subtype": "channel_join", "ts": "1.4"}
    for event in (own, other, edit, join):
        slack.wait_for_ack(slack.send_event(event)[0])
    dm = slack.user_message("DALICE", "How is a payment refunded?")
    slack.send_event({"channel_type": "im", **dm})
    slack.wait_for(lambda: [m for m in slack.messages["DALICE"] if m.get("blocks")], what="the DM answer")
    assert not [c for c in slack.calls if c.args.get("channel") == "DSELF"]


def test_no_broadcast_mention_ever_leaves_the_bot(slack: FakeSlack, bot: SlackBot, fake_llm: FakeLLM) -> None:
    fake_llm.reply = lambda _messages: (
        "Hey <!channel> and <!here|here> and <!everyone>, ask <!subteam^S0ENG|@eng> or @here: "
        "```\n<!channel>\n``` [1]"
    )
    msg = mention(slack, "CGENERAL", "What should I do about <!channel> refunds?")
    (answer,) = wait_answer(slack, "CGENERAL", msg["ts"])
    assert "Hey @\u2060channel" in block_texts(answer)
    sent = slack.outgoing_texts()
    assert sent
    for text in sent:
        for bad in BROADCASTS:
            assert bad not in text, (bad, text)


def test_llm_failure_still_answers_with_sources_and_a_note(
    slack: FakeSlack, bot: SlackBot, fake_llm: FakeLLM
) -> None:
    fake_llm.status = 500
    msg = mention(slack, "CGENERAL", "Where is the refund limit configured?")
    (answer,) = wait_answer(slack, "CGENERAL", msg["ts"])
    text = block_texts(answer)
    assert "language model could not answer" in text
    assert "REFUND_LIMIT_EUR" in text  # the extractive answer quotes the passage
    assert "|shop/settings.py:1-" in text
    for bad in BROADCASTS:  # the indexed file says <!here>; the quote must not ping
        assert all(bad not in t for t in slack.outgoing_texts())


def test_failure_is_reported_with_an_error_id_that_is_in_the_log(
    slack: FakeSlack, bot: SlackBot, service: RagService, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store exploded")

    service.retriever.search = broken  # type: ignore[method-assign]
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    apology = slack.wait_for(
        lambda: [m for m in slack.thread_messages("CGENERAL", msg["ts"]) if "error id" in m["text"]],
        what="the apology",
    )[0]
    error_id = apology["text"].split("`")[1]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_reconnects_after_disconnect_and_a_dropped_socket(slack: FakeSlack, bot: SlackBot) -> None:
    assert slack.connections_opened == 1
    slack.request_disconnect()
    slack.wait_for(lambda: slack.connections_opened >= 2, what="a new connection after disconnect")
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", msg["ts"])

    slack.drop_socket()
    slack.wait_for(lambda: slack.connections_opened >= 3, what="a new connection after a dropped socket")
    msg = mention(slack, "CGENERAL", "Where is the refund limit configured?")
    wait_answer(slack, "CGENERAL", msg["ts"])


def test_memory_survives_a_restart_even_without_the_state_file(
    slack: FakeSlack, settings: Settings, service: RagService, fake_llm: FakeLLM
) -> None:
    bot = SlackBot(settings, service)
    bot.start()
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", first["ts"])
    stop(bot, slack)
    for f in (settings.ragbot_data_dir / "slack").glob("slack.sqlite3*"):
        f.unlink()

    bot = SlackBot(settings, service)
    bot.start()
    try:
        follow = slack.user_message("CGENERAL", "and where is it configured?", thread_ts=first["ts"])
        slack.send_event({"channel_type": "channel", **follow})
        wait_answer(slack, "CGENERAL", first["ts"], count=2)
    finally:
        stop(bot, slack)
    assert slack.calls_to("conversations.replies")
    messages = fake_llm.requests[-1]["body"]["messages"]
    assert messages[1] == {"role": "user", "content": "How is a payment refunded?"}
    assert messages[2]["role"] == "assistant"


def test_rate_limited_web_api_calls_are_retried(slack: FakeSlack, bot: SlackBot) -> None:
    slack.fail_next["chat.postMessage"] = 429
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    wait_answer(slack, "CGENERAL", msg["ts"])
    assert len([c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CGENERAL"]) == 2


def test_feedback_click_is_recorded_with_question_and_sources(
    slack: FakeSlack, bot: SlackBot, settings: Settings
) -> None:
    msg = mention(slack, "CGENERAL", "How is a payment refunded?")
    (answer,) = wait_answer(slack, "CGENERAL", msg["ts"])
    (feedback,) = next(b for b in answer["blocks"] if b["type"] == "context_actions")["elements"]
    env = slack.send_block_action(
        user="UBOB",
        channel="CGENERAL",
        message=answer,
        action_id=feedback["action_id"],
        value=feedback["negative_button"]["value"],
    )
    slack.wait_for_ack(env)
    path = settings.ragbot_data_dir / "slack" / "feedback.jsonl"
    slack.wait_for(lambda: path.exists() and path.read_text().strip(), what="feedback.jsonl")
    entry = json.loads(path.read_text().splitlines()[0])
    assert entry["vote"] == "down" and entry["user"] == "UBOB"
    assert entry["question"] == "How is a payment refunded?"
    assert "Answer to:" in entry["answer"]
    assert any(s["path"] == "shop/payments.py" for s in entry["sources"])
    slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"), what="the thank-you")


# ----- /ragingest -------------------------------------------------------------------------------


def responses_to(slack: FakeSlack, path: str) -> list[dict[str, Any]]:
    return [r for r in slack.responses if r["path"] == path]


def test_ragingest_acks_at_once_and_reports_counts_to_an_allowed_user(
    slack: FakeSlack, bot: SlackBot
) -> None:
    env, path = slack.send_slash_command("code", user="UADMIN")
    ack = slack.wait_for_ack(env)
    assert "working on it" in ack["payload"]["text"]
    (report,) = slack.wait_for(lambda: responses_to(slack, path), what="the ingest report")
    assert slack.ack_times[env] < report["at"]  # acknowledged before the ingest finished
    assert "*code*: ok — 3 seen, 0 added, 0 updated, 0 deleted, 3 unchanged" in report["text"]
    assert report["response_type"] == "ephemeral"


def test_ragingest_refuses_a_user_who_is_not_allowed(
    slack: FakeSlack, bot: SlackBot, service: RagService
) -> None:
    runs_before = len(service.ingestor.state.last_runs(limit=100))
    env, path = slack.send_slash_command("all", user="UBOB")
    slack.wait_for_ack(env)
    (reply,) = slack.wait_for(lambda: responses_to(slack, path), what="the refusal")
    assert "only the users listed" in reply["text"] and reply["response_type"] == "ephemeral"
    assert len(service.ingestor.state.last_runs(limit=100)) == runs_before


def test_ragingest_without_allow_list_asks_slack_who_is_admin(
    slack: FakeSlack, settings: Settings, service: RagService
) -> None:
    settings.ragingest_allowed_users = []
    slack.users = {"UOWNER": {"is_admin": False, "is_owner": True}, "UBOB": {"is_admin": False}}
    bot = SlackBot(settings, service)
    bot.start()
    try:
        _, refused = slack.send_slash_command("code", user="UBOB")
        _, allowed = slack.send_slash_command("code", user="UOWNER")
        (no,) = slack.wait_for(lambda: responses_to(slack, refused), what="the refusal")
        (yes,) = slack.wait_for(lambda: responses_to(slack, allowed), what="the report")
    finally:
        stop(bot, slack)
    assert "only the users listed" in no["text"]
    assert "Ingest finished" in yes["text"]
    assert {c.args["user"] for c in slack.calls_to("users.info")} == {"UBOB", "UOWNER"}


def test_ragingest_while_an_ingest_runs_says_so(slack: FakeSlack, bot: SlackBot, settings: Settings) -> None:
    with IngestLock(settings.ragbot_data_dir, holder="scheduler"):
        env, path = slack.send_slash_command("all", user="UADMIN")
        slack.wait_for_ack(env)
        (reply,) = slack.wait_for(lambda: responses_to(slack, path), what="the busy reply")
    assert "an ingest is already running" in reply["text"] and "scheduler" in reply["text"]


def test_ragingest_status_and_usage(slack: FakeSlack, bot: SlackBot) -> None:
    env, path = slack.send_slash_command("status", user="UBOB")
    slack.wait_for_ack(env)
    (reply,) = slack.wait_for(lambda: responses_to(slack, path), what="the status")
    assert "*code* (code, " in reply["text"] and "): 3 documents" in reply["text"]
    assert "last run" in reply["text"]

    # An unknown target: an ephemeral reply naming the configured sources; nothing is started.
    env, path = slack.send_slash_command("everything", user="UADMIN")
    text = slack.wait_for_ack(env)["payload"]["text"]
    assert text.startswith("unknown source 'everything'; configured sources: code")
    assert "Usage: `/ragingest" in text and "Configured sources: code." in text


def test_invalid_tokens_fail_before_connecting(make_settings: Any) -> None:
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        SlackBot(make_settings(slack_bot_token="xoxb-1", slack_app_token="xoxb-2"), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is not set"):
        SlackBot(make_settings(slack_app_token="xapp-1"), None)  # type: ignore[arg-type]


def test_long_questions_are_cut_with_a_note_and_fast_askers_are_slowed_down(
    slack: FakeSlack, settings: Settings, service: RagService, fake_llm: FakeLLM
) -> None:
    from bot.safety import RateLimiter

    bot = SlackBot(settings, service, limiter=RateLimiter(limit=1, window=600))
    bot.start()
    try:
        long = mention(slack, "CGENERAL", "How is a payment refunded? " + "please " * 600)
        (answer,) = wait_answer(slack, "CGENERAL", long["ts"])
        second = mention(slack, "CGENERAL", "And the refund limit?")
        note = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"), what="the rate-limit note")[0]
    finally:
        stop(bot, slack)
    assert "used only its first 2,000 characters" in block_texts(answer)
    assert len(fake_llm.requests[0]["body"]["messages"][-1]["content"].rsplit("Question:", 1)[1]) <= 2_001
    assert note.args["user"] == "UALICE" and note.args["thread_ts"] == second["ts"]
    assert "faster than I can look things up" in note.args["text"]
    assert not answers_in(slack, "CGENERAL", second["ts"])
