"""Operations: Prometheus metrics over a real socket, the Slack liveness check, feedback review, retention.

The Slack scenarios run the real Bolt app against the local fake Slack and fake LLM with a
real index; `/metrics` is scraped with an HTTP client and the health check runs as the
container runs it, `python -m rag.healthcheck run`, in a subprocess.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import SlackBot
from bot.feedback import CSV_COLUMNS, feedback_path, parse_duration, purge_slack_data, read_votes
from bot.memory import AnswerLog, SlackState, ThreadMemory
from rag.config import Settings
from rag.models import Answer, Hit
from rag.ops.liveness import STALE_AFTER_SECONDS, problem, read_heartbeat
from rag.ops.metrics import LLM_ERROR_KINDS, Metrics, llm_error_kind, serve_metrics
from rag.ops.retention import purge
from rag.service import RagService
from tests.conftest import CONTRACT_VARS
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, FakeSlack
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
REPO = {
    "shop/payments.py": (
        "def refund_payment(order_id, amount):\n"
        '    """Refund a captured payment through the payment gateway."""\n'
        "    return PaymentGateway.from_config().refund(order_id, amount)\n"
    ),
    "README.md": "# Shop\n\nThe shop service sells things. Deploy with `make deploy`.\n",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **kwargs: Any) -> Samples:
    response = httpx.get(url, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(
    before: Samples, after: Samples, prefix: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples under `prefix` whose value changed, with the change."""
    keys = {k for k in (*before, *after) if k[0].startswith(prefix)}
    deltas = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: d for k, d in deltas.items() if d}


