"""BM25 over chunk texts with a code-aware tokenizer, persisted beside the store and kept in step with it.

The vectors may live in a Chroma server that several hosts share (an ingest worker and one or
more bots), so the Chroma collection is the single source of truth: each process keeps a BM25
index of the collection's documents in its own RAGBOT_DATA_DIR. Every ingest write goes through
`logged_change`, which records the ids it changes in a change log beside the collection's
generation marker; another process applies just those ids (re-read from Chroma) instead of
rebuilding, and rebuilds only when the log cannot take it from its generation to the current one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Collection as AbstractCollection
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.bm25 import Bm25Index

if TYPE_CHECKING:
    from rag.store import Collection, Record

log = logging.getLogger(__name__)

GENERATION_KEY = "lexical_generation"
FORMAT_VERSION = 3  # 2: terms are Snowball-stemmed; 3: term-count matrices (rag.bm25)

_WORD = re.compile(r"[A-Za-z0-9_]+")
# camelCase / PascalCase / ACRONYMCase / digits boundaries inside one identifier part
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")
_STOPWORDS_TEXT = """a an and are as at be by can did do does for from has have how i if in is it its of
on or that the this to was what when where which who why will with"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


_stemmer_lock = threading.Lock()
_stemmer: Any = None


def _stem(terms: list[str]) -> list[str]:
    """English Snowball stems, so "IDs" meets `id` and "computed" meets `compute`.

    Measured on the contextual-code set: Pass@5 82.29 → 84.81 (hybrid, MiniLM).
    """
    global _stemmer
    if _stemmer is None:
        with _stemmer_lock:
            if _stemmer is None:
                import Stemmer

                _stemmer = Stemmer.Stemmer("english")
    with _stemmer_lock:  # a PyStemmer object is not thread-safe
        return list(_stemmer.stemWords(terms))


def tokenize(text: str) -> list[str]:
    """Code-aware, stemmed terms: each identifier whole (lower-cased) plus its camelCase/snake_case parts.

    `parseHTTPResponse_v2` → parsehttpresponse_v2, parse, http, response, v2, each then stemmed
    (pars, respons, ...). English stopwords are dropped; single characters are kept only as
    parts of a longer identifier's whole form.
    """
    terms: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        lower = word.lower()
        pieces = [p.lower() for chunk in word.split("_") for p in _PART.findall(chunk)]
        if len(lower) > 1 and lower not in _STOPWORDS:
            terms.append(lower)
        if len(pieces) > 1 or (pieces and pieces[0] != lower):
            terms.extend(p for p in pieces if len(p) > 1 and p not in _STOPWORDS)
    return _stem(terms) if terms else terms


def lexical_text(text: str, metadata: dict[str, Any]) -> str:
    """What BM25 sees for a record: its path and symbol (both strong signals) and its text."""
    parts = [str(metadata[k]) for k in ("path", "title", "symbol") if metadata.get(k)]
    return "\n".join([*parts, text])


def collection_stamp(collection: Collection) -> str:
    """Cheap identity of the collection's content: record count + the last ingest's generation."""
    meta = collection.metadata()
    return f"{collection.count()}:{meta.get(GENERATION_KEY, '')}"


# ----- the change log ------------------------------------------------------------------------
#
# Every write to a collection is wrapped by `logged_change`: an *intent* entry naming the ids
# about to change, then the write, then a *commit* entry naming them again. Each entry gets a
# new generation, linked to the one before it, and is written to the log before the generation
# is set on the collection. A reader whose index is at generation G walks back from the current
# generation to G and re-reads only the ids on that path (plus G's own, in case G's write was
# still under way when it read them). A crash anywhere leaves the last generation an intent
# whose ids the next query re-reads, so a half-finished write is repaired; a reader that cannot
# find its generation in the (bounded) log rebuilds from the whole collection.

INTENT, COMMIT = "intent", "commit"
#: Ids kept in the log, all entries together; older entries are dropped beyond it.
MAX_LOG_IDS = 50_000
_LOG_KEY = "entries"


@dataclass(frozen=True)
class Change:
    generation: str
    previous: str
    kind: str
    ids: tuple[str, ...] | None  # None: unknown or too many, readers rebuild


def _log_name(collection: Collection) -> str:
    # Not under the "ragbot-" prefix: it holds no chunks and is no source's collection.
    return "lexlog-" + hashlib.sha256(collection.name.encode()).hexdigest()[:24]


