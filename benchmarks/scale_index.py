"""An index of 200k chunks: BM25 after a 1% ingest, memory, retrieval latency; unchanged re-ingest.

Chunks are real code: runs of 12 consecutive lines of the Python files installed on this
machine (standard library and site-packages), cycled with distinct ids when there are too
few. Their vectors come from the hash embedder in tests/fakes/ (the model is not the subject
here); the bot process embeds its questions with the bundled model (int8, as deployed), so its
latency and memory include the model and torch.

    PYTHONPATH=. python benchmarks/scale_index.py --chunks 200000 [--server] [--reingest-files 5000]

Steps (each prints one JSON line):
1. build: write the chunks into embedded Chroma (or a `chroma run` server) through the same
   logged writes as ingest; a "bot" process builds its BM25 index (full rebuild, timed).
2. delta: another process changes 1% of the chunks (a logged upsert); the bot process, still
   running, answers its next question (timed: BM25 follows the log, embedded Chroma reopens to
   see the other process's vectors, dense + BM25 search), and
   a freshly started process with the bot's saved index answers one too (timed, incl. loading).
3. latency: retrieval p50/p95 over 50 questions in the bot process; its resident memory.
4. reingest (--reingest-files N): a git repo of N real files, ingested (hash embedder), then
   ingested again unchanged; the ratio of the two. And the symbol index that first ingest built
   (rag.indexing.symbol_ingest, product path): the seconds spent extracting and writing it (timed
   around SymbolWriter's methods), its share of the store on disk (the store vacuumed, then again
   after its symbol collection is dropped), and a full build of its in-memory BM25 (time, entries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

LINES_PER_CHUNK = 12
DIMS = 384
QUESTIONS = [
    "how is the connection pool closed",
    "parse the configuration file",
    "retry the request after a timeout",
    "where is the cache invalidated",
    "encode the response as json",
    "read the file in binary mode",
    "raise an error when the key is missing",
    "compute the checksum of the data",
    "start a thread for the worker",
    "sort the items by their key",
]


def code_files(limit: int | None = None) -> list[Path]:
    roots = [Path(sys.prefix).parent / "lib", Path("/usr/lib/python3.11")]
    seen: list[Path] = []
    for root in [Path(p) for p in sys.path if p.endswith("site-packages")] + roots:
        if root.is_dir():
            seen += sorted(p for p in root.rglob("*.py") if p.is_file())
        if limit and len(seen) >= limit:
            break
    unique = list(dict.fromkeys(seen))
    return unique[:limit] if limit else unique


def code_chunks(n: int) -> list[tuple[str, str]]:
    """(doc path, text) pairs of LINES_PER_CHUNK real code lines, n of them."""
    out: list[tuple[str, str]] = []
    cycle = 0
    while len(out) < n:
        for path in code_files():
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for start in range(0, len(lines), LINES_PER_CHUNK):
                text = "\n".join(lines[start : start + LINES_PER_CHUNK]).strip()
                if len(text) > 40:
                    out.append((f"{cycle}{path}:{start}", text))
                    if len(out) >= n:
                        return out
        cycle += 1
    return out


def settings_for(work: Path, server_port: int | None, name: str):  # type: ignore[no-untyped-def]
    from rag.config import Settings

    extra = {"chroma_host": "127.0.0.1", "chroma_port": server_port} if server_port else {}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        chroma_db_dir=work / "chroma",
        ragbot_data_dir=work / name,
        code_repo_path=work / "repo",
        **extra,
    )


def hash_pool(*, model_queries: bool = False):  # type: ignore[no-untyped-def]
    """Hash vectors for the chunks; with `model_queries`, questions go through the bundled model
    (same 384 dimensions), so a bot's latency and memory include the real query embedding and
    torch, as a deployed bot's do (its dense hits are then meaningless; BM25's are not)."""
    from rag.config import Settings
    from rag.indexing.embedders import embedder_factory
    from rag.indexing.embedding import EmbedderPool
    from tests.fakes.hash_embedder import HashEmbedder

    embedder = HashEmbedder(DIMS)
    if model_queries:
        model = embedder_factory(Settings(_env_file=None))(None)  # type: ignore[call-arg]
        model.load()  # type: ignore[attr-defined]
        embedder.embed_query = model.embed_query  # type: ignore[method-assign]
    return EmbedderPool(lambda model: embedder)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_chunks(settings, pairs: list[tuple[str, str]], *, batch: int = 4000) -> float:  # type: ignore[no-untyped-def]
    """Upsert chunks the way ingest does (logged writes), hash-embedded."""
    from rag.indexing.changelog import logged_change
    from rag.indexing.store import VectorStore, chunk_id
    from rag.models import Chunk

    embedder = hash_pool().get(None)
    collection = VectorStore(settings).collection("code", embedder.key)
    t0 = time.perf_counter()
    for start in range(0, len(pairs), batch):
        part = pairs[start : start + batch]
        chunks = [
            Chunk(
                source="code",
                doc_id=doc,
                index=0,
                text=text,
                embed_text=text,
                title=doc,
                url=None,
                path=doc,
                start_line=1,
                end_line=LINES_PER_CHUNK,
            )
            for doc, text in part
        ]
        vectors = embedder.embed_batch([c.text for c in chunks])
        ids = [chunk_id(c.source, c.doc_id, c.index) for c in chunks]
        with logged_change(collection, ids):
            collection.upsert(chunks, vectors, [{"doc_fingerprint": "x", "doc_chunks": 1}] * len(chunks))
    return time.perf_counter() - t0


def bot_process(work: Path, port: int | None, questions: int, marker: Path | None) -> None:
    """A long-running bot: builds/loads BM25, answers, waits for the delta, answers again."""
    from rag.answering.retrieval import Retriever
    from rag.indexing.store import VectorStore

    settings = settings_for(work, port, "bot")
    pool = hash_pool(model_queries=True)
    retriever = Retriever(settings, store=VectorStore(settings), embedders=pool)
    t0 = time.perf_counter()
    retriever.search(QUESTIONS[0], top_k=5, sources=["code"])
    first = time.perf_counter() - t0
    report: dict[str, object] = {
        "step": "bot-start",
        "first_question_s": round(first, 2),
        "rss_mb": round(rss_mb()),
    }
    print(json.dumps(report), flush=True)
    if marker is not None:  # wait for the other process's 1% ingest
        ready = marker.with_suffix(".ready")
        ready.write_text("1")
        while not marker.exists():
            time.sleep(0.2)
        t0 = time.perf_counter()
        hits = retriever.search("zqxchanged", top_k=5, sources=["code"])
        after = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "step": "bot-after-1pct-ingest",
                    "next_question_s": round(after, 2),
                    "top_hit_is_changed": bool(hits and "zqxchanged" in hits[0].text),
                    # embedded Chroma: the other process's write made this one reopen its store
                    "store_reopened": retriever.store.reopened,
                    "rss_mb": round(rss_mb()),
                }
            ),
            flush=True,
        )
    if not questions:
        return
    if not port:
        print(json.dumps(reopen_cost(retriever)), flush=True)
    times = []
    for i in range(questions):
        q = QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" {i}")
        t0 = time.perf_counter()
        retriever.search(q, top_k=5, sources=["code"])
        times.append(time.perf_counter() - t0)
    times.sort()
    print(
        json.dumps(
            {
                "step": "latency",
                "questions": questions,
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p95_ms": round(times[int(len(times) * 0.95) - 1] * 1000, 1),
                "rss_mb": round(rss_mb()),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        ),
        flush=True,
    )


def reopen_cost(retriever, rounds: int = 5) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What following another process's write costs the embedded store: a new client plus the
    first dense query, which loads the vector index from disk; against a warm dense query."""
    store = retriever.store
    key = retriever.embedders.get(None).key
    vector = retriever.embedders.get(None).embed_query(QUESTIONS[1])
    warm, cold = [], []
    for _ in range(rounds):
        collection = store.collection("code", key, create=False)
        t0 = time.perf_counter()
        collection.query(vector, k=50)
        warm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with store._lock:
            store._reopen()
        collection = store.collection("code", key, create=False)
        collection.query(vector, k=50)
        cold.append(time.perf_counter() - t0)
    return {
        "step": "reopen",
        "rounds": rounds,
        "warm_dense_query_ms": round(statistics.median(warm) * 1000, 1),
        "reopen_and_first_dense_query_ms": round(statistics.median(cold) * 1000, 1),
        "rss_mb_after": round(rss_mb()),
    }


