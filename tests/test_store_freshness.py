"""A running `ragbot serve` follows another process's `ragbot ingest` on the same store (issue 24).

Real processes on one embedded Chroma directory (and, the same steps, on a real `chroma run`
server): after a deletion the server shows no empty or deleted source; after an addition and after
a change it ranks exactly as a freshly started process does (same paths, same scores); and an ingest
the server runs itself after another process's writes keeps those writes (it never writes through a
stale vector index).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import VectorStore
from tests.conftest import git, write_files
from tests.servers import ChromaServer
from tests.test_api import free_port, ragbot_env

pytestmark = pytest.mark.slow

TOKEN = "freshness-token-31c0"
FILES = {
    "kestrel.py": (
        "def kestrel_failover(primary, replicas):\n"
        '    """Kestrel failover: promote the healthiest replica when the primary stops answering."""\n'
        "    best = max(replicas, key=lambda r: r.health)\n"
        "    best.promote()\n"
        "    return best\n"
    ),
    "heron.py": (
        "def heron_backup(database):\n"
        '    """Heron backups: snapshot the database nightly and keep thirty days."""\n'
        "    return database.snapshot(keep_days=30)\n"
    ),
    "docs/ops.md": "# Operations\n\nThe on-call engineer watches the dashboards and pages the owner.\n",
}
OSPREY = (
    "def osprey_rate_limit(client, budget):\n"
    '    """Osprey rate limiting: refuse a client that spent its request budget this minute."""\n'
    "    return client.requests_this_minute < budget\n"
)
HERON_CHANGED = (
    "def heron_backup(database, bucket):\n"
    '    """Heron backups: stream the database snapshot to the object-storage bucket every hour."""\n'
    "    return database.snapshot(to=bucket, every_minutes=60)\n"
)
WREN = (
    "def wren_cache_warmup(cache, keys):\n"
    '    """Wren warm-up: load the hottest cache keys before the service takes traffic."""\n'
    "    for key in keys:\n"
    "        cache.load(key)\n"
)


class Deployment:
    """A repository, a store (embedded or a server), a running `ragbot serve`, and the CLI beside it."""

    def __init__(self, base: Path, store_env: dict[str, str]) -> None:
        self.base = base
        self.repo = base / "repo"
        self.env = ragbot_env(
            CODE_REPO_PATH=str(self.repo), RAGBOT_DATA_DIR=str(base / "data"), RAGBOT_API_TOKEN=TOKEN, **store_env
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None

    def commit(self, files: dict[str, str | bytes], *, remove: tuple[str, ...] = ()) -> None:
        self.repo.mkdir(exist_ok=True)
        if not (self.repo / ".git").exists():
            git(self.repo, "init", "-q", "-b", "main")
        write_files(self.repo, files)
        for path in remove:
            git(self.repo, "rm", "-q", path)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "change")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "rag.cli", *args],
            cwd=self.base,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def ingest(self) -> dict[str, Any]:
        (report,) = json.loads(self.cli("ingest", "code", "--json").stdout)["sources"]
        return dict(report)

    def fresh_ask(self, question: str) -> list[tuple[str | None, float]]:
        """What a freshly started process answers: the sources' paths and scores."""
        return ranking(json.loads(self.cli("ask", question, "--json").stdout))

    def start_server(self) -> None:
        port = free_port()
        log = (self.base / "server.log").open("w")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=self.base,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        for _ in range(600):
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.server.poll() is None, (self.base / "server.log").read_text()
            time.sleep(0.1)
        raise AssertionError("ragbot serve did not start")

    def served(self, question: str) -> dict[str, Any]:
        assert self.client is not None
        # A new session each time: a follow-up's search would include the previous question.
        session = uuid.uuid4().hex
        response = self.client.post("/query", json={"query": question, "top_k": 5, "session_id": session})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.terminate()
            self.server.wait(30)


def ranking(answer: dict[str, Any]) -> list[tuple[str | None, float]]:
    return [(s["path"], round(float(s["score"]), 9)) for s in answer["sources"]]