def _log_raw(collection: Collection) -> Any:
    client = collection.client
    if client is None:
        return None
    return client.get_or_create_collection(
        name=_log_name(collection), embedding_function=None, metadata={"log_of": collection.name}
    )


def read_log(collection: Collection) -> list[Change]:
    raw = _log_raw(collection)
    if raw is None:
        return []
    meta = (collection.client.get_collection(name=raw.name, embedding_function=None).metadata) or {}
    try:
        entries = json.loads(str(meta.get(_LOG_KEY) or "[]"))
        return [Change(g, p, k, tuple(ids) if ids is not None else None) for g, p, k, ids in entries]
    except (ValueError, TypeError):
        return []


def record_change(collection: Collection, ids: Sequence[str] | None, *, kind: str = COMMIT) -> str:
    """Log a change of `ids` (None: of anything) under a new generation, then publish it."""
    previous = str(collection.metadata().get(GENERATION_KEY, ""))
    generation = uuid.uuid4().hex
    raw = _log_raw(collection)
    if raw is not None:
        unique = list(dict.fromkeys(ids)) if ids is not None else None
        entries = [*read_log(collection), Change(generation, previous, kind, None)]
        entries[-1] = Change(
            generation,
            previous,
            kind,
            tuple(unique) if unique is not None and len(unique) <= MAX_LOG_IDS else None,
        )
        total = 0
        kept: list[Change] = []
        for entry in reversed(entries):
            total += len(entry.ids or ())
            if kept and total > MAX_LOG_IDS:
                break
            kept.append(entry)
        data = [
            [e.generation, e.previous, e.kind, list(e.ids) if e.ids is not None else None]
            for e in reversed(kept)
        ]
        raw.modify(metadata={"log_of": collection.name, _LOG_KEY: json.dumps(data, separators=(",", ":"))})
    collection.set_metadata({GENERATION_KEY: generation})
    return generation


@contextmanager
def logged_change(collection: Collection, ids: Sequence[str] | None) -> Iterator[None]:
    """Wrap a write of `ids` to the collection so that every BM25 index can follow it."""
    record_change(collection, ids, kind=INTENT)
    yield
    record_change(collection, ids, kind=COMMIT)


def bump_generation(collection: Collection) -> None:
    """A change the log cannot describe: every process's BM25 index rebuilds at its next query."""
    record_change(collection, None)


def changes_since(log: list[Change], since: str, current: str) -> tuple[set[str] | None, bool]:
    """(ids to re-read, whether `current` is an uncommitted intent); None ids: rebuild instead."""
    by_generation = {e.generation: e for e in log}
    pending = by_generation[current].kind == INTENT if current in by_generation else False
    changed: set[str] = set()
    generation = current
    while generation != since:
        entry = by_generation.get(generation)
        if entry is None or entry.ids is None:
            return None, pending
        changed.update(entry.ids)
        generation = entry.previous
    own = by_generation.get(since)
    if own is not None and own.kind == INTENT:
        if own.ids is None:
            return None, pending
        changed.update(own.ids)
    return changed, pending


# ----- the index -------------------------------------------------------------------------------


def source_name_of(metadata: dict[str, Any]) -> str:
    """The record's source instance (`source_name`), or its kind (`source`) for older records."""
    return str(metadata.get("source_name") or metadata.get("source") or "")


