"""Document-embedding throughput and fidelity of the bundled model: int8 schemes, batch sizes.

Embeds real code chunks (ragbot's own modules through its syntax-aware chunker, or the
contextual-code chunks with --dataset) with each variant, after one warm-up batch; prints one
JSON line per variant: chunks/s (median of --runs, variants alternated run by run), and the
mean and minimum cosine of its vectors to the float32 model's vectors of the same texts.

    PYTHONPATH=. python benchmarks/embedding_speed.py [--runs 3] [--limit 200] [--dataset]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rag.chunking import SyntaxChunker
from rag.embedding import TransformersEmbedder, quantize_linear
from rag.models import Document

ROOT = Path(__file__).resolve().parent.parent


def ragbot_chunks(embedder: TransformersEmbedder) -> list[str]:
    chunker = SyntaxChunker(
        count_tokens=embedder.count_tokens, chunk_tokens=256, overlap_tokens=25, max_tokens=256
    )
    texts: list[str] = []
    for path in sorted((ROOT / "rag").rglob("*.py")):
        doc = Document(
            source="code", doc_id=path.name, title=path.name, text=path.read_text(), path=path.name
        )
        texts += [c.embed_text for c in chunker.chunk(doc)]
    return texts


def per_tensor(model: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def per_channel_all(model: Any) -> Any:
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="embed N chunks (spread over the set)")
    parser.add_argument("--dataset", action="store_true", help="the contextual-code chunks instead")
    args = parser.parse_args()

    exact = TransformersEmbedder(device="cpu", quantize=False)
    exact.load()
    if args.dataset:
        from rag.evaluation import given_chunks, load_dataset

        chunks, _ = given_chunks(load_dataset(ROOT / "benchmarks" / "data" / "contextual-code"))
        texts = [c.embed_text for c in chunks]
    else:
        texts = ragbot_chunks(exact)
    step = max(1, len(texts) // args.limit)
    texts = texts[::step][: args.limit]

    def variant(quantizer: Any, max_batch: int) -> TransformersEmbedder:
        e = TransformersEmbedder(device="cpu", quantize=False)
        e.load()
        if quantizer is not None:
            e._model = quantizer(copy.deepcopy(exact._model))
        e.max_batch = max_batch
        return e

    variants = {
        "float32, batches <= 8": variant(None, 8),
        "float32, batches <= 32": variant(None, 32),
        "int8 per-tensor (before), batches <= 8": variant(per_tensor, 8),
        "int8 per-channel, all Linear, batches <= 8": variant(per_channel_all, 8),
        "int8 per-channel, down-proj float32 (default), batches <= 8": variant(quantize_linear, 8),
        "int8 per-channel, down-proj float32 (default), batches <= 16": variant(quantize_linear, 16),
        "int8 per-channel, down-proj float32 (default), batches <= 32": variant(quantize_linear, 32),
    }
    reference = np.array(exact.embed_documents(texts))
    rates: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for e in variants.values():
        e.embed_documents(texts[:8])  # warm-up
    for run in range(args.runs):
        names = list(variants) if run % 2 == 0 else list(reversed(variants))
        for name in names:
            t0 = time.perf_counter()
            out = variants[name].embed_documents(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
            vectors[name] = np.array(out)
    for name in variants:
        cos = (vectors[name] * reference).sum(axis=1)
        print(
            json.dumps(
                {
                    "variant": name,
                    "chunks": len(texts),
                    "threads": torch.get_num_threads(),
                    "chunks_per_s": round(statistics.median(rates[name]), 1),
                    "runs": [round(r, 1) for r in rates[name]],
                    "cosine_mean": round(float(cos.mean()), 4),
                    "cosine_min": round(float(cos.min()), 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
