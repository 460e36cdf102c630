"""Faults end to end (issue 7 §3): Slack reconnects while answers are in flight, the model
times out or fails, Confluence answers 429 to everything — through the real components."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.app import SlackBot
from rag.config import Settings
from rag.service import RagService
from rag.sources.confluence import ConfluenceSource, RetryPolicy
from tests.confluence_samples import seed_engineering_space
from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, FakeSlack
from tests.reliability import record
from tests.test_slack_bot import REPO, WEB_URL, answers_in, block_texts, mention, stop, wait_answer

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture
def settings(make_settings: Any, git_repo: Any, fake_llm: FakeLLM, slack: FakeSlack) -> Settings:
    settings: Settings = make_settings(
        code_repo_path=git_repo(REPO),
        code_repo_web_url=WEB_URL,
        litellm_model="openai/fake",
        litellm_api_base=fake_llm.url,
        litellm_api_key="x",
        # Nine answers share two cores in CI: a 0.8 s reply must not brush against the limit.
        llm_timeout_seconds=3.0,
        slack_bot_token="xoxb-test-token",
        slack_app_token="xapp-test-token",
        slack_api_url=slack.api_url,
    )
    return settings


@pytest.fixture
def bot(settings: Settings, embedders: Any, slack: FakeSlack) -> Iterator[SlackBot]:
    service = RagService(settings, embedders=embedders)
    (report,) = service.ingest(["code"])
    assert report.ok
    bot = SlackBot(settings, service, update_interval=0.05, ping_interval=1.0)
    bot.start()
    yield bot
    stop(bot, slack)


class Delivery:
    """Sends mentions like Slack: an envelope that is never acknowledged (its socket went away)
    is delivered again, with the same event id and retry_attempt=1, on the current socket."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.sent: dict[str, tuple[dict[str, Any], str]] = {}  # envelope → (event, event_id)
        self.redelivered = 0

    def send(self, event: dict[str, Any], **kw: Any) -> None:
        for _ in range(50):
            try:
                envelope, event_id = self.slack.send_event(event, **kw)
            except Exception:  # the socket closed under us: Slack would send it on the next one
                time.sleep(0.1)
                continue
            self.sent[envelope] = (event, event_id)
            return
        raise AssertionError("no socket to deliver on")

    def mention(self, channel: str, text: str) -> dict[str, Any]:
        user = f"U{len(self.sent):03d}"  # a different person each time: no rate limit involved
        msg = self.slack.user_message(channel, f"<@{BOT_USER}> {text}", user=user)
        event = {k: v for k, v in msg.items() if k != "type"}
        self.send({"type": "app_mention", **event})
        self.send({"type": "message", "channel_type": "channel", **event})
        return msg

    def redeliver_unacked(self, grace: float = 3.0) -> None:
        """After Slack's 3 s: every envelope without an ack goes out again."""
        time.sleep(grace)
        for envelope, (event, event_id) in list(self.sent.items()):
            if envelope not in self.slack.acks:
                del self.sent[envelope]
                self.redelivered += 1
                self.send(event, event_id=event_id, retry_attempt=1)


def test_disconnect_and_dropped_socket_while_answers_are_in_flight(
    slack: FakeSlack, bot: SlackBot, fake_llm: FakeLLM
) -> None:
    fake_llm.delay = 0.8  # answers are still being written while the connection changes
    delivery = Delivery(slack)
    first = slack.current_socket()
    asked = [delivery.mention("CGENERAL", f"How is a payment refunded? (#{i})") for i in range(3)]
    slack.request_disconnect()
    asked += [delivery.mention("CGENERAL", f"Where is the refund limit configured? (#{i})") for i in range(2)]
    # The app opens the new connection before it closes the old one.
    second = slack.wait_for(
        lambda: (s := slack.open_sockets()) and first not in s and s[-1],
        what="the connection after disconnect",
    )
    asked += [delivery.mention("COPS", f"How do I deploy the shop? (#{i})") for i in range(2)]
    slack.drop_socket()
    started = time.monotonic()
    asked += [delivery.mention("COPS", f"What is the gateway URL? (#{i})") for i in range(2)]
    slack.wait_for(
        lambda: (s := slack.open_sockets()) and second not in s,
        what="a new connection after a dropped socket",
    )
    reconnect_s = time.monotonic() - started
    delivery.redeliver_unacked()

    for msg in asked:
        wait_answer(slack, msg["channel"], msg["ts"])
    time.sleep(1.0)  # a duplicate answer would arrive now
    for msg in asked:
        answers = answers_in(slack, msg["channel"], msg["ts"])
        assert len(answers) == 1, msg["text"]
        assert msg["text"].split("> ", 1)[1] in block_texts(answers[0])
    assert len(slack.calls_to("chat.postMessage")) == len(asked)
    assert len(fake_llm.requests) == len(asked)
    assert not slack.calls_to("chat.postEphemeral")
    record(
        "Faults: Slack `disconnect` and a dropped websocket while 9 answers are in flight",
        "reconnects both times; un-acked envelopes re-delivered like Slack does; every question "
        "answered exactly once (no lost, no duplicate answers or placeholders)",
        questions=len(asked),
        connections=slack.connections_opened,
        redelivered_envelopes=delivery.redelivered,
        reconnect_after_drop_s=round(reconnect_s, 1),
    )


