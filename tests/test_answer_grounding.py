"""Follow-up rewriting through the fake LLM, answers that say when the index does not know, citations."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rag.answering.citations import cited, clean_citations
from rag.answering.generation import NOT_FOUND_PROMPT, REWRITE_PROMPT, Answerer, not_found_sentence
from rag.indexing.embedding import EmbedderPool
from rag.models import Hit, Turn
from rag.service import RagService
from tests.fakes.llm_server import FakeLLM, echo_sources_reply

HITS = [
    Hit("code", "billing/invoice.py", None, "billing/invoice.py", 1, 9, 0.03, "def compute_invoice_total(): ..."),
    Hit("code", "billing/tax.py", None, "billing/tax.py", 1, 5, 0.02, "TAX_RATE = 0.2"),
]
REPO = {
    "billing/invoice.py": "def compute_invoice_total(lines):\n    return sum(l.amount for l in lines)\n",
    "billing/config.py": "INVOICE_CURRENCY = 'EUR'\nINVOICE_DUE_DAYS = 30\n",
    "README.md": "# Billing\n\nInvoices are computed in billing/invoice.py.\n",
}
STANDALONE = "where is the invoice currency configured in billing"


def llm_settings(make_settings, llm: FakeLLM, **kw: object):  # type: ignore[no-untyped-def]
    return make_settings(litellm_model="openai/fake-model", litellm_api_base=llm.url, litellm_api_key="k", **kw)


def rewriting_reply(messages: list[dict[str, Any]]) -> str:
    if messages[0]["content"] == REWRITE_PROMPT:
        return f'"{STANDALONE}"'
    return echo_sources_reply(messages)


def test_a_follow_up_is_rewritten_by_the_model_and_that_query_is_what_retrieval_gets(  # type: ignore[no-untyped-def]
    make_settings, embedders: EmbedderPool, git_repo, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repo(REPO)
    service = RagService(llm_settings(make_settings, fake_llm), embedders=embedders)
    (report,) = service.ingest(["code"])
    assert report.ok
    fake_llm.reply = rewriting_reply
    received: list[str] = []
    search = service.retriever.search

    def spy(query: str, **kw: Any) -> list[Hit]:
        received.append(query)
        return search(query, **kw)

    monkeypatch.setattr(service.retriever, "search", spy)
    history = [Turn("how is the invoice total computed?", "By compute_invoice_total [1].")]
    answer = service.ask("and where is its currency set?", history=history)
    assert received == [STANDALONE]
    rewrite, final = fake_llm.requests
    body = rewrite["body"]
    assert body["messages"][0]["content"] == REWRITE_PROMPT
    assert "how is the invoice total computed?" in body["messages"][1]["content"]
    assert body["messages"][1]["content"].endswith("Follow-up: and where is its currency set?")
    assert body.get("stream") is not True and body["max_tokens"] <= 100
    assert final["body"]["messages"][-1]["content"].endswith("Question: and where is its currency set?")
    assert answer.hits and answer.hits[0].path == "billing/config.py"


def test_a_failed_rewrite_falls_back_to_the_word_heuristic(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    fake_llm.status = 500
    a = Answerer(llm_settings(make_settings, fake_llm))
    history = [Turn("how does the billing invoice total work?", "...")]
    query = a.search_query("and where is it configured?", history)
    assert query == a.condense_query("and where is it configured?", history)
    assert "invoice" in query
    assert len(fake_llm.requests) == 1  # one short call, no retries


def test_a_slow_rewrite_gives_up_after_its_own_timeout(  # type: ignore[no-untyped-def]
    make_settings, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rag.answering.generation.REWRITE_TIMEOUT_SECONDS", 0.3)
    fake_llm.delay = 3
    a = Answerer(llm_settings(make_settings, fake_llm))
    history = [Turn("how does the billing invoice total work?", "...")]
    assert "invoice" in a.search_query("and where is it configured?", history)


def test_without_a_model_or_history_there_is_no_rewrite_call(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    a = Answerer(llm_settings(make_settings, fake_llm))
    assert a.search_query("where is the invoice total computed?", []) == "where is the invoice total computed?"
    plain = Answerer(make_settings())
    history = [Turn("how does the billing invoice total work?", "...")]
    assert plain.search_query("and where?", history) == plain.condense_query("and where?", history)
    assert fake_llm.requests == []


def test_not_found_without_a_model_says_so_first_and_keeps_the_closest_matches(make_settings) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(make_settings()).answer("what is the vacation policy?", HITS, found=False, searched=["code"])
    assert answer.text.startswith("The indexed sources (code) don't cover this question.")
    assert "compute_invoice_total" not in answer.text  # nothing quoted as if it answered
    assert answer.found is False and answer.hits == HITS
    assert answer.to_json()["found"] is False


def test_not_found_tells_the_model_and_keeps_the_first_sentence(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    tokens: list[str] = []
    a = Answerer(llm_settings(make_settings, fake_llm))
    answer = a.answer("vacation policy?", HITS, found=False, searched=["code", "confluence"], on_token=tokens.append)
    first = not_found_sentence(["code", "confluence"])
    assert answer.text.startswith(first) and answer.mode == "llm" and not answer.found
    assert "".join(tokens).startswith(first)
    system = fake_llm.requests[0]["body"]["messages"][0]["content"]
    assert NOT_FOUND_PROMPT in system


def test_found_answers_say_found_in_json(make_settings) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(make_settings()).answer("how is the total computed?", HITS)
    assert answer.found is True and answer.to_json()["found"] is True


def test_markers_pointing_at_no_source_are_removed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rag.answering.citations"):
        text, removed = clean_citations("Totals are summed [1][3]. Tax is fixed [7].\n\n`rows[5]` stays.", 2)
    assert text == "Totals are summed [1]. Tax is fixed.\n\n`rows[5]` stays."
    assert removed == [3, 7]
    assert "[3, 7]" in caplog.text


def test_an_llm_answer_loses_its_dangling_markers(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    fake_llm.reply = lambda _messages: "It is computed in one place [1][4]."
    answer = Answerer(llm_settings(make_settings, fake_llm)).answer("where?", HITS)
    assert answer.text == "It is computed in one place [1]."


def test_cited_lists_sources_in_order_of_first_citation() -> None:
    assert cited("See [2], then [1] and [2] again; [9] is not a source. ```x[1]```", 2) == [2, 1]
