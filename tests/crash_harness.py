"""Runs one real ingest and SIGKILLs itself at a chosen point (used by test_crash_consistency).

    python -m tests.crash_harness POINT   # env: CODE_REPO_PATH, CHROMA_DB_DIR, RAGBOT_DATA_DIR

POINT: embedding | between_write_and_delete | pruning | none
"""

from __future__ import annotations

import os
import signal
import sys
import types
from typing import Any

import rag.indexing.ingest
from rag.config import load_settings
from rag.indexing.embedding import Embedder
from rag.indexing.ingest import Ingestor
from rag.indexing.store import Collection
from rag.service import RagService


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_delete(collection: Collection, *, nth: int, before: bool) -> None:
    """Make this collection's nth non-empty delete_ids call the last thing the process does."""
    original = collection.delete_ids
    calls = {"n": 0}

    def delete_ids(self: Collection, ids: Any) -> None:
        calls["n"] += 1 if ids else 0
        if ids and calls["n"] == nth and before:
            die()
        original(ids)
        if ids and calls["n"] == nth:
            die()

    collection.delete_ids = types.MethodType(delete_ids, collection)  # type: ignore[method-assign]


def arm(point: str) -> None:
    rag.indexing.ingest.FLUSH_CHUNKS = 3  # many small flushes, so there is a "middle" to die in
    if point == "embedding":
        original_embed = Embedder.embed_documents
        calls = {"n": 0}

        def embed_then_die(self: Embedder, texts: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:  # two flushes are stored; the third dies while embedding
                die()
            return original_embed(self, texts, **kw)

        Embedder.embed_documents = embed_then_die  # type: ignore[method-assign]
    elif point == "between_write_and_delete":
        original_flush = Ingestor._flush

        def flush(
            self: Ingestor,
            pending: Any,
            embedder: Any,
            collection: Collection,
            symbols: Any,
            report: Any,
            **kw: Any,
        ) -> None:
            if any(p.previous is not None and len(p.previous.ids) > len(p.chunks) for p in pending):
                kill_on_delete(collection, nth=1, before=True)
            original_flush(self, pending, embedder, collection, symbols, report, **kw)

        Ingestor._flush = flush  # type: ignore[method-assign]
    elif point == "pruning":
        original_prune = Ingestor._prune

        def prune(collection: Collection, states: Any, listed: Any, report: Any) -> None:
            kill_on_delete(collection, nth=2, before=False)  # two documents pruned, the rest not
            original_prune(collection, states, listed, report)

        Ingestor._prune = staticmethod(prune)  # type: ignore[method-assign,assignment]
    elif point != "none":
        raise SystemExit(f"unknown point {point}")


def main() -> None:
    arm(sys.argv[1])
    service = RagService(load_settings())
    (report,) = service.ingest(["code"])
    print("finished", report.ok, report.chunks_embedded, flush=True)


if __name__ == "__main__":
    main()
