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
from dataclasses import dataclass, field
from typing import Any

from rag.chunking import LineChunker, SyntaxChunker
from rag.config import Settings, SourceName
from rag.embedding import Embedder, EmbedderPool
from rag.errors import ConfigError, IngestCancelled, ModelError, RagError, StoreError
from rag.lexical import LexicalIndexes, logged_change
from rag.locking import IngestLock
from rag.models import Chunk, Document, IngestReport
from rag.pipeline import prefetch
from rag.secrets import redact
from rag.sources import build_source
from rag.sources.base import DocumentRef, LoadFailure, Source
from rag.state import StateDB
from rag.store import Collection, DocumentState, VectorStore, chunk_id

log = logging.getLogger(__name__)

FLUSH_CHUNKS = 512
#: Documents read and chunked ahead of the embedding (bounds the memory they hold).
PREFETCH_DOCUMENTS = 64

#: progress(source, documents_done, documents_to_process)
Progress = Callable[[str, int, int], None]
SourceFactory = Callable[[Settings, SourceName], Source]


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    fingerprint: str
    previous: DocumentState | None
    extra: dict[str, Any] = field(default_factory=dict)


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
        source_factory: SourceFactory = build_source,
        lexical: LexicalIndexes | None = None,
    ) -> None:
        self.settings = settings
        self.lexical = (
            lexical if lexical is not None else LexicalIndexes(settings.ragbot_data_dir / "lexical")
        )
        self.store = store
        self.embedders = embedders
        self.source_factory = source_factory
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

    def preflight(self, targets: Sequence[SourceName]) -> None:
        """Validate what each target needs before any work: source, model, store (one error)."""
        for name in targets:
            source = self.source_factory(self.settings, name)
            check = getattr(source, "check", None)
            if check is not None:
                check()
            self.embedders.get(self.settings.embedding_model_for(name)).token_limit()
        self.store.collection_names()

    def run(
        self,
        targets: Sequence[SourceName],
        *,
        full: bool = False,
        trigger: str = "cli",
        progress: Progress | None = None,
    ) -> list[IngestReport]:
        """Ingest each target in turn. Raises IngestBusyError if another ingest is running."""
        reports = []
        with self.lock(trigger):
            for name in targets:
                if self._cancelled.is_set():
                    break
                started = time.time()
                report = self.run_source(name, full=full, progress=progress)
                self.state.record_run(report, started_at=started, trigger=trigger)
                reports.append(report)
        return reports

    def run_source(
        self, name: SourceName, *, full: bool = False, progress: Progress | None = None
    ) -> IngestReport:
        """One source, without taking the lock (the caller holds it)."""
        t0 = time.monotonic()
        report = IngestReport(source=name)
        try:
            self._run(name, report, full=full, progress=progress)
        except RagError as e:
            report.ok = False
            report.error = str(e)
            report.config_error = isinstance(e, ConfigError | ModelError | StoreError)
            log.error("ingest of %s failed: %s", name, e)
        except Exception as e:  # an unexpected bug must not kill the scheduler or the bot
            report.ok = False
            report.error = f"unexpected error: {type(e).__name__}: {e}"
            log.exception("ingest of %s failed unexpectedly", name)
        report.seconds = time.monotonic() - t0
        return report

    def _run(self, name: SourceName, report: IngestReport, *, full: bool, progress: Progress | None) -> None:
        source = self.source_factory(self.settings, name)
        log.info("ingesting %s: %s", name, source.describe())
        source.prepare()
        refs = source.scan()  # raises when the listing is incomplete: nothing is deleted then
        report.documents_seen = len(refs)
        if not refs:
            report.warnings.append(f"{source.describe()} has no documents to index")
            log.warning("%s has no documents to index", source.describe())

        embedder = self.embedders.get(self.settings.embedding_model_for(name))
        chunker = make_chunker(self.settings, embedder)
        collection = self.store.collection(name, embedder.key)
        assert collection is not None
        states = collection.document_states()
        signature = chunker.signature

        to_load: list[DocumentRef] = []
        for ref in refs:
            state = states.get(ref.doc_id)
            unchanged = (
                not full
                and ref.version
                and state is not None
                and state.complete
                and state.fingerprint == f"{ref.version}|{signature}"
            )
            if unchanged:
                report.documents_unchanged += 1
            else:
                to_load.append(ref)

        def prepared() -> Iterator[_Pending | LoadFailure]:
            for item in source.load(to_load):
                if isinstance(item, LoadFailure):
                    yield item
                    continue
                try:
                    yield self._prepare(item, chunker, states.get(item.doc_id))
                except Exception as e:  # one bad document must not stop the run
                    log.warning("cannot chunk %s: %s", item.doc_id, e, exc_info=True)
                    yield LoadFailure(item.doc_id, f"{type(e).__name__}: {e}")

        # Reading, redacting and chunking the next documents overlaps the model's forward passes.
        items = prefetch(prepared(), depth=PREFETCH_DOCUMENTS) if self.overlap else prepared()
        pending: list[_Pending] = []
        for done, item in enumerate(items, start=1):
            self._check_cancelled()
            if isinstance(item, LoadFailure):
                report.errors.append({"document": item.doc_id, "error": item.error})
                log.warning("%s: %s", item.doc_id, item.error)
            else:
                pending.append(item)
            if sum(len(p.chunks) for p in pending) >= FLUSH_CHUNKS:
                self._flush(pending, embedder, collection, report)
                pending = []
            if progress:
                progress(name, done, len(to_load))
        self._check_cancelled()
        self._flush(pending, embedder, collection, report)

        self._check_cancelled()  # pruning only after a complete pass
        self._prune(collection, states, {ref.doc_id for ref in refs}, report)
        if report.errors:
            log.warning("%s: %d document(s) failed and kept their previous chunks", name, len(report.errors))
        try:
            self.lexical.fresh(collection)
        except Exception as e:  # the vectors are stored; a query rebuilds the BM25 index later
            log.warning("BM25 index of %s not refreshed: %s", name, e)

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

    def _prepare(self, doc: Document, chunker: LineChunker, previous: DocumentState | None) -> _Pending:
        text, redactions = redact(doc.text)
        if redactions:
            log.info("%s: redacted %d secret value(s) before indexing", doc.doc_id, redactions)
            doc = Document(**{**doc.__dict__, "text": text})
        fingerprint = f"{doc.fingerprint()}|{chunker.signature}"
        chunks = chunker.chunk(doc)
        extra = {**doc.metadata, "doc_fingerprint": fingerprint, "doc_chunks": len(chunks)}
        return _Pending(doc, chunks, fingerprint, previous, extra)

    def _flush(
        self, pending: list[_Pending], embedder: Embedder, collection: Collection, report: IngestReport
    ) -> None:
        if not pending:
            return
        chunks = [c for p in pending for c in p.chunks]
        vectors = embedder.embed_documents([c.embed_text for c in chunks])
        extras = [p.extra for p in pending for _ in p.chunks]
        written = [chunk_id(c.source, c.doc_id, c.index) for c in chunks]
        stale: list[str] = []
        for p in pending:
            new_ids = {chunk_id(c.source, c.doc_id, c.index) for c in p.chunks}
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


def resolve_targets(settings: Settings, target: str) -> list[SourceName]:
    """`all` → every configured source; a named source → that one (ConfigError if unset)."""
    if target == "all":
        targets = settings.configured_sources()
        if not targets:
            raise ConfigError(
                "no source configured: set CODE_REPO_PATH (or CODE_REPO_URL) and/or CONFLUENCE_URL"
            )
        return targets
    if target == "code":
        return ["code"]
    if target == "confluence":
        if not settings.confluence_configured:
            raise ConfigError("CONFLUENCE_URL is not set")
        return ["confluence"]
    raise ConfigError(f"unknown source {target!r}: use code, confluence or all")
