"""Fast unit tests of the Slack layer's pure parts: formatting, dedupe, memory, safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import formatting
from bot.dedupe import SeenKeys, event_key, message_key
from bot.memory import AnswerLog, SlackState, ThreadMemory, turns_from_replies
from bot.reports import ingest_summary, status_text
from bot.safety import RateLimiter, clip_question, neutralise, neutralise_payload, strip_mentions_of
from rag.models import Answer, Hit, IngestReport, Turn


def hit(source: str = "code", **kw: object) -> Hit:
    values: dict[str, object] = {
        "source": source,
        "title": "rag/indexing/ingest.py",
        "url": "https://git.example.com/r/blob/abc/rag/ingest.py#L10-L42",
        "path": "rag/indexing/ingest.py",
        "start_line": 10,
        "end_line": 42,
        "score": 0.5,
        "text": "def run(): ...",
    }
    values.update(kw)
    return Hit(**values)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ----- formatting ------------------------------------------------------------------------------


def test_markdown_becomes_mrkdwn_with_code_blocks_intact_and_escaped() -> None:
    md = (
        "# Deploy\nRun **make deploy** then see [the docs](https://x.example/a).\n\n"
        "```sh\n#!/bin/sh\nif [ a < b ] && c; then *x*\n```\n"
    )
    out = formatting.to_mrkdwn(md)
    assert "*Deploy*" in out and "*make deploy*" in out
    assert "<https://x.example/a|the docs>" in out
    assert "```\n#!/bin/sh\nif [ a &lt; b ] &amp;&amp; c; then *x*\n```" in out


def test_inline_code_is_escaped_and_plain_text_specials_too() -> None:
    assert formatting.to_mrkdwn("use `a<b>` when x < y & z") == "use `a&lt;b&gt;` when x &lt; y &amp; z"


def test_split_text_respects_limit_and_reopens_code_fences() -> None:
    body = "intro\n```\n" + "\n".join(f"line {i:04d} " + "x" * 40 for i in range(200)) + "\n```\nend"
    pieces = formatting.split_text(body, limit=3000)
    assert len(pieces) > 2
    assert all(len(p) <= 3000 for p in pieces)
    for piece in pieces:
        assert piece.count("```") % 2 == 0  # every piece renders its code as code
    joined = "\n".join(pieces)
    assert all(f"line {i:04d}" in joined for i in range(200))


def test_split_text_cuts_one_huge_line() -> None:
    pieces = formatting.split_text("y" * 7000, limit=3000)
    assert all(len(p) <= 3000 for p in pieces) and sum(len(p) for p in pieces) == 7000


def test_sources_link_code_lines_and_confluence_titles() -> None:
    page = hit("confluence", title="Deploying <the> API", url="https://wiki/x/pages/1", path=None)
    unlinked = hit(url=None, path="a|b.py", start_line=1, end_line=3)
    text = formatting.sources_text([hit(), page, unlinked])
    assert (
        "[1] <https://git.example.com/r/blob/abc/rag/ingest.py#L10-L42|rag/indexing/ingest.py:10-42>" in text
    )
    assert "[2] <https://wiki/x/pages/1|Deploying &lt;the&gt; API> · _Confluence_" in text
    assert "[3] `a|b.py:1-3`" in text


def test_answer_blocks_have_sections_note_sources_and_feedback() -> None:
    answer = Answer("x" * 7000, "extractive", [hit()], note="LLM failed: InternalServerError")
    notes = formatting.note_text(answer, question_cut=True, question_limit=2000)
    blocks = formatting.answer_blocks(answer, answer_id="abc", notes=notes)
    sections = [b for b in blocks if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= formatting.SECTION_LIMIT for b in sections)
    assert len(sections) == 4  # 3 for the answer, 1 for the sources
    contexts = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert "2,000 characters" in contexts[0] and "could not answer" in contexts[1]
    assert blocks[-1]["type"] == "context_actions"
    (buttons,) = blocks[-1]["elements"]
    assert buttons["type"] == "feedback_buttons"
    assert (buttons["positive_button"]["value"], buttons["negative_button"]["value"]) == (
        "up:abc",
        "down:abc",
    )
    classic = formatting.classic_feedback(blocks)[-1]
    assert classic["type"] == "actions" and {e["value"] for e in classic["elements"]} == {"abc"}


def test_sources_the_answer_cites_come_first_with_their_numbers() -> None:
    hits = [hit(path=f"m{i}.py", title=f"m{i}.py", url=None) for i in range(1, 5)]
    text = formatting.sources_text(hits, answer_text="Done in m3 [3], called from m1 [1][3].")
    lines = text.splitlines()[1:]
    assert [line.split(" ")[0] for line in lines] == ["[3]", "[1]", "[2]", "[4]"]
    assert "[3] `m3.py:10-42`" in lines[0]


def test_a_not_found_answer_shows_its_nearest_passages_as_closest_matches() -> None:
    answer = Answer(
        "The indexed sources (code) don't cover this question.", "extractive", [hit()], found=False
    )
    blocks = formatting.answer_blocks(answer, answer_id="abc")
    assert blocks[0]["text"]["text"].startswith("The indexed sources (code) don't cover")
    contexts = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert contexts and contexts[-1].startswith("*Closest matches*")
    assert "rag/indexing/ingest.py:10-42" in contexts[-1]
    assert not any("*Sources*" in b["text"]["text"] for b in blocks if b["type"] == "section")


def test_paginate_keeps_at_most_fifty_blocks_per_message() -> None:
    blocks = [{"type": "divider"}] * 120
    pages = formatting.paginate(blocks)
    assert [len(p) for p in pages] == [50, 50, 20]


def test_streaming_text_closes_an_open_fence() -> None:
    text = formatting.streaming_text("Look:\n```py\nprint(1)")
    assert text.count("```") == 2 and text.endswith(":writing_hand:")


# ----- dedupe ----------------------------------------------------------------------------------


def test_mention_and_message_twins_and_redeliveries_are_claimed_once() -> None:
    seen = SeenKeys()
    assert seen.claim(event_key("Ev1"), message_key("C1", "1.1"))
    assert not seen.claim(event_key("Ev2"), message_key("C1", "1.1"))  # the message twin
    assert not seen.claim(event_key("Ev2"), message_key("C1", "1.1"))  # its redelivery
    assert not seen.claim(event_key("Ev1"), None)
    assert seen.claim(event_key("Ev3"), message_key("C1", "1.2"))


def test_seen_keys_expire_and_stay_bounded() -> None:
    clock = FakeClock()
    seen = SeenKeys(ttl=10, max_keys=3, clock=clock)
    assert seen.claim("a")
    clock.now += 11
    assert seen.claim("a")
    for k in "bcde":
        assert seen.claim(k)
    assert seen.claim("a")  # evicted by size


# ----- memory ----------------------------------------------------------------------------------


def test_thread_memory_persists_and_respects_the_budget(tmp_path: Path) -> None:
    memory = ThreadMemory(SlackState(tmp_path), max_chars=50)
    memory.add("C1", "1.0", "first question", "a" * 30)
    memory.add("C1", "1.0", "second", "b" * 20)
    memory.add("C2", "1.0", "other thread", "c")
    again = ThreadMemory(SlackState(tmp_path), max_chars=50)  # a restart
    assert again.knows("C1", "1.0") and not again.knows("C1", "9.9")
    assert again.turns("C1", "1.0") == [Turn("second", "b" * 20)]
    assert ThreadMemory(SlackState(tmp_path)).turns("C1", "1.0")[0].question == "first question"


def test_turns_are_rebuilt_from_thread_replies() -> None:
    replies = [
        {"user": "UA", "text": "<@UBOT> how do refunds work?", "ts": "1"},
        {"user": "UBOT", "bot_id": "BBOT", "text": "Through the gateway [1]", "ts": "2"},
        {"user": "UX", "bot_id": "BOTHER", "text": "some other bot", "ts": "3"},
        {"user": "UA", "text": "and the limit?", "ts": "4"},
        {"user": "UA", "subtype": "channel_join", "text": "joined", "ts": "5"},
        {"user": "UBOT", "bot_id": "BBOT", "text": "500 EUR [2]", "ts": "6"},
        {"user": "UA", "text": "thanks", "ts": "7"},
    ]
    turns = turns_from_replies(
        replies, bot_user_id="UBOT", bot_id="BBOT", strip=lambda t: strip_mentions_of(t, "UBOT")
    )
    assert turns == [
        Turn("how do refunds work?", "Through the gateway [1]"),
        Turn("and the limit?", "500 EUR [2]"),
    ]


def test_votes_are_recorded_with_question_answer_and_sources(tmp_path: Path) -> None:
    log = AnswerLog(SlackState(tmp_path))
    log.record_answer(
        "id1", channel="C", thread_ts="1", user="UA", question="q?", answer="a.", mode="llm", hits=[hit()]
    )
    log.record_vote("id1", user="UB", vote="up")
    entry = json.loads(log.feedback_path.read_text())
    assert entry["vote"] == "up" and entry["question"] == "q?" and entry["answer"] == "a."
    assert entry["sources"][0]["path"] == "rag/indexing/ingest.py" and "text" not in entry["sources"][0]


# ----- safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<!channel>",
        "<!here|here>",
        "<!everyone>",
        "<!subteam^S0123|@backend>",
        "<!subteam^S0123>",
        "&lt;!channel&gt;",
        "hey @here and @everyone and @channel",
        "<!HERE>",
    ],
)
def test_broadcast_mentions_are_neutralised(text: str) -> None:
    out = neutralise(text)
    for bad in ("<!channel", "<!here", "<!everyone", "<!subteam", "&lt;!", "@here", "@everyone", "@channel"):
        assert bad not in out.lower(), out


def test_normal_mentions_links_and_emails_are_kept() -> None:
    text = "ask <@U123> in <#C1|general>, see <https://x.y|docs>, mail a@here.com"
    assert neutralise(text) == text


def test_payload_is_neutralised_everywhere() -> None:
    payload = {"text": "<!here>", "blocks": [{"text": {"text": "<!channel>"}}], "n": 3}
    out = neutralise_payload(payload)
    assert "<!" not in json.dumps(out) and out["n"] == 3


def test_rate_limit_per_user_with_a_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=2, window=60, clock=clock)
    assert limiter.check("UA") == 0 and limiter.check("UA") == 0
    assert limiter.check("UA") == pytest.approx(60)
    assert limiter.check("UB") == 0
    clock.now += 61
    assert limiter.check("UA") == 0


def test_long_questions_are_cut_at_a_word() -> None:
    question, cut = clip_question("word " * 1000, limit=2000)
    assert cut and len(question) <= 2000 and question.endswith("word")
    assert clip_question("short", limit=2000) == ("short", False)


# ----- /ragingest texts ------------------------------------------------------------------------


def test_ingest_summary_has_the_counts() -> None:
    report = IngestReport(
        "code", documents_seen=4, documents_added=1, documents_unchanged=3, chunks_embedded=2
    )
    text = ingest_summary([report, IngestReport("confluence", ok=False, error="401 Unauthorized")])
    assert "*code*: ok — 4 seen, 1 added, 0 updated, 0 deleted, 3 unchanged; 2 chunks" in text
    assert "*confluence*: FAILED (401 Unauthorized)" in text


def test_status_text_lists_sources_and_runs() -> None:
    run = {
        "source": "code",
        "finished_at": "2026-01-01T00:00:00Z",
        "ok": True,
        "trigger": "slack:UA",
        "documents_added": 2,
        "documents_updated": 0,
        "documents_deleted": 1,
    }
    status = {
        "sources": {
            "backend": {
                "kind": "code",
                "location": "/srv/backend",
                "configured": True,
                "documents": 5,
                "chunks": 9,
                "last_run": run,
            },
            "old-wiki": {
                "kind": "confluence",
                "location": None,
                "configured": False,
                "documents": 3,
                "chunks": 4,
                "last_run": None,
            },
        },
        "ingest_running": {"by": "scheduler"},
        "recent_runs": [{**run, "source_name": "backend"}],
    }
    text = status_text(status)
    assert (
        "*backend* (code, /srv/backend): 5 documents, 9 chunks; last run 2026-01-01T00:00:00Z by slack:UA: ok"
        in text
    )
    assert "*old-wiki* (confluence, no longer configured): 3 documents, 4 chunks; never ingested" in text
    assert "2026-01-01T00:00:00Z backend (slack:UA)" in text
    assert "by scheduler" in text and "2 added, 0 updated, 1 deleted" in text


def test_ragbot_run_without_tokens_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["SLACK_BOT_TOKEN"] = "xoxb-1"
    env["SLACK_APP_TOKEN"] = "xoxp-wrong-kind"
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ragbot: SLACK_APP_TOKEN must be an app-level token starting with xapp-"
    ]


def test_control_characters_and_bidi_marks_never_go_out() -> None:
    from bot.safety import WORD_JOINER, neutralise, strip_mentions_of

    text = "a\x00b\x07c\u202ed\u200fe\u2066f\u2069\x1b[0m\r\x7f\u0085 <!here>\n\tg"
    assert neutralise(text) == f"abcdef[0m @{WORD_JOINER}here\n\tg"
    assert strip_mentions_of("<@UBOT> \u202e\x00 ", "UBOT") == ""


def test_slack_access_settings_use_the_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.config import load_settings
    from rag.errors import ConfigError

    monkeypatch.setenv("SLACK_ALLOWED_CHANNELS", "C01, C02")
    monkeypatch.setenv("SLACK_ALLOW_EXTERNAL_USERS", "true")
    monkeypatch.setenv("SLACK_SHARED_CHANNELS", "Answer")
    s = load_settings()
    assert (s.slack_allowed_channels, s.slack_allow_external_users, s.slack_shared_channels) == (
        ["C01", "C02"],
        True,
        "answer",
    )
    monkeypatch.setenv("SLACK_SHARED_CHANNELS", "sometimes")
    with pytest.raises(ConfigError, match="SLACK_SHARED_CHANNELS"):
        load_settings()


def test_access_caches_are_bounded_and_expire() -> None:
    from bot.access import TtlCache

    cache = TtlCache(ttl=60.0, size=3)
    for i in range(5):
        cache.put(f"U{i}", True)
    assert [cache.get(f"U{i}") for i in range(5)] == [None, None, True, True, True]
    expired = TtlCache(ttl=-1.0)  # already stale when stored
    expired.put("C1", True)
    assert expired.get("C1") is None