class LexicalIndex:
    """BM25 for one collection; `search` returns record ids best first with their BM25 scores."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._index: Bm25Index | None = None
        self._generation = ""
        self._count = -1
        self._pending = False  # built at an intent: the write may still have been under way
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def stamp(self) -> str | None:
        return f"{self._count}:{self._generation}" if self._index is not None else None

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else 0

    # ----- freshness ---------------------------------------------------------------------

    def ensure_fresh(self, collection: Collection) -> bool:
        """Follow the collection: apply its logged changes, or rebuild; returns whether it changed."""
        generation = str(collection.metadata().get(GENERATION_KEY, ""))
        count = collection.count()
        if self._is_current(generation, count):
            return False
        with self._lock:
            if self._index is None and not self._loaded and self.directory is not None:
                self._loaded = True
                self._load()
            if self._is_current(generation, count):
                return False
            if self._index is None or not self._apply_log(collection, generation):
                self.rebuild(collection, generation=generation)
        return True

    def _is_current(self, generation: str, count: int) -> bool:
        return (
            self._index is not None
            and not self._pending
            and self._generation == generation
            and self._count == count
        )

    def _apply_log(self, collection: Collection, generation: str) -> bool:
        assert self._index is not None
        changed, pending = changes_since(read_log(collection), self._generation, generation)
        if changed is None:
            return False
        self._apply(collection, sorted(changed))
        count = collection.count()
        if not pending and len(self._index) != count:
            # A write the log does not describe (an older ragbot, a hand edit): start over.
            log.info("BM25 index of %s disagrees with the collection; rebuilding", collection.name)
            return False
        self._generation, self._count, self._pending = generation, count, pending
        self._save()
        log.info("BM25 index of %s: %d changed chunk(s) applied", collection.name, len(changed))
        return True

    def _apply(self, collection: Collection, ids: list[str]) -> None:
        assert self._index is not None
        found: dict[str, Record] = {}
        for start in range(0, len(ids), _GET_PAGE):
            found.update({r.id: r for r in collection.get(ids[start : start + _GET_PAGE])})
        self._index.remove([i for i in ids if i not in found])
        records = list(found.values())
        self._index.add(
            [r.id for r in records],
            [tokenize(_record_text(r)) for r in records],
            hashes=[str(r.metadata.get("chunk_hash") or "") for r in records],
            sources=[source_name_of(r.metadata) for r in records],
        )

    def rebuild(self, collection: Collection, *, generation: str | None = None) -> None:
        """Read every record of the collection and index it; unchanged chunks reuse their tokens."""
        if generation is None:
            generation = str(collection.metadata().get(GENERATION_KEY, ""))
        by_id: dict[str, Record] = {}
        for record in collection.iter_records(include_documents=True):
            by_id[record.id] = record
        records = list(by_id.values())
        index = Bm25Index()
        index.add(
            [r.id for r in records],
            [tokenize(_record_text(r)) for r in records],
            hashes=[str(r.metadata.get("chunk_hash") or "") for r in records],
            sources=[source_name_of(r.metadata) for r in records],
        )
        log_entries = read_log(collection)
        latest = next((e for e in log_entries if e.generation == generation), None)
        self._index = index
        self._generation = generation
        self._count = len(records)
        self._pending = latest is not None and latest.kind == INTENT
        self._save()
        log.info("BM25 index of %s rebuilt: %d chunks", collection.name, len(records))

    def build(
        self, ids: Sequence[str], texts: Sequence[str], *, source_names: Sequence[str] | None = None
    ) -> None:
        """Index given texts directly (no collection): used by evaluation and tests."""
        index = Bm25Index()
        index.add(
            list(ids),
            [tokenize(t) for t in texts],
            hashes=[""] * len(ids),
            sources=list(source_names) if source_names is not None else [""] * len(ids),
        )
        self._index, self._generation, self._count, self._pending = index, "adhoc", len(ids), False

    # ----- search ------------------------------------------------------------------------

    def search(
        self, query: str, k: int, *, source_names: AbstractCollection[str] | None = None
    ) -> list[tuple[str, float]]:
        """Ids best first with BM25 scores; `source_names` keeps only those sources' chunks."""
        if self._index is None or k <= 0:
            return []
        terms = tokenize(query)
        if not terms:
            return []
        with self._lock:  # an update in another thread changes the arrays in place
            return self._index.search(terms, k, source_names=source_names)

    # ----- persistence -------------------------------------------------------------------

    def _save(self) -> None:
        if self.directory is None or self._index is None:
            return
        header = {
            "format": FORMAT_VERSION,
            "generation": self._generation,
            "count": self._count,
            "pending": self._pending,
        }
        self._index.save(self.directory, header)

    def _load(self) -> None:
        assert self.directory is not None
        try:
            index, meta = Bm25Index.load(self.directory)
            if meta.get("format") != FORMAT_VERSION:
                return
            self._index = index
            self._generation = str(meta["generation"])
            self._count = int(meta["count"])
            self._pending = bool(meta["pending"])
        except (OSError, ValueError, KeyError, TypeError):
            return


_GET_PAGE = 500


def _record_text(record: Record) -> str:
    return lexical_text(record.text, record.metadata)


class LexicalIndexes:
    """One LexicalIndex per collection name, kept under RAGBOT_DATA_DIR/lexical/."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._indexes: dict[str, LexicalIndex] = {}
        self._lock = threading.Lock()

    def get(self, collection_name: str) -> LexicalIndex:
        with self._lock:
            if collection_name not in self._indexes:
                directory = self.root / collection_name if self.root is not None else None
                self._indexes[collection_name] = LexicalIndex(directory)
            return self._indexes[collection_name]

    def fresh(self, collection: Collection) -> LexicalIndex:
        index = self.get(collection.name)
        index.ensure_fresh(collection)
        return index
