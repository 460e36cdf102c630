"""Regenerate docs/reliability.md: run the reliability scenarios and tabulate what they measured.

Runs `pytest -m reliability` with RAGBOT_RELIABILITY_REPORT pointing at a temporary file (each
test appends one JSON line through tests/reliability.py `record()` once its assertions have
passed), then renders one table per section of issue 7 with what was checked and the figures.
With --runs N the suite runs N times and every numeric figure is the median over the runs.

    python benchmarks/reliability_report.py [--runs 1] [--output docs/reliability.md] [-- pytest args]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = {
    1: "Chroma server mode",
    2: "Crash consistency",
    3: "Faults",
    4: "Load",
    5: "Hostile input",
}
# What issue 7 asks for, with the words that identify its recorded scenario.
EXPECTED = [
    (1, "ingest, ask, re-ingest and pruning against `chroma run`", "Chroma server mode"),
    (1, "server unreachable: one clear line", "Chroma server unreachable"),
    (1, "server down while the bot runs: it says the index is unavailable", "Chroma server stopped"),
    (1, "hybrid (BM25) ranking identical in server and embedded mode", "BM25"),
    (2, "kill -9 while embedding", "kill -9 while embedding"),
    (2, "kill -9 between storing new chunks and deleting old ones", "kill -9 between"),
    (2, "kill -9 while pruning", "kill -9 while pruning"),
    (3, "Confluence 5xx mid-listing", "Confluence HTTP 500"),
    (3, "Confluence 429 storm", "429 storm"),
    (3, "LLM timeout", "LLM timeout"),
    (3, "LLM 500", "LLM HTTP 500"),
    (3, "Slack disconnect and dropped websocket", "disconnect"),
    (3, "Chroma server restarted while running", "Chroma server restarted"),
    (4, "50 questions at once", "Load:"),
    (5, "40,000-character / empty / control-character messages", "40,000-character"),
    (5, "prompt injection in a page and a code comment", "prompt injection"),
    (5, "symlink to /etc", "symlinks"),
    (5, "10,000-file repository", "10,000-file"),
    (5, "one 5 MB line", "5 MB"),
]
UNITS = {"_s": " s", "_ms": " ms", "_mib": " MiB"}


def section_of(scenario: str) -> int:
    s = scenario.lower()
    if s.startswith("chroma server restarted"):
        return 3
    if s.startswith("chroma"):
        return 1
    if s.startswith("crash"):
        return 2
    if s.startswith("faults"):
        return 3
    if s.startswith("load"):
        return 4
    return 5


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} CPU cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run_suite(extra: list[str]) -> tuple[list[dict[str, Any]], str, float, int]:
    """One `pytest -m reliability` run: its records, its summary line, seconds, exit code."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "reliability.jsonl"
        env = {**os.environ, "RAGBOT_RELIABILITY_REPORT": str(report), "PYTHONPATH": str(ROOT)}
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "reliability",
                "-q",
                "-rfE",
                "-p",
                "no:cacheprovider",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        records = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    lines = done.stdout.strip().splitlines()
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    summary = next((ln.strip("= ") for ln in reversed(lines) if re.search(r"\d+ (passed|failed)", ln)), "")
    if failures:
        summary += "\n\n" + "\n".join(f"- `{f}`" for f in failures)
    sys.stderr.write(done.stdout[-3000:] + done.stderr[-2000:])
    return records, summary, seconds, done.returncode


def merge(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per scenario in first-seen order; numeric figures are medians over the runs."""
    order: list[str] = []
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for records in runs:
        for rec in records:
            if rec["scenario"] not in by_scenario:
                order.append(rec["scenario"])
            by_scenario[rec["scenario"]].append(rec)
    merged = []
    for scenario in order:
        recs = by_scenario[scenario]
        figures: dict[str, Any] = {}
        for key in recs[0]["figures"]:
            values = [r["figures"].get(key) for r in recs if key in r["figures"]]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                med = statistics.median(values)
                figures[key] = round(med, 2) if isinstance(med, float) else med
            else:
                figures[key] = values[0]
        merged.append(
            {"scenario": scenario, "checked": recs[0]["checked"], "figures": figures, "n": len(recs)}
        )
    return merged


def show(key: str, value: Any) -> str:
    unit = next((u for suffix, u in UNITS.items() if key.endswith(suffix)), "")
    name = key
    for suffix in UNITS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name.replace('_', ' ')}: {value}{unit}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict[str, Any]], *, summaries: list[str], seconds: list[float], runs: int) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Reliability: faults, crashes, load and hostile input",
        "",
        "Generated by `python benchmarks/reliability_report.py` (do not edit by hand): it runs",
        "`pytest -m reliability` and tabulates what each scenario checked and measured. Every row is a",
        "test that passed; its assertions are in the test named in `tests/` (see `grep -rn record tests/`).",
        "Everything runs against real components on 127.0.0.1: the real Bolt app over a real websocket",
        "to a fake Slack, a real `chroma run` server, real subprocesses killed with SIGKILL, the bundled",
        "MiniLM model, fake Confluence and fake LLM HTTP servers.",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}; shared with other jobs and noisy, so times are indicative only",
        f"- Runs: {runs} ({'figures are medians over the runs' if runs > 1 else 'figures are from one run'})",
        f"- Suite time: {', '.join(f'{s:.0f} s' for s in seconds)}",
        f"- pytest: {summaries[-1] if summaries else 'not run'}",
        "",
    ]
    for number, title in SECTIONS.items():
        section_rows = [r for r in rows if section_of(r["scenario"]) == number]
        out += [f"## {number}. {title}", ""]
        if not section_rows:
            out += ["_No scenario of this section was recorded in this run._", ""]
            continue
        out += ["| Scenario | Checked | Measured |", "| --- | --- | --- |"]
        for r in section_rows:
            figures = "<br>".join(show(k, v) for k, v in r["figures"].items()) or "—"
            out.append(f"| {cell(r['scenario'])} | {cell(r['checked'])} | {cell(figures)} |")
        out.append("")
    missing = [
        f"- ({number}) {label}"
        for number, label, key in EXPECTED
        if not any(key.lower() in r["scenario"].lower() for r in rows)
    ]
    out += ["## Not recorded in this run", ""]
    out += missing or ["Every scenario of issue 7 listed in the script was recorded."]
    out += [
        "",
        "## Notes",
        "",
        "- Ack latency is measured by the fake Slack: from sending an envelope on the websocket to",
        "  receiving the app's ack. Slack re-delivers an envelope not acknowledged within 3 s; the",
        "  load test asserts every ack is under that.",
        "- Peak RSS is the test process's maximum resident set (it includes the embedding model,",
        "  Chroma and every earlier test of the run), so it is an upper bound for the bot.",
        "- Times with real waits (LLM timeout, Confluence Retry-After, reconnects) are dominated by",
        "  the configured timeouts and backoffs, not by ragbot's own work.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    all_records, summaries, seconds = [], [], []
    worst = 0
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}: pytest -m reliability …", file=sys.stderr)
        records, summary, took, code = run_suite(args.pytest_args)
        all_records.append(records)
        summaries.append(summary)
        seconds.append(took)
        worst = worst or code
    args.output.write_text(render(merge(all_records), summaries=summaries, seconds=seconds, runs=args.runs))
    print(f"wrote {args.output} ({sum(len(r) for r in all_records)} records)", file=sys.stderr)
    sys.exit(worst)


if __name__ == "__main__":
    main()
