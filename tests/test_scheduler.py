"""The periodic ingest: triggers from settings, firing on a short interval, skipping, surviving failures."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

import rag.indexing.ingest
from rag.config import Settings
from rag.errors import ConfigError
from rag.indexing.embedding import EmbedderPool
from rag.indexing.locking import IngestLock
from rag.ops.scheduler import (
    RECORD_FILE,
    read_record,
    scheduler_status,
    start_for_bot,
    start_scheduler,
)
from rag.ops.triggers import build_trigger, crontab_day_of_week
from rag.service import RagService


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def scheduler_runs(service: RagService) -> list[dict[str, Any]]:
    return [r for r in service.ingestor.state.last_runs(limit=100) if r["trigger"] == "scheduler"]


# ----- triggers ------------------------------------------------------------------------------


def test_interval_setting_becomes_an_interval_trigger_with_jitter(make_settings: Any) -> None:
    trigger = build_trigger(make_settings(ingest_interval_minutes=60))
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(minutes=60)
    assert trigger.jitter == 300


def test_interval_zero_disables_the_schedule(make_settings: Any) -> None:
    assert build_trigger(make_settings(ingest_interval_minutes=0)) is None


def test_cron_overrides_the_interval(make_settings: Any) -> None:
    trigger = build_trigger(make_settings(ingest_interval_minutes=5, ingest_cron="15 2 * * *"))
    assert isinstance(trigger, CronTrigger)
    now = datetime(2026, 1, 7, 12, 0, tzinfo=trigger.timezone)
    fire = trigger.get_next_fire_time(None, now)
    assert fire is not None
    assert (fire.day, fire.hour, fire.minute) == (8, 2, 15)


@pytest.mark.parametrize("expression", ["61 * * * *", "not a cron", "* * * *", "0 3 * * 9", "0 25 * * *"])
def test_invalid_cron_is_a_config_error_naming_the_setting(make_settings: Any, expression: str) -> None:
    with pytest.raises(ConfigError, match="INGEST_CRON"):
        build_trigger(make_settings(ingest_cron=expression))


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [
        ("0", {6}),  # crontab Sunday; Python weekday() counts Monday = 0
        ("7", {6}),
        ("1-5", {0, 1, 2, 3, 4}),
        ("*/2", {6, 1, 3, 5}),
        ("sat,sun", {5, 6}),
    ],
)
def test_cron_day_of_week_means_what_crontab_means(
    make_settings: Any, field: str, weekdays: set[int]
) -> None:
    trigger = build_trigger(make_settings(ingest_cron=f"0 3 * * {field}"))
    assert trigger is not None
    seen = set()
    when = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday
    for _ in range(14):
        fire = trigger.get_next_fire_time(None, when)
        assert fire is not None
        seen.add(fire.weekday())
        when = fire + timedelta(hours=1)
    assert seen == weekdays


def test_crontab_day_of_week_translation() -> None:
    assert crontab_day_of_week("0,6") == "sun,sat"
    assert crontab_day_of_week("*") == "*"
    with pytest.raises(ValueError):
        crontab_day_of_week("3-1")


# ----- running -------------------------------------------------------------------------------


@pytest.fixture
def service_for(embedders: EmbedderPool) -> Callable[[Settings], RagService]:
    def build(settings: Settings) -> RagService:
        return RagService(settings, embedders=embedders)

    return build


@pytest.mark.slow
def test_scheduler_ingests_at_start_up_and_on_every_tick(
    git_repo: Any, make_settings: Any, service_for: Callable[[Settings], RagService]
) -> None:
    repo = git_repo({"app.py": "def hello():\n    return 'hi'\n"})
    settings = make_settings(code_repo_path=repo)
    service = service_for(settings)
    handle = start_scheduler(settings, service, trigger=IntervalTrigger(seconds=1))
    try:
        assert handle.running
        wait_for(lambda: len(scheduler_runs(service)) >= 2, what="a start-up and a periodic run")
        assert all(r["ok"] for r in scheduler_runs(service))

        git_repo({"added.py": "def added():\n    return 2\n"}, "second")
        wait_for(
            lambda: service.status()["sources"]["code"]["documents"] == 2, what="the new file to be indexed"
        )
        status = service.status()
        assert status["scheduler"]["running"] is True
        assert status["scheduler"]["where"].startswith("this process")
        assert status["next_scheduled_run"] is not None
        assert status["sources"]["code"]["last_run"]["trigger"] == "scheduler"
        assert read_record(settings.ragbot_data_dir) is not None
    finally:
        handle.shutdown()
    assert not handle.running
    assert handle.next_run_time() is None
    assert not (settings.ragbot_data_dir / RECORD_FILE).exists()
    # The scheduler lock is free again.
    with IngestLock(settings.ragbot_data_dir, name="scheduler"):
        pass


@pytest.mark.slow
def test_scheduled_runs_skip_while_another_ingest_holds_the_lock(
    git_repo: Any, make_settings: Any, service_for: Callable[[Settings], RagService]
) -> None:
    repo = git_repo({"app.py": "def hello():\n    return 'hi'\n"})
    settings = make_settings(code_repo_path=repo)
    service = service_for(settings)
    held = IngestLock(settings.ragbot_data_dir, holder="slack")
    held.acquire()
    handle = start_scheduler(settings, service, trigger=IntervalTrigger(seconds=0.5))
    try:
        wait_for(lambda: handle.stats["skipped"] >= 3, what="skipped runs")
        assert scheduler_runs(service) == []  # nothing ran while the lock was held
        held.release()
        wait_for(lambda: scheduler_runs(service), what="a run once the lock is free")
        wait_for(lambda: len(scheduler_runs(service)) >= 3, what="more runs")
        runs = sorted(scheduler_runs(service), key=lambda r: r["started_at"])
        # Never two at once: each run starts after the previous one finished.
        for earlier, later in itertools.pairwise(runs):
            assert later["started_at"] >= earlier["finished_at"]
    finally:
        handle.shutdown()
        held.release()


@pytest.mark.slow
def test_a_failing_source_is_recorded_and_the_next_run_retries(
    git_repo: Any, make_settings: Any, service_for: Callable[[Settings], RagService], tmp_path: Path
) -> None:
    settings = make_settings(code_repo_path=tmp_path / "repo")  # does not exist yet
    service = service_for(settings)
    handle = start_scheduler(settings, service, trigger=IntervalTrigger(seconds=0.5))
    try:
        wait_for(lambda: len(scheduler_runs(service)) >= 2, what="failed runs")
        failed = scheduler_runs(service)[0]
        assert not failed["ok"]
        last = service.status()["sources"]["code"]["last_run"]
        assert last["outcome"] == "failed"
        assert "CODE_REPO_PATH" in last["error"]

        git_repo({"app.py": "def hello():\n    return 'hi'\n"})
        wait_for(lambda: scheduler_runs(service)[0]["ok"], what="a successful retry")
        status = service.status()
        assert status["sources"]["code"]["last_run"]["outcome"] == "ok"
        assert status["sources"]["code"]["documents"] == 1
        assert handle.running
    finally:
        handle.shutdown()


def test_a_second_scheduler_on_the_same_host_stays_idle(
    make_settings: Any, service_for: Callable[[Settings], RagService], tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    settings = make_settings()
    first = start_scheduler(settings, service_for(settings), trigger=IntervalTrigger(hours=1))
    try:
        second_service = service_for(settings)
        second = start_scheduler(settings, second_service, trigger=IntervalTrigger(hours=1))
        assert first.running
        assert not second.running
        assert second.idle_reason is not None and "another scheduler" in second.idle_reason
        # Its status still reports the live scheduler, through the record in RAGBOT_DATA_DIR.
        status = scheduler_status(settings, second)
        assert status["running"] is True
        assert status["next_run"] is not None
        assert "pid" in status["where"]
    finally:
        first.shutdown()


def test_disabled_schedule_starts_nothing(
    make_settings: Any, service_for: Callable[[Settings], RagService], tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    settings = make_settings(ingest_interval_minutes=0)
    handle = start_scheduler(settings, service_for(settings))
    assert not handle.running
    assert handle.idle_reason == "disabled"
    assert scheduler_status(settings, handle)["schedule"] == "disabled"


# ----- interruption --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cancelled_ingest_leaves_a_consistent_index(
    git_repo: Any,
    make_settings: Any,
    service_for: Callable[[Settings], RagService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files: dict[str, str | bytes] = {
        f"pkg/mod{i:02d}.py": f"def function_{i}(x):\n    return x * {i}\n" for i in range(30)
    }
    repo = git_repo(files)
    settings = make_settings(code_repo_path=repo)
    monkeypatch.setattr(rag.indexing.ingest, "FLUSH_CHUNKS", 4)  # several flushes before the cancel
    service = service_for(settings)

    def cancel_midway(_source: str, done: int, _total: int) -> None:
        if done == 12:
            service.ingestor.cancel()

    reports = service.ingest(["code"], progress=cancel_midway)
    assert not reports[0].ok
    assert "interrupted" in (reports[0].error or "")
    assert reports[0].documents_deleted == 0

    embedder = service.embedders.get(None)
    collection = service.store.collection("code", embedder.key, create=False)
    assert collection is not None
    states = collection.document_states()
    assert 0 < len(states) < 30
    assert all(state.complete for state in states.values())
    # Later ingests of the cancelled service stop at once; a fresh process finishes the work.
    assert service.ingest(["code"]) == []
    fresh = service_for(settings)
    report = fresh.ingest(["code"])[0]
    assert report.ok
    assert report.documents_added == 30 - len(states)
    assert report.documents_unchanged == len(states)
    assert fresh.status()["sources"]["code"]["documents"] == 30


@pytest.mark.slow
def test_shutdown_interrupts_the_ingest_in_flight(
    git_repo: Any,
    make_settings: Any,
    service_for: Callable[[Settings], RagService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files: dict[str, str | bytes] = {
        f"pkg/mod{i:03d}.py": f"def function_{i}(x):\n    return x * {i}\n" for i in range(200)
    }
    repo = git_repo(files)
    settings = make_settings(code_repo_path=repo)
    monkeypatch.setattr(rag.indexing.ingest, "FLUSH_CHUNKS", 4)
    service = service_for(settings)
    started = threading.Event()
    original = service.ingestor.run_source

    def run_source(*args: Any, **kwargs: Any) -> Any:
        started.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(service.ingestor, "run_source", run_source)
    handle = start_scheduler(settings, service, trigger=IntervalTrigger(hours=1))
    assert started.wait(60)
    handle.shutdown()  # returns once the in-flight ingest has stopped
    assert not IngestLock(settings.ragbot_data_dir).is_held_elsewhere()
    run = scheduler_runs(service)[0]
    assert not run["ok"] and "interrupted" in run["report"]["error"]
    embedder = service.embedders.get(None)
    collection = service.store.collection("code", embedder.key, create=False)
    states = collection.document_states() if collection is not None else {}
    assert len(states) < 200
    assert all(state.complete for state in states.values())


def test_bot_replicas_with_the_scheduler_off_start_none(
    make_settings: Any, service_for: Callable[[Settings], RagService], tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    off = make_settings(ragbot_scheduler="off")
    handle = start_for_bot(off, service_for(off))
    assert not handle.running and handle.idle_reason == "RAGBOT_SCHEDULER=off"
    with IngestLock(off.ragbot_data_dir, name="scheduler"):  # nobody took the scheduler lock
        pass
    on = make_settings()
    handle = start_for_bot(on, service_for(on))
    try:
        assert handle.running and handle.next_run_time() is not None
    finally:
        handle.shutdown()


@pytest.mark.slow
def test_start_up_ingest_waits_for_a_store_that_starts_later(
    git_repo: Any,
    make_settings: Any,
    service_for: Callable[[Settings], RagService],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import rag.ops.scheduler
    from tests.servers import ChromaServer, free_port

    monkeypatch.setattr(rag.ops.scheduler, "STARTUP_RETRY_SECONDS", 0.5)
    repo = git_repo({"app.py": "def hello():\n    return 'hi'\n"})
    port = free_port()
    settings = make_settings(code_repo_path=repo, chroma_host="127.0.0.1", chroma_port=port)
    service = service_for(settings)
    chroma = ChromaServer(tmp_path / "chroma-server", port=port)
    with caplog.at_level(logging.WARNING, logger="rag.ops.scheduler"):
        handle = start_scheduler(settings, service, trigger=IntervalTrigger(hours=1))
        try:
            wait_for(
                lambda: sum("cannot check the index" in r.getMessage() for r in caplog.records) >= 2,
                what="start-up retries while the store is down",
            )
            assert scheduler_runs(service) == []
            chroma.start()
            wait_for(lambda: scheduler_runs(service), what="the start-up ingest once the store is up")
            assert scheduler_runs(service)[0]["ok"]
            assert service.status()["sources"]["code"]["documents"] == 1
        finally:
            handle.shutdown()
            chroma.stop()
