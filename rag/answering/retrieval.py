"""Retrieval: dense and BM25 search in each kind's collection, fused by reciprocal rank."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from rag.answering.access import AccessScope, public_scope
from rag.answering.grounding import Evidence
from rag.answering.ranking import POOL_FACTOR, rerank
from rag.answering.reranking import HostedReranker
from rag.config import KINDS, Settings
from rag.indexing.embedding import EmbedderPool
from rag.indexing.lexical import LexicalIndexes
from rag.indexing.store import Collection, Record, VectorStore
from rag.indexing.symbol_store import entries_of
from rag.models import Hit
from rag.sources.registry import SourceRegistry

log = logging.getLogger(__name__)

RRF_K = 60
#: Chunks taken from each ranking before fusion.
CANDIDATES = 50
#: Weighted RRF of the dense and BM25 rankings, tuned on contextual-code
#: (benchmarks/retrieval_quality.py --sweep, docs/retrieval.md): BM25 counts twice as much as the
#: bundled MiniLM, and a small k lets the first few ranks of either list dominate.
HYBRID_RRF_K = 10
DENSE_WEIGHT = 1.0
LEXICAL_WEIGHT = 2.0
#: The definition channel (rag.indexing.symbol_store): BM25 over the definitions' short texts,
#: each match a vote for the chunk that holds the definition. Tuned on the tune halves of the
#: labelled sets (docs/retrieval.md, "Definitions").
DEFINITION_WEIGHT = 0.5


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


def record_to_hit(record: Record, score: float, *, show_source: bool = False) -> Hit:
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
        source_name=str(m.get("source_name") or m.get("source") or ""),
        show_source=show_source,
    )


class Retriever:
    """Finds the chunks most relevant to a question across the indexed sources.

    Hybrid: per kind's collection, a dense ranking (Chroma, cosine) and a BM25 ranking
    (rag.indexing.lexical) of `candidates` chunks each, both narrowed to the requested sources by their
    `source_name` inside the search (Chroma `where`, a BM25 score mask) — never by dropping hits
    afterwards, so nothing of another source reaches the answer. All rankings are fused by
    weighted reciprocal rank, and the fused score is the hit's score. The weights were tuned on
    the contextual-code set (docs/retrieval.md). Then rag.answering.ranking applies the
    implementation-first prior to the fused score and makes the top k diverse (merging adjacent
    chunks of a file into one hit).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore,
        embedders: EmbedderPool,
        lexical: LexicalIndexes | None = None,
        registry: SourceRegistry | None = None,
        dense_weight: float = DENSE_WEIGHT,
        lexical_weight: float = LEXICAL_WEIGHT,
        definition_weight: float | None = None,
        ranking: bool = True,
        reranker: HostedReranker | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else SourceRegistry.from_settings(settings)
        self.store = store
        self.embedders = embedders
        self.lexical = (
            lexical if lexical is not None else LexicalIndexes(settings.ragbot_data_dir / "lexical")
        )
        self.dense_weight = dense_weight
        self.lexical_weight = lexical_weight
        #: None: the module's DEFINITION_WEIGHT at search time (benchmarks sweep it).
        self.definition_weight = definition_weight
        #: Implementation-first prior and per-file diversity after fusion (rag.answering.ranking).
        self.ranking = ranking
        #: RERANK_MODEL: reorders the fused candidates before the prior and the top k.
        self.reranker = reranker

    def search(
        self,
        query: str,
        *,
        top_k: int = 5,
        sources: Iterable[str] | None = None,
        evidence: Evidence | None = None,
        access: AccessScope | None = None,
    ) -> list[Hit]:
        """The best `top_k` hits among `sources` (names; None = every configured source);
        `evidence`, when given, collects what the grounding judgement needs. `access`: only the
        chunks this reader may see (synced Confluence permissions), filtered inside each search;
        None: the public pages of synced sites only (`AccessScope()` gates nothing)."""
        access = access if access is not None else public_scope(self.registry)
        wanted = self.registry.names() if sources is None else list(sources)
        rankings: list[list[str]] = []
        weights: list[float] = []
        records: dict[str, Record] = {}
        owners: dict[str, Collection] = {}
        depth = max(CANDIDATES, top_k * 2)
        definition_weight = DEFINITION_WEIGHT if self.definition_weight is None else self.definition_weight
        for kind in KINDS:
            names = [n for n in wanted if (spec := self.registry.get(n)) is not None and spec.kind == kind]
            if not names:
                continue
            embedder = self.embedders.get(self.settings.embedding_model_for(kind))
            collection = self.store.collection(kind, embedder.key, create=False)
            if collection is None:
                continue
            # Read once per query (the handle was just fetched): the source names and BM25's log.
            metadata = collection.metadata(fresh=False)
            # No filter when the search covers everything the collection holds (the common case):
            # an unfiltered HNSW query is the fastest. Otherwise Chroma filters inside the search.
            narrowed = not set(collection.source_names(metadata)) <= set(names)
            where = _where_names(names) if narrowed else None
            gate = access.gate(names)
            if gate is not None:  # synced Confluence pages: only those this reader may see
                where = access.where(names)
                if where is None:
                    continue  # nothing of these sources may be shown to this reader
            if self.dense_weight > 0:
                found = shown(collection.query(embedder.embed_query(query), k=depth, where=where))
                rankings.append([r.id for r in found])
                weights.append(self.dense_weight)
                records.update({r.id: r for r in found})
                if evidence is not None:
                    evidence.add_dense([(r.id, r.distance) for r in found])
            if self.lexical_weight > 0:
                index = self.lexical.fresh(collection, metadata)
                lexical = index.search(query, depth, source_names=names if narrowed else None, gate=gate)
                if evidence is not None:
                    evidence.add_lexical(index, query, lexical)
                rankings.append([rid for rid, _ in lexical])
                weights.append(self.lexical_weight)
                owners.update({rid: collection for rid, _ in lexical})
            if definition_weight > 0:
                # The symbol index carries no access tags: gated sources stay out of it.
                ungated = [n for n in names if n not in access.synced]
                defined = self._definitions(kind, embedder.key, query, ungated, depth) if ungated else []
                rankings.append(defined)
                weights.append(definition_weight)
                owners.update({rid: collection for rid in defined})
        scores = rrf_fuse(rankings, weights, k=HYBRID_RRF_K)
        pool = top_k * POOL_FACTOR if self.ranking else top_k
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:pool]
        # Chunks found by BM25 alone still need their text and metadata: one get per collection.
        missing: dict[str, list[str]] = {}
        for rid, _ in ranked:
            if rid not in records:
                missing.setdefault(owners[rid].name, []).append(rid)
        for ids in missing.values():
            records.update({r.id: r for r in shown(owners[ids[0]].get(ids))})
        show = self.registry.several_repositories
        hits = [
            record_to_hit(records[rid], score, show_source=show) for rid, score in ranked if rid in records
        ]
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return rerank(query, hits, top_k=top_k) if self.ranking else hits

    def _definitions(self, kind: str, model_key: str, query: str, names: list[str], depth: int) -> list[str]:
        """The chunks that hold the definitions whose words best meet the question, best first:
        BM25 over the symbol index's short texts (name split into words, abbreviations spelled
        out, signature, docstring), each definition standing for the chunk that holds it."""
        symbols = self.store.collection(kind, model_key, create=False, symbols=True)
        if symbols is None:
            return []
        metadata = symbols.metadata(fresh=False)
        narrowed = not set(symbols.source_names(metadata)) <= set(names)
        index = self.lexical.fresh(symbols, metadata, expand=entries_of)
        found = index.search(query, depth, source_names=names if narrowed else None)
        chunks: list[str] = []
        for chunk in index.tags([entry for entry, _ in found]):
            if chunk and chunk not in chunks:  # a file entry votes for nothing
                chunks.append(chunk)
        return chunks

    def refresh_lexical(self, kind: str) -> None:
        """Bring the kind's BM25 index up to date now."""
        embedder = self.embedders.get(self.settings.embedding_model_for(kind))
        collection = self.store.collection(kind, embedder.key, create=False)
        if collection is not None:
            self.lexical.fresh(collection)


#: Ids of empty records already logged (bounded: the log says each once, not each query).
_logged_empty: set[str] = set()
_LOGGED_EMPTY_MAX = 10_000


def shown(records: Iterable[Record]) -> list[Record]:
    """The records that can be shown: a record without text, or without a path and a title (a
    deleted chunk's id that a stale index still returns, a hand-edited store) is never shown,
    cited, remembered or counted; it is dropped here and logged once with its id."""
    kept: list[Record] = []
    for record in records:
        if record.text.strip() and (record.metadata.get("path") or record.metadata.get("title")):
            kept.append(record)
        elif record.id not in _logged_empty:
            if len(_logged_empty) < _LOGGED_EMPTY_MAX:
                _logged_empty.add(record.id)
            log.warning("dropped an index record with no text, path or title: %s", record.id)
    return kept


def _where_names(names: Sequence[str]) -> dict[str, object]:
    if len(names) == 1:
        return {"source_name": names[0]}
    return {"source_name": {"$in": list(names)}}
