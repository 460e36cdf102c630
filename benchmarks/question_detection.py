"""How well `bot.questions.is_question` tells a support channel's questions from its chat.

Run: `python benchmarks/question_detection.py [--data FILE]` (a JSONL of {"text", "question"}).
The bundled set (benchmarks/data/support_messages.jsonl) was written after the rule was fixed
and never used to change it: a held-out check, not a tuning set. It is hand-written in the style
of engineering support channels, so the numbers say how the rule behaves on such messages, not
on any one team's channel — run it on an export of yours (Slack's channel export gives the text).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.questions import is_question

DATA = Path(__file__).resolve().parent / "data" / "support_messages.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    tp = fp = fn = tn = 0
    misses: list[str] = []
    for row in rows:
        said, truth = is_question(row["text"]), bool(row["question"])
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
        tn += not said and not truth
        if said != truth:
            misses.append(f"  {'false positive' if said else 'missed question'}: {row['text']!r}")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(f"{len(rows)} messages ({tp + fn} questions, {fp + tn} chat) from {args.data.name}")
    print(f"precision {precision:.3f}  recall {recall:.3f}  (tp {tp}, fp {fp}, fn {fn}, tn {tn})")
    print("\n".join(misses))


if __name__ == "__main__":
    main()
