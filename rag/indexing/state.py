"""Small durable state in RAGBOT_DATA_DIR: ingest run history (SQLite, safe across processes)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.models import IngestReport

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,  -- the source's name (v1: code, confluence)
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    ok INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_source ON runs(source, finished_at);
"""


class StateDB:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state.sqlite3"
        self._ready = False

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                self._ready = True
            with conn:
                yield conn
        finally:
            conn.close()

    def record_run(self, report: IngestReport, *, started_at: float, trigger: str) -> None:
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO runs(source, started_at, finished_at, ok, trigger, report) VALUES (?,?,?,?,?,?)",
                (
                    report.source_name,
                    started_at,
                    time.time(),
                    int(report.ok),
                    trigger,
                    json.dumps(report.to_json()),
                ),
            )

    def last_runs(self, limit: int = 10, source: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        query = "SELECT source, started_at, finished_at, ok, trigger, report FROM runs"
        args: tuple[Any, ...] = ()
        if source:
            query += " WHERE source = ?"
            args = (source,)
        query += " ORDER BY id DESC LIMIT ?"
        with self.connect() as conn:
            rows = conn.execute(query, (*args, limit)).fetchall()
        return [
            {
                "source": r[0],
                "started_at": r[1],
                "finished_at": r[2],
                "ok": bool(r[3]),
                "trigger": r[4],
                "report": json.loads(r[5]),
            }
            for r in rows
        ]