@pytest.mark.parametrize("fault", ["timeout", "http-500"])
def test_llm_timeout_or_500_gives_an_extractive_answer_with_sources(
    fault: str, slack: FakeSlack, bot: SlackBot, settings: Settings, fake_llm: FakeLLM
) -> None:
    if fault == "timeout":
        fake_llm.delay = 8.0  # far beyond LITELLM_TIMEOUT (3 s here)
    else:
        fake_llm.status = 500
    started = time.monotonic()
    msg = mention(slack, "CGENERAL", "Where is the refund limit configured?")
    (answer,) = wait_answer(slack, "CGENERAL", msg["ts"])
    took = time.monotonic() - started
    text = block_texts(answer)
    assert "language model could not answer" in text
    assert "REFUND_LIMIT_EUR" in text and "|shop/settings.py:1-" in text
    assert fake_llm.requests  # the model was asked
    if fault == "timeout":
        # Answered without waiting for the model: the fake would only reply after 8 s.
        assert took < fake_llm.delay
    record(
        f"Faults: LLM {'timeout (reply after 8 s, LITELLM_TIMEOUT=3 s)' if fault == 'timeout' else 'HTTP 500'}",
        "extractive answer quoting the passage, with linked sources and a note, in Slack",
        llm_timeout_s=settings.llm_timeout_seconds,
        answer_after_s=round(took, 2),
    )


def test_confluence_429_storm_is_a_bounded_wait_then_a_reported_failure(
    make_settings: Any, embedders: Any
) -> None:
    fake = FakeConfluence().start()
    try:
        space = seed_engineering_space(fake, notes=3)
        settings: Settings = make_settings(
            confluence_url=fake.url,
            confluence_space=["ENG"],
            confluence_username=USERNAME,
            confluence_password=PASSWORD,
        )
        service = RagService(settings, embedders=embedders)
        [first] = service.ingest(["confluence"])
        assert first.ok
        embedder = service.embedders.get(settings.embedding_model_for("confluence"))
        col = service.store.collection("confluence", embedder.key, create=False)
        assert col is not None
        before = col.document_states()
        fake.edit_page(space.deploy, body="<p>changed while Confluence throttles</p>")

        # Every request from now on: 429 with Retry-After: 1, real sleeps, a 4 s budget per request.
        fake.inject("/rest/api", status=429, times=1_000_000, retry_after="1")
        policy = RetryPolicy(max_attempts=100, max_seconds=4.0, retry_after_cap=30.0)
        service.ingestor.source_factory = lambda s, name: ConfluenceSource.from_settings(s, retry=policy)
        since = len(fake.requests)
        started = time.monotonic()
        [report] = service.ingest(["confluence"])
        took = time.monotonic() - started
    finally:
        fake.stop()

    assert not report.ok
    assert report.error is not None and "429" in report.error
    assert took < 60  # bounded: a hang would be stopped by the retry budget long before this
    throttled = [r for r in fake.requests[since:] if r.status == 429]
    assert throttled and len(throttled) == len(fake.requests[since:])
    assert col.document_states() == before  # nothing deleted or half-updated
    assert service.status()["sources"]["confluence"]["last_run"]["ok"] is False
    record(
        "Faults: Confluence 429 storm (every request 429, Retry-After: 1)",
        "Retry-After honoured, total wait bounded by the retry budget (4 s per request here), run "
        "reported failed, index untouched",
        retry_budget_s=policy.max_seconds,
        requests=len(throttled),
        failed_after_s=round(took, 1),
    )


def test_chroma_server_down_while_the_bot_runs_says_the_index_is_unavailable(
    tmp_path: Any, slack: FakeSlack, make_settings: Any, git_repo: Any, fake_llm: FakeLLM, embedders: Any
) -> None:
    from tests.servers import ChromaServer

    chroma = ChromaServer(tmp_path / "chroma-server").start()
    try:
        settings: Settings = make_settings(
            chroma_host="127.0.0.1",
            chroma_port=chroma.port,
            code_repo_path=git_repo(REPO),
            code_repo_web_url=WEB_URL,
            litellm_model="openai/fake",
            litellm_api_base=fake_llm.url,
            litellm_api_key="x",
            slack_bot_token="xoxb-test-token",
            slack_app_token="xapp-test-token",
            slack_api_url=slack.api_url,
        )
        service = RagService(settings, embedders=embedders)
        assert service.ingest(["code"])[0].ok
        bot = SlackBot(settings, service, update_interval=0.05, ping_interval=1.0)
        bot.start()
        try:
            chroma.stop()
            down = mention(slack, "CGENERAL", "Where is the refund limit configured?")
            reply = slack.wait_for(
                lambda: (
                    [m for m in slack.thread_messages("CGENERAL", down["ts"]) if m.get("bot_id")]
                    and "Looking through" not in slack.thread_messages("CGENERAL", down["ts"])[-1]["text"]
                    and slack.thread_messages("CGENERAL", down["ts"])[-1]
                ),
                what="the reply while the index is down",
            )
            assert "index is unavailable" in reply["text"], reply
            chroma.start()
            up = mention(slack, "CGENERAL", "Where is the refund limit configured?")
            (answer,) = wait_answer(slack, "CGENERAL", up["ts"])
            assert "Answer to: Where is the refund limit configured?" in block_texts(answer)
            assert "|shop/settings.py:1-" in block_texts(answer)
        finally:
            stop(bot, slack)
    finally:
        chroma.stop()
    record(
        "Faults: Chroma server stopped while the bot runs, then started again",
        "the bot stays up and replies that the index is unavailable (no crash, no silence); after the "
        "restart the next question is answered with sources",
    )
