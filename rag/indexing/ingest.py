"""The incremental ingest pipeline: list → skip unchanged → load → redact → chunk → embed → store → prune.

Crash safety comes from the order of writes: a document's new chunks are upserted (stable
ids, each carrying the document's fingerprint and chunk count) before its stale chunks are
deleted, so at every instant the index either still describes the old version, or holds a
mix that `document_states` reports as incomplete and the next run rewrites.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rag.config import KINDS, Settings
from rag.errors import ConfigError, IngestCancelled, ModelError, RagError, StoreError
from rag.indexing.changelog import logged_change
from rag.indexing.chunking import LineChunker, SyntaxChunker
from rag.indexing.embedding import Embedder, EmbedderPool
from rag.indexing.lexical import LexicalIndexes
from rag.indexing.locking import IngestLock
from rag.indexing.permissions import PermissionStore
from rag.indexing.pipeline import prefetch
from rag.indexing.progress import Progress, SourceProgress, as_watcher
from rag.indexing.state import StateDB
from rag.indexing.store import Collection, DocumentState, VectorStore, chunk_id
from rag.indexing.symbol_ingest import PendingSymbols, SymbolWriter, remove_source
from rag.indexing.symbol_store import entries_of
from rag.models import Chunk, Document, IngestReport
from rag.secrets import redact
from rag.sources.base import DocumentRef, LoadFailure, Source
from rag.sources.confluence import ConfluenceSource
from rag.sources.registry import SourceRegistry
from rag.sources.specs import SourceSpec

log = logging.getLogger(__name__)

FLUSH_CHUNKS = 512
#: Documents read and chunked ahead of the embedding (bounds the memory they hold).
PREFETCH_DOCUMENTS = 64

SourceFactory = Callable[[Settings, SourceSpec], Source]


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    fingerprint: str
    previous: DocumentState | None
    extra: dict[str, Any] = field(default_factory=dict)
    symbols: PendingSymbols | None = None
    #: False: the chunks are current, only the document's symbols are (re)written.
    write_chunks: bool = True
    #: Secret values redacted from the text (summed per source for the one INFO line).
    redactions: int = 0


def make_chunker(settings: Settings, embedder: Embedder) -> LineChunker:
    limit = embedder.token_limit()
    size = settings.chunk_size or limit
    overlap = settings.chunk_overlap if settings.chunk_overlap is not None else max(0, size // 10)
    # Syntax-aware for languages with a tree-sitter grammar; the line packer for everything else.
    return SyntaxChunker(
        count_tokens=embedder.count_tokens,
        chunk_tokens=size,
        overlap_tokens=overlap,
        max_tokens=limit,
        vector_variant=getattr(embedder, "variant", ""),
    )


class Ingestor:
    """Runs ingests under the single-flight lock and records each run for `status`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore,
        embedders: EmbedderPool,
        registry: SourceRegistry | None = None,
        source_factory: SourceFactory | None = None,
        lexical: LexicalIndexes | None = None,
        permissions: PermissionStore | None = None,
    ) -> None:
        self.settings = settings
        self.permissions = permissions if permissions is not None else PermissionStore(store)
        self.registry = registry if registry is not None else SourceRegistry.from_settings(settings)
        self.lexical = (
            lexical if lexical is not None else LexicalIndexes(settings.ragbot_data_dir / "lexical")
        )
        self.store = store
        self.embedders = embedders
        self.source_factory: SourceFactory = source_factory or (
            lambda settings, spec: self.registry.build(spec, settings)
        )
        self.state = StateDB(settings.ragbot_data_dir)
        #: Chunk the next documents in a worker thread while the model embeds (benchmarks turn it off).
        self.overlap = True
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Interrupt the ingest in flight at the next document boundary (for process shutdown).

        Later ingests of this Ingestor stop at once too. Documents already flushed stay
        indexed; the ones not yet flushed keep their previous chunks; nothing is pruned.
        """
        self._cancelled.set()

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise IngestCancelled("ingest interrupted by shutdown; the next run continues")

    def lock(self, holder: str) -> IngestLock:
        return IngestLock(self.settings.ragbot_data_dir, holder=holder)

    def preflight(self, targets: Sequence[SourceSpec]) -> None:
        """Validate what each target needs before any work: source, model, store (one error)."""
        for spec in targets:
            source = self.source_factory(self.settings, spec)
            check = getattr(source, "check", None)
            if check is not None:
                check()
        for kind in {spec.kind for spec in targets}:
            embedder = self.embedders.get(self.settings.embedding_model_for(kind))
            embedder.token_limit()
            check = getattr(embedder, "check", None)
            if check is not None:
                check()  # a hosted model: one probe request (a wrong key, URL or name: exit 2)
        self.store.collection_names()

    def run(
        self,
        targets: Sequence[SourceSpec],
        *,
        full: bool = False,
        trigger: str = "cli",
        progress: Progress | None = None,
        prune_removed: bool = False,
    ) -> list[IngestReport]:
        """Ingest each target in turn; with `prune_removed` (`ingest all`, the scheduler), then
        delete the sources that are no longer configured. Raises IngestBusyError if another
        ingest is running. `progress` watches each source (an IngestProgress, or the callable
        progress(source, documents_done, documents_to_process))."""
        watcher = as_watcher(progress)
        reports = []
        with self.lock(trigger):
            for spec in targets:
                if self._cancelled.is_set():
                    break
                started = time.time()
                report = self.run_source(spec, full=full, progress=watcher)
                self.state.record_run(report, started_at=started, trigger=trigger)
                reports.append(report)
            if prune_removed and not self._cancelled.is_set():
                if all(r.ok for r in reports):
                    for report in self._prune_removed_sources():
                        self.state.record_run(report, started_at=time.time(), trigger=trigger)
                        reports.append(report)
                else:
                    # A run that could not list every configured source does not judge what is
                    # gone: a misconfigured or unreachable source must not cost another its index.
                    log.warning("removed sources are pruned only by a run in which every source succeeded")
        return reports

    def _prune_removed_sources(self) -> list[IngestReport]:
        """Delete every indexed source that the configuration no longer names."""
        reports: list[IngestReport] = []
        configured = set(self.registry.names())
        for kind in KINDS:
            embedder = self.embedders.get(self.settings.embedding_model_for(kind))
            collection = self.store.collection(kind, embedder.key, create=False)
            if collection is None:
                continue
            for name in collection.source_names():
                if name in configured:
                    continue
                t0 = time.monotonic()
                report = IngestReport(source=kind, source_name=name, removed=True)
                states = collection.document_states(name)
                with logged_change(collection, [i for state in states.values() for i in state.ids]):
                    for state in states.values():
                        collection.delete_ids(state.ids)
                report.documents_deleted = len(states)
                collection.forget_source(name)
                if kind == "confluence":
                    self.permissions.forget(name)  # its synced permissions go with it
                symbol_collection = self.store.collection(kind, embedder.key, create=False, symbols=True)
                if symbol_collection is not None:
                    remove_source(symbol_collection, name)
                report.seconds = time.monotonic() - t0
                log.info("source %s is no longer configured: %d document(s) deleted", name, len(states))
                reports.append(report)
        return reports

    def run_source(
        self, spec: SourceSpec, *, full: bool = False, progress: Progress | None = None
    ) -> IngestReport:
        """One source, without taking the lock (the caller holds it)."""
        t0 = time.monotonic()
        report = IngestReport(source=spec.kind, source_name=spec.name)
        tally = SourceProgress(as_watcher(progress), spec.name)
        tally.started()
        try:
            self._run(spec, report, full=full, progress=tally)
        except RagError as e:
            report.ok = False
            report.error = str(e)
            report.config_error = isinstance(e, ConfigError | ModelError | StoreError)
            log.error("ingest of %s failed: %s", spec.name, e)
        except Exception as e:  # an unexpected bug must not kill the scheduler or the bot
            report.ok = False
            report.error = f"unexpected error: {type(e).__name__}: {e}"
            log.exception("ingest of %s failed unexpectedly", spec.name)
        report.seconds = time.monotonic() - t0
        tally.finished(report)
        return report

    def _run(self, spec: SourceSpec, report: IngestReport, *, full: bool, progress: SourceProgress) -> None:
        name = spec.name
        source = self.source_factory(self.settings, spec)
        log.info("ingesting %s: %s", name, source.describe())
        syncing = isinstance(source, ConfluenceSource) and source.permission_sync
        if syncing:
            assert isinstance(source, ConfluenceSource)
            source.previous_permissions = self.permissions.load(name, fresh=True)
        try:
            source.prepare()
            refs = source.scan()  # raises when the listing is incomplete: nothing is deleted then
        except RagError as e:
            if syncing:  # who may read what is unknown now: public pages only until a sync succeeds
                self.permissions.record_failure(name, str(e))
            raise
        report.documents_seen = len(refs)
        if not refs:
            report.warnings.append(f"{source.describe()} has no documents to index")
            log.warning("%s has no documents to index", source.describe())

        embedder = self.embedders.get(self.settings.embedding_model_for(spec.kind))
        chunker = make_chunker(self.settings, embedder)
        collection = self.store.collection(spec.kind, embedder.key)
        assert collection is not None
        collection.register_source(name)  # before any write, so a removal can always find it
        states = collection.document_states(name)
        signature = chunker.signature
        symbol_collection = self.store.collection(spec.kind, embedder.key, symbols=True)
        assert symbol_collection is not None
        symbols = SymbolWriter(symbol_collection, name)
        if isinstance(source, ConfluenceSource) and source.permission_snapshot is not None:
            # Re-tag before the new permissions are published: a page whose readers changed is
            # hidden from everyone for the moment between, never shown to its old readers.
            report.documents_retagged = self._retag(collection, states, source.access_tags())
            self.permissions.save(source.permission_snapshot)

        to_load: list[DocumentRef] = []
        symbols_only: set[str] = set()
        for ref in refs:
            state = states.get(ref.doc_id)
            unchanged = (
                not full
                and ref.version
                and state is not None
                and state.complete
                and state.fingerprint == f"{ref.version}|{signature}"
            )
            if unchanged and symbols.current(ref.doc_id, f"{ref.version}|{signature}"):
                report.documents_unchanged += 1
            else:
                to_load.append(ref)
                if unchanged:
                    symbols_only.add(ref.doc_id)
        progress.listed(len(refs), len(to_load))

        def prepared() -> Iterator[_Pending | LoadFailure]:
            for item in source.load(to_load):
                if isinstance(item, LoadFailure):
                    yield item
                    continue
                try:
                    pending = self._prepare(item, name, chunker, states.get(item.doc_id))
                    pending.symbols = symbols.prepare(pending.doc, pending.chunks, pending.fingerprint)
                    pending.write_chunks = item.doc_id not in symbols_only
                    yield pending
                except Exception as e:  # one bad document must not stop the run
                    log.warning("cannot chunk %s: %s", item.doc_id, e, exc_info=True)
                    yield LoadFailure(item.doc_id, f"{type(e).__name__}: {e}")

        # Reading, redacting and chunking the next documents overlaps the model's forward passes.
        items = prefetch(prepared(), depth=PREFETCH_DOCUMENTS) if self.overlap else prepared()
        pending: list[_Pending] = []
        redacted_values = redacted_files = 0
        for item in items:
            self._check_cancelled()
            if isinstance(item, LoadFailure):
                report.errors.append({"document": item.doc_id, "error": item.error})
                log.warning("%s: %s", item.doc_id, item.error)
                progress.done(1)
            else:
                pending.append(item)
                redacted_values += item.redactions
                redacted_files += 1 if item.redactions else 0
            if sum(len(p.chunks) for p in pending) >= FLUSH_CHUNKS:
                self._flush(pending, embedder, collection, symbols, report, progress=progress)
                pending = []
        self._check_cancelled()
        self._flush(pending, embedder, collection, symbols, report, progress=progress)
        if redacted_values:  # the per-file lines are at DEBUG
            log.info(
                "%s: redacted %d secret value%s in %d file%s",
                name,
                redacted_values,
                "" if redacted_values == 1 else "s",
                redacted_files,
                "" if redacted_files == 1 else "s",
            )

        self._check_cancelled()  # pruning only after a complete pass
        self._prune(collection, states, {ref.doc_id for ref in refs}, report)
        symbols.prune({ref.doc_id for ref in refs})
        if report.errors:
            log.warning("%s: %d document(s) failed and kept their previous chunks", name, len(report.errors))
        try:
            self.lexical.fresh(collection)
            self.lexical.fresh(symbol_collection, expand=entries_of)
        except Exception as e:  # the vectors are stored; a query rebuilds the BM25 index later
            log.warning("BM25 index of %s not refreshed: %s", name, e)

    def sync_permissions(self, spec: SourceSpec) -> IngestReport:
        """Re-read who may read each page of a `permissions = "sync"` site and re-tag its chunks:
        the listing and the permissions only, no page body, nothing embedded. The caller holds
        the ingest lock. A failure is recorded: answers then use that site's public pages only."""
        t0 = time.monotonic()
        report = IngestReport(source=spec.kind, source_name=spec.name)
        source = self.source_factory(self.settings, spec)
        if not (isinstance(source, ConfluenceSource) and source.permission_sync):
            report.warnings.append(f"{spec.name} does not sync permissions")
            return report
        try:
            source.previous_permissions = self.permissions.load(spec.name, fresh=True)
            source.prepare()
            report.documents_seen = len(source.scan())
            assert source.permission_snapshot is not None
            embedder = self.embedders.get(self.settings.embedding_model_for(spec.kind))
            collection = self.store.collection(spec.kind, embedder.key, create=False)
            if collection is not None:
                states = collection.document_states(spec.name)
                report.documents_retagged = self._retag(collection, states, source.access_tags())
            self.permissions.save(source.permission_snapshot)
            if collection is not None and report.documents_retagged:
                self.lexical.fresh(collection)
        except RagError as e:
            report.ok, report.error = False, str(e)
            self.permissions.record_failure(spec.name, str(e))
            log.error("permission sync of %s failed: %s", spec.name, e)
        except Exception as e:  # never kill the scheduler; the site is public-only until a sync works
            report.ok, report.error = False, f"unexpected error: {type(e).__name__}: {e}"
            self.permissions.record_failure(spec.name, report.error)
            log.exception("permission sync of %s failed unexpectedly", spec.name)
        report.seconds = time.monotonic() - t0
        return report

    @staticmethod
    def _retag(collection: Collection, states: dict[str, DocumentState], tags: dict[str, str]) -> int:
        """Give each indexed page's chunks its current `access` tag; returns the pages changed."""
        changed = {
            doc_id: tag for doc_id, tag in tags.items() if doc_id in states and states[doc_id].access != tag
        }
        if not changed:
            return 0
        ids = [i for doc_id in changed for i in states[doc_id].ids]
        with logged_change(collection, ids):  # every BM25 index re-reads these chunks' tags
            for doc_id, tag in changed.items():
                collection.update_metadata(states[doc_id].ids, {"access": tag})
        log.info("%d page(s) whose readers changed re-tagged (nothing re-embedded)", len(changed))
        return len(changed)

    @staticmethod
    def _prune(
        collection: Collection, states: dict[str, DocumentState], listed: set[str], report: IngestReport
    ) -> None:
        """Delete the chunks of documents the source no longer lists."""
        gone = [doc_id for doc_id in states if doc_id not in listed]
        if not gone:
            return
        ids = [i for doc_id in gone for i in states[doc_id].ids]
        with logged_change(collection, ids):  # every process's BM25 index follows these ids
            for doc_id in gone:
                collection.delete_ids(states[doc_id].ids)
                report.documents_deleted += 1

    def _prepare(
        self, doc: Document, source_name: str, chunker: LineChunker, previous: DocumentState | None
    ) -> _Pending:
        text, redactions = redact(doc.text)
        if redactions:
            log.debug("%s: redacted %d secret value(s) before indexing", doc.doc_id, redactions)
            doc = Document(**{**doc.__dict__, "text": text})
        fingerprint = f"{doc.fingerprint()}|{chunker.signature}"
        chunks = [replace(c, source_name=source_name) for c in chunker.chunk(doc)]
        extra = {**doc.metadata, "doc_fingerprint": fingerprint, "doc_chunks": len(chunks)}
        return _Pending(doc, chunks, fingerprint, previous, extra, redactions=redactions)

    def _flush(
        self,
        pending: list[_Pending],
        embedder: Embedder,
        collection: Collection,
        symbols: SymbolWriter,
        report: IngestReport,
        *,
        progress: SourceProgress | None = None,
    ) -> None:
        if not pending:
            return
        documents = len(pending)
        # Symbols first: a document's chunks (their fingerprint) are what marks it done.
        report.symbols_indexed += symbols.write([p.symbols for p in pending if p.symbols])
        report.documents_unchanged += sum(1 for p in pending if not p.write_chunks)
        pending = [p for p in pending if p.write_chunks]
        if not pending:
            if progress:
                progress.done(documents)
            return
        chunks = [c for p in pending for c in p.chunks]
        vectors = embedder.embed_documents(
            [c.embed_text for c in chunks],
            progress=progress.embedding(documents, len(chunks)) if progress else None,
        )
        extras = [p.extra for p in pending for _ in p.chunks]
        written = [chunk_id(c.source_name, c.doc_id, c.index) for c in chunks]
        stale: list[str] = []
        for p in pending:
            new_ids = {chunk_id(c.source_name, c.doc_id, c.index) for c in p.chunks}
            if not p.chunks and p.previous is None:
                report.documents_unchanged += 1  # nothing to index before or now
            elif p.previous is not None:
                stale.extend(i for i in p.previous.ids if i not in new_ids)
                report.documents_updated += 1
            else:
                report.documents_added += 1
        # The change log is written before and after each write, so a cancelled or crashed
        # run still leaves every process's BM25 index (bots on other hosts too) able to follow.
        with logged_change(collection, written + stale):
            collection.upsert(chunks, vectors, extras)
            collection.delete_ids(stale)
        report.chunks_embedded += len(chunks)
        if progress:
            progress.done(documents, len(chunks))


def resolve_targets(registry: SourceRegistry, targets: Sequence[str]) -> list[SourceSpec]:
    """Targets (source names, kinds, `all`) → the configured sources; ConfigError names the choices."""
    return registry.resolve(targets or ["all"])
