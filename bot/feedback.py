"""Reading the 👍/👎 log that bot.memory.AnswerLog appends to (RAGBOT_DATA_DIR/slack/feedback.jsonl).

Used by `ragbot feedback`, by `/ragingest status` (the last 7 days' votes) and by the
retention job, which drops votes older than RAGBOT_RETENTION_DAYS.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.memory import FEEDBACK_FILE, SlackState, feedback_lock

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300
CSV_COLUMNS = ("at", "user", "vote", "found", "question", "answer", "sources")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def feedback_path(data_dir: Path) -> Path:
    return data_dir / "slack" / FEEDBACK_FILE


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `7d`, `12h`, `30m`, `2w`; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like 7d, 12h or 30m, got {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def _timestamp(value: object) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(str(value), _TIME_FORMAT)))
    except ValueError:
        return None


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Vote:
    at: float
    user: str
    vote: str
    question: str | None
    answer: str | None
    found: bool | None
    answer_id: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)

    def source_names(self) -> list[str]:
        names = (str(s.get("source_name") or s.get("source") or "?") for s in self.sources)
        return sorted(set(names))

    def to_json(self) -> dict[str, Any]:
        return {
            "at": time.strftime(_TIME_FORMAT, time.gmtime(self.at)),
            "user": self.user,
            "vote": self.vote,
            "question": self.question,
            "answer": excerpt(self.answer),
            "found": self.found,
            "sources": self.sources,
        }


def read_votes(path: Path, *, since: float | None = None) -> list[Vote]:
    """The votes in the log, newest first; a person's later vote on an answer replaces their
    earlier one. `since` (a Unix time) keeps only the votes cast from then on."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    latest: dict[tuple[str, str], Vote] = {}
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
            if entry.get("kind") == "escalation":  # read by read_escalations
                continue
            at = _timestamp(entry["time"])
            vote = entry["vote"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is not a vote; skipped", path, number)
            continue
        if at is None or vote not in ("up", "down") or (since is not None and at < since):
            continue
        found = entry.get("found")
        item = Vote(
            at=at,
            user=str(entry.get("user") or ""),
            vote=vote,
            question=entry.get("question"),
            answer=entry.get("answer"),
            found=None if found is None else bool(found),
            answer_id=str(entry.get("answer_id") or ""),
            sources=list(entry.get("sources") or []),
        )
        key = (item.answer_id or f"line{number}", item.user)
        latest.pop(key, None)  # re-inserted last: the dict keeps log order
        latest[key] = item
    # Newest first; votes within one second (the log's resolution) keep the log's order, reversed.
    return sorted(reversed(latest.values()), key=lambda v: v.at, reverse=True)


@dataclass(frozen=True)
class Escalation:
    """An "Ask an expert" click: who asked for whom, on which question."""

    at: float
    user: str
    escalated_to: list[str]
    reasons: list[str]
    question: str | None
    found: bool | None
    answer_id: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": time.strftime(_TIME_FORMAT, time.gmtime(self.at)),
            "user": self.user,
            "escalated_to": self.escalated_to,
            "reasons": self.reasons,
            "question": self.question,
            "found": self.found,
            "sources": self.sources,
        }


def read_escalations(path: Path, *, since: float | None = None) -> list[Escalation]:
    """The escalations in the feedback log, newest first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found: list[Escalation] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("kind") != "escalation":
            continue
        at = _timestamp(entry.get("time"))
        if at is None or (since is not None and at < since):
            continue
        flag = entry.get("found")
        found.append(
            Escalation(
                at=at,
                user=str(entry.get("user") or ""),
                escalated_to=[str(x) for x in entry.get("escalated_to") or []],
                reasons=[str(x) for x in entry.get("reasons") or []],
                question=entry.get("question"),
                found=None if flag is None else bool(flag),
                answer_id=str(entry.get("answer_id") or ""),
                sources=list(entry.get("sources") or []),
            )
        )
    return sorted(reversed(found), key=lambda e: e.at, reverse=True)


def summary(votes: Sequence[Vote]) -> dict[str, Any]:
    """Votes up and down, the share of 👎, and the same per source."""
    up = sum(v.vote == "up" for v in votes)
    down = len(votes) - up
    per_source: dict[str, dict[str, int]] = {}
    for v in votes:
        for name in v.source_names():
            counts = per_source.setdefault(name, {"up": 0, "down": 0})
            counts[v.vote] += 1
    return {
        "up": up,
        "down": down,
        "share_down": round(down / len(votes), 3) if votes else None,
        "per_source": dict(sorted(per_source.items())),
    }


def summary_line(votes: Sequence[Vote]) -> str:
    s = summary(votes)
    if not votes:
        return "no votes"
    line = f"{len(votes)} vote(s): {s['up']} 👍, {s['down']} 👎 ({s['share_down']:.0%} 👎)"
    if s["per_source"]:
        parts = ", ".join(f"{name} {c['up']} 👍 {c['down']} 👎" for name, c in s["per_source"].items())
        line += f"; by source: {parts}"
    return line


def to_csv(votes: Sequence[Vote]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in votes:
        data = v.to_json()
        found = "" if v.found is None else str(v.found).lower()
        sources = " ; ".join(_citation(s) for s in v.sources)
        writer.writerow([data["at"], v.user, v.vote, found, v.question or "", data["answer"], sources])
    return out.getvalue()


def escalations_text(escalations: Sequence[Escalation]) -> str:
    """One line per escalation: when, who asked for whom, and the question."""
    lines = []
    for e in escalations:
        data = e.to_json()
        lines.append(f"{data['at']} 🙋 {e.user} → {', '.join(e.escalated_to)}: {e.question}\n")
    return "".join(lines)


def to_text(votes: Sequence[Vote]) -> str:
    """Three lines per vote: when, the vote, who and the question; the answer; its sources."""
    lines: list[str] = []
    for v in votes:
        data = v.to_json()
        found = "" if v.found is None else (" (found)" if v.found else " (NOT FOUND)")
        lines.append(f"{data['at']} {'👍' if v.vote == 'up' else '👎'} {v.user}{found}: {v.question}")
        lines.append(f"    {data['answer']}")
        if v.sources:
            lines.append(f"    sources: {', '.join(_citation(s) for s in v.sources)}")
    return "".join(line + "\n" for line in lines)


def _citation(source: dict[str, Any]) -> str:
    path = source.get("path")
    if path:
        start, end = source.get("start_line"), source.get("end_line")
        return f"{path}:{start}-{end}" if start is not None and end is not None else str(path)
    return str(source.get("title") or source.get("url") or "?")


def purge_votes(path: Path, cutoff: float) -> int:
    """Drop the votes cast before `cutoff` (a Unix time) from the log; returns how many."""
    if not path.exists():
        return 0
    with feedback_lock(path):
        kept: list[str] = []
        dropped = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                at = _timestamp(json.loads(line).get("time"))
            except (ValueError, AttributeError):
                at = None
            if at is not None and at < cutoff:
                dropped += 1
            elif line.strip():
                kept.append(line)
        if dropped:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)
    return dropped


def purge_slack_data(data_dir: Path, cutoff: float) -> dict[str, int]:
    """The Slack layer's retention (rag.ops.retention): thread turns, answers and votes before `cutoff`."""
    counts = {"turns": 0, "answers": 0, "votes": 0}
    if (data_dir / "slack" / "slack.sqlite3").exists():
        counts.update(SlackState(data_dir).purge(cutoff))
    counts["votes"] = purge_votes(feedback_path(data_dir), cutoff)
    return counts
