"""An index built by the v1 code (before named sources) keeps working: same collections, no re-embedding."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.service import RagService
from tests.fakes.hash_embedder import HashEmbedder

FIXTURE = Path(__file__).parent / "data" / "v1-index.tar.gz"
V1_COLLECTION = "ragbot-code-hash-256-016b65cb"
V1_SYMBOLS = "ragbot-symbols-code-hash-256-016b65cb"



@pytest.fixture
def v1_index(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def service_for(root: Path, embedder: HashEmbedder) -> RagService:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        chroma_db_dir=root / "chroma",
        ragbot_data_dir=root / "data",
        code_repo_path=root / "repo",
    )
    return RagService(settings, embedders=EmbedderPool(lambda _model: embedder))


def test_v1_index_reads_and_reingests_without_embedding(v1_index: Path) -> None:
    embedder = HashEmbedder()
    service = service_for(v1_index, embedder)
    assert service.registry.names() == ["code"]
    assert service.store.collection_names() == [V1_COLLECTION]

    # Answerable before any ingest: the v1 records are found, and carry their source name now.
    hits = service.retriever.search("how do I roll back billing", top_k=3)
    assert hits and {h.source_name for h in hits} == {"code"}
    assert any(h.path == "app/deploy.sh" for h in hits)
    assert all(h.citation() == f"{h.path}:{h.start_line}-{h.end_line}" for h in hits)  # one repo: no prefix

    (report,) = service.ingest(["all"])
    assert report.ok and report.source == "code" and report.source_name == "code"
    assert report.chunks_embedded == 0
    assert report.documents_unchanged == 3 and report.documents_deleted == 0
    assert embedder.calls == 1  # only the question above was embedded, never a chunk
    # The v1 collection keeps its name; the symbol index (issue 20) is built beside it.
    assert sorted(service.store.collection_names()) == [V1_COLLECTION, V1_SYMBOLS]
    assert report.symbols_indexed > 0

    status = service.status()
    assert status["sources"]["code"]["documents"] == 3
    assert status["sources"]["code"]["kind"] == "code"
    # The run history written by v1 is still this source's history.
    assert status["sources"]["code"]["last_run"]["source_name"] == "code"


def test_an_edit_after_the_upgrade_reembeds_only_that_file(v1_index: Path) -> None:
    embedder = HashEmbedder()
    service = service_for(v1_index, embedder)
    runbook = v1_index / "repo" / "docs" / "runbook.md"
    runbook.write_text(runbook.read_text() + "\n## Refunds\n\nRefunds are issued by finance.\n")
    (report,) = service.ingest(["code"])
    assert report.documents_updated == 1 and report.documents_unchanged == 2
    # Same chunk ids as v1 (source name == the v1 source), so no stale duplicates remain.
    collection = service.store.collection("code", embedder.key, create=False)
    assert collection is not None
    states = collection.document_states("code")
    assert sorted(states) == ["app/db.py", "app/deploy.sh", "docs/runbook.md"]
    assert all(s.complete for s in states.values())
    assert collection.count() == sum(s.present_chunks for s in states.values())
