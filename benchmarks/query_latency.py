"""Retrieval latency (no LLM) at 1k, 10k and 50k chunks: p50/p95 of `Retriever.search`.

Since issue 20 each size also has a symbol index beside the chunks (1.2 definitions a chunk, the
ratio of this repository: synthetic names and one sampled line as the docstring, random vectors),
and each question runs twice, interleaved: without the definition channel (weight 0, retrieval
as it was before) and with it (the product default); the ratio of the two p50s is printed.

Chunks are synthetic (lines sampled from the contextual-code files) with random unit vectors,
stored in an embedded Chroma collection and BM25-indexed through the same path as an ingest;
each query is a real question of the set, embedded by the real model (distinct queries, so the
query cache does not help). Prints one JSON line per size.

    PYTHONPATH=. .venv/bin/python benchmarks/query_latency.py [--sizes 1000,10000,50000] [--queries 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.answering.retrieval import Retriever
from rag.config import Settings
from rag.evaluation import load_dataset
from rag.indexing.changelog import bump_generation
from rag.indexing.embedders import embedder_factory
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import VectorStore
from rag.models import Chunk
from rag.sources.registry import SourceRegistry
from rag.sources.specs import RepositorySpec

DATA = Path(__file__).parent / "data" / "contextual-code"


def synthetic_chunks(n: int, lines: list[str], rng: random.Random) -> list[Chunk]:
    chunks = []
    for i in range(n):
        start = rng.randrange(0, max(1, len(lines) - 15))
        text = "\n".join(lines[start : start + 15])
        path = f"pkg{i % 97}/module_{i // 20}.py"
        chunks.append(Chunk("code", path, i % 20, text, f"{path}\n{text}", path, None, path, 1, 15))
    return chunks


def write_symbols(
    store: VectorStore, model_key: str, chunks: list[Chunk], lines: list[str], rng: random.Random, dim: int
) -> float:
    """A symbol index for the synthetic chunks: 1.2 definitions a chunk, logged like ingest writes."""
    from rag.indexing.changelog import logged_change
    from rag.indexing.store import chunk_id

    symbols = store.collection("code", model_key, symbols=True)
    assert symbols is not None
    ids, texts, metas = [], [], []
    for i, c in enumerate(chunks):
        for n in range(1 + (i % 5 == 0)):
            name = f"handle_{rng.choice(lines).split()[0].strip('():,')[:20]}_{i}_{n}"
            ids.append(f"sym:{i}:{n}")
            texts.append(f"{name} — {' '.join(name.split('_'))} — {rng.choice(lines).strip()}")
            metas.append(
                {
                    "source": "code",
                    "source_name": "code",
                    "doc_id": c.doc_id,
                    "path": c.path,
                    "name": name,
                    "qualname": name,
                    "def_kind": "function",
                    "chunk_id": chunk_id("code", c.doc_id, c.index),
                }
            )
    vectors = np.random.default_rng(len(ids)).normal(size=(len(ids), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    t0 = time.monotonic()
    with logged_change(symbols, ids):
        symbols.upsert_records(ids, vectors.tolist(), texts, metas)
    symbols.register_source("code")
    return time.monotonic() - t0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--fp32", action="store_true", help="float32 model instead of the int8 default")
    args = parser.parse_args()
    dataset = load_dataset(DATA)
    lines = [line for f in dataset.files for line in f.content.split("\n") if line.strip()]
    questions = [q.query for q in dataset.queries]
    parser_settings = Settings(_env_file=None, RAGBOT_EMB_INT8=not args.fp32)  # type: ignore[call-arg]
    pool = EmbedderPool(embedder_factory(parser_settings))
    embedder = pool.get(None)
    embedder.embed_query("warm-up")
    dim = len(embedder.embed_query("warm-up 2"))
    rng = random.Random(7)
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None, chroma_db_dir=Path(tmp) / "chroma", ragbot_data_dir=Path(tmp) / "data"
            )
            store = VectorStore(settings)
            collection = store.collection("code", embedder.key)
            assert collection is not None
            chunks = synthetic_chunks(n, lines, rng)
            vectors = np.random.default_rng(n).normal(size=(n, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            t0 = time.monotonic()
            collection.upsert(chunks, vectors.tolist(), [{} for _ in chunks])
            bump_generation(collection)
            insert_s = time.monotonic() - t0
            # One repository source named "code", as the labelled sets register: without it the
            # search narrowed to ["code"] finds no configured source and returns at once.
            registry = SourceRegistry([RepositorySpec(name="code", path=Path(tmp))])
            retriever = Retriever(settings, store=store, embedders=pool, registry=registry)
            t0 = time.monotonic()
            retriever.refresh_lexical("code")
            bm25_build_s = time.monotonic() - t0
            symbols_s = write_symbols(store, embedder.key, chunks, lines, rng, dim)
            retriever.search("warm-up query", top_k=5, sources=["code"])
            before = Retriever(
                settings, store=store, embedders=pool, registry=registry, definition_weight=0.0
            )
            before.search("warm-up query", top_k=5, sources=["code"])
            picked = rng.sample(questions, min(args.queries, len(questions)))
            totals, embeds, cpu, without = [], [], [], []
            for q in picked:
                t0 = time.perf_counter()
                embedder.embed_batch([q])
                embeds.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                before.search(q + "  ", top_k=5, sources=["code"])  # not in the query cache
                without.append((time.perf_counter() - t0) * 1000)
                t0, c0 = time.perf_counter(), time.process_time()
                retriever.search(q + " ", top_k=5, sources=["code"])  # not in the query cache
                totals.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            print(
                json.dumps(
                    {
                        "chunks": n,
                        "search_ms_p50": round(statistics.median(totals), 1),
                        "search_ms_p95": round(percentile(totals, 95), 1),
                        "without_definitions_ms_p50": round(statistics.median(without), 1),
                        "ratio_p50": round(statistics.median(totals) / statistics.median(without), 3),
                        "symbols_insert_s": round(symbols_s, 1),
                        "search_cpu_ms_p50": round(statistics.median(cpu), 1),
                        "query_embedding_ms_p50": round(statistics.median(embeds), 1),
                        "load_average_1m": round(os.getloadavg()[0], 1),
                        "bm25_build_s": round(bm25_build_s, 2),
                        "insert_s": round(insert_s, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
