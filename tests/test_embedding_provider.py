"""Embeddings and reranking through a hosted model: the real litellm against a provider on
127.0.0.1 that answers like a real one (tests/fakes/embedding_server.py), a real git repository,
embedded Chroma."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.indexing import ingest as ingest_module
from rag.indexing.embedding_provider import ProviderEmbedder
from rag.indexing.provider import Endpoint
from rag.models import Hit, IngestReport
from rag.service import RagService
from tests.fakes.embedding_server import FakeEmbeddingServer, fake_vector
from tests.test_ingest import REPO  # a real repository: code, a script, a runbook, a planted secret

MODEL = "litellm:openai/fake-embed"


@pytest.fixture
def provider() -> Iterator[FakeEmbeddingServer]:
    server = FakeEmbeddingServer().start()
    yield server
    server.stop()


@pytest.fixture
def service(make_settings, provider: FakeEmbeddingServer, git_repo):  # type: ignore[no-untyped-def]
    git_repo(REPO)

    def build(**overrides: Any) -> RagService:
        values: dict[str, Any] = {
            "code_emb_model": MODEL,
            "embedding_api_base": provider.url,
            "embedding_api_key": "sk-fake",
            "embedding_max_retries": 3,
        }
        values.update(overrides)
        return RagService(make_settings(**values))

    return build


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(a, b, strict=True)
    )


def ingest(service: RagService, *, ok: bool = True) -> IngestReport:
    (report,) = service.ingest(["code"])
    assert report.ok is ok, report.error
    return report


def stored(service: RagService) -> list[tuple[str, str, list[float]]]:
    embedder = service.embedders.get(MODEL)
    collection = service.store.collection("code", embedder.key, create=False)
    assert collection is not None
    raw = collection.raw.get(include=["documents", "embeddings"])
    return [
        (i, d, [float(x) for x in e])
        for i, d, e in zip(raw["ids"], raw["documents"], raw["embeddings"], strict=True)
    ]


def test_ingest_stores_exactly_the_providers_vectors_and_reembeds_nothing_unchanged(
    service, provider: FakeEmbeddingServer
) -> None:  # type: ignore[no-untyped-def]
    svc = service()
    first = ingest(svc)
    assert first.chunks_embedded >= 4
    records = stored(svc)
    assert len(records) == first.chunks_embedded
    embedder = svc.embedders.get(MODEL)
    assert isinstance(embedder, ProviderEmbedder) and embedder.dimension == 64
    sent = provider.inputs()
    for _, _, vector in records:
        # the provider's vector as it sent it (float32 storage aside): its length is not 1, and
        # it is not renormalised
        assert any(_same(vector, fake_vector(text, 64)) for text in sent)
    assert any(abs(sum(x * x for x in v) ** 0.5 - 1.0) > 0.5 for _, _, v in records)
    # a wrong key never travelled: every request carried the configured one
    assert {r["headers"]["authorization"] for r in provider.requests} == {"Bearer sk-fake"}

    before = len(provider.embedding_requests())
    second = ingest(RagService(svc.settings))  # a new process: one probe, nothing embedded
    assert second.chunks_embedded == 0 and second.documents_unchanged == first.documents_seen
    assert len(provider.embedding_requests()) == before + 1

    answer = svc.ask("where is the invoice total computed?")
    assert answer.hits and answer.hits[0].path == "billing/invoice.py"


def test_only_redacted_text_reaches_the_provider(service, provider: FakeEmbeddingServer) -> None:  # type: ignore[no-untyped-def]
    ingest(service())
    sent = "\n".join(provider.inputs())
    assert "planted-Secret-42" not in sent
    assert "[REDACTED]" in sent


def test_batches_are_bounded_by_count_and_by_tokens() -> None:
    endpoint = Endpoint("openai/x", None, None, timeout=1, max_retries=0)
    embedder = ProviderEmbedder(endpoint, batch_size=3, batch_tokens=100)
    texts = ["a" * 30] * 7 + ["b" * 600] + ["c" * 30] * 2
    groups = embedder.batches(texts)
    assert [i for g in groups for i in g] == list(range(10))  # every text once, in order
    assert all(len(g) <= 3 for g in groups)
    assert [7] in groups  # a text past the token bound is a request of its own
    for group in groups:
        if len(group) > 1:
            assert sum(len(texts[i]) // 3 for i in group) <= 100


def test_a_429_storm_is_ridden_out_honouring_retry_after(service, provider: FakeEmbeddingServer) -> None:  # type: ignore[no-untyped-def]
    provider.fail_next.extend([429, 429])
    provider.rate_limit = 3  # requests per second, with 4 in flight and one text a request
    svc = service(embedding_batch_size=1, embedding_max_retries=8)
    report = ingest(svc)
    embedder = svc.embedders.get(MODEL)
    assert isinstance(embedder, ProviderEmbedder)
    assert embedder.retries.rate_limited >= 3
    ids = [i for i, _, _ in stored(svc)]
    assert len(ids) == len(set(ids)) == report.chunks_embedded


def test_server_errors_and_timeouts_are_retried_with_backoff(service, provider: FakeEmbeddingServer) -> None:  # type: ignore[no-untyped-def]
    svc = service(embedding_timeout=1.0)
    svc.ingestor.preflight(svc.registry.specs)  # the probe, before the failures below
    provider.hang_s = 3
    provider.fail_next.extend([500, "hang", 503])
    report = ingest(svc)
    embedder = svc.embedders.get(MODEL)
    assert isinstance(embedder, ProviderEmbedder)
    assert embedder.retries.failed >= 3  # (a slow machine may time out one more)
    assert len(stored(svc)) == report.chunks_embedded


def test_retries_are_bounded_and_the_failure_is_one_line(service, provider: FakeEmbeddingServer) -> None:  # type: ignore[no-untyped-def]
    svc = service(embedding_max_retries=1)
    svc.ingestor.preflight(svc.registry.specs)
    provider.fail_next.extend([500] * 5)
    report = ingest(svc, ok=False)
    assert report.error and "failed" in report.error and "\n" not in report.error
    assert len(provider.embedding_requests()) == 1 + 2  # the probe, one try and one retry


def test_a_failure_mid_run_keeps_what_was_embedded_and_the_next_run_resumes(
    service, provider: FakeEmbeddingServer, git_repo, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    git_repo(
        {f"pkg/module_{n}.py": f"def handler_{n}(event):\n    return event.get('{n}')\n" for n in range(12)}
    )
    monkeypatch.setattr(ingest_module, "FLUSH_CHUNKS", 4)  # a write every few documents
    svc = service(embedding_batch_size=2, embedding_concurrency=1, embedding_max_retries=0)
    provider.fail_after = 4  # the probe and three batches, then the provider breaks
    first = ingest(svc, ok=False)
    kept = stored(svc)
    assert 0 < len(kept) < 16  # REPO's 4 files and 12 modules, one chunk each
    assert first.error and "failed" in first.error

    provider.fail_after = 0
    sent_before = len(provider.inputs())
    second = ingest(RagService(svc.settings))
    after = stored(svc)
    ids = [i for i, _, _ in after]
    assert len(ids) == len(set(ids)) == 16  # every file, nothing duplicated
    assert {d for _, d, _ in kept} <= {d for _, d, _ in after}  # nothing lost
    # only the rest was embedded: what the first run wrote is unchanged and was not sent again
    assert second.documents_unchanged == len(kept) and second.chunks_embedded == len(after) - len(kept)
    resent = provider.inputs()[sent_before:]
    assert resent[0] == "ragbot embedding probe" and len(resent) == 1 + second.chunks_embedded


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"EMBEDDING_API_KEY": "sk-wrong"}, "EMBEDDING_API_KEY"),
        ({"CODE_EMB_MODEL": "litellm:openai/no-such-model"}, "CODE_EMB_MODEL"),
        ({"EMBEDDING_API_BASE": "http://127.0.0.1:9/v1"}, "EMBEDDING_API_BASE"),
    ],
    ids=["wrong-key", "wrong-model", "wrong-url"],
)
def test_a_wrong_key_model_or_url_is_one_line_and_exit_2(
    tmp_path: Path, provider: FakeEmbeddingServer, git_repo, overrides: dict[str, str], variable: str
) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    env = {
        **os.environ,
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(tmp_path / "repo"),
        "CODE_EMB_MODEL": MODEL,
        "EMBEDDING_API_BASE": provider.url,
        "EMBEDDING_API_KEY": "sk-fake",
        "EMBEDDING_MAX_RETRIES": "1",
        **overrides,
    }
    ragbot = str(Path(sys.executable).parent / "ragbot")
    done = subprocess.run(
        [ragbot, "ingest", "code"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "sk-wrong" not in done.stderr and "sk-fake" not in done.stderr
    assert not (tmp_path / "chroma").exists() or not any(provider.inputs()[1:])


def test_a_new_dimension_starts_a_new_collection(service, provider: FakeEmbeddingServer) -> None:  # type: ignore[no-untyped-def]
    svc = service()
    ingest(svc)
    old_key = svc.embedders.get(MODEL).key
    provider.models["fake-embed"] = 32  # the provider now serves another size under the same name
    svc2 = RagService(svc.settings)
    report = ingest(svc2)
    new_key = svc2.embedders.get(MODEL).key
    assert new_key != old_key and "32d" in new_key
    assert report.chunks_embedded > 0 and report.documents_added == report.documents_seen
    old = svc2.store.collection("code", old_key, create=False)
    assert old is not None and old.count() > 0  # the old vectors are not mixed in, nor lost
    assert svc2.ask("how do I roll back a release?").hits


def test_query_and_document_input_types_where_the_provider_has_them(provider: FakeEmbeddingServer) -> None:
    endpoint = Endpoint("voyage/fake-embed", provider.url, "sk-fake", timeout=5, max_retries=0)
    embedder = ProviderEmbedder(endpoint)
    embedder.embed_documents(["def f(): pass"])
    embedder.embed_query("where is f?")
    types = [r["body"].get("input_type") for r in provider.embedding_requests()]
    assert types == ["document", "document", "query"]  # the probe, the document, the question


def _hits() -> list[Hit]:
    texts = ["the deploy script", "how invoices are totalled", "rollback steps for a release"]
    return [
        Hit(
            source="code",
            title=f"f{n}.py",
            url=None,
            path=f"f{n}.py",
            start_line=1,
            end_line=2,
            score=1.0 - n / 10,
            text=t,
        )
        for n, t in enumerate(texts)
    ]


def test_the_reranker_reorders_and_a_slow_or_failing_one_keeps_the_fused_order(
    provider: FakeEmbeddingServer,
) -> None:
    from rag.answering.reranking import HostedReranker

    failures: list[str] = []
    endpoint = Endpoint("cohere/fake-rerank", provider.url, "sk-fake", timeout=1.5, max_retries=1)
    reranker = HostedReranker(endpoint, on_failure=failures.append)
    hits = _hits()
    best = reranker.rerank("rollback a release", hits)
    assert best[0].path == "f2.py" and best[0].score > best[-1].score
    assert provider.requests[-1]["path"].endswith("/rerank")
    assert provider.requests[-1]["body"]["query"] == "rollback a release"

    provider.hang_s = 3
    provider.fail_next.append("hang")
    assert [h.path for h in reranker.rerank("rollback a release", hits)] == [h.path for h in hits]
    provider.fail_next.extend([500, 500])
    assert [h.path for h in reranker.rerank("rollback a release", hits)] == [h.path for h in hits]
    assert failures == ["timeout", "error"]
    assert reranker.failures == {"timeout": 1, "error": 1}


def test_rerank_model_is_used_by_retrieval_and_counted_in_the_metrics(
    service, provider: FakeEmbeddingServer
) -> None:  # type: ignore[no-untyped-def]
    from rag.ops.metrics import Metrics

    svc = service(rerank_model="litellm:cohere/fake-rerank", rerank_timeout=1.5)
    svc.metrics = Metrics()
    ingest(svc)
    answer = svc.ask("how do I roll back a release?")
    assert answer.hits
    assert any(r["path"].endswith("/rerank") for r in provider.requests)
    provider.hang_s = 3
    provider.fail_next.append("hang")  # the question's vector is cached: the reranker's request hangs
    again = svc.ask("how do I roll back a release?")
    assert again.hits  # the fused order, still an answer
    text = svc.metrics.exposition()[0].decode()
    assert 'ragbot_rerank_failures_total{kind="timeout"} 1.0' in text


def test_status_says_why_when_the_provider_is_down_and_a_question_fails_in_one_line(
    service, provider: FakeEmbeddingServer
) -> None:  # type: ignore[no-untyped-def]
    from rag.errors import RagError

    svc = service()
    ingest(svc)
    down = RagService(svc.settings.model_copy(update={"embedding_api_base": "http://127.0.0.1:9/v1"}))
    status = down.status()["sources"]
    (code,) = [info for info in status.values() if info["kind"] == "code"]
    assert "EMBEDDING_API_BASE" in code["model_error"] and code["collection"] is None
    with pytest.raises(RagError) as raised:
        down.ask("how do I roll back a release?")
    assert "EMBEDDING_API_BASE" in str(raised.value) and "\n" not in str(raised.value)


def test_ragingest_replies_in_one_line_when_the_provider_refuses_the_key(
    make_settings, provider: FakeEmbeddingServer, git_repo, slack
) -> None:  # type: ignore[no-untyped-def]
    """A key revoked while the bot runs: the next /ragingest probes first and says which
    variable to fix, instead of failing half-way through the run."""
    from bot.app import SlackBot

    git_repo(REPO)
    settings = make_settings(
        code_emb_model=MODEL,
        embedding_api_base=provider.url,
        embedding_api_key="sk-fake",
        embedding_max_retries=1,
        slack_bot_token="xoxb-test-token",
        slack_app_token="xapp-test-token",
        slack_api_url=slack.api_url,
        ragingest_allowed_users=["UADMIN"],
    )
    svc = RagService(settings)
    ingest(svc)
    bot = SlackBot(settings, svc, update_interval=0.05, ping_interval=1.0)
    bot.start()
    try:
        provider.api_key = "sk-rotated"
        sent_before = len(provider.inputs())
        env, path = slack.send_slash_command("code", user="UADMIN")
        slack.wait_for_ack(env)
        (reply,) = slack.wait_for(lambda: [r for r in slack.responses if r["path"] == path], what="the reply")
        assert reply["text"].startswith("The ingest could not run: embedding probe:")
        assert "EMBEDDING_API_KEY" in reply["text"] and "sk-fake" not in reply["text"]
        assert provider.inputs()[sent_before:] == ["ragbot embedding probe"]  # no document was sent
    finally:
        slack.hang_up()
        bot.stop()
