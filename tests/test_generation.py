"""Answers through litellm against a real OpenAI-compatible server on 127.0.0.1, and the fallback."""

from __future__ import annotations

from rag.answering.generation import Answerer
from rag.models import Hit, Turn
from tests.fakes.llm_server import FakeLLM

HITS = [
    Hit("code", "deploy/deploy.sh", None, "deploy/deploy.sh", 1, 3, 0.03, "kubectl apply -f k8s/"),
    Hit(
        "confluence",
        "Deploying the API",
        "https://x/wiki/spaces/ENG/pages/1",
        None,
        None,
        None,
        0.02,
        "Use the blue-green pipeline.",
    ),
]


def answerer(make_settings, llm: FakeLLM, **kw: object) -> Answerer:  # type: ignore[no-untyped-def]
    return Answerer(
        make_settings(
            litellm_model="openai/fake-model", litellm_api_base=llm.url, litellm_api_key="test-key", **kw
        )
    )


def test_llm_answer_with_numbered_sources_and_history(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    a = answerer(make_settings, fake_llm)
    answer = a.answer("how do I deploy?", HITS, history=[Turn("what is the API?", "The API is X [1].")])
    assert answer.mode == "llm"
    assert answer.text == "Answer to: how do I deploy? [1]"
    (request,) = fake_llm.requests
    assert request["headers"]["authorization"] == "Bearer test-key"
    messages = request["body"]["messages"]
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    assert "don't say" in messages[0]["content"] or "do not contain" in messages[0]["content"]
    assert [m["content"] for m in messages[1:3]] == ["what is the API?", "The API is X [1]."]
    user = messages[-1]["content"]
    assert "[1] deploy/deploy.sh:1-3\nkubectl apply -f k8s/" in user
    assert '[2] Confluence page "Deploying the API"' in user


def test_streaming_delivers_tokens_as_they_come(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    tokens: list[str] = []
    answer = answerer(make_settings, fake_llm).answer("streamed?", HITS, on_token=tokens.append)
    assert len(tokens) > 2
    assert "".join(tokens).strip() == answer.text
    assert fake_llm.requests[0]["body"]["stream"] is True


def test_llm_server_error_falls_back_to_extractive_with_sources(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    fake_llm.status = 500
    answer = answerer(make_settings, fake_llm).answer("how do I deploy?", HITS)
    assert answer.mode == "extractive"
    assert "unavailable" in answer.text
    assert "[1] deploy/deploy.sh:1-3" in answer.text and "kubectl apply" in answer.text
    assert answer.hits == HITS


def test_llm_timeout_falls_back_within_the_timeout(make_settings, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    fake_llm.delay = 5
    a = answerer(make_settings, fake_llm, llm_timeout_seconds=0.5)
    answer = a.answer("slow?", HITS)
    assert answer.mode == "extractive" and answer.hits == HITS


def test_without_a_model_the_answer_says_why_and_quotes(make_settings) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(make_settings()).answer("how do I deploy?", HITS)
    assert answer.mode == "extractive"
    assert "No language model is configured" in answer.text
    assert "[2] Deploying the API\n> Use the blue-green pipeline." in answer.text


def test_follow_up_query_carries_the_subject(make_settings) -> None:  # type: ignore[no-untyped-def]
    a = Answerer(make_settings())
    history = [Turn("how does the billing invoice total work?", "...")]
    assert "invoice" in a.condense_query("and where is it configured?", history)
    assert a.condense_query("how does the billing invoice total work?", []) == (
        "how does the billing invoice total work?"
    )
