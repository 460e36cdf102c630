"""Real processes contending for the locks: two workers (one schedules), CLI ingest vs a holder."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import CONTRACT_VARS, git, write_files

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def ragbot_env(base: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env.update(
        PYTHONPATH=str(ROOT),
        CODE_REPO_PATH=str(base / "repo"),
        CHROMA_DB_DIR=str(base / "chroma"),
        RAGBOT_DATA_DIR=str(base / "data"),
        INGEST_INTERVAL_MINUTES="60",
    )
    env.update(values)
    return env


def ragbot(base: Path, *args: str, stderr: IO[Any] | int = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=base,
        env=ragbot_env(base),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def runs(base: Path) -> list[tuple[str, str, int]]:
    db = base / "data" / "state.sqlite3"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return list(conn.execute("SELECT source, trigger, ok FROM runs ORDER BY id"))
    except sqlite3.OperationalError:  # the worker has created the file but not the table yet
        return []


def make_repo(base: Path) -> None:
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, {"app.py": "def main():\n    return 0\n", "README.md": "# App\n\nIt runs.\n"})
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")


def test_only_one_of_two_workers_schedules_and_ingests(tmp_path: Path) -> None:
    make_repo(tmp_path)
    logs = [(tmp_path / f"worker{i}.log").open("w+") for i in range(2)]
    workers = [ragbot(tmp_path, "worker", stderr=log) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while all(w.poll() is None for w in workers):
            assert time.monotonic() < deadline, "neither worker gave way"
            time.sleep(0.1)
        loser = next(i for i, w in enumerate(workers) if w.poll() is not None)
        winner = workers[1 - loser]
        assert workers[loser].returncode == 1
        logs[loser].seek(0)
        assert "another scheduler is already running" in logs[loser].read()

        # The winner ingests the empty index at start-up, once.
        deadline = time.monotonic() + 120
        while not runs(tmp_path):
            assert winner.poll() is None, "the winning worker died"
            assert time.monotonic() < deadline, "no start-up ingest"
            time.sleep(0.2)
        assert runs(tmp_path) == [("code", "scheduler", 1)]

        status = subprocess.run(
            [sys.executable, "-m", "rag.cli", "status", "--json"],
            cwd=tmp_path,
            env=ragbot_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["scheduler"]["running"] is True
        assert f"worker pid {winner.pid}" in data["scheduler"]["where"]
        assert data["next_scheduled_run"] is not None
        assert data["sources"]["code"]["documents"] == 2
        assert data["sources"]["code"]["last_run"]["outcome"] == "ok"

        winner.send_signal(signal.SIGTERM)
        assert winner.wait(60) == 0
        assert not (tmp_path / "data" / "scheduler.json").exists()
        assert runs(tmp_path) == [("code", "scheduler", 1)]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        for log in logs:
            log.close()


def test_a_cli_ingest_is_refused_while_another_process_ingests(tmp_path: Path) -> None:
    make_repo(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from rag.indexing.locking import IngestLock\n"
            "lock = IngestLock(Path(sys.argv[1]), holder='scheduler'); lock.acquire()\n"
            "print('held', flush=True); sys.stdin.read(); lock.release()",
            str(tmp_path / "data"),
        ],
        env=ragbot_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = ragbot(tmp_path, "ingest", "code", "--json")
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 1
        assert "already running" in err and "scheduler" in err
        assert runs(tmp_path) == []
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    done = ragbot(tmp_path, "ingest", "code", "--json")
    out, err = done.communicate(timeout=180)
    assert done.returncode == 0, err
    assert json.loads(out)["sources"][0]["documents_added"] == 2
    assert runs(tmp_path) == [("code", "cli", 1)]


def test_worker_without_a_schedule_is_a_configuration_error(tmp_path: Path) -> None:
    make_repo(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "worker"],
        cwd=tmp_path,
        env=ragbot_env(tmp_path, INGEST_INTERVAL_MINUTES="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "INGEST_INTERVAL_MINUTES" in result.stderr


def test_worker_with_a_bad_cron_names_the_setting(tmp_path: Path) -> None:
    make_repo(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "worker"],
        cwd=tmp_path,
        env=ragbot_env(tmp_path, INGEST_CRON="every day"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "INGEST_CRON" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_with_a_missing_repository_names_the_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "worker"],
        cwd=tmp_path,
        env=ragbot_env(tmp_path),  # CODE_REPO_PATH points at a directory that does not exist
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "CODE_REPO_PATH" in result.stderr
    assert not (tmp_path / "data" / "scheduler.json").exists()


def test_the_worker_serves_its_ingest_metrics(tmp_path: Path) -> None:
    import httpx

    from tests.servers import free_port

    make_repo(tmp_path)
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "worker"],
        cwd=tmp_path,
        env=ragbot_env(tmp_path, RAGBOT_METRICS_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                text = httpx.get(url, timeout=5).text
            except httpx.TransportError:
                text = ""
            # the index gauges are set right after the run is counted
            if 'ragbot_index_documents{source_name="code"} 2.0' in text:
                break
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "no start-up ingest in the metrics"
            time.sleep(0.3)
        assert 'ragbot_ingest_runs_total{outcome="ok",source_name="code"} 1.0' in text
        assert 'ragbot_ingest_seconds_count{source_name="code"} 1.0' in text
        assert 'ragbot_chunks_embedded_total{source_name="code"}' in text
        assert "ragbot_slack_connected 0.0" in text  # the worker has no Slack connection
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
