"""The incremental pipeline on a real git repository, the real MiniLM and embedded Chroma."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.errors import IngestBusyError
from rag.indexing.embedding import EmbedderPool
from rag.models import IngestReport
from rag.service import RagService
from tests.conftest import git, write_files

REPO: dict[str, str | bytes] = {
    "billing/invoice.py": (
        "def compute_invoice_total(lines, tax_rate):\n"
        '    """Sum invoice lines and apply the tax rate."""\n'
        "    subtotal = sum(line.amount for line in lines)\n"
        "    return subtotal * (1 + tax_rate)\n"
    ),
    "deploy/deploy.sh": (
        "#!/bin/sh\n# Deploy the API to production with blue-green switching\nkubectl apply -f k8s/\n"
    ),
    "docs/runbook.md": (
        "# Runbook\n\n## Rollback\n\nTo roll back a release run `./deploy/rollback.sh v1.2`.\n"
    ),
    "config/settings.py": 'DATABASE_URL = "postgres://app@db/app"\npassword = "planted-Secret-42"\n',
}


def chunk_records(service: RagService) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    embedder = service.embedders.get(None)
    col = service.store.collection("code", embedder.key)
    assert col is not None
    return [(r.id, r.text, r.metadata) for r in col.iter_records(include_documents=True)]


def ingest(service: RagService, **kw: object) -> IngestReport:
    (report,) = service.ingest(["code"], **kw)  # type: ignore[arg-type]
    assert report.ok, report.error
    return report


@pytest.fixture
def service(make_settings, embedders: EmbedderPool, git_repo) -> RagService:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    return RagService(make_settings(), embedders=embedders)


def test_first_ingest_indexes_every_file_with_line_ranges(service: RagService) -> None:
    report = ingest(service)
    assert (report.documents_seen, report.documents_added, report.documents_unchanged) == (4, 4, 0)
    assert report.chunks_embedded >= 4
    records = chunk_records(service)
    assert len(records) == report.chunks_embedded
    by_path = {m["path"]: (text, m) for _, text, m in records}
    text, meta = by_path["billing/invoice.py"]
    assert "compute_invoice_total" in text
    assert (meta["start_line"], meta["end_line"], meta["language"]) == (1, 4, "python")
    assert len(meta["chunk_hash"]) == 64


def test_reingest_of_unchanged_repository_embeds_nothing(service: RagService) -> None:
    first = ingest(service)
    ids_before = sorted(r[0] for r in chunk_records(service))
    second = ingest(service)
    assert second.chunks_embedded == 0
    assert second.documents_unchanged == 4
    assert (second.documents_added, second.documents_updated, second.documents_deleted) == (0, 0, 0)
    assert sorted(r[0] for r in chunk_records(service)) == ids_before
    assert first.chunks_embedded == len(ids_before)


def test_edit_reembeds_only_that_file_and_delete_prunes(service: RagService, git_repo) -> None:  # type: ignore[no-untyped-def]
    ingest(service)
    before = chunk_records(service)
    root = Path(service.settings.code_repo_path)
    write_files(
        root, {"billing/invoice.py": REPO["billing/invoice.py"] + "\n\ndef refund(x):\n    return -x\n"}
    )
    (root / "deploy/deploy.sh").unlink()
    git(root, "add", "-A")
    git(root, "commit", "-qm", "edit and delete")
    report = ingest(service)
    assert (report.documents_updated, report.documents_deleted, report.documents_unchanged) == (1, 1, 2)
    after = chunk_records(service)
    invoice_chunks = [r for r in after if r[2]["path"] == "billing/invoice.py"]
    assert report.chunks_embedded == len(invoice_chunks)
    assert not any(r[2]["path"] == "deploy/deploy.sh" for r in after)
    unchanged_before = {r[0]: r[2]["chunk_hash"] for r in before if r[2]["path"] in ("docs/runbook.md",)}
    unchanged_after = {r[0]: r[2]["chunk_hash"] for r in after if r[2]["path"] in ("docs/runbook.md",)}
    assert unchanged_before == unchanged_after
    # no duplicates: every id unique, and the count matches a clean full ingest
    assert len({r[0] for r in after}) == len(after)
    full = ingest(service, full=True)
    assert full.chunks_embedded == len(chunk_records(service)) == len(after)


def test_planted_secrets_never_reach_the_store(service: RagService) -> None:
    ingest(service)
    texts = " ".join(text for _, text, _ in chunk_records(service))
    assert "planted-Secret-42" not in texts
    assert "[REDACTED]" in texts


def test_failed_document_keeps_its_previous_chunks(service: RagService) -> None:
    ingest(service)
    root = Path(service.settings.code_repo_path)
    before = [r for r in chunk_records(service) if r[2]["path"] == "docs/runbook.md"]
    # Tracked by git but gone from the working tree: listed, then unreadable.
    (root / "docs/runbook.md").unlink()
    (root / "docs/runbook.md").mkdir()
    report = ingest(service)
    assert report.ok
    assert [e["document"] for e in report.errors] == ["docs/runbook.md"]
    after = [r for r in chunk_records(service) if r[2]["path"] == "docs/runbook.md"]
    assert after == before


def test_interrupted_write_is_repaired_on_the_next_run(service: RagService) -> None:
    ingest(service)
    embedder = service.embedders.get(None)
    col = service.store.collection("code", embedder.key)
    assert col is not None
    victim = next(r for r in col.iter_records() if r.metadata["path"] == "billing/invoice.py")
    col.delete_ids([victim.id])  # as if killed between the delete and the add of a rewrite
    report = ingest(service)
    assert report.documents_unchanged == 3
    assert report.documents_added + report.documents_updated == 1
    assert report.chunks_embedded == victim.metadata["doc_chunks"]
    assert any(r[0] == victim.id for r in chunk_records(service))


def test_empty_repository_is_ok_with_a_warning(make_settings, embedders: EmbedderPool, git_repo) -> None:  # type: ignore[no-untyped-def]
    git_repo({})
    service = RagService(make_settings(), embedders=embedders)
    report = ingest(service)
    assert report.documents_seen == 0
    assert report.warnings and "no documents" in report.warnings[0]


def test_only_one_ingest_runs_at_a_time(service: RagService) -> None:
    lock = service.ingestor.lock("slack:U123")
    lock.acquire()
    try:
        with pytest.raises(IngestBusyError, match=r"already running.*by slack:U123"):
            service.ingest(["code"])
    finally:
        lock.release()
    assert ingest(service).ok


def test_run_history_is_recorded_for_status(service: RagService) -> None:
    ingest(service)
    status = service.status()
    code = status["sources"]["code"]
    assert code["documents"] == 4 and code["chunks"] >= 4
    assert code["last_run"]["ok"] is True and code["last_run"]["documents_added"] == 4


def test_missing_repository_fails_as_configuration(
    make_settings, embedders: EmbedderPool, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    service = RagService(make_settings(code_repo_path=tmp_path / "missing"), embedders=embedders)
    (report,) = service.ingest(["code"])
    assert not report.ok and report.config_error
    assert report.error is not None and "CODE_REPO_PATH" in report.error
    assert service.status()["sources"]["code"]["last_run"]["ok"] is False


def test_unwritable_chroma_directory_is_reported(
    make_settings, embedders: EmbedderPool, git_repo, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store directory should be")
    service = RagService(make_settings(chroma_db_dir=blocker / "chroma"), embedders=embedders)
    (report,) = service.ingest(["code"])
    assert not report.ok and report.config_error
    assert "CHROMA_DB_DIR" in (report.error or "")


def test_ask_returns_cited_hits(service: RagService) -> None:
    ingest(service)
    answer = service.ask("how is the invoice total computed with tax?", top_k=3)
    assert answer.mode == "extractive"
    assert answer.hits[0].path == "billing/invoice.py"
    assert "[1] billing/invoice.py:1-4" in answer.text
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
