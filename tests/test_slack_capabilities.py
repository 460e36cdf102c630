"""What a Slack refusal switches off (only "not available" errors, for the process), and that no
rate limit or slow call holds up the model's token callback or a Bolt listener thread."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.slack_response import SlackResponse

from bot.app import SlackBot
from bot.capabilities import Capabilities, retry_after, unavailable, without_retries
from bot.streaming import NativeDelivery
from tests.fakes.slack_server import BOT_USER, TEAM, FakeSlack

REPO = {
    "shop/payments.py": "def refund_payment(order_id, amount):\n"
    "    '''Refund a captured payment through the payment gateway.'''\n"
    "    return gateway.refund(order_id, amount)\n",
}


def api_error(error: str, status: int = 200, headers: dict[str, str] | None = None) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/chat.startStream",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError(f"The request to the Slack API failed: {error}", response)


@pytest.mark.parametrize(
    "error", ["not_allowed_token_type", "missing_scope", "method_deprecated", "feature_not_enabled"]
)
def test_a_feature_the_app_lacks_is_switched_off_for_the_process(error: str) -> None:
    caps = Capabilities()
    assert caps.refuse("streaming", api_error(error)) is True
    assert caps.streaming is False and caps.status is True


@pytest.mark.parametrize(
    "failure",
    [
        api_error("ratelimited", 429, {"Retry-After": "3"}),
        api_error("not_in_channel"),
        api_error("internal_error", 500),
        api_error("message_not_in_streaming_state"),
        ConnectionResetError("connection reset by peer"),
        TimeoutError("timed out"),
    ],
    ids=["429", "not_in_channel", "500", "not_streaming", "reset", "timeout"],
)
def test_a_transient_failure_switches_nothing_off(failure: BaseException) -> None:
    caps = Capabilities()
    assert caps.refuse("streaming", failure) is False
    assert caps.refuse("status", failure) is False
    assert caps.streaming is True and caps.status is True
    assert not unavailable(failure)


def test_retry_after_is_read_from_a_429_only() -> None:
    assert retry_after(api_error("ratelimited", 429, {"retry-after": "7"})) == 7.0
    assert retry_after(api_error("ratelimited", 429)) == 1.0
    assert retry_after(api_error("not_in_channel")) is None
    assert retry_after(ConnectionResetError()) is None


# ----- over the real socket -------------------------------------------------------------------


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


def final(slack: FakeSlack, channel: str, thread_ts: str) -> dict[str, Any]:
    def done() -> list[dict[str, Any]]:
        return [
            m
            for m in slack.thread_messages(channel, thread_ts)
            if m.get("bot_id") and m.get("blocks") and not m.get("streaming")
        ]

    return slack.wait_for(lambda: (d := done()) and d[0], what=f"the answer in {channel}/{thread_ts}")


@pytest.mark.slow
def test_streaming_and_status_survive_a_429_and_switch_off_only_when_slack_says_unavailable(
    start_bot: Callable[[], SlackBot], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack.streaming = slack.status = True
    bot = start_bot()
    slack.fail_next["chat.startStream"] = 429
    slack.fail_next["assistant.threads.setStatus"] = 429
    first = mention(slack, "CGENERAL", "How is a payment refunded?")
    answer = final(slack, "CGENERAL", first["ts"])
    assert answer.get("appends") is not None  # a native stream after all (the 429 was waited out later)
    caps = bot._handlers.caps  # type: ignore[union-attr]
    assert caps.streaming and caps.status
    assert not slack.calls_to("reactions.add")

    # A refusal that is not about the feature (the channel is archived, say): this answer falls
    # back to chat.update, the next one streams again.
    slack.streaming, slack.stream_refusal = False, "is_archived"
    second = mention(slack, "CGENERAL", "Where is the gateway?")
    final(slack, "CGENERAL", second["ts"])
    assert caps.streaming

    # Slack says the app may not stream at all: switched off, not asked again.
    slack.stream_refusal = "not_allowed_token_type"
    third = mention(slack, "CGENERAL", "What does refund_payment return?")
    final(slack, "CGENERAL", third["ts"])
    starts = len(slack.calls_to("chat.startStream"))
    fourth = mention(slack, "CGENERAL", "And the amount?")
    final(slack, "CGENERAL", fourth["ts"])
    assert not caps.streaming and len(slack.calls_to("chat.startStream")) == starts
    assert sum("refused streaming" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_a_rate_limited_append_is_not_retried_inside_the_token_callback(slack: FakeSlack) -> None:
    slack.streaming = True
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client.retry_handlers = [RateLimitErrorRetryHandler(max_retry_count=3)]
    delivery = NativeDelivery(
        client,
        Capabilities(),
        channel="CGENERAL",
        thread="1.0",
        user="UALICE",
        team=TEAM,
        is_dm=False,
        interval=0.0,
        quick=without_retries(client),
    )
    delivery.on_token("Refunds go ")  # starts the stream
    slack.fail_next["chat.appendStream"] = 429  # Retry-After: 1
    delivery.on_token("through the ")
    delivery.on_token("gateway.")  # held back (Retry-After), not slept on
    assert len(slack.calls_to("chat.appendStream")) == 1  # the 429 itself: no retry in the callback
    from rag.models import Answer

    answer = Answer("Refunds go through the gateway.", "llm", [])
    delivery.finish(answer, [{"type": "divider"}], answer.text)
    (message,) = slack.streamed_messages("CGENERAL")
    assert message["text"] == "Refunds go through the gateway."  # nothing lost, nothing twice
    assert not message["streaming"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts and never answers: every Web API call to it hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    host, port = server.getsockname()
    yield f"http://{host}:{port}/api/"
    server.close()


def test_listeners_never_wait_on_the_web_api(silent_server: str, make_settings: Any, tmp_path: Path) -> None:
    """A thread follow-up needs conversations.replies, a mention users.info and the status: all
    of it happens in the intake pool, so Bolt's listener returns at once even when Slack hangs."""
    from bot.access import Access, Identity
    from bot.handlers import Handlers
    from bot.memory import AnswerLog, SlackState, ThreadMemory
    from rag.service import RagService

    settings = make_settings(slack_api_url=silent_server)
    client = WebClient(token="xoxb-test", base_url=silent_server, timeout=30)
    state = SlackState(tmp_path)
    handlers = Handlers(
        settings=settings,
        service=RagService(settings),
        client=client,
        bot_user_id=BOT_USER,
        bot_id="BBOT",
        memory=ThreadMemory(state),
        answers=AnswerLog(state),
        access=Access(settings=settings, client=client, identity=Identity("TOTHER", None)),
    )
    event = {"type": "message", "channel": "CGENERAL", "channel_type": "channel", "user": "UALICE"}
    follow_up = {**event, "ts": "2.0", "thread_ts": "1.0", "text": "and then?"}
    top = {**event, "ts": "3.0", "text": f"<@{BOT_USER}> where is the gateway?", "team": "TELSEWHERE"}
    returned = threading.Event()

    def listen() -> None:
        handlers.on_message(follow_up, {"event_id": "Ev1"})
        handlers.on_mention({**top, "type": "app_mention"}, {"event_id": "Ev2"})
        returned.set()

    threading.Thread(target=listen, daemon=True).start()
    try:
        assert returned.wait(10), "a listener waited on the Web API"
    finally:
        handlers.shutdown()


def test_loading_messages_keep_to_slacks_limits() -> None:
    from bot.status import loading_messages

    lines = loading_messages(["a-source-name-far-longer-than-slack-allows-in-one-line", "backend"])
    assert len(lines) <= 10 and all(1 <= len(line) <= 50 for line in lines)
    assert "Searching backend…" in lines
