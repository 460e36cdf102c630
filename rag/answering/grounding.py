"""Does the index know? A calibrated judgement behind `found` in answers (docs/retrieval.md).

Retrieval already has the evidence: how close the best dense hits are (cosine), how much of the
query's own BM25 weight the best lexical hit matches, whether the dense and BM25 rankings agree
on their top hits, and which query terms occur nowhere in the index. `Evidence` collects these
while `Retriever.search` runs; `judge` turns them into a probability with a small logistic
regression fitted on labelled questions (benchmarks/grounding_tune.py, data in
benchmarks/data/grounding/) and compares it with a threshold chosen on the tune split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.indexing.lexical import LexicalIndex, tokenize

#: How many of each ranking's best hits the agreement feature compares.
AGREEMENT_DEPTH = 5

FEATURES = ("dense_top", "dense_mean3", "bm25_share", "agreement", "unknown_share")

# Fitted by benchmarks/grounding_tune.py on the tune split (standardised features → logit),
# 2026-12-01, bundled all-MiniLM-L6-v2 (per-channel int8, the default since issue 13) and the
# BM25 of rag.indexing.lexical; refitted when the int8 scheme changed the dense scores; docs/retrieval.md.
MEANS = (0.4548, 0.4191, 0.494, 0.3559, 0.0847)
SCALES = (0.1283, 0.1179, 0.1651, 0.279, 0.186)
WEIGHTS = (0.5508, 0.8979, 1.2757, 0.2933, -1.3112)
BIAS = 1.4225
#: Below this many indexed chunks the statistics the model was fitted on (idf, unknown terms,
#: agreement of top 5) mean little — calibrated on indexes of 700–1,300 chunks: not judged, found.
MIN_INDEXED_CHUNKS = 30
#: found = probability >= THRESHOLD: the highest that keeps 97% of tune answerable questions found.
THRESHOLD = 0.1787


@dataclass
class Evidence:
    """What retrieval saw for one query, filled in by `Retriever.search` source by source."""

    dense: list[tuple[str, float]] = field(default_factory=list)  # (id, cosine similarity)
    lexical: list[tuple[str, float]] = field(default_factory=list)  # (id, BM25 score)
    #: Per distinct query term: how many indexed chunks contain it, summed over the sources.
    term_docs: dict[str, int] = field(default_factory=dict)
    #: The BM25 weight of the query's own terms in the best-matching index (Σ idf of known terms).
    query_weight: float = 0.0
    #: Chunks in the searched BM25 indexes, summed over the sources.
    indexed_chunks: int = 0

    def add_dense(self, hits: Sequence[tuple[str, float | None]]) -> None:
        """Dense hits with their cosine *distance* (as Chroma returns it)."""
        self.dense.extend((rid, 1.0 - d) for rid, d in hits if d is not None)
        self.dense.sort(key=lambda x: x[1], reverse=True)

    def add_lexical(self, index: LexicalIndex, query: str, hits: Sequence[tuple[str, float]]) -> None:
        terms = sorted(set(tokenize(query)))
        n_docs, counts = index.document_frequencies(terms)
        self.indexed_chunks += n_docs
        weight = 0.0
        for term, count in zip(terms, counts, strict=True):
            self.term_docs[term] = self.term_docs.get(term, 0) + count
            if count:
                weight += _idf(n_docs, count)
        self.query_weight = max(self.query_weight, weight)
        self.lexical.extend(hits)
        self.lexical.sort(key=lambda x: x[1], reverse=True)

    def features(self) -> tuple[float, ...]:
        cosines = [c for _, c in self.dense[:3]]
        dense_top = cosines[0] if cosines else 0.0
        dense_mean3 = sum(cosines) / len(cosines) if cosines else 0.0
        bm25_top = self.lexical[0][1] if self.lexical else 0.0
        bm25_share = bm25_top / self.query_weight if self.query_weight > 0 else 0.0
        top_dense = {rid for rid, _ in self.dense[:AGREEMENT_DEPTH]}
        top_lexical = {rid for rid, _ in self.lexical[:AGREEMENT_DEPTH]}
        agreement = len(top_dense & top_lexical) / AGREEMENT_DEPTH
        terms = list(self.term_docs)
        unknown = sum(1 for t in terms if self.term_docs[t] == 0) / len(terms) if terms else 1.0
        return (dense_top, dense_mean3, min(bm25_share, 2.0), agreement, unknown)


def _idf(n_docs: int, count: int) -> float:
    # bm25s's default ("lucene") idf
    return math.log(1.0 + (n_docs - count + 0.5) / (count + 0.5))


@dataclass(frozen=True)
class Judgement:
    found: bool
    probability: float
    features: tuple[float, ...]


def probability(features: Sequence[float]) -> float:
    z = BIAS + sum(w * (x - m) / s for w, x, m, s in zip(WEIGHTS, features, MEANS, SCALES, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def judge(evidence: Evidence) -> Judgement:
    """found unless the evidence says, with the calibrated model, that nothing indexed answers."""
    if not evidence.dense and not evidence.lexical:
        return Judgement(False, 0.0, evidence.features())
    features = evidence.features()
    if 0 < evidence.indexed_chunks < MIN_INDEXED_CHUNKS:
        return Judgement(True, 1.0, features)
    p = probability(features)
    return Judgement(p >= THRESHOLD, p, features)
