"""Retrieval latency before / after rag.answering.ranking + rag.answering.grounding, side by side in one run.

Same index as benchmarks/query_latency.py (synthetic chunks of real code lines, random vectors,
embedded Chroma, BM25). Per question, both sides run, in alternating order: "before" is
`Retriever.search` without the ranking pass or evidence (the code path as it was), "after" is
the product path of `RagService.ask` minus the answer: search with the prior, diversity and
merging, collecting `Evidence`, then `judge`. Each side gets a distinct query string, so the
query-embedding cache never helps. Prints p50s and the median of per-question ratios.

    PYTHONPATH=. .venv/bin/python benchmarks/ranking_latency.py [--chunks 10000] [--queries 40] [--rounds 3]
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

from benchmarks.query_latency import DATA, synthetic_chunks
from rag.answering.grounding import Evidence, judge
from rag.answering.retrieval import Retriever
from rag.config import Settings
from rag.evaluation import load_dataset
from rag.indexing.changelog import bump_generation
from rag.indexing.embedders import embedder_factory
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import VectorStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dataset = load_dataset(DATA)
    lines = [line for f in dataset.files for line in f.content.split("\n") if line.strip()]
    questions = [q.query for q in dataset.queries]
    pool = EmbedderPool(embedder_factory(Settings(_env_file=None)))  # type: ignore[call-arg]
    embedder = pool.get(None)
    dim = len(embedder.embed_query("warm-up"))
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, chroma_db_dir=Path(tmp) / "chroma", ragbot_data_dir=Path(tmp) / "data"
        )
        store = VectorStore(settings)
        collection = store.collection("code", embedder.key)
        assert collection is not None
        chunks = synthetic_chunks(args.chunks, lines, rng)
        vectors = np.random.default_rng(args.chunks).normal(size=(args.chunks, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        collection.upsert(chunks, vectors.tolist(), [{} for _ in chunks])
        bump_generation(collection)
        before = Retriever(settings, store=store, embedders=pool, ranking=False)
        after = Retriever(settings, store=store, embedders=pool, lexical=before.lexical)
        before.refresh_lexical("code")
        before.search("warm-up query", top_k=5, sources=["code"])
        after.search("warm-up query", top_k=5, sources=["code"], evidence=Evidence())

        def run_before(q: str) -> float:
            t0 = time.perf_counter()
            before.search(q, top_k=5, sources=["code"])
            return (time.perf_counter() - t0) * 1000

        def run_after(q: str) -> float:
            t0 = time.perf_counter()
            evidence = Evidence()
            after.search(q, top_k=5, sources=["code"], evidence=evidence)
            judge(evidence)
            return (time.perf_counter() - t0) * 1000

        for r in range(args.rounds):
            picked = rng.sample(questions, min(args.queries, len(questions)))
            times: dict[str, list[float]] = {"before": [], "after": []}
            for i, q in enumerate(picked):
                # Alternate which side goes first; distinct strings defeat the query cache.
                order = [("before", run_before), ("after", run_after)]
                for label, fn in order if i % 2 == 0 else order[::-1]:
                    times[label].append(fn(f"{q} {r} {label}"))
            ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
            print(
                json.dumps(
                    {
                        "round": r + 1,
                        "chunks": args.chunks,
                        "queries": len(picked),
                        "before_p50_ms": round(statistics.median(times["before"]), 1),
                        "after_p50_ms": round(statistics.median(times["after"]), 1),
                        "median_ratio_after_before": round(statistics.median(ratios), 3),
                        "load_average_1m": round(os.getloadavg()[0], 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
