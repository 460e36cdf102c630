"""Hostile repositories: 10,000 deeply nested files, a 5 MB one-line file, a huge single line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag.indexing.embedding import EmbedderPool
from rag.service import RagService
from rag.sources.repository import RepositorySource
from tests.conftest import git
from tests.fakes.hash_embedder import HashEmbedder
from tests.reliability import peak_rss_mib, record

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def test_ten_thousand_deeply_nested_files(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    for i in range(10_000):
        # 100 top-level trees, each file 20 folders deep
        folder = root.joinpath(*(f"d{(i // 100) % 100}_{level}" for level in range(20)))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i}.py").write_text(f"def handler_{i}(event):\n    return route_{i % 37}(event)\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "many")

    embedder = HashEmbedder(dims=1024)
    service = RagService(make_settings(), embedders=EmbedderPool(lambda _model: embedder))
    t0 = time.monotonic()
    (first,) = service.ingest(["code"])
    first_s = time.monotonic() - t0
    assert first.ok and first.documents_added == 10_000 and first.chunks_embedded == 10_000
    t0 = time.monotonic()
    (second,) = service.ingest(["code"])
    second_s = time.monotonic() - t0
    assert second.chunks_embedded == 0 and second.documents_unchanged == 10_000
    hits = service.retriever.search("def handler_4242(event)", top_k=3)
    assert any(h.path is not None and h.path.endswith("/m4242.py") for h in hits)
    record(
        "10,000-file repository, 20 folders deep",
        "all indexed; unchanged re-ingest embeds 0; search finds a file by its function name",
        first_ingest_s=round(first_s, 1),
        reingest_s=round(second_s, 1),
        peak_rss_mib=peak_rss_mib(),
    )


def test_five_megabyte_single_line_file_is_skipped_and_a_long_line_is_cut(
    tmp_path: Path,
    make_settings,
    embedders: EmbedderPool,  # type: ignore[no-untyped-def]
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dump.json").write_text('{"data": "' + "x" * 5_000_000 + '"}')
    (root / "long.txt").write_text("token " * 150_000)  # 900 KB on one line: indexed, cut to fit
    (root / "ok.py").write_text("def ok():\n    return True\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "big")

    src = RepositorySource(path=root)
    src.prepare()
    assert {r.doc_id for r in src.scan()} == {"long.txt", "ok.py"}
    assert {s.path: s.reason for s in src.skipped}["dump.json"] == "larger than 1 MB"

    service = RagService(make_settings(), embedders=embedders)
    t0 = time.monotonic()
    (report,) = service.ingest(["code"])
    seconds = time.monotonic() - t0
    assert report.ok and report.documents_added == 2
    embedder = embedders.get(None)
    col = service.store.collection("code", embedder.key)
    assert col is not None
    long_chunks = [
        r.text for r in col.iter_records(include_documents=True) if r.metadata["path"] == "long.txt"
    ]
    assert len(long_chunks) > 100
    assert max(embedder.count_tokens(long_chunks)) <= embedder.token_limit()
    record(
        "a 5 MB one-line file; a 900 KB one-line file",
        "5 MB file skipped (over 1 MB) and reported; the long line cut into chunks within the model window",
        ingest_s=round(seconds, 1),
        chunks_of_long_line=len(long_chunks),
    )
