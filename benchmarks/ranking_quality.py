"""Implementation first, measured: Pass@k / MRR@10 of fusion alone, + prior, + diversity, + both.

Runs every question of each labelled set (benchmarks/_labelled.py) once through the product
retriever without rag.answering.ranking (the fused pool of 30), then applies the ranking variants to that
pool, so each variant sees exactly the same candidates. Reports the tune split (even positions)
and the held-out split (odd positions) separately; `--grid` also sweeps the prior's factors on
the tune split. Merged hits count every chunk they contain; "chunks/hit" says how much text
the top 5 carries, so a gain from merging is visible for what it is.

    PYTHONPATH=. .venv/bin/python benchmarks/ranking_quality.py [--sets contextual-code,click] [--grid]
        [--float32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks._labelled import (
    CACHE,
    CachedEmbedder,
    ExactIndex,
    Indexed,
    LabelledSet,
    base_embedder,
    load_set,
    split,
)
from rag.answering import ranking
from rag.config import Settings
from rag.models import Hit, content_hash

KS = (5, 10)
Variant = Callable[[str, list[Hit], int], list[Hit]]


def fused(_q: str, hits: list[Hit], k: int) -> list[Hit]:
    return hits[:k]


def prior_only(q: str, hits: list[Hit], k: int) -> list[Hit]:
    intent = ranking.intent_of(q)
    scored = sorted(hits, key=lambda h: h.score * ranking.prior(intent, h), reverse=True)
    return scored[:k]


def diversity_only(_q: str, hits: list[Hit], k: int) -> list[Hit]:
    return ranking.diversify(hits, top_k=k)


def both(q: str, hits: list[Hit], k: int) -> list[Hit]:
    return ranking.rerank(q, hits, top_k=k)


VARIANTS: dict[str, Variant] = {
    "fusion (before)": fused,
    "+ prior": prior_only,
    "+ diversity/merge": diversity_only,
    "+ prior + diversity (product)": both,
}


def metrics(
    lset: LabelledSet, pools: Sequence[list[Hit]], idx: Sequence[int], variant: Variant
) -> dict[str, float]:
    out: dict[str, float] = {}
    shares: dict[int, list[float]] = {k: [] for k in KS}
    rr: list[float] = []
    chunks_per_hit: list[float] = []
    for i in idx:
        q = lset.questions[i]
        for k in KS:
            # As the product asks: top_k = k over the first k * POOL_FACTOR fused candidates.
            hits = variant(q.query, pools[i][: k * ranking.POOL_FACTOR], k)
            found_at: dict[str, int] = {}
            for r, hit in enumerate(hits, start=1):
                for g in q.judge(hit):
                    found_at.setdefault(repr(g), r)
            shares[k].append(sum(1 for r in found_at.values() if r <= k) / len(q.golden))
            if k == 10:
                first = min(found_at.values(), default=None)
                rr.append(1.0 / first if first is not None else 0.0)
            if k == 5:
                chunks_per_hit.extend(len(h.metadata.get("chunk_ids") or [h.chunk_id]) for h in hits)
    for k in KS:
        out[f"pass@{k}"] = round(100 * sum(shares[k]) / len(shares[k]), 2)
    out["mrr@10"] = round(sum(rr) / len(rr), 3)
    out["chunks/hit@5"] = round(sum(chunks_per_hit) / max(1, len(chunks_per_hit)), 2)
    return out


def cached_pools(lset: LabelledSet, embedder: CachedEmbedder, *, exact: bool = False) -> list[list[Hit]]:
    """Each question's fused pool, cached by the set's chunks and questions (retrieval is the slow part)."""
    texts = [c.embed_text for c in lset.chunks] + [q.query for q in lset.questions]
    # The vectors' scheme and whether the symbol index (issue 20) stood beside the chunks, too.
    key = content_hash("\0".join([embedder.path.name, "symbols-1", *texts]))
    path = CACHE / f"pools-{lset.name}{'-exact' if exact else ''}-{key[:12]}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())  # noqa: S301 (our own cache file)
    with tempfile.TemporaryDirectory(prefix="ragbot-rank-") as tmp:
        index = (
            ExactIndex(lset.chunks, embedder)
            if exact
            else Indexed(lset.chunks, embedder, Path(tmp), lset.documents)
        )
        pools = [index.candidates(q.query)[0] for q in lset.questions]
    embedder.save()
    path.write_bytes(pickle.dumps(pools))
    return pools


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="contextual-code,contextual-code-rechunk,click,ragbot")
    parser.add_argument("--grid", action="store_true", help="sweep OFF_ROLE x DEFINITION x PER_FILE on tune")
    parser.add_argument(
        "--exact", action="store_true", help="fuse in numpy (exact cosine) instead of via Chroma"
    )
    parser.add_argument("--float32", action="store_true", help="float32 vectors instead of the int8 default")
    args = parser.parse_args()
    embedder = base_embedder(int8=not args.float32)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in args.sets.split(","):
        lset = load_set(name, embedder, settings)
        pools = cached_pools(lset, embedder, exact=args.exact)
        tune, held = split(range(len(lset.questions)))
        sizes = f"{len(lset.questions)} questions (tune {len(tune)}, held-out {len(held)})"
        print(f"## {name}: {len(lset.chunks)} chunks, {sizes}")
        for label, variant in VARIANTS.items():
            row = {
                "tune": metrics(lset, pools, tune, variant),
                "held-out": metrics(lset, pools, held, variant),
            }
            print(f"{name:24s} {label:30s} {json.dumps(row)}", flush=True)
        if args.grid:
            defaults = (ranking.OFF_ROLE, ranking.DEFINITION, ranking.PER_FILE, ranking.MAX_MERGED)
            for off, definition, per_file, merged in itertools.product(
                (0.4, 0.6, 0.8), (1.0, 1.1, 1.25), (1, 2, 3), (2, 3, 4)
            ):
                ranking.OFF_ROLE, ranking.DEFINITION, ranking.PER_FILE, ranking.MAX_MERGED = (
                    off,
                    definition,
                    per_file,
                    merged,
                )
                row = metrics(lset, pools, tune, lambda q, h, k: ranking.rerank(q, h, top_k=k))
                grid = f"off {off} def {definition} per_file {per_file} merged {merged}"
                print(f"{name:24s} grid {grid}: {json.dumps(row)}")
            ranking.OFF_ROLE, ranking.DEFINITION, ranking.PER_FILE, ranking.MAX_MERGED = defaults


if __name__ == "__main__":
    main()
