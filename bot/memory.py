"""Thread memory for Slack: the earlier turns of a thread, persisted in RAGBOT_DATA_DIR.

Why persisted (SQLite) rather than re-read from Slack on every message: the stored turns
are the exact question and Markdown answer (what the model should see), not the mrkdwn
rendering with its sources footer; knowing "the bot has answered in this thread" costs no
API call for the many thread messages the bot must ignore; and it survives restarts.
When the file is gone (a fresh volume, another replica answered), `turns_from_replies`
rebuilds a thread from conversations.replies so a follow-up still gets its context.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from rag.models import Hit, Turn
from rag.service import fit_budget

MAX_TURNS = 10
MAX_CHARS = 8_000  # ≈ 2k tokens of history, leaving the model's window to the sources

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    channel TEXT NOT NULL, thread_ts TEXT NOT NULL, created REAL NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS turns_thread ON turns (channel, thread_ts, created);
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY, created REAL NOT NULL, channel TEXT, thread_ts TEXT, user TEXT,
    question TEXT NOT NULL, answer TEXT NOT NULL, mode TEXT, sources TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS answers_created ON answers (created);
"""
FEEDBACK_FILE = "feedback.jsonl"


class SlackState:
    """The bot's SQLite file in RAGBOT_DATA_DIR/slack: thread turns and answered questions.

    What is older than RAGBOT_RETENTION_DAYS is deleted by rag/ops/retention.py (`purge`).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "slack" / "slack.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(answers)")}
            if "found" not in columns:  # files written before votes recorded `found`
                db.execute("ALTER TABLE answers ADD COLUMN found INTEGER")
            # Private answers (shared at most once) and escalations, from issue 21 on.
            for column, kind in (("private", "INTEGER"), ("shared_at", "REAL"), ("escalated_at", "REAL")):
                if column not in columns:
                    db.execute(f"ALTER TABLE answers ADD COLUMN {column} {kind}")
            # What each turn cited that only some may read (synced Confluence permissions), from issue 23 on.
            if "sources" not in {row[1] for row in db.execute("PRAGMA table_info(turns)")}:
                db.execute("ALTER TABLE turns ADD COLUMN sources TEXT")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, closing(self._connect()) as db, db:
            return list(db.execute(sql, args).fetchall())

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """One connection in one transaction, under the lock (for a read-and-write that must be atomic)."""
        with self._lock, closing(self._connect()) as db, db:
            yield db

    def purge(self, cutoff: float) -> dict[str, int]:
        """Delete thread turns and answers created before `cutoff` (a Unix time)."""
        with self._lock, closing(self._connect()) as db, db:
            turns = db.execute("DELETE FROM turns WHERE created < ?", (cutoff,)).rowcount
            answers = db.execute("DELETE FROM answers WHERE created < ?", (cutoff,)).rowcount
        return {"turns": turns, "answers": answers}


class ThreadMemory:
    """The turns of each (channel, thread) the bot answered in, bounded by a character budget."""

    def __init__(self, state: SlackState, *, max_turns: int = MAX_TURNS, max_chars: int = MAX_CHARS) -> None:
        self.state = state
        self.max_turns = max_turns
        self.max_chars = max_chars

    def add(
        self, channel: str, thread_ts: str, question: str, answer: str, *, hits: Sequence[Hit] = ()
    ) -> None:
        """Remember a turn; of its sources, the pages only some may read (`access`) are kept with it."""
        gated = [
            {"source_name": h.source_name or h.source, "metadata": {"access": h.metadata["access"]}}
            for h in hits
            if h.metadata.get("access")
        ]
        self.state.execute(
            "INSERT INTO turns (channel, thread_ts, created, question, answer, sources) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (channel, thread_ts, time.time(), question, answer, json.dumps(gated) if gated else None),
        )

    def seed(self, channel: str, thread_ts: str, turns: Iterable[Turn]) -> None:
        """Store turns rebuilt from Slack, unless the thread is already known."""
        if self.knows(channel, thread_ts):
            return
        for turn in turns:
            self.add(channel, thread_ts, turn.question, turn.answer)

    def knows(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread."""
        rows = self.state.execute(
            "SELECT 1 FROM turns WHERE channel = ? AND thread_ts = ? LIMIT 1", (channel, thread_ts)
        )
        return bool(rows)

    def turns(
        self, channel: str, thread_ts: str, *, admit: Callable[[list[dict[str, Any]]], bool] | None = None
    ) -> list[Turn]:
        """The most recent turns that fit the budget, oldest first; with `admit`, only the turns
        whose restricted sources it admits (the reader of the next answer may see them)."""
        rows = self.state.execute(
            "SELECT question, answer, sources FROM turns WHERE channel = ? AND thread_ts = ? "
            "ORDER BY created DESC, rowid DESC LIMIT ?",
            (channel, thread_ts, self.max_turns),
        )
        kept = [
            Turn(q, a)
            for q, a, sources in reversed(rows)
            if admit is None or not sources or admit(json.loads(sources))
        ]
        return fit_budget(kept, self.max_chars)


