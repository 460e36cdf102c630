"""Answer quality with a real model: the answering loop on and off, judged by the model and by citations.

NEEDS A MODEL, AND WAS NOT RUN HERE: it calls the generation model named by LITELLM_MODEL (with
LITELLM_API_BASE / LITELLM_API_KEY as that model needs), and no model was reachable where this
was written, so docs/retrieval.md reports no numbers for it. Run it where a model is.

Every question of the labelled sets (benchmarks/_labelled.py: contextual-code, click, ragbot,
starlette) is answered twice by `RagService.ask` over the same index (chunks and symbols in an
embedded Chroma store, the bundled embedder): with the answering loop (RAGBOT_AGENT=auto) and
without it (off). Each answer is scored two ways:

- judge: the same model grades 0-2 whether the answer answers the question, given the labelled
  code (the chunks that hold the labelled definition, or the set's golden chunks);
- cited: whether any hit the answer cites overlaps the labelled definition's file and lines (the
  definition rule of ranking_quality: same file, overlapping line range).

    LITELLM_MODEL=openai/gpt-4o-mini PYTHONPATH=. .venv/bin/python benchmarks/answer_quality.py \
        [--sets click,starlette] [--limit 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETS = ("contextual-code", "click", "ragbot", "starlette")
MODES = ("off", "auto")
#: Characters of labelled code the judge sees.
GOLDEN_CHARS = 8_000

JUDGE_PROMPT = """You grade answers to engineers' questions about a code base. You are given the \
question, the code that answers it (labelled by a person), and an answer to grade. Reply with one \
digit: 2 if the answer answers the question correctly and specifically, 1 if it is partly right \
or vague, 0 if it is wrong, does not answer, or only says it does not know."""


@dataclass
class Scored:
    set: str
    mode: str
    question: str
    grade: int | None
    cited_answer: bool
    steps: int
    seconds: float
    answer_mode: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Answer quality with the answering loop on and off. Needs a generation model "
        "(LITELLM_MODEL); it was not run where it was written (no model reachable).",
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--limit", type=int, default=20, help="questions per set (0: all)")
    parser.add_argument("--top-k", type=int, default=5, help="hits per question, as `ragbot ask --top-k`")
    parser.add_argument("--json", action="store_true", help="print every scored answer as JSON lines")
    args = parser.parse_args(argv)

    from rag.config import load_settings
    from rag.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"answer_quality: {e}", file=sys.stderr)
        return 2
    if not settings.litellm_model:
        print(
            "answer_quality: LITELLM_MODEL is not set: this benchmark needs a generation model "
            "(and LITELLM_API_BASE / LITELLM_API_KEY as that model needs).",
            file=sys.stderr,
        )
        return 2
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        print(
            f"answer_quality: unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}",
            file=sys.stderr,
        )
        return 2
    results: list[Scored] = []
    for name in names:
        results.extend(run_set(name, settings, limit=args.limit, top_k=args.top_k))
    if args.json:
        for r in results:
            print(json.dumps(r.__dict__))
    print_table(results, settings.litellm_model)
    return 0


def run_set(name: str, settings: Any, *, limit: int, top_k: int) -> list[Scored]:
    from benchmarks._labelled import Indexed, base_embedder, load_set
    from rag.config import Settings
    from rag.indexing.embedding import EmbedderPool
    from rag.service import RagService
    from rag.sources.registry import SourceRegistry
    from rag.sources.specs import RepositorySpec

    embedder = base_embedder()
    lset = load_set(name, embedder, Settings(_env_file=None))  # type: ignore[call-arg]
    questions = lset.questions[: limit or None]
    out: list[Scored] = []
    with tempfile.TemporaryDirectory(prefix=f"answer-quality-{name}-") as tmp:
        root = Path(tmp)
        Indexed(lset.chunks, embedder, root, lset.documents)  # chunks and symbols, as the ingest writes them
        registry = SourceRegistry([RepositorySpec(name="code", path=root)])
        for mode in MODES:
            local = settings.model_copy(
                update={
                    "chroma_db_dir": root / "chroma",
                    "ragbot_data_dir": root / "data",
                    "ragbot_sources_file": None,
                    "ragbot_agent": mode,
                }
            )
            service = RagService(local, embedders=EmbedderPool(lambda _model: embedder), registry=registry)
            for i, q in enumerate(questions, start=1):
                golden = golden_chunks(lset, q)
                started = time.perf_counter()
                answer = service.ask(q.query, top_k=top_k)
                seconds = time.perf_counter() - started
                out.append(
                    Scored(
                        set=name,
                        mode=mode,
                        question=q.query,
                        grade=grade(local, q.query, golden, answer.text),
                        cited_answer=cites_answer(answer, q, golden),
                        steps=len(answer.steps),
                        seconds=round(seconds, 3),
                        answer_mode=answer.mode,
                    )
                )
                print(f"{name} {mode} {i}/{len(questions)}", file=sys.stderr)
    return out


