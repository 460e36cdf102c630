"""Pass@k on contextual-code for dense only, BM25 only and hybrid (weighted RRF), and a weight sweep.

Uses the product's components (chunk headers, embedder, BM25 tokenizer, `rrf_fuse`) but ranks
the 737 given chunks exactly in numpy, so the sweep needs one embedding pass. The headline
number comes from `ragbot eval` (the product path through Chroma), printed last.

    PYTHONPATH=. .venv/bin/python benchmarks/retrieval_quality.py [--model DIR] [--sweep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.answering.retrieval import DENSE_WEIGHT, HYBRID_RRF_K, LEXICAL_WEIGHT, rrf_fuse
from rag.config import Settings
from rag.evaluation import given_chunks, load_dataset, score
from rag.indexing.embedding import EmbedderPool, TransformersEmbedder
from rag.indexing.lexical import LexicalIndex, lexical_text
from rag.indexing.store import chunk_id

DATA = Path(__file__).parent / "data" / "contextual-code"
CACHE = Path(os.environ.get("RAGBOT_BENCH_CACHE") or Path(tempfile.gettempdir()) / "ragbot-bench-cache")
KS = (5, 10, 20)
DEPTH = 50


def cached_vectors(embedder, texts: list[str], kind: str) -> np.ndarray:
    scheme = getattr(embedder, "variant", "")  # "int8pc", "fp16", "": cached vectors are per scheme
    variant = embedder.name + (f":{scheme}" if scheme else "") + kind
    key = hashlib.sha256((variant + "\0".join(texts)).encode()).hexdigest()[:16]
    path = CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    if kind == "query":
        vectors = np.array([embedder.embed_query(t) for t in texts], dtype=np.float32)
    else:
        vectors = np.array(embedder.embed_documents(texts), dtype=np.float32)
    np.save(path, vectors)
    return vectors


def ranks_for(rankings: list[list[str]], owner, dataset) -> list[list[int | None]]:
    out = []
    for q, ranking in zip(dataset.queries, rankings, strict=True):
        positions = {owner[rid]: r for r, rid in enumerate(ranking, start=1) if rid in owner}
        out.append([positions.get(g) for g in q.golden])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--no-headers", action="store_true")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="the default int8 scheme (rag.indexing.embedding_int8.quantize_linear)",
    )
    args = parser.parse_args()
    dataset = load_dataset(DATA)
    pool = EmbedderPool(lambda model: TransformersEmbedder(model, quantize=args.int8))
    embedder = pool.get(args.model)
    chunks, owner = given_chunks(dataset, headers=not args.no_headers)
    ids = [chunk_id("code", c.doc_id, c.index) for c in chunks]
    t0 = time.monotonic()
    doc_vecs = cached_vectors(embedder, [c.embed_text for c in chunks], "doc")
    query_vecs = cached_vectors(embedder, [q.query for q in dataset.queries], "query")
    print(f"embedded in {time.monotonic() - t0:.1f}s ({embedder.name})")

    sims = query_vecs @ doc_vecs.T
    dense = [[ids[i] for i in np.argsort(-row, kind="stable")[:DEPTH]] for row in sims]
    lexical = LexicalIndex(None)
    lexical.build(ids, [lexical_text(c.text, {"path": c.path, "symbol": c.symbol}) for c in chunks])
    bm25 = [[rid for rid, _ in lexical.search(q.query, DEPTH)] for q in dataset.queries]

    rows = {
        "dense only": score(ranks_for(dense, owner, dataset), KS),
        "BM25 only": score(ranks_for(bm25, owner, dataset), KS),
    }

    def fused(k: int, wd: float, wl: float) -> list[list[str]]:
        out = []
        for d, b in zip(dense, bm25, strict=True):
            scores = rrf_fuse([d, b], [wd, wl], k=k)
            out.append([rid for rid, _ in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)])
        return out

    if args.sweep:
        for k in (5, 10, 20, 30, 60):
            for wl in (0.5, 1.0, 1.5, 2.0, 3.0):
                metrics = score(ranks_for(fused(k, 1.0, wl), owner, dataset), KS)
                print(f"rrf k {k:2d} dense 1.0 bm25 {wl:.1f}: {json.dumps(metrics)}")
    product = fused(HYBRID_RRF_K, DENSE_WEIGHT, LEXICAL_WEIGHT)
    rows[f"hybrid (k {HYBRID_RRF_K}, dense {DENSE_WEIGHT}, BM25 {LEXICAL_WEIGHT})"] = score(
        ranks_for(product, owner, dataset), KS
    )
    for name, metrics in rows.items():
        print(f"{name:32s} {json.dumps(metrics)}")


if __name__ == "__main__":
    Settings  # noqa: B018  (imported for readers: the product path reads Settings)
    main()
