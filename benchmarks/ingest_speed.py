"""Ingest speed: ragbot's pipeline against the original backend's per-text embedding loop.

Same model (the bundled all-MiniLM-L6-v2), same chunks, same machine, one process, runs
alternated so that machine noise hits both sides alike. Reports medians and their ratio.

    python benchmarks/ingest_speed.py [--runs 3] [--json]

The original backend embedded each chunk alone: tokenizer(text) → model(**inputs) →
mean of last_hidden_state, with no batching and autograd on, then added it to Chroma.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from benchmarks._corpus import make_repo
from rag.config import Settings
from rag.embedding import EmbedderPool, TransformersEmbedder
from rag.ingest import make_chunker
from rag.models import Document
from rag.secrets import redact
from rag.service import RagService
from rag.sources.repository import RepositorySource


def original_loop(embedder: TransformersEmbedder, texts: list[str], collection) -> float:  # type: ignore[no-untyped-def]
    """The original design: one forward pass per text, then one add per chunk (uuid ids)."""
    tokenizer, model = embedder._load_tokenizer(), embedder._load_model()
    t0 = time.perf_counter()
    for text in texts:
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=embedder.max_tokens)
        output = model(**inputs)
        vector = output.last_hidden_state.mean(dim=1).squeeze().tolist()
        collection.add(ids=[str(uuid.uuid4())], embeddings=[vector], documents=[text])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import chromadb
    import torch

    work = Path(tempfile.mkdtemp(prefix="ragbot-bench-"))
    repo = make_repo(work / "repo")
    pool = EmbedderPool()
    embedder = pool.get(None)
    assert isinstance(embedder, TransformersEmbedder)
    embedder.load()

    # The chunks both sides embed: ragbot's chunker over the corpus.
    settings = Settings(
        _env_file=None, code_repo_path=repo, chroma_db_dir=work / "c0", ragbot_data_dir=work / "d0"
    )  # type: ignore[call-arg]
    source = RepositorySource.from_settings(settings)
    source.prepare()
    chunker = make_chunker(settings, embedder)
    texts = []
    for doc in source.load(source.scan()):
        if isinstance(doc, Document):
            text, _ = redact(doc.text)  # the pipeline redacts before chunking; so do we here
            texts += [c.embed_text for c in chunker.chunk(replace(doc, text=text))]

    ours, theirs = [], []
    for run in range(args.runs):
        s = Settings(
            _env_file=None,
            code_repo_path=repo,
            chroma_db_dir=work / f"ours{run}",
            ragbot_data_dir=work / f"d{run}",
        )  # type: ignore[call-arg]
        service = RagService(s, embedders=pool)
        t0 = time.perf_counter()
        (report,) = service.ingest(["code"], full=True)
        ours.append(time.perf_counter() - t0)
        assert report.ok and report.chunks_embedded == len(texts), (report, len(texts))

        client = chromadb.PersistentClient(str(work / f"orig{run}"))
        col = client.get_or_create_collection("orig", embedding_function=None)
        theirs.append(original_loop(embedder, texts, col))

    result = {
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        ),
        "chunks": len(texts),
        "runs": args.runs,
        "ragbot_seconds_median": round(statistics.median(ours), 2),
        "original_seconds_median": round(statistics.median(theirs), 2),
        "ragbot_chunks_per_second": round(len(texts) / statistics.median(ours), 1),
        "original_chunks_per_second": round(len(texts) / statistics.median(theirs), 1),
        "speedup": round(statistics.median(theirs) / statistics.median(ours), 2),
        "ragbot_runs": [round(x, 2) for x in ours],
        "original_runs": [round(x, 2) for x in theirs],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