def golden_chunks(lset: Any, question: Any) -> list[Any]:
    """The set's chunks that hold the labelled answer (by the set's own judge)."""
    from rag.models import Hit

    held = []
    for c in lset.chunks:
        meta = {"doc_id": c.doc_id, "chunk_index": c.index}
        hit = Hit(c.source, c.title, c.url, c.path, c.start_line, c.end_line, 0.0, c.text, metadata=meta)
        if question.judge(hit):
            held.append(c)
    return held


def cites_answer(answer: Any, question: Any, golden: list[Any]) -> bool:
    """Whether a cited hit overlaps the labelled definition (same file, overlapping lines)."""
    from rag.answering.citations import cited

    for n in cited(answer.text, len(answer.hits)):
        hit = answer.hits[n - 1]
        if question.judge(hit):
            return True
        if hit.start_line is None or hit.end_line is None:
            continue
        for c in golden:
            if (
                c.path == hit.path
                and c.start_line is not None
                and c.end_line is not None
                and hit.start_line <= c.end_line
                and c.start_line <= hit.end_line
            ):
                return True
    return False


def grade(settings: Any, question: str, golden: list[Any], answer: str) -> int | None:
    """The model's 0-2 grade of `answer`, given the labelled code; None when the call fails."""
    import litellm

    from rag.answering.generation import completion_kwargs

    code = "\n\n".join(f"{c.path}:{c.start_line}-{c.end_line}\n{c.text}" for c in golden)[:GOLDEN_CHARS]
    messages = [
        {"role": "system", "content": JUDGE_PROMPT},
        {
            "role": "user",
            "content": f"Question: {question}\n\nThe code that answers it:\n\n{code}\n\n"
            f"The answer:\n\n{answer}",
        },
    ]
    kwargs = completion_kwargs(settings, messages, temperature=0.0, max_tokens=4, num_retries=1)
    try:
        reply = litellm.completion(**kwargs).choices[0].message.content or ""
    except Exception as e:
        print(f"judge call failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    digit = re.search(r"[012]", reply)
    return int(digit.group(0)) if digit else None


def print_table(results: list[Scored], model: str) -> None:
    print(f"\nAnswer quality, model {model}: judge = mean 0-2 grade by the same model; cited = the answer")
    print("cites a hit overlapping the labelled definition; steps = mean tool calls (0: single-shot).\n")
    columns = ("n", "judge", "=2", "cited", "steps", "p50 s", "extr.")
    header = f"{'set':<18} {'loop':<5} " + " ".join(f"{c:>6}" for c in columns)
    print(header)
    print("-" * len(header))
    for name in dict.fromkeys(r.set for r in results):
        for mode in MODES:
            rows = [r for r in results if r.set == name and r.mode == mode]
            if not rows:
                continue
            grades = [r.grade for r in rows if r.grade is not None]
            judge = statistics.mean(grades) if grades else float("nan")
            top = sum(1 for g in grades if g == 2) / len(grades) if grades else float("nan")
            print(
                f"{name:<18} {mode:<5} {len(rows):>6} {judge:>6.2f} {top:>6.0%} "
                f"{sum(r.cited_answer for r in rows) / len(rows):>6.0%} "
                f"{statistics.mean(r.steps for r in rows):>6.1f} "
                f"{statistics.median(r.seconds for r in rows):>6.1f} "
                f"{sum(r.answer_mode != 'llm' for r in rows):>6}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