@pytest.fixture(params=["embedded", "chroma-server"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    server: ChromaServer | None = None
    if request.param == "embedded":
        store_env = {"CHROMA_DB_DIR": str(tmp_path / "chroma")}
    else:
        server = ChromaServer(tmp_path / "chroma-server").start()
        store_env = {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(server.port)}
    deployment = Deployment(tmp_path, store_env)
    try:
        yield deployment
    finally:
        deployment.stop()
        if server is not None:
            server.stop()


def test_a_running_server_follows_another_process_ingest(deployment: Deployment, embedders: EmbedderPool) -> None:
    d = deployment
    d.commit(FILES)
    assert d.ingest()["documents_added"] == 3
    d.start_server()
    question = "how does the kestrel failover work?"
    assert d.served(question)["sources"][0]["path"] == "kestrel.py"  # the server's index is loaded

    # 1. A deletion by another process: no empty source, no deleted source, ever.
    d.commit({}, remove=("kestrel.py",))
    assert d.ingest()["documents_deleted"] == 1
    after_delete = d.served(question)
    for source in after_delete["sources"]:
        assert source["path"] and source["title"] and source["text"].strip(), source
    assert "kestrel.py" not in {s["path"] for s in after_delete["sources"]}
    assert ranking(after_delete) == d.fresh_ask(question)

    # 2. An addition: ranked exactly as a freshly started process ranks it (dense + BM25, same scores).
    d.commit({"osprey.py": OSPREY})
    assert d.ingest()["documents_added"] == 1
    osprey = "how do we rate limit clients that spend their budget?"
    served = d.served(osprey)
    assert served["sources"][0]["path"] == "osprey.py"
    assert ranking(served) == d.fresh_ask(osprey)

    # 3. A change: likewise.
    d.commit({"heron.py": HERON_CHANGED})
    assert d.ingest()["documents_updated"] == 1
    heron = "where are database snapshots streamed to object storage?"
    served = d.served(heron)
    assert served["sources"][0]["path"] == "heron.py"
    assert "object-storage bucket" in served["sources"][0]["text"]
    assert ranking(served) == d.fresh_ask(heron)

    # 4. Another process adds a file, then the server ingests itself: it must not write through a
    #    vector index that lacks the other process's file (that would drop it from the store).
    d.commit({"wren.py": WREN})
    assert d.ingest()["documents_added"] == 1
    d.commit({"docs/finch.md": "# Finch\n\nFinch dashboards show queue depth per region.\n"})
    assert d.client is not None
    own = d.client.post("/ingest_local_code")
    assert own.status_code == 200 and own.json()["documents_added"] == 1, own.text
    wren = "how is the cache warmed up before taking traffic?"
    assert d.served(wren)["sources"][0]["path"] == "wren.py"
    assert ranking(d.served(wren)) == d.fresh_ask(wren)
    d.stop()
    # Dense alone, read from the store by this (third) process: the wren chunk is there.
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        chroma_db_dir=Path(d.env.get("CHROMA_DB_DIR", d.base / "unused")),
        chroma_host=d.env.get("CHROMA_HOST"),
        chroma_port=int(d.env.get("CHROMA_PORT", "8000")),
        ragbot_data_dir=d.base / "data",
    )
    embedder = embedders.get(None)
    collection = VectorStore(settings).collection("code", embedder.key, create=False)
    assert collection is not None
    dense = collection.query(embedder.embed_query(WREN), k=1)
    assert dense[0].metadata["path"] == "wren.py"


def test_a_record_without_text_path_or_title_is_dropped_and_logged_once(
    make_settings: Any, git_repo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from rag.service import RagService
    from tests.fakes.hash_embedder import HashEmbedder

    git_repo(FILES)
    embedder = HashEmbedder()
    service = RagService(make_settings(), embedders=EmbedderPool(lambda _model: embedder))
    assert service.ingest(["code"])[0].ok
    question = "how does the kestrel failover work?"
    collection = service.store.collection("code", embedder.key, create=False)
    assert collection is not None
    # What a stale index or a hand edit can leave: the best dense match has no text and no metadata.
    collection.raw.upsert(
        ids=["code:ghost:0"],
        embeddings=[embedder.embed_query(question)],
        documents=[""],
        metadatas=[{"source": "code", "source_name": "code"}],
    )
    assert collection.query(embedder.embed_query(question), k=1)[0].id == "code:ghost:0"

    with caplog.at_level("WARNING", logger="rag.answering.retrieval"):
        first = service.ask(question)
        second = service.ask(question)
    for answer in (first, second):
        assert answer.hits and all(h.chunk_id != "code:ghost:0" and h.path for h in answer.hits)
        assert answer.hits[0].path == "kestrel.py"
    assert [r.getMessage() for r in caplog.records].count(
        "dropped an index record with no text, path or title: code:ghost:0"
    ) == 1