def healthcheck(settings: Settings, grace: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env.update(
        PYTHONPATH=str(ROOT),
        RAGBOT_DATA_DIR=str(settings.ragbot_data_dir),
        RAGBOT_LIVENESS_GRACE_SECONDS=str(grace),
    )
    return subprocess.run(
        [sys.executable, "-m", "rag.healthcheck", "run"],
        env=env,
        cwd=settings.ragbot_data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ----- Slack, over real sockets ------------------------------------------------------------


@pytest.fixture
def settings(make_settings: Any, git_repo: Any, fake_llm: FakeLLM, slack: FakeSlack) -> Settings:
    return make_settings(
        code_repo_path=git_repo(REPO),
        litellm_model="openai/fake",
        litellm_api_base=fake_llm.url,
        litellm_api_key="x",
        slack_bot_token="xoxb-test-token",
        slack_app_token="xapp-test-token",
        slack_api_url=slack.api_url,
        ragbot_metrics_port=free_port(),
        ragingest_allowed_users=["UADMIN"],
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def service(settings: Settings, embedders: Any, metrics: Metrics) -> RagService:
    service = RagService(settings, embedders=embedders, metrics=metrics)
    (report,) = service.ingest(["code"])
    assert report.ok
    return service


@pytest.fixture
def bot(settings: Settings, service: RagService, slack: FakeSlack) -> Iterator[SlackBot]:
    bot = SlackBot(settings, service, update_interval=0.05, ping_interval=1.0)
    bot.start()
    yield bot
    slack.hang_up()
    bot.stop()


@pytest.mark.slow
def test_one_slack_question_moves_the_metrics_by_exactly_that_question(
    settings: Settings, service: RagService, metrics: Metrics, bot: SlackBot, slack: FakeSlack
) -> None:
    server = serve_metrics(settings, metrics)
    assert server is not None
    url = f"http://127.0.0.1:{settings.ragbot_metrics_port}/metrics"
    try:
        before = scrape(url)
        # the ingest of the fixture, and the connection
        assert value(before, "ragbot_ingest_runs_total", source_name="code", outcome="ok") == 1
        assert value(before, "ragbot_chunks_embedded_total", source_name="code") >= 2
        assert value(before, "ragbot_index_chunks", source_name="code") >= 2
        assert value(before, "ragbot_index_documents", source_name="code") == 2
        assert value(before, "ragbot_slack_connected") == 1
        assert value(before, "ragbot_questions_total", surface="slack", outcome="answered") == 0

        msg = slack.user_message("CGENERAL", f"<@{BOT_USER}> How is a payment refunded?")
        slack.send_event({"type": "app_mention", **{k: v for k, v in msg.items() if k != "type"}})
        slack.wait_for(
            lambda: value(scrape(url), "ragbot_questions_total", surface="slack", outcome="answered"),
            what="the question counted",
        )
        after = scrape(url)
    finally:
        server.close()

    assert moved(before, after, "ragbot_questions_total") == {
        ("ragbot_questions_total", frozenset({("surface", "slack"), ("outcome", "answered")})): 1.0
    }
    for histogram in ("answer", "first_text", "retrieval", "llm"):
        assert (
            value(after, f"ragbot_{histogram}_seconds_count")
            - value(before, f"ragbot_{histogram}_seconds_count")
            == 1
        ), histogram
        assert value(after, f"ragbot_{histogram}_seconds_sum") > value(
            before, f"ragbot_{histogram}_seconds_sum"
        )
    first_text = value(after, "ragbot_first_text_seconds_sum")
    assert 0 < first_text <= value(after, "ragbot_answer_seconds_sum")
    assert not moved(before, after, "ragbot_llm_errors_total")
    assert not moved(before, after, "ragbot_ingest_")
    assert not moved(before, after, "ragbot_feedback_votes_total")


@pytest.mark.slow
def test_votes_are_counted_recorded_with_found_and_summarised_in_ragingest_status(
    settings: Settings, metrics: Metrics, bot: SlackBot, slack: FakeSlack
) -> None:
    msg = slack.user_message("CGENERAL", f"<@{BOT_USER}> How is a payment refunded?")
    slack.send_event({"type": "app_mention", **{k: v for k, v in msg.items() if k != "type"}})
    answer = slack.wait_for(
        lambda: [m for m in slack.thread_messages("CGENERAL", msg["ts"]) if m.get("blocks")],
        what="the answer",
    )[-1]
    (feedback,) = next(b for b in answer["blocks"] if b["type"] == "context_actions")["elements"]
    slack.wait_for_ack(
        slack.send_block_action(
            user="UBOB",
            channel="CGENERAL",
            message=answer,
            action_id=feedback["action_id"],
            value=feedback["negative_button"]["value"],
        )
    )
    path = feedback_path(settings.ragbot_data_dir)
    slack.wait_for(lambda: path.exists() and path.read_text().strip(), what="the vote on disk")
    assert json.loads(path.read_text())["found"] is True
    assert metrics.registry.get_sample_value("ragbot_feedback_votes_total", {"vote": "down"}) == 1
    assert metrics.registry.get_sample_value("ragbot_feedback_votes_total", {"vote": "up"}) == 0

    env, response_path = slack.send_slash_command("status", user="UBOB")
    slack.wait_for_ack(env)
    (reply,) = slack.wait_for(
        lambda: [r for r in slack.responses if r["path"] == response_path], what="the status"
    )
    assert "Feedback, last 7 days" in reply["text"] and "1 vote(s): 0 👍, 1 👎" in reply["text"]


@pytest.mark.slow
def test_health_check_fails_while_slack_refuses_reconnects_past_the_grace_then_recovers(
    settings: Settings, metrics: Metrics, bot: SlackBot, slack: FakeSlack
) -> None:
    grace = 2.0
    data_dir = settings.ragbot_data_dir
    healthy = healthcheck(settings, grace)
    assert healthy.returncode == 0, healthy.stderr
    assert read_heartbeat(data_dir)["slack_connected"] is True  # type: ignore[index]

    slack.refuse_connections = True
    slack.drop_socket()
    record = slack.wait_for(
        lambda: (r := read_heartbeat(data_dir)) and not r["slack_connected"] and r, what="the loss noticed"
    )
    assert metrics.registry.get_sample_value("ragbot_slack_connected") == 0
    # Down, but within a (longer) grace: still healthy.
    assert healthcheck(settings, 300).returncode == 0
    slack.wait_for(lambda: time.time() - record["since"] > grace + 0.5, what="the grace to pass")
    unhealthy = healthcheck(settings, grace)
    assert unhealthy.returncode == 1
    assert "Socket Mode connection has been down" in unhealthy.stderr
    assert slack.connections_opened == 1  # every attempt since was refused

    slack.refuse_connections = False
    slack.wait_for(lambda: (r := read_heartbeat(data_dir)) and r["slack_connected"], what="the reconnect")
    recovered = healthcheck(settings, grace)
    assert recovered.returncode == 0, recovered.stderr
    assert read_heartbeat(data_dir)["reconnects"] == 1  # type: ignore[index]
    assert metrics.registry.get_sample_value("ragbot_slack_reconnects_total") == 1
    assert metrics.registry.get_sample_value("ragbot_slack_connected") == 1


# ----- feedback review -----------------------------------------------------------------------


def hit(source: str = "code", path: str | None = "shop/payments.py") -> Hit:
    return Hit(source, "payments.py", None, path, 1, 3, 0.9, "def refund_payment(...)")


def plant_votes(data_dir: Path) -> None:
    """Three answers and their votes as the bot records them, plus one vote from 10 days ago."""
    log = AnswerLog(SlackState(data_dir))
    long_answer = "Refunds go through the gateway [1]. " * 20
    log.record_answer(
        "a1", channel="C", thread_ts="1", user="UASK", question="How are refunds made?",
        answer=long_answer, mode="llm", hits=[hit()], found=True,
    )  # fmt: skip
    log.record_answer(
        "a2", channel="C", thread_ts="2", user="UASK", question="Who owns billing?",
        answer="The indexed sources don't say.", mode="llm", hits=[hit("confluence", None)], found=False,
    )  # fmt: skip
    log.record_vote("a1", user="U1", vote="up")
    log.record_vote("a2", user="U1", vote="down")
    log.record_vote("a1", user="U2", vote="up")
    log.record_vote("a1", user="U2", vote="down")  # U2 changed their mind: one vote, 👎
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 86_400))
    with log.feedback_path.open("a") as f:
        f.write(json.dumps({"time": old, "answer_id": "a0", "user": "U9", "vote": "up", "question": "old?",
                            "answer": "old.", "sources": []}) + "\n")  # fmt: skip


def feedback_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env.update(PYTHONPATH=str(ROOT), RAGBOT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", "feedback", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_feedback_json_lists_the_window_newest_first_with_counts(tmp_path: Path) -> None:
    plant_votes(tmp_path / "data")
    result = feedback_cli(tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["up"], data["down"]) == (1, 2)  # the 10-day-old vote is outside the default 7d
    votes = data["votes"]
    assert [(v["user"], v["vote"]) for v in votes] == [("U2", "down"), ("U1", "down"), ("U1", "up")]
    for v in votes:
        assert set(v) == {"at", "user", "vote", "question", "answer", "found", "sources"}
        assert v["at"].endswith("Z") and len(v["at"]) == 20
    assert votes[0]["question"] == "How are refunds made?" and votes[0]["found"] is True
    assert votes[1]["found"] is False and votes[1]["sources"][0]["source"] == "confluence"
    assert votes[0]["answer"].endswith("…") and len(votes[0]["answer"]) <= 300
    assert votes[0]["sources"][0]["path"] == "shop/payments.py"
    assert "3 vote(s): 1 👍, 2 👎 (67% 👎)" in result.stderr

    down = json.loads(feedback_cli(tmp_path, "--json", "--down").stdout)
    assert [v["vote"] for v in down["votes"]] == ["down", "down"] and (down["up"], down["down"]) == (1, 2)
    month = json.loads(feedback_cli(tmp_path, "--json", "--since", "30d").stdout)
    assert (month["up"], month["down"]) == (2, 2) and month["votes"][-1]["user"] == "U9"
    assert month["votes"][-1]["found"] is None  # recorded before votes carried it


def test_feedback_csv_has_one_row_per_vote_and_a_summary_by_source(tmp_path: Path) -> None:
    plant_votes(tmp_path / "data")
    result = feedback_cli(tmp_path, "--csv", "--since", "12h")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert [(r["user"], r["vote"], r["found"]) for r in body] == [
        ("U2", "down", "true"),
        ("U1", "down", "false"),
        ("U1", "up", "true"),
    ]
    assert body[0]["sources"] == "shop/payments.py:1-3" and body[1]["sources"] == "payments.py"
    assert "by source: code 1 👍 1 👎, confluence 0 👍 1 👎" in result.stderr


def test_feedback_refuses_bad_options_with_exit_2(tmp_path: Path) -> None:
    bad = feedback_cli(tmp_path, "--since", "a week")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    both = feedback_cli(tmp_path, "--json", "--csv")
    assert both.returncode == 2
    empty = feedback_cli(tmp_path, "--json")
    assert empty.returncode == 0
    assert json.loads(empty.stdout) == {"up": 0, "down": 0, "votes": [], "escalated": 0, "escalations": []}


def test_durations_parse() -> None:
    assert parse_duration("7d") == 7 * 86_400 and parse_duration("12h") == 43_200
    assert parse_duration("30m") == 1800 and parse_duration("2w") == 14 * 86_400
    with pytest.raises(ValueError):
        parse_duration("7")


# ----- retention -----------------------------------------------------------------------------


def test_retention_deletes_turns_answers_and_votes_older_than_the_setting(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(ragbot_retention_days=5)
    data_dir = settings.ragbot_data_dir
    plant_votes(data_dir)  # its 10-day-old vote is past 5 days
    state = SlackState(data_dir)
    memory = ThreadMemory(state)
    memory.add("C", "1", "recent question", "recent answer")
    old = time.time() - 6 * 86_400
    state.execute(
        "INSERT INTO turns (channel, thread_ts, created, question, answer) VALUES (?, ?, ?, ?, ?)",
        ("C", "9", old, "old question", "old answer"),
    )
    state.execute("UPDATE answers SET created = ? WHERE answer_id = 'a2'", (old,))

    assert purge(settings, [purge_slack_data]) == {"turns": 1, "answers": 1, "votes": 1}
    assert memory.knows("C", "1") and not memory.knows("C", "9")
    assert AnswerLog(state).answer("a1") is not None and AnswerLog(state).answer("a2") is None
    votes = read_votes(feedback_path(data_dir))
    assert {v.user for v in votes} == {"U1", "U2"} and len(votes) == 3
    assert purge(settings, [purge_slack_data]) == {"turns": 0, "answers": 0, "votes": 0}
    AnswerLog(state).record_vote("a1", user="U3", vote="up")  # the log still takes votes
    assert len(read_votes(feedback_path(data_dir))) == 4


# ----- pieces --------------------------------------------------------------------------------


def test_a_disabled_metrics_object_records_and_exposes_nothing() -> None:
    metrics = Metrics(enabled=False)
    metrics.question("slack", "answered", seconds=1.0)
    metrics.vote("up")
    metrics.slack_connection(True, reconnected=True)
    body, _ = metrics.exposition()
    assert body == b""


def test_metrics_objects_are_independent() -> None:
    one, two = Metrics(process=False), Metrics(process=False)
    one.answered("api", Answer("a", "llm", [hit()]), seconds=0.2)
    two.answered("api", Answer("Nothing relevant.", "extractive", []), seconds=0.1)
    get = one.registry.get_sample_value
    assert get("ragbot_questions_total", {"surface": "api", "outcome": "answered"}) == 1
    assert get("ragbot_questions_total", {"surface": "api", "outcome": "not_found"}) == 0
    assert (
        two.registry.get_sample_value("ragbot_questions_total", {"surface": "api", "outcome": "not_found"})
        == 1
    )


@pytest.mark.parametrize(
    ("note", "kind"),
    [
        (None, None),
        ("no model configured", None),
        ("empty LLM answer", "empty"),
        ("LLM failed: Timeout", "timeout"),
        ("LLM failed: RateLimitError", "rate_limited"),
        ("LLM failed: APIConnectionError", "connection"),
        ("LLM failed: InternalServerError", "server"),
        ("LLM failed: AuthenticationError", "auth"),
        ("LLM failed: ValueError", "other"),
    ],
)
def test_llm_failures_map_to_bounded_kinds(note: str | None, kind: str | None) -> None:
    assert llm_error_kind(note) == kind


def test_liveness_verdicts() -> None:
    now = 1_000_000.0
    up = {"heartbeat": now - 1, "slack_connected": True, "since": now - 500, "oldest_answer_seconds": None}
    assert problem(up, grace_seconds=120, wedged_after=300, now=now) is None
    assert "no liveness record" in str(problem(None, grace_seconds=120, wedged_after=300, now=now))
    stale = {**up, "heartbeat": now - STALE_AFTER_SECONDS - 1}
    assert "stale" in str(problem(stale, grace_seconds=120, wedged_after=300, now=now))
    briefly_down = {**up, "slack_connected": False, "since": now - 60}
    assert problem(briefly_down, grace_seconds=120, wedged_after=300, now=now) is None
    long_down = {**up, "slack_connected": False, "since": now - 121}
    assert "down for 121 s" in str(problem(long_down, grace_seconds=120, wedged_after=300, now=now))
    wedged = {**up, "oldest_answer_seconds": 299.5, "heartbeat": now - 1}
    assert "wedged" in str(problem(wedged, grace_seconds=120, wedged_after=300, now=now))


def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones() -> None:
    import re

    families = {f.name for f in Metrics(process=False).registry.collect()}
    assert {
        "ragbot_questions",
        "ragbot_answer_seconds",
        "ragbot_ingest_runs",
        "ragbot_slack_connected",
    } <= families
    docs = (ROOT / "docs" / "deployment.md").read_text()
    for name in families:
        kind_suffix = "_total" if f"`{name}_total`" in docs else ""
        assert f"`{name}{kind_suffix}`" in docs, name
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"ragbot_[a-z_]+", e)
    }
    assert used and used <= families, used - families


@pytest.mark.slow
def test_a_failing_llm_is_counted_by_kind_and_the_answer_still_comes(
    settings: Settings, service: RagService, metrics: Metrics, fake_llm: FakeLLM
) -> None:
    fake_llm.status = 500
    answer = service.ask("How is a payment refunded?")
    assert answer.mode == "extractive" and answer.hits
    get = metrics.registry.get_sample_value
    assert get("ragbot_llm_errors_total", {"kind": "server"}) == 1
    assert sum(get("ragbot_llm_errors_total", {"kind": k}) or 0 for k in LLM_ERROR_KINDS) == 1
    assert get("ragbot_llm_seconds_count") == 1 and get("ragbot_retrieval_seconds_count") == 1


def test_feedback_text_shows_each_vote_with_its_answer_and_sources(tmp_path: Path) -> None:
    plant_votes(tmp_path / "data")
    result = feedback_cli(tmp_path, "--down")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("👎 U2 (found): How are refunds made?")
    assert lines[1].startswith("    Refunds go through the gateway [1].")
    assert lines[2] == "    sources: shop/payments.py:1-3"
    assert lines[3].endswith("👎 U1 (NOT FOUND): Who owns billing?")
    assert len(lines) == 6  # only the two 👎
    assert result.stderr.startswith("last 7d: 3 vote(s)")