def reingest(work: Path, files: int) -> dict[str, object]:
    from rag.service import RagService
    from tests.conftest import git

    repo = work / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    sources = code_files(files)
    for i, path in enumerate(sources):
        target = repo / f"pkg{i // 100}" / f"m{i}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(errors="replace"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "corpus")
    settings = settings_for(work, None, "reingest")
    settings = settings.model_copy(update={"chroma_db_dir": work / "reingest-chroma"})
    service = RagService(settings, embedders=hash_pool())
    timed = symbol_timers()
    t0 = time.perf_counter()
    (first,) = service.ingest(["code"])
    first_s = time.perf_counter() - t0
    symbol_s = dict(timed)
    t0 = time.perf_counter()
    (again,) = service.ingest(["code"])
    again_s = time.perf_counter() - t0
    assert first.ok and again.ok and again.chunks_embedded == 0, (first, again)
    print(
        json.dumps(
            {
                "step": "reingest",
                "files": len(sources),
                "chunks": first.chunks_embedded,
                "first_s": round(first_s, 1),
                "unchanged_s": round(again_s, 1),
                "ratio": round(again_s / first_s, 3),
            }
        ),
        flush=True,
    )
    return symbol_share(service, settings.chroma_db_dir, first_s, symbol_s, first.symbols_indexed)


def symbol_timers() -> dict[str, float]:
    """Seconds spent in SymbolWriter.prepare (extraction), write and prune, summed (timing only)."""
    from rag.indexing.symbol_ingest import SymbolWriter

    spent = {"prepare": 0.0, "write": 0.0, "prune": 0.0}
    for name in spent:
        original = getattr(SymbolWriter, name)

        def timed(self, *args, _original=original, _name=name):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return _original(self, *args)
            finally:
                spent[_name] += time.perf_counter() - t0

        setattr(SymbolWriter, name, timed)
    return spent


