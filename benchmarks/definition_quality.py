"""Does the question land on the defining code? hit@1 / hit@5 with and without the symbol index.

Every labelled set (benchmarks/_labelled.py) is indexed once through the product path — its chunks
in embedded Chroma, its files' symbols beside them (rag.indexing.symbol_ingest, as ingest writes
them) — and every question runs through `Retriever.search(top_k=5)` with the product's ranking.
Variants differ only in two knobs read at search time: the definition channel's weight
(rag.answering.retrieval.DEFINITION_WEIGHT; 0 = off, today's retrieval before issue 20) and the
data-like factor (rag.answering.ranking.DATA_LIKE; 1.0 = off). The tune split is even positions,
the held-out split odd positions; only the tune split chooses.

Definition sets (click, starlette, ragbot): hit@k = an answering definition is in the top k.
contextual-code: Pass@k = the share of golden chunks in the top k (as `ragbot eval`).

    PYTHONPATH=. .venv/bin/python benchmarks/definition_quality.py [--sets starlette,click] [--weights 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from benchmarks._labelled import Indexed, LabelledSet, base_embedder, load_set, split
from rag.answering import ranking, retrieval
from rag.config import Settings

KS = (1, 5)


def score(lset: LabelledSet, index: Indexed, idx: list[int]) -> dict[str, float]:
    per_k: dict[int, list[float]] = {k: [] for k in KS}
    for i in idx:
        q = lset.questions[i]
        hits = index.retriever.search(q.query, top_k=max(KS), sources=["code"])
        for k in KS:
            found = {repr(g) for hit in hits[:k] for g in q.judge(hit)}
            per_k[k].append(len(found) / len(q.golden))
    return {f"hit@{k}": round(100 * sum(v) / max(1, len(v)), 2) for k, v in per_k.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="starlette,click,ragbot,contextual-code,contextual-code-rechunk")
    parser.add_argument("--weights", default="0,0.5,1,2,3", help="definition-channel weights to try")
    parser.add_argument("--data-like", default="1.0,0.5", help="data-like factors to try")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    factors = [float(f) for f in args.data_like.split(",")]
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_average": round(os.getloadavg()[0], 2),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        ),
        flush=True,
    )
    embedder = base_embedder()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    defaults = (retrieval.DEFINITION_WEIGHT, ranking.DATA_LIKE)
    for name in args.sets.split(","):
        lset = load_set(name, embedder, settings)
        tune, held = split(range(len(lset.questions)))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ragbot-defs-") as tmp:
            index = Indexed(lset.chunks, embedder, Path(tmp), lset.documents, ranking=True)
            built = time.perf_counter() - started
            sizes = f"{len(lset.chunks)} chunks, {len(lset.documents)} files, {len(lset.questions)} questions"
            split_sizes = f"tune {len(tune)}, held-out {len(held)}"
            print(f"## {name}: {sizes} ({split_sizes}); indexed in {built:.0f} s", flush=True)
            for weight in weights:
                for factor in factors:
                    retrieval.DEFINITION_WEIGHT, ranking.DATA_LIKE = weight, factor
                    row = {"tune": score(lset, index, tune), "held-out": score(lset, index, held)}
                    label = f"definitions {weight:g} data-like {factor:g}"
                    print(f"{name:24s} {label:32s} {json.dumps(row)}", flush=True)
        retrieval.DEFINITION_WEIGHT, ranking.DATA_LIKE = defaults


if __name__ == "__main__":
    main()
