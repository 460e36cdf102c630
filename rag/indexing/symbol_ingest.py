"""The symbol index's side of an ingest run: which documents need their symbols (re)written, the
records, the logged writes, and the pruning — the same fingerprints and change log as the chunks.

Crash safety: a document's symbol records are written before its chunks, and the chunks' own
fingerprint is what marks a document done; so a run that stops between the two leaves the
document changed (its chunks still old), and the next run rewrites both. A document whose chunks
are current but whose symbols are missing or stale (an index built before the symbol index, or a
symbol-extraction change) gets its symbols alone: its chunks are not embedded again.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rag.indexing.changelog import logged_change
from rag.indexing.store import Collection, DocumentState
from rag.indexing.symbol_store import SymbolRecords, records_for
from rag.indexing.symbols import extract
from rag.models import Chunk, Document

log = logging.getLogger(__name__)

#: Part of every symbol record's fingerprint: bump it when extraction or the record text changes.
SYMBOLS_VERSION = "symbols-2"


def placeholder_vector(record_id: str) -> list[float]:
    """The symbol records are searched by their words and looked up by name, never by vector:
    embedding every definition's text cost 36% more embedding time and 76% more storage on click
    for a ranking gain within one question per labelled set (docs/retrieval.md, "Definitions").
    Chroma still wants a vector per record: a distinct 2-d unit vector from the id, free."""
    angle = (int(hashlib.blake2b(record_id.encode(), digest_size=4).hexdigest(), 16) % 3600) / 3600 * math.tau
    return [math.cos(angle), math.sin(angle)]


@dataclass
class PendingSymbols:
    doc_id: str
    records: SymbolRecords
    previous: DocumentState | None


class SymbolWriter:
    """Writes one source's symbol records into the kind's symbol collection."""

    def __init__(self, collection: Collection, source_name: str) -> None:
        self.collection = collection
        self.source_name = source_name
        collection.register_source(source_name)
        self.states = collection.document_states(source_name)

    @staticmethod
    def fingerprint(chunk_fingerprint: str) -> str:
        """Short (it is stored with every record): the chunks' fingerprint and the symbols' version."""
        return hashlib.sha256(f"{chunk_fingerprint}|{SYMBOLS_VERSION}".encode()).hexdigest()[:16]

    def current(self, doc_id: str, chunk_fingerprint: str) -> bool:
        """Whether the document's symbols were written for this version of it, completely."""
        state = self.states.get(doc_id)
        return bool(state and state.complete and state.fingerprint == self.fingerprint(chunk_fingerprint))

    def prepare(self, doc: Document, chunks: Sequence[Chunk], chunk_fingerprint: str) -> PendingSymbols:
        """Extract the document's symbols (in the chunking thread: tree-sitter, no model)."""
        symbols = extract(
            text=doc.text,
            language=doc.language,
            title=doc.title,
            is_page=doc.source == "confluence",
            breadcrumb=str(doc.metadata.get("breadcrumb") or ""),
        )
        records = records_for(doc, self.source_name, symbols, chunks, self.fingerprint(chunk_fingerprint))
        return PendingSymbols(doc.doc_id, records, self.states.get(doc.doc_id))

    def write(self, pending: Sequence[PendingSymbols]) -> int:
        """Store the records (replacing the documents' stale ones); returns how many entries (file
        entries and definitions) they hold."""
        ids = [i for p in pending for i in p.records.ids]
        if not pending:
            return 0
        texts = [t for p in pending for t in p.records.texts]
        metadatas = [m for p in pending for m in p.records.metadatas]
        vectors = [placeholder_vector(i) for i in ids]
        fresh = set(ids)
        stale = [i for p in pending if p.previous is not None for i in p.previous.ids if i not in fresh]
        with logged_change(self.collection, ids + stale):
            self.collection.upsert_records(ids, vectors, texts, metadatas)
            self.collection.delete_ids(stale)
        return sum(p.records.entries for p in pending)

    def prune(self, listed: set[str]) -> None:
        """Delete the symbols of documents the source no longer lists."""
        gone = [doc_id for doc_id in self.states if doc_id not in listed]
        ids = [i for doc_id in gone for i in self.states[doc_id].ids]
        if ids:
            with logged_change(self.collection, ids):
                self.collection.delete_ids(ids)


def remove_source(collection: Collection, source_name: str) -> None:
    """Delete every symbol record of a source that is no longer configured."""
    states = collection.document_states(source_name)
    ids = [i for state in states.values() for i in state.ids]
    with logged_change(collection, ids):
        collection.delete_ids(ids)
    collection.forget_source(source_name)


def index_symbols(
    collection: Collection,
    source_name: str,
    documents: Sequence[tuple[Document, Sequence[Chunk]]],
) -> int:
    """The symbol records of documents whose chunks were written by other means (`ragbot eval`,
    the benchmarks): extracted and stored exactly as the ingest does."""
    writer = SymbolWriter(collection, source_name)
    return writer.write([writer.prepare(doc, chunks, doc.fingerprint()) for doc, chunks in documents])
