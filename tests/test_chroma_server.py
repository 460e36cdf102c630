"""The same pipeline against a real `chroma run` server: ingest, ask, re-ingest, prune, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.indexing.embedding import EmbedderPool
from rag.service import RagService
from tests.conftest import git
from tests.reliability import record
from tests.servers import ChromaServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

REPO: dict[str, str | bytes] = {
    "auth/session.py": "def refresh_session_token(user):\n    '''Rotate the user's session token.'''\n    return 1\n",
    "ops/backup.sh": "#!/bin/sh\n# nightly database backup to object storage\npg_dump app | gzip > backup.gz\n",
    "docs/alerts.md": "# Alerts\n\n## Disk full\n\nExpand the volume, then restart the ingest worker.\n",
}


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-server").start()
    yield server
    server.stop()


def test_ingest_ask_reingest_and_prune_against_a_chroma_server(
    chroma: ChromaServer,
    make_settings,
    embedders: EmbedderPool,
    git_repo,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    root = git_repo(REPO)
    settings = make_settings(chroma_host="127.0.0.1", chroma_port=chroma.port)
    service = RagService(settings, embedders=embedders)
    started = time.monotonic()
    (first,) = service.ingest(["code"])
    ingest_s = time.monotonic() - started
    assert first.ok and first.documents_added == 3

    hits = service.retriever.search("how is the database backed up?", top_k=2)
    assert hits[0].path == "ops/backup.sh"

    (again,) = service.ingest(["code"])
    assert again.chunks_embedded == 0 and again.documents_unchanged == 3

    (root / "ops/backup.sh").unlink()
    git(root, "commit", "-qam", "drop backup script")
    (pruned,) = service.ingest(["code"])
    assert pruned.documents_deleted == 1
    assert all(h.path != "ops/backup.sh" for h in service.retriever.search("database backup", top_k=5))

    # A second process (another bot replica) sees the same index through the server.
    other = RagService(make_settings(chroma_host="127.0.0.1", chroma_port=chroma.port), embedders=embedders)
    assert other.status()["sources"]["code"]["documents"] == 2
    assert not settings.chroma_db_dir.exists(), "the embedded directory must stay untouched"
    record(
        "Chroma server mode: ingest, ask, incremental re-ingest, pruning against a real `chroma run`",
        "search finds the right file; re-ingest embeds nothing; deleted file pruned; a second process sees "
        "the same index; the embedded directory is never created",
        first_ingest_s=round(ingest_s, 2),
        documents=first.documents_added,
        reingest_chunks_embedded=again.chunks_embedded,
    )


def test_unreachable_server_is_one_clear_line(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    port = free_port()
    env = {
        **os.environ,
        "CHROMA_HOST": "127.0.0.1",
        "CHROMA_PORT": str(port),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(tmp_path / "repo"),
    }
    ragbot = str(Path(sys.executable).parent / "ragbot")
    took = []
    for args in (["ingest", "--json"], ["ask", "anything?", "--json"], ["status"]):
        started = time.monotonic()
        done = subprocess.run(
            [ragbot, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, (args, done.stderr)
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ragbot:")]
        assert len(lines) == 1 and "CHROMA_HOST" in lines[0] and str(port) in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
        took.append(time.monotonic() - started)
    record(
        "Chroma server unreachable (ingest, ask, status from the CLI)",
        "exit code 2 and exactly one `ragbot:` line naming CHROMA_HOST and the port; no traceback",
        slowest_command_s=round(max(took), 1),
    )


def test_server_restart_between_questions(
    chroma: ChromaServer,
    make_settings,
    embedders: EmbedderPool,
    git_repo,  # type: ignore[no-untyped-def]
) -> None:
    git_repo(REPO)
    service = RagService(make_settings(chroma_host="127.0.0.1", chroma_port=chroma.port), embedders=embedders)
    assert service.ingest(["code"])[0].ok
    assert service.retriever.search("session token rotation", top_k=1)[0].path == "auth/session.py"
    chroma.stop()
    started = time.monotonic()
    chroma.start()
    restart_s = time.monotonic() - started
    started = time.monotonic()
    assert service.retriever.search("session token rotation", top_k=1)[0].path == "auth/session.py"
    question_s = time.monotonic() - started
    assert json.dumps(service.status()["sources"]["code"]["documents"]) == "3"
    record(
        "Chroma server restarted while the service runs",
        "the next question after the restart finds the same top result; status still counts 3 documents",
        server_start_s=round(restart_s, 1),
        first_question_after_restart_s=round(question_s, 2),
    )


def test_hybrid_ranking_is_the_same_in_server_and_embedded_mode(
    chroma: ChromaServer,
    make_settings,
    embedders: EmbedderPool,
    git_repo,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    git_repo(REPO)
    embedded = RagService(make_settings(ragbot_data_dir=tmp_path / "data-embedded"), embedders=embedders)
    server = RagService(
        make_settings(
            chroma_host="127.0.0.1", chroma_port=chroma.port, ragbot_data_dir=tmp_path / "data-server"
        ),
        embedders=embedders,
    )
    assert embedded.ingest(["code"])[0].ok and server.ingest(["code"])[0].ok
    queries = ["refresh_session_token", "pg_dump gzip", "disk full volume", "how is the database backed up?"]
    for query in queries:
        a = embedded.retriever.search(query, top_k=3)
        b = server.retriever.search(query, top_k=3)
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b], query
        assert len(a) == 3
        assert [round(h.score, 6) for h in a] == [round(h.score, 6) for h in b], query
    # BM25 really takes part: the lexical index of each mode ranks the exact identifier first.
    for service in (embedded, server):
        col = service.store.collection(
            "code", embedders.get(service.settings.embedding_model_for("code")).key
        )
        assert col is not None
        top = service.retriever.lexical.fresh(col).search("refresh_session_token", 1)
        assert top and top[0][0] == embedded.retriever.search("refresh_session_token", top_k=1)[0].chunk_id
    record(
        "Chroma server mode: hybrid (dense + BM25) ranking equals embedded mode on the same data",
        "same chunks in the same order with the same fused scores for identifier and prose queries; "
        "the BM25 index takes part in both modes",
        queries=len(queries),
    )
