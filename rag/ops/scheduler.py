"""Periodic re-ingestion on a clock (APScheduler 3.x): one scheduler per host, one ingest at a time.

Two locks keep replicas from stepping on each other:
- the scheduler lock (`scheduler.lock` in RAGBOT_DATA_DIR), held for the scheduler's whole life,
  so a second `ragbot run`/`ragbot worker` on the same host stays idle (or, for `worker`, exits);
- the single-flight ingest lock (rag/indexing/locking.py), taken by every ingest; a scheduled run that
  finds it held (a `/ragingest` or `ragbot ingest` is running) is skipped and logged.

The scheduler also writes `scheduler.json` (next run, heartbeat) so that `ragbot status` and
`/healthz` in other processes can say when the next ingest will happen.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rag.config import Settings
from rag.errors import ConfigError, IngestBusyError, RagError, StoreError
from rag.indexing.locking import IngestLock
from rag.ops.triggers import MAX_INTERVAL_JITTER_SECONDS, build_trigger, describe_schedule

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler
    from apscheduler.triggers.base import BaseTrigger

    from rag.indexing.embedding import EmbedderPool
    from rag.indexing.ingest import Ingestor
    from rag.indexing.store import VectorStore
    from rag.models import IngestReport
    from rag.sources.registry import SourceRegistry
    from rag.sources.specs import SourceSpec

log = logging.getLogger(__name__)


class IndexService(Protocol):
    """What the scheduler drives: rag.service.RagService is one (ops does not import the faces)."""

    settings: Settings
    registry: SourceRegistry
    store: VectorStore
    embedders: EmbedderPool
    ingestor: Ingestor
    scheduler: SchedulerHandle | None

    def ingest(
        self, targets: Sequence[str | SourceSpec], *, trigger: str = ..., prune_removed: bool | None = ...
    ) -> list[IngestReport]: ...

    def sync_permissions(self, targets: Sequence[str] | None = ...) -> list[IngestReport]: ...


INGEST_JOB = "ingest"
PERMISSIONS_JOB = "permission-sync"
STARTUP_JOB = "startup-ingest"
HEARTBEAT_JOB = "heartbeat"
HEARTBEAT_SECONDS = 30
#: A record whose heartbeat is older than this belongs to a scheduler that is gone.
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
STARTUP_RETRY_SECONDS = 30
RECORD_FILE = "scheduler.json"


class SchedulerBusyError(RagError):
    """Another scheduler already runs on this host (holds the scheduler lock)."""


# ----- the scheduler -------------------------------------------------------------------------


class SchedulerHandle:
    """A running (or idle) scheduler: `next_run_time()` for status, `shutdown()` to stop it."""

    def __init__(
        self,
        settings: Settings,
        service: IndexService | None,
        *,
        role: str = "run",
        scheduler: BaseScheduler | None = None,
        lock: IngestLock | None = None,
        idle_reason: str | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.role = role
        self.scheduler = scheduler
        self.lock = lock
        self.idle_reason = idle_reason
        self.started_at = time.time()
        self.stats = {"runs": 0, "skipped": 0, "failed": 0}
        self._stopping = threading.Event()
        self._record_lock = threading.Lock()
        self._startup_done = False

    @property
    def running(self) -> bool:
        return self.scheduler is not None and not self._stopping.is_set()

    def next_run_time(self) -> datetime | None:
        """When the next periodic ingest is due (UTC), or None when this scheduler is idle."""
        if not self.running or self.scheduler is None:
            return None
        job = self.scheduler.get_job(INGEST_JOB)
        when = job.next_run_time if job is not None else None
        return when.astimezone(UTC) if when is not None else None

    def describe(self) -> dict[str, Any]:
        """The scheduler's part of `status`."""
        next_run = self.next_run_time()
        return {
            "running": self.running,
            "where": f"this process ({self.role}, pid {os.getpid()})" if self.running else None,
            "schedule": describe_schedule(self.settings),
            "next_run": _iso(next_run.timestamp()) if next_run else None,
            "idle_reason": None if self.running else self.idle_reason,
        }

    def shutdown(self, *, wait: bool = True, cancel_ingest: bool = True) -> None:
        """Stop scheduling; interrupt an ingest in flight (between documents) and wait for it.

        Meant for process shutdown: with `cancel_ingest` every later ingest of the same
        service stops at once too.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.scheduler is not None:
            if cancel_ingest and self.service is not None:
                self.service.ingestor.cancel()
            self.scheduler.shutdown(wait=wait)
            log.info("scheduler stopped")
        if self.lock is not None:
            record = self.settings.ragbot_data_dir / RECORD_FILE
            record.unlink(missing_ok=True)
            self.lock.release()
            self.lock = None

    # ----- jobs ----------------------------------------------------------------------

    def _periodic(self) -> None:
        """Every source on the default schedule, then the pruning of sources no longer configured."""
        assert self.service is not None
        specs = [s for s in self.service.registry.specs if s.interval_minutes is None]
        self._ingest(specs, reason="scheduled", prune_removed=True)

    def _periodic_source(self, name: str) -> None:
        """A source with its own `interval_minutes`."""
        assert self.service is not None
        spec = self.service.registry.get(name)
        if spec is not None:
            self._ingest([spec], reason=f"scheduled ({spec.interval_minutes} min)")

    def _permissions(self) -> None:
        """Re-read the synced Confluence permissions between ingests (an ingest reads them too)."""
        assert self.service is not None
        if self._stopping.is_set():
            return
        try:
            reports = self.service.sync_permissions()
        except IngestBusyError as e:
            log.info("permission sync skipped: %s (the ingest under way syncs them)", e)
            return
        except Exception:  # the scheduler lives on; the sites fall back to public pages if it keeps failing
            log.exception("permission sync failed; the next one will retry")
            return
        for r in reports:
            if r.ok:
                log.info(
                    "permission sync of %s: %d pages, %d re-tagged in %.1fs",
                    r.source_name,
                    r.documents_seen,
                    r.documents_retagged,
                    r.seconds,
                )
            else:
                log.error(
                    "permission sync of %s failed (public pages only until one succeeds): %s",
                    r.source_name,
                    r.error,
                )

    def _startup(self) -> None:
        """Ingest at start-up the configured sources whose index is empty.

        Runs every STARTUP_RETRY_SECONDS until the store could be checked once (in compose
        the store may start after us), then does nothing: no job ever edits the scheduler,
        which could deadlock with a concurrent shutdown.
        """
        assert self.service is not None
        if self._startup_done:
            return
        try:
            empty = empty_sources(self.service)
        except StoreError as e:
            log.warning("cannot check the index at start-up (%s); retrying in %d s", e, STARTUP_RETRY_SECONDS)
            return
        self._startup_done = True
        if empty:
            self._ingest(empty, reason="start-up (empty index)")

    def _ingest(self, targets: list[SourceSpec], *, reason: str, prune_removed: bool = False) -> None:
        assert self.service is not None
        if self._stopping.is_set() or (not targets and not prune_removed):
            return
        log.info("%s ingest of %s starting", reason, ", ".join(s.name for s in targets) or "no source")
        try:
            reports = self.service.ingest(targets, trigger="scheduler", prune_removed=prune_removed)
        except IngestBusyError as e:
            self.stats["skipped"] += 1
            log.info("%s ingest skipped: %s", reason, e)
            return
        except Exception:  # whatever happens, the scheduler lives on and the next run retries
            self.stats["failed"] += 1
            log.exception("%s ingest failed; the next run will retry", reason)
            return
        self.stats["runs"] += 1
        for r in reports:
            if r.ok:
                log.info(
                    "%s ingest of %s: %d seen, %d added, %d updated, %d deleted, %d chunks in %.1fs",
                    reason,
                    r.source_name + (" (removed from the configuration)" if r.removed else ""),
                    r.documents_seen,
                    r.documents_added,
                    r.documents_updated,
                    r.documents_deleted,
                    r.chunks_embedded,
                    r.seconds,
                )
            else:
                self.stats["failed"] += 1
                log.error(
                    "%s ingest of %s failed: %s (the next run will retry)", reason, r.source_name, r.error
                )

    def _write_record(self, _event: object = None) -> None:
        """Persist the next run time and a heartbeat for other processes' `status`."""
        if not self.running:
            return
        next_run = self.next_run_time()
        data = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "role": self.role,
            "started_at": self.started_at,
            "heartbeat": time.time(),
            "schedule": describe_schedule(self.settings),
            "next_run": next_run.timestamp() if next_run else None,
        }
        path = self.settings.ragbot_data_dir / RECORD_FILE
        with self._record_lock:
            try:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data))
                tmp.replace(path)
            except OSError as e:
                log.warning("cannot write %s: %s", path, e)