def turns_from_replies(
    replies: Sequence[dict[str, Any]], *, bot_user_id: str | None, bot_id: str | None, strip: Any = None
) -> list[Turn]:
    """Question/answer pairs from a thread's messages: each bot message answers the human
    messages since the previous one. `strip` cleans a question (e.g. drops the bot mention)."""
    turns: list[Turn] = []
    pending: list[str] = []
    for message in replies:
        text = str(message.get("text") or "").strip()
        is_ours = (bot_user_id and message.get("user") == bot_user_id) or (
            bot_id and message.get("bot_id") == bot_id
        )
        if is_ours:
            if pending and text:
                turns.append(Turn("\n".join(pending), text))
            pending = []
        elif text and not message.get("bot_id") and not message.get("subtype"):
            pending.append(strip(text) if strip else text)
    return turns


class AnswerLog:
    """Every answer given (question, answer, sources), and the 👍/👎 votes on them."""

    def __init__(self, state: SlackState) -> None:
        self.state = state
        self.feedback_path = state.path.parent / FEEDBACK_FILE
        self._lock = threading.Lock()

    def record_answer(
        self,
        answer_id: str,
        *,
        channel: str,
        thread_ts: str,
        user: str,
        question: str,
        answer: str,
        mode: str,
        hits: Sequence[Hit],
        found: bool | None = None,
        private: bool = False,
    ) -> None:
        """`thread_ts`: the thread's memory key for a public answer; for a private one, the thread
        a share posts into ("" for the channel itself)."""
        sources = json.dumps([_source_json(h) for h in hits], ensure_ascii=False)
        self.state.execute(
            "INSERT OR REPLACE INTO answers (answer_id, created, channel, thread_ts, user, question, "
            "answer, mode, sources, found, private) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                answer_id,
                time.time(),
                channel,
                thread_ts,
                user,
                question,
                answer,
                mode,
                sources,
                None if found is None else int(found),
                int(private),
            ),
        )

    def answer(self, answer_id: str) -> dict[str, Any] | None:
        rows = self.state.execute(
            "SELECT channel, thread_ts, user, question, answer, mode, sources, found FROM answers "
            "WHERE answer_id = ?",
            (answer_id,),
        )
        if not rows:
            return None
        channel, thread_ts, user, question, answer, mode, sources, found = rows[0]
        return {
            "channel": channel,
            "thread_ts": thread_ts,
            "asked_by": user,
            "question": question,
            "answer": answer,
            "mode": mode,
            "sources": json.loads(sources),
            "found": None if found is None else bool(found),
        }

    def claim(self, answer_id: str, what: str) -> bool:
        """Mark an answer "shared" or "escalated" once; False when it already was (or is gone)."""
        column = {"shared": "shared_at", "escalated": "escalated_at"}[what]
        with self.state.connection() as db:
            cursor = db.execute(
                f"UPDATE answers SET {column} = ? WHERE answer_id = ? AND {column} IS NULL",  # noqa: S608
                (time.time(), answer_id),
            )
            return cursor.rowcount == 1

    def release(self, answer_id: str, what: str) -> None:
        """Undo `claim` (the share or the escalation could not be posted)."""
        column = {"shared": "shared_at", "escalated": "escalated_at"}[what]
        self.state.execute(f"UPDATE answers SET {column} = NULL WHERE answer_id = ?", (answer_id,))  # noqa: S608

    def recent(self, user: str, limit: int = 5) -> list[dict[str, Any]]:
        """A person's latest questions (newest first): answer id, question, time, found."""
        rows = self.state.execute(
            "SELECT answer_id, question, created, found FROM answers WHERE user = ? "
            "ORDER BY created DESC LIMIT ?",
            (user, limit),
        )
        return [
            {"answer_id": a, "question": q, "created": c, "found": None if f is None else bool(f)}
            for a, q, c, f in rows
        ]

    def record_escalation(
        self, answer_id: str, *, user: str, escalated_to: Sequence[str], reasons: Sequence[str]
    ) -> dict[str, Any]:
        """Append an escalation ("Ask an expert"), with the question it is about, to feedback.jsonl."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kind": "escalation",
            "answer_id": answer_id,
            "user": user,
            "escalated_to": list(escalated_to),
            "reasons": list(reasons),
            **(self.answer(answer_id) or {"question": None, "answer": None, "sources": [], "found": None}),
        }
        self._append(entry)
        return entry

    def record_vote(self, answer_id: str, *, user: str, vote: str) -> dict[str, Any]:
        """Append one vote, with the question, answer and sources it judges, to feedback.jsonl."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "answer_id": answer_id,
            "user": user,
            "vote": vote,
            **(self.answer(answer_id) or {"question": None, "answer": None, "sources": [], "found": None}),
        }
        self._append(entry)
        return entry

    def _append(self, entry: dict[str, Any]) -> None:
        with (
            self._lock,
            feedback_lock(self.feedback_path),
            self.feedback_path.open("a", encoding="utf-8") as f,
        ):
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


@contextmanager
def feedback_lock(path: Path) -> Iterator[None]:
    """An OS lock beside the feedback log: appends (every bot replica) and the retention
    rewrite (rag/ops/retention.py) never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


#: chunk metadata kept with a recorded answer's sources: what "Ask an expert" needs later
#: (the indexed commit, for CODEOWNERS; a page's editors)
#: and `access`, who may read a synced Confluence page (a share and a thread's memory re-check it)
OWNER_METADATA = (
    "commit",
    "page_id",
    "last_modified_by",
    "last_modified_by_email",
    "author",
    "author_email",
    "access",
)


def _source_json(hit: Hit) -> dict[str, Any]:
    data = hit.to_json()
    data.pop("text", None)
    kept = {k: hit.metadata[k] for k in OWNER_METADATA if hit.metadata.get(k)}
    if kept:
        data["metadata"] = kept
    return data
