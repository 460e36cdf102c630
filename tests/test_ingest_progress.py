"""An ingest a person can watch: a bar on a terminal, periodic lines without one, a clean `--json`,
and one redaction summary per source."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import rag.ingest_display
from rag.indexing.embedding import EmbedderPool
from rag.indexing.progress import IngestProgress
from rag.ingest_display import LoggedProgress
from rag.models import IngestReport
from rag.service import RagService
from tests.fakes.hash_embedder import HashEmbedder

RAGBOT = str(Path(sys.executable).parent / "ragbot")

REPO: dict[str, str | bytes] = {
    f"pkg/mod{i}.py": f"def function_{i}(x):\n    '''Multiply by {i}.'''\n    return x * {i}\n"
    for i in range(6)
}
JSON_KEYS = {
    "source",
    "source_name",
    "ok",
    "documents_seen",
    "documents_added",
    "documents_updated",
    "documents_deleted",
    "documents_unchanged",
    "chunks_embedded",
    "errors",
    "seconds",
    "symbols_indexed",
}
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")


def command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(tmp_path / "repo"),
        **extra,
    }


def on_a_terminal(args: Sequence[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; (exit code, what it showed)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not data:
                    break
                shown += data
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, ANSI.sub("", shown.decode(errors="replace")).replace("\r", "\n")


@pytest.mark.slow
def test_a_terminal_shows_a_bar_per_source_with_counts_and_time_left(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    env = command_env(tmp_path, TERM="xterm", COLUMNS="160", LINES="40")
    code, shown = on_a_terminal([RAGBOT, "ingest"], env)
    assert code == 0, shown
    bars = [line.rstrip() for line in shown.splitlines() if line.startswith("code ") and "━" in line]
    assert any(line.endswith(" listing…") for line in bars), shown
    running = r" \d/6 changed · 6 listed · \d chunks · (\S+ chunks/s · )?\S+ left$"
    assert any(re.search(running, line) for line in bars), bars
    finished = r" 6/6 changed · 6 listed · 6 chunks · done in [\d.]+ s$"
    assert any(re.search(finished, line) for line in bars), bars
    assert "code: ok — 6 seen, 6 added" in shown


@pytest.mark.slow
def test_without_a_terminal_json_is_alone_on_stdout_and_stderr_says_start_and_end(
    tmp_path: Path,
    git_repo,  # type: ignore[no-untyped-def]
) -> None:
    git_repo(REPO)
    first = subprocess.run(
        [RAGBOT, "ingest", "--json"],
        env=command_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") == 1
    (report,) = json.loads(first.stdout)["sources"]
    assert set(report) == JSON_KEYS and report["documents_added"] == 6
    assert "INFO rag.ingest_display: code: 6 documents listed, 6 new or changed" in first.stderr
    assert re.search(r"INFO rag\.ingest_display: code: done in [\d.]+ s, 6 chunks embedded", first.stderr)
    assert "━" not in first.stderr and "\x1b" not in first.stderr

    # LOG_FORMAT=json: the progress lines are log records like the others, so stderr stays JSON.
    second = subprocess.run(
        [RAGBOT, "ingest", "--json"],
        env=command_env(tmp_path, LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["sources"][0]["documents_unchanged"] == 6
    records = [json.loads(line) for line in second.stderr.splitlines()]
    said = [r["message"] for r in records if r["logger"] == "rag.ingest_display"]
    assert said[0] == "code: 6 documents listed, 0 new or changed"
    assert said[-1].startswith("code: done in") and said[-1].endswith(", 0 chunks embedded")


def test_a_running_source_gets_a_line_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    caplog.set_level(logging.INFO, logger="rag.ingest_display")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "rag.ingest_display"]

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(lines()) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    with LoggedProgress(interval=0.02, clock=lambda: now[0]) as display:
        display.started("code")
        wait_for(1)
        assert lines()[0] == "code: listing (0.0 s so far)"
        display.listed("code", documents=12, to_process=10)
        now[0] = 110.0
        display.advanced("code", documents=2.5, chunks=40)
        caplog.clear()
        wait_for(2)
        assert (
            lines()[:2]
            == [
                "code: 2/10 new or changed documents indexed, 40 chunks embedded, 4.0 chunks/s, about 0:00:30 left"
            ]
            * 2
        )
        display.finished("code", IngestReport(source="code", chunks_embedded=160, seconds=75))
        time.sleep(0.1)  # a finished source has no more periodic lines
        assert lines()[-1] == "code: done in 0:01:15, 160 chunks embedded"


class Recorder(IngestProgress):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def started(self, source: str) -> None:
        self.events.append(("started", source))

    def listed(self, source: str, *, documents: int, to_process: int) -> None:
        self.events.append(("listed", source, documents, to_process))

    def advanced(self, source: str, *, documents: float, chunks: int) -> None:
        self.events.append(("advanced", source, documents, chunks))

    def finished(self, source: str, report: IngestReport) -> None:
        self.events.append(("finished", source, report.ok, report.chunks_embedded))


class SlowEmbedder(HashEmbedder):
    """Two texts per forward pass, each pass a little slow: a flush takes several batches."""

    max_batch = 2

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        time.sleep(0.03)
        return super().embed_batch(texts)


@pytest.fixture
def hashed(make_settings, git_repo):  # type: ignore[no-untyped-def]
    """build(files) → a service over a real git repository of `files`, embedding with SlowEmbedder."""

    def build(files: dict[str, str | bytes]) -> RagService:
        git_repo(files)
        return RagService(make_settings(), embedders=EmbedderPool(lambda _model: SlowEmbedder()))

    return build


def test_the_counts_move_with_each_embedded_batch(hashed) -> None:  # type: ignore[no-untyped-def]
    service = hashed(REPO)
    watcher = Recorder()
    (report,) = service.ingest(["code"], progress=watcher)
    assert report.ok and report.chunks_embedded == 6
    assert watcher.events[:2] == [("started", "code"), ("listed", "code", 6, 6)]
    # One flush of six one-chunk documents, embedded two at a time: the bar moves before the write.
    assert [e[2:] for e in watcher.events[2:-1]] == [(2.0, 2), (4.0, 4), (6.0, 6), (6, 6)]
    assert watcher.events[-1] == ("finished", "code", True, 6)

    again = Recorder()
    service.ingest(["code"], progress=again)
    assert again.events == [("started", "code"), ("listed", "code", 6, 0), ("finished", "code", True, 0)]


def test_the_callable_form_still_gets_documents_done_of_to_process(hashed) -> None:  # type: ignore[no-untyped-def]
    service = hashed(REPO)
    calls: list[tuple[str, int, int]] = []
    service.ingest(["code"], progress=lambda source, done, total: calls.append((source, done, total)))
    assert calls[0] == ("code", 0, 6) and calls[-1] == ("code", 6, 6)
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_a_failing_display_does_not_fail_the_ingest(hashed, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    class Broken(IngestProgress):
        def advanced(self, source: str, *, documents: float, chunks: int) -> None:
            raise RuntimeError("display bug")

    service = hashed(REPO)
    (report,) = service.ingest(["code"], progress=Broken())
    assert report.ok and report.chunks_embedded == 6
    failed = [r for r in caplog.records if "progress display failed" in r.getMessage()]
    assert len(failed) == 1  # once, then the display is left out


def test_periodic_lines_while_a_real_ingest_embeds(hashed, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rag.ingest_display, "INTERVAL_S", 0.01)
    caplog.set_level(logging.INFO, logger="rag.ingest_display")
    service = hashed(REPO)
    with LoggedProgress() as display:
        (report,) = service.ingest(["code"], progress=display)
    assert report.ok
    said = [r.getMessage() for r in caplog.records if r.name == "rag.ingest_display"]
    listed = said.index("code: 6 documents listed, 6 new or changed")
    assert all(line.startswith("code: listing (") for line in said[:listed])
    assert said[-1].startswith("code: done in") and said[-1].endswith(", 6 chunks embedded")
    periodic = said[listed + 1 : -1]
    assert periodic, said  # three slow batches span several intervals
    assert all(
        re.match(r"code: [0-6]/6 new or changed documents indexed, \d chunks embedded", p) for p in periodic
    )


def test_redaction_is_one_info_line_per_source_and_per_file_at_debug(
    hashed,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    files: dict[str, str | bytes] = {
        **REPO,
        "config/settings.py": 'password = "planted-Secret-42"\ntoken = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"\n',
        "deploy/env.sh": "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n",
    }
    service = hashed(files)
    caplog.set_level(logging.DEBUG, logger="rag.indexing.ingest")
    (report,) = service.ingest(["code"])
    assert report.ok
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "redacted" in r.getMessage()]
    assert [m for level, m in said if level >= logging.INFO] == ["code: redacted 3 secret values in 2 files"]
    assert sorted(m for level, m in said if level == logging.DEBUG) == [
        "config/settings.py: redacted 2 secret value(s) before indexing",
        "deploy/env.sh: redacted 1 secret value(s) before indexing",
    ]

    caplog.clear()
    service.ingest(["code"])  # nothing changed: nothing redacted, no summary line
    assert not [r for r in caplog.records if "redacted" in r.getMessage()]


def test_no_thread_is_left_behind() -> None:
    before = threading.active_count()
    with LoggedProgress(interval=0.01):
        time.sleep(0.03)
    assert threading.active_count() == before
