"""What `ragbot ingest` shows while it runs: a bar per source on a terminal, periodic log lines otherwise.

On a terminal (stderr is a TTY and LOG_FORMAT=text): a rich bar per source on stderr with the
documents listed, the new or changed ones indexed so far, chunks embedded, rate and time left;
log lines print above the bars. Anywhere else: a log record (INFO, logger `rag.ingest_display`)
when a source has been listed, one every INTERVAL_S while it runs and one when it ends, so a CI
log or `docker logs` shows the ingest moving, LOG_FORMAT=json keeps stderr all JSON and
LOG_LEVEL=WARNING keeps it quiet. Neither writes to stdout: that is the command's result.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from rag.config import Settings
from rag.indexing.progress import IngestProgress
from rag.models import IngestReport

log = logging.getLogger(__name__)

#: Seconds between two progress lines of a running source when stderr is not a terminal.
INTERVAL_S = 10.0


@contextmanager
def ingest_display(settings: Settings) -> Iterator[IngestProgress]:
    """The display this process's stderr calls for, shown for the duration of the block."""
    console = Console(stderr=True)
    if settings.log_format == "text" and console.is_terminal and not console.is_dumb_terminal:
        with TerminalProgress(console) as bars:
            yield bars
    else:
        with LoggedProgress() as lines:
            yield lines


def hms(seconds: float) -> str:
    """0:04:10, the way rich writes a time left."""
    return str(timedelta(seconds=max(0, round(seconds))))


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else hms(seconds)


# ----- without a terminal: log lines ------------------------------------------------------------


@dataclass
class _Run:
    started: float
    listed_at: float | None = None
    to_process: int = 0
    documents: float = 0.0
    chunks: int = 0


class LoggedProgress(IngestProgress):
    """A log line per source when listed and when done, and one every `interval` seconds between."""

    def __init__(self, *, interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = INTERVAL_S if interval is None else interval
        self.clock = clock
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> LoggedProgress:
        self._ticker = threading.Thread(
            target=self._tick_until_stopped, name="ragbot-ingest-progress", daemon=True
        )
        self._ticker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        """One line for each source that is running now."""
        now = self.clock()
        with self._lock:  # held while logging, so no line of a source follows its last one
            for source, run in self._runs.items():
                log.info("%s", self._line(source, run, now))

    @staticmethod
    def _line(source: str, run: _Run, now: float) -> str:
        if run.listed_at is None:
            return f"{source}: listing ({duration(now - run.started)} so far)"
        spent = now - run.listed_at
        parts = [
            f"{source}: {int(run.documents):,}/{run.to_process:,} new or changed documents indexed",
            f"{run.chunks:,} chunks embedded",
        ]
        if run.chunks and spent > 0:
            parts.append(f"{run.chunks / spent:,.1f} chunks/s")
        if run.documents > 0:
            parts.append(f"about {hms((run.to_process - run.documents) * spent / run.documents)} left")
        return ", ".join(parts)

    def started(self, source: str) -> None:
        with self._lock:
            self._runs[source] = _Run(started=self.clock())

    def listed(self, source: str, *, documents: int, to_process: int) -> None:
        with self._lock:
            run = self._runs.setdefault(source, _Run(started=self.clock()))
            run.listed_at, run.to_process = self.clock(), to_process
        log.info("%s: %s documents listed, %s new or changed", source, f"{documents:,}", f"{to_process:,}")

    def advanced(self, source: str, *, documents: float, chunks: int) -> None:
        with self._lock:
            run = self._runs.get(source)
            if run is not None:
                run.documents, run.chunks = documents, chunks

    def finished(self, source: str, report: IngestReport) -> None:
        with self._lock:
            self._runs.pop(source, None)
        if report.ok:
            log.info(
                "%s: done in %s, %s chunks embedded",
                source,
                duration(report.seconds),
                f"{report.chunks_embedded:,}",
            )
        else:
            log.info("%s: failed after %s", source, duration(report.seconds))


# ----- on a terminal: rich bars ------------------------------------------------------------------


#: Every field the status column reads, as a bar starts (rich's reset replaces them all).
_FIELDS: dict[str, Any] = {
    "state": "listing",
    "listed": 0,
    "to_process": 0,
    "documents": 0,
    "chunks": 0,
    "since": 0.0,
    "seconds": 0.0,
}


class _Status(ProgressColumn):
    """The words after a bar: counts, rate and time left (or how it ended)."""

    def render(self, task: Task) -> Text:
        f = task.fields
        state = f["state"]
        if state == "listing":
            return Text("listing…")
        parts = [
            f"{f['documents']:,}/{f['to_process']:,} changed",
            f"{f['listed']:,} listed",
            f"{f['chunks']:,} chunks",
        ]
        if state == "running":
            spent = time.monotonic() - f["since"]
            if f["chunks"] and spent > 0:
                parts.append(f"{f['chunks'] / spent:,.1f} chunks/s")
            left = task.time_remaining
            if f["to_process"]:  # nothing to index: no time left to guess
                parts.append(f"{hms(left)} left" if left is not None else "-:--:-- left")
        else:
            parts.append(f"{state} in {duration(f['seconds'])}")
        return Text(" · ".join(parts))


class TerminalProgress(IngestProgress):
    """A rich bar per source on the console; log lines and warnings print above the bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=20),
            _Status(),
            console=console,
            transient=True,
            redirect_stdout=False,  # stdout is the command's result, never the bar's
        )
        self.tasks: dict[str, TaskID] = {}
        self._rerouted: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> TerminalProgress:
        before = sys.stderr
        self.bars.__enter__()
        proxy = sys.stderr
        # The log handler holds the real stderr; while the bars are live it writes through rich's
        # proxy instead, so each line prints above the bars rather than through them.
        if proxy is not before:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is before:
                    self._rerouted.append((handler, handler.setStream(proxy)))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handler, stream in self._rerouted:
            handler.setStream(stream)
        self.bars.__exit__(kind, error, tb)

    def started(self, source: str) -> None:
        self.tasks[source] = self.bars.add_task(source, total=None, **_FIELDS)

    def listed(self, source: str, *, documents: int, to_process: int) -> None:
        if source not in self.tasks:
            self.started(source)
        # A fresh start, so the rate and time left count from here, not from the listing.
        self.bars.reset(
            self.tasks[source],
            total=max(to_process, 1),
            completed=0 if to_process else 1,
            **_FIELDS
            | {"state": "running", "listed": documents, "to_process": to_process, "since": time.monotonic()},
        )

    def advanced(self, source: str, *, documents: float, chunks: int) -> None:
        if source in self.tasks:
            self.bars.update(self.tasks[source], completed=documents, documents=int(documents), chunks=chunks)

    def finished(self, source: str, report: IngestReport) -> None:
        task = self.tasks.get(source)
        if task is None:
            return
        state = "done" if report.ok else "failed"
        self.bars.update(task, state=state, seconds=report.seconds)
        if report.ok:  # a bar that ends full, whatever its fractional steps added up to
            self.bars.update(task, total=1, completed=1)
        self.bars.stop_task(task)
