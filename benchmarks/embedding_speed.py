"""Document-embedding throughput (chunks/s) of the bundled model: threads, batch budget, int8.

Embeds the 737 contextual-code chunks (with ragbot's headers) once per variant, after one
warm-up batch; prints one JSON line per variant, the median of --runs runs.

    PYTHONPATH=. .venv/bin/python benchmarks/embedding_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rag.embedding import TransformersEmbedder
from rag.evaluation import given_chunks, load_dataset

DATA = Path(__file__).parent / "data" / "contextual-code"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="embed only the first N chunks")
    parser.add_argument("--quick", action="store_true", help="only fp32 vs int8 at the defaults")
    args = parser.parse_args()
    chunks, _ = given_chunks(load_dataset(DATA))
    texts = [c.embed_text for c in chunks][: args.limit or None]
    variants = [
        {"threads": 2, "batch_tokens": 8192, "int8": False},
        {"threads": 2, "batch_tokens": 8192, "int8": True},
    ]
    if not args.quick:
        variants += [
            {"threads": 1, "batch_tokens": 8192, "int8": False},
            {"threads": 2, "batch_tokens": 2048, "int8": False},
            {"threads": 2, "batch_tokens": 32768, "int8": False},
        ]
    for v in variants:
        torch.set_num_threads(int(v["threads"]))
        embedder = TransformersEmbedder(quantize=bool(v["int8"]))
        embedder.embed_documents(texts[:32])
        rates = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            embedder.embed_documents(texts, batch_tokens=int(v["batch_tokens"]))
            rates.append(len(texts) / (time.monotonic() - t0))
        q0 = time.perf_counter()
        for i in range(20):
            embedder.embed_batch([f"how does function number {i} handle errors?"])
        query_ms = (time.perf_counter() - q0) / 20 * 1000
        print(
            json.dumps(
                {**v, "chunks_per_s": round(statistics.median(rates), 1), "query_ms": round(query_ms, 1)}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
