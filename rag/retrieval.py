"""Retrieval: dense search in each source's collection, fused by reciprocal rank."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rag.config import SOURCES, Settings, SourceName
from rag.embedding import EmbedderPool
from rag.models import Hit
from rag.store import Record, VectorStore

log = logging.getLogger(__name__)

RRF_K = 60


def rrf_fuse(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> dict[str, float]:
    """Reciprocal rank fusion: score(id) = Σ weight / (k + rank), ranks starting at 1."""
    scores: dict[str, float] = {}
    for r, ranking in enumerate(rankings):
        w = weights[r] if weights else 1.0
        for rank, rid in enumerate(ranking, start=1):
            scores[rid] = scores.get(rid, 0.0) + w / (k + rank)
    return scores


def record_to_hit(record: Record, score: float) -> Hit:
    m = record.metadata

    def opt_int(key: str) -> int | None:
        value = m.get(key)
        return int(value) if isinstance(value, (int, float)) else None

    return Hit(
        source=str(m.get("source", "")),
        title=str(m.get("title") or m.get("path") or ""),
        url=m.get("url") or None,
        path=m.get("path") or None,
        start_line=opt_int("start_line"),
        end_line=opt_int("end_line"),
        score=score,
        text=record.text,
        chunk_id=record.id,
        metadata=m,
    )


class Retriever:
    """Finds the chunks most relevant to a question across the indexed sources."""

    def __init__(self, settings: Settings, *, store: VectorStore, embedders: EmbedderPool) -> None:
        self.settings = settings
        self.store = store
        self.embedders = embedders

    def search(self, query: str, *, top_k: int = 5, source: SourceName | None = None) -> list[Hit]:
        sources = [source] if source else list(SOURCES)
        rankings: list[list[str]] = []
        records: dict[str, Record] = {}
        existing = set(self.store.collection_names())
        for name in sources:
            embedder = self.embedders.get(self.settings.embedding_model_for(name))
            if self.store.collection_name(name, embedder.key) not in existing:
                continue
            collection = self.store.collection(name, embedder.key, create=False)
            if collection is None:
                continue
            found = collection.query(embedder.embed_query(query), k=max(top_k, 1) * 2)
            rankings.append([r.id for r in found])
            records.update({r.id: r for r in found})
        scores = rrf_fuse(rankings)
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
        return [record_to_hit(records[rid], score) for rid, score in ranked]