def empty_sources(service: IndexService) -> list[SourceSpec]:
    """Configured sources with nothing indexed yet (for the current embedding model)."""
    empty: list[SourceSpec] = []
    for spec in service.registry.specs:
        embedder = service.embedders.get(service.settings.embedding_model_for(spec.kind))
        collection = service.store.collection(spec.kind, embedder.key, create=False)
        if collection is None or not collection.has_source(spec.name):
            empty.append(spec)
    return empty


def start_scheduler(
    settings: Settings,
    service: IndexService,
    *,
    role: str = "run",
    trigger: BaseTrigger | None = None,
    preflight: bool = False,
) -> SchedulerHandle:
    """Start the periodic ingest in background threads; returns at once.

    Raises ConfigError for an invalid INGEST_CRON. Returns an idle handle (with
    `idle_reason`) when the schedule is disabled, no source is configured, or another
    scheduler on this host holds the scheduler lock. `trigger` replaces the configured one
    (tests use short intervals). With `preflight`, the sources, model and store are checked
    once the lock is held: a configuration error is raised before any job runs.
    """
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
    )
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    trigger = trigger or build_trigger(settings)
    if trigger is None:
        log.info("periodic ingest disabled (INGEST_INTERVAL_MINUTES=0 and INGEST_CRON unset)")
        return SchedulerHandle(settings, service, role=role, idle_reason="disabled")
    if not service.registry.specs:
        log.warning("periodic ingest not started: no source is configured")
        return SchedulerHandle(settings, service, role=role, idle_reason="no source configured")

    lock = IngestLock(settings.ragbot_data_dir, name="scheduler", holder=f"{role} pid {os.getpid()}")
    try:
        lock.acquire()
    except IngestBusyError as e:
        holder = e.holder.get("by") or "another process"
        reason = f"another scheduler is already running on this host ({holder})"
        log.warning("periodic ingest not started here: %s", reason)
        return SchedulerHandle(settings, service, role=role, idle_reason=reason)
    if preflight:
        try:
            service.ingestor.preflight(service.registry.specs)
        except BaseException:
            lock.release()
            raise

    scheduler = BackgroundScheduler(
        timezone=UTC,  # a cron trigger carries the host's local zone itself
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 600},
    )
    handle = SchedulerHandle(settings, service, role=role, scheduler=scheduler, lock=lock)
    try:
        scheduler.add_job(handle._periodic, trigger, id=INGEST_JOB, name="periodic ingest")
        for spec in service.registry.specs:
            if spec.interval_minutes is not None:
                seconds = spec.interval_minutes * 60
                scheduler.add_job(
                    handle._periodic_source,
                    IntervalTrigger(
                        seconds=seconds, jitter=min(MAX_INTERVAL_JITTER_SECONDS, seconds // 10) or None
                    ),
                    args=[spec.name],
                    id=f"{INGEST_JOB}:{spec.name}",
                    name=f"periodic ingest of {spec.name}",
                )
        if any(getattr(spec, "permissions", "skip") == "sync" for spec in service.registry.specs):
            scheduler.add_job(
                handle._permissions,
                IntervalTrigger(minutes=settings.confluence_permission_sync_minutes),
                id=PERMISSIONS_JOB,
                name="Confluence permission sync",
            )
        scheduler.add_job(
            handle._startup,
            "interval",
            seconds=STARTUP_RETRY_SECONDS,
            next_run_time=datetime.now(UTC),
            id=STARTUP_JOB,
            name="start-up ingest",
        )
        scheduler.add_job(
            handle._write_record,
            "interval",
            seconds=HEARTBEAT_SECONDS,
            id=HEARTBEAT_JOB,
            name="heartbeat",
        )
        scheduler.add_listener(
            handle._write_record,
            EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES,
        )
        scheduler.start()
    except BaseException:
        lock.release()
        raise
    service.scheduler = handle
    handle._write_record()
    log.info(
        "periodic ingest %s of %s; next run at %s",
        describe_schedule(settings),
        service.registry.describe_names(),
        _iso(t.timestamp()) if (t := handle.next_run_time()) else "never",
    )
    return handle


def start_for_bot(settings: Settings, service: IndexService) -> SchedulerHandle:
    """`ragbot run`: the periodic ingest in the background unless RAGBOT_SCHEDULER=off.

    Call `handle.shutdown()` when the bot stops (SIGTERM/SIGINT).
    """
    if settings.ragbot_scheduler == "off":
        log.info("periodic ingest is off in this process (RAGBOT_SCHEDULER=off)")
        return SchedulerHandle(settings, service, role="run", idle_reason="RAGBOT_SCHEDULER=off")
    return start_scheduler(settings, service, role="run")


@contextmanager
def shutdown_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGTERM/SIGINT; a second signal gets the default behaviour."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()
        for sig, old in previous.items():
            signal.signal(sig, old)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_worker(settings: Settings, service: IndexService) -> None:
    """`ragbot worker`: the scheduler alone, blocking until SIGTERM/SIGINT.

    Raises ConfigError when there is nothing to schedule and SchedulerBusyError when another
    scheduler on this host already runs.
    """
    if build_trigger(settings) is None:
        raise ConfigError(
            "INGEST_INTERVAL_MINUTES is 0 and INGEST_CRON is unset: the worker has nothing to do"
        )
    service.registry.resolve(["all"])  # ConfigError when no source is configured
    with shutdown_signals() as stop:
        # Preflight (after the lock, so a second worker leaves without touching the store):
        # configuration problems stop the worker now with exit 2, not in an hour in a log line.
        handle = start_scheduler(settings, service, role="worker", preflight=True)
        if not handle.running:
            raise SchedulerBusyError(handle.idle_reason or "the scheduler did not start")
        try:
            while not stop.wait(1.0):
                pass
        finally:
            handle.shutdown()


# ----- status from any process ---------------------------------------------------------------


def read_record(data_dir: Path) -> dict[str, Any] | None:
    """The live scheduler's record in RAGBOT_DATA_DIR, or None (absent or its heartbeat stopped)."""
    try:
        data = json.loads((data_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    heartbeat = data.get("heartbeat")
    if not isinstance(data, dict) or not isinstance(heartbeat, (int, float)):
        return None
    if time.time() - heartbeat > STALE_AFTER_SECONDS:
        return None
    return data


def scheduler_status(settings: Settings, handle: SchedulerHandle | None) -> dict[str, Any]:
    """Where the periodic ingest runs and when it next fires: this process, another one, or nowhere."""
    if handle is not None and handle.running:
        return handle.describe()
    record = read_record(settings.ragbot_data_dir)
    if record is not None:
        next_run = record.get("next_run")
        return {
            "running": True,
            "where": f"{record.get('role')} pid {record.get('pid')} on {record.get('host')}",
            "schedule": record.get("schedule"),
            "next_run": _iso(next_run) if isinstance(next_run, (int, float)) else None,
            "idle_reason": None,
        }
    try:
        schedule = describe_schedule(settings)
        build_trigger(settings)
    except ConfigError as e:
        schedule = f"invalid: {e}"
    return {
        "running": False,
        "where": None,
        "schedule": schedule,
        "next_run": None,
        "idle_reason": handle.idle_reason if handle is not None else "no scheduler is running",
    }


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