def symbol_share(  # type: ignore[no-untyped-def]
    service, store: Path, ingest_s: float, spent: dict[str, float], entries: int
) -> dict[str, object]:
    """The symbol index's build time and its share of the store on disk."""
    import sqlite3

    from rag.indexing.lexical import LexicalIndexes
    from rag.indexing.symbol_store import entries_of

    embedder = service.embedders.get(None)
    symbols = service.store.collection("code", embedder.key, create=False, symbols=True)
    records = symbols.count()
    t0 = time.perf_counter()
    index = LexicalIndexes(None).fresh(symbols, expand=entries_of)
    bm25_s = time.perf_counter() - t0
    bm25_entries = len(index)

    def vacuumed_mb() -> float:
        with sqlite3.connect(store / "chroma.sqlite3") as db:
            db.execute("VACUUM")
        return sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6

    with_symbols = vacuumed_mb()
    service.store.client.delete_collection(symbols.name)
    without = vacuumed_mb()
    build_s = sum(spent.values())
    return {
        "step": "symbol-index",
        "symbol_records": records,
        "entries": entries,
        "extract_s": round(spent["prepare"], 1),
        "write_s": round(spent["write"] + spent["prune"], 1),
        "build_s": round(build_s, 1),
        "share_of_hash_embedder_ingest": round(build_s / ingest_s, 3),
        "store_mb_with": round(with_symbols, 1),
        "store_mb_without": round(without, 1),
        "storage_ratio": round(with_symbols / without, 3),
        "bm25_full_build_s": round(bm25_s, 1),
        "bm25_entries": bm25_entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--server", action="store_true", help="a `chroma run` server instead of embedded")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--reingest-files", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="--work already holds this index (skip the build)"
    )
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--marker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    port = args.port or None

    if args.role == "bot":
        bot_process(args.work, port, args.questions, args.marker)
        return

    import torch  # noqa: F401 - only for the machine line: the hash embedder does not use it

    work = args.work or Path(tempfile.mkdtemp(prefix="ragbot-scale-"))
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_average": round(os.getloadavg()[0], 2),
                "chunks": args.chunks,
                "store": "chroma run server" if args.server else "embedded Chroma",
                "work": str(work),
            }
        ),
        flush=True,
    )
    if args.reingest_files:
        print(json.dumps(reingest(work / "re", args.reingest_files)), flush=True)
        shutil.rmtree(work / "re", ignore_errors=True)
    if not args.chunks:
        return

    server = None
    if args.server:
        from tests.servers import ChromaServer

        server = ChromaServer(work / "server-data").start(timeout=120)
        port = server.port
    try:
        pairs = code_chunks(args.chunks)
        settings = settings_for(work, port, "ingest")
        if not args.reuse:
            seconds = write_chunks(settings, pairs)
            built = {"step": "build", "chunks": len(pairs), "write_s": round(seconds, 1)}
            print(json.dumps(built), flush=True)
        shutil.rmtree(work / "bot", ignore_errors=True)  # the first bot start builds BM25 in full

        def bot(marker: Path | None, questions: int) -> subprocess.Popen[str]:
            cmd = [
                sys.executable,
                __file__,
                "--role",
                "bot",
                "--work",
                str(work),
                "--questions",
                str(questions),
            ]
            if port:
                cmd += ["--port", str(port)]
            if marker:
                cmd += ["--marker", str(marker)]
            return subprocess.Popen(
                cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )

        # The bot's first start: a full BM25 build from the collection (saved to its data dir).
        first = bot(None, 0)
        out, _ = first.communicate()
        print(out.strip().splitlines()[0], flush=True)

        # A running bot; meanwhile another process changes 1% of the chunks.
        marker = work / "ingested"
        for stale in (marker, marker.with_suffix(".ready")):  # from an earlier run on this --work
            stale.unlink(missing_ok=True)
        running = bot(marker, args.questions)
        while not marker.with_suffix(".ready").exists():
            time.sleep(0.2)
        changed = [(doc, text + "\n# zqxchanged") for doc, text in pairs[::100]]  # 1%, same ids
        seconds = write_chunks(settings, changed)
        print(
            json.dumps({"step": "ingest-1pct", "chunks": len(changed), "write_s": round(seconds, 1)}),
            flush=True,
        )
        marker.write_text("1")
        out, _ = running.communicate()
        for line in out.strip().splitlines():
            print(line, flush=True)

        # A bot (re)started after another 1% ingest: it loads its saved index and applies the delta.
        more = [(doc, text + "\n# zqxchanged again") for doc, text in pairs[1::100]]
        write_chunks(settings, more)
        restarted = bot(None, 0)
        out, _ = restarted.communicate()
        line = json.loads(out.strip().splitlines()[0])
        line["step"] = "new-process-after-1pct-ingest"
        print(json.dumps(line), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
