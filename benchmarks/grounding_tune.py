"""Fit and check the `found` judgement (rag/answering/grounding.py) on labelled questions:
answerable and off-topic.

Answerable: every question of contextual-code (over its given chunks), of the click set (over
the installed click package) and of the ragbot set (over this repository). Off-topic: the
questions in benchmarks/data/grounding/ (README there), asked against the contextual-code
index and the ragbot index. Each question runs once through the product retriever, which fills
`Evidence`; a logistic regression on the standardised features is fitted on the tune split
(even positions of every group) and its threshold chosen there: the highest off-topic recall
that keeps >= 97% of tune answerable questions found. Held-out (odd positions) is reported.

    PYTHONPATH=. .venv/bin/python benchmarks/grounding_tune.py           # fit, print constants + held-out
    PYTHONPATH=. .venv/bin/python benchmarks/grounding_tune.py --check   # held-out with the shipped constants
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._labelled import DATA, ExactIndex, Indexed, base_embedder, load_set, split
from rag.answering import grounding
from rag.config import Settings

KEEP_ANSWERABLE = 0.97


def collect(*, chroma: bool) -> list[tuple[str, str, int, tuple[float, ...]]]:
    """(group, question, label 1=answerable, features) for every question."""
    embedder = base_embedder()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rows: list[tuple[str, str, int, tuple[float, ...]]] = []
    plan = {
        "contextual-code": DATA / "grounding" / "off-topic-contextual-code.txt",
        "click": None,
        "ragbot": DATA / "grounding" / "off-topic-ragbot.txt",
    }
    for name, off_topic in plan.items():
        lset = load_set(name, embedder, settings)
        with tempfile.TemporaryDirectory(prefix="ragbot-ground-") as tmp:
            index = Indexed(lset.chunks, embedder, Path(tmp)) if chroma else ExactIndex(lset.chunks, embedder)
            for q in lset.questions:
                rows.append((f"{name}/answerable", q.query, 1, index.candidates(q.query)[1].features()))
            if off_topic is not None:
                for line in off_topic.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        rows.append((f"{name}/off-topic", line, 0, index.candidates(line)[1].features()))
        embedder.save()
    return rows


def halves(rows: list[tuple[str, str, int, tuple[float, ...]]]) -> tuple[list, list]:
    tune, held = [], []
    for group in sorted({r[0] for r in rows}):
        t, h = split([r for r in rows if r[0] == group])
        tune += t
        held += h
    return tune, held


def fit(
    x: np.ndarray, y: np.ndarray, l2: float = 0.01, steps: int = 5000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    # Balance the classes: there are ~5x more answerable than off-topic questions.
    sample_w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * sample_w
        w -= 0.1 * (z.T @ g / len(y) + l2 * w)
        b -= 0.1 * g.mean()
    return mean, scale, w, float(b)


def report(rows: list, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.array([r[2] for r in rows])
    not_found = probabilities < threshold
    off = y == 0
    tp = int((not_found & off).sum())
    precision = tp / max(1, int(not_found.sum()))
    recall = tp / max(1, int(off.sum()))
    keep = float((~not_found & ~off).sum() / max(1, int((~off).sum())))
    return {
        "questions": len(rows),
        "off_topic": int(off.sum()),
        "not_found_precision": round(precision, 3),
        "not_found_recall": round(recall, 3),
        "answerable_kept_found": round(keep, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--check", action="store_true", help="score with the constants in rag/answering/grounding.py"
    )
    parser.add_argument(
        "--chroma", action="store_true", help="search through Chroma (slower) instead of numpy"
    )
    args = parser.parse_args()
    rows = collect(chroma=args.chroma)
    tune, held = halves(rows)
    for group in sorted({r[0] for r in rows}):
        feats = np.array([r[3] for r in rows if r[0] == group])
        means = dict(zip(grounding.FEATURES, feats.mean(axis=0).round(3).tolist(), strict=True))
        print(f"{group:28s} n={len(feats):3d} mean {means}")
    if not args.check:
        x, y = np.array([r[3] for r in tune]), np.array([r[2] for r in tune], dtype=float)
        mean, scale, w, b = fit(x, y)
        grounding.MEANS, grounding.SCALES = tuple(mean.round(4)), tuple(scale.round(4))
        grounding.WEIGHTS, grounding.BIAS = tuple(w.round(4)), round(b, 4)
        p_tune = np.array([grounding.probability(r[3]) for r in tune])
        answerable = np.sort(p_tune[y == 1])
        # The highest threshold that keeps KEEP_ANSWERABLE of tune answerable questions found.
        grounding.THRESHOLD = round(float(answerable[int((1 - KEEP_ANSWERABLE) * len(answerable))]) - 1e-4, 4)
        print("constants for rag/answering/grounding.py:")
        print(f"MEANS = {tuple(float(v) for v in grounding.MEANS)}")
        print(f"SCALES = {tuple(float(v) for v in grounding.SCALES)}")
        print(f"WEIGHTS = {tuple(float(v) for v in grounding.WEIGHTS)}")
        print(f"BIAS = {grounding.BIAS}")
        print(f"THRESHOLD = {grounding.THRESHOLD}")
    for label, part in (("tune", tune), ("held-out", held)):
        p = np.array([grounding.probability(r[3]) for r in part])
        print(f"{label:9s} {json.dumps(report(part, p, grounding.THRESHOLD))}")
        for group in sorted({r[0] for r in part}):
            sub = [r for r in part if r[0] == group]
            ps = np.array([grounding.probability(r[3]) for r in sub])
            print(f"  {group:28s} {json.dumps(report(sub, ps, grounding.THRESHOLD))}")
    p_held = [(grounding.probability(r[3]), r) for r in held]
    misses = [f"{r[0]}: {r[1]} (p={p:.2f})" for p, r in p_held if (p < grounding.THRESHOLD) != (r[2] == 0)]
    print("held-out errors:", *misses, sep="\n  ")


if __name__ == "__main__":
    main()
