"""BM25 over chunk texts with a code-aware tokenizer, persisted beside the store and kept in step with it.

The vectors may live in a Chroma server that several hosts share (an ingest worker and one or
more bots), so the Chroma collection is the single source of truth: each process keeps a BM25
index of the collection's documents in its own RAGBOT_DATA_DIR. Every ingest write goes through
`logged_change`, which records the ids it changes in a change log beside the collection's
generation marker; another process applies just those ids (re-read from Chroma) instead of
rebuilding, and rebuilds only when the log cannot take it from its generation to the current one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Collection as AbstractCollection
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
# about to change, then the write, then a *commit* entry for the same ids. Each entry gets a
# new generation, linked to the one before it, and is stored in the collection's metadata in
# the same update that sets the generation (so every host that sees a generation sees its
# entry). A reader whose index is at generation G walks back from the current generation to G
# and re-reads only the ids on that path (plus G's own when G was an intent, in case its write
# was still under way when it read them). A crash anywhere leaves the last generation an intent
# whose ids the next query re-reads, so a half-finished write is repaired; a reader that cannot
# find its generation in the (bounded) log rebuilds from the whole collection.

INTENT, COMMIT = "intent", "commit"
LOG_KEY = "lexical_log"
#: Ids kept in the log, all entries together (older entries are dropped beyond it). The log is
#: read with the generation at every query, so it stays small: ~40 bytes an id.
MAX_LOG_IDS = 10_000
_SAME = "="  # a commit entry's ids: those of the intent it follows


@dataclass(frozen=True)
class Change:
    generation: str
    previous: str
    kind: str
    ids: tuple[str, ...] | None  # None: unknown or too many, readers rebuild


def parse_log(metadata: dict[str, Any]) -> list[Change]:
    try:
        entries = json.loads(str(metadata.get(LOG_KEY) or "[]"))
    except ValueError:
        return []
    changes: list[Change] = []
    by_generation: dict[str, Change] = {}
    for entry in entries if isinstance(entries, list) else []:
        try:
            generation, previous, kind, raw = entry
        except (TypeError, ValueError):
            continue
        if raw == _SAME:
            before = by_generation.get(previous)
            ids = before.ids if before is not None else None
        else:
            ids = tuple(raw) if isinstance(raw, list) else None
        change = Change(str(generation), str(previous), str(kind), ids)
        changes.append(change)
        by_generation[change.generation] = change
    return changes


def read_log(collection: Collection) -> list[Change]:
    return parse_log(collection.metadata())


def _serialise(changes: list[Change]) -> str:
    data: list[list[Any]] = []
    previous: Change | None = None
    for c in changes:
        same = previous is not None and c.previous == previous.generation and c.ids == previous.ids
        ids: Any = _SAME if same and c.ids is not None else (list(c.ids) if c.ids is not None else None)
        data.append([c.generation, c.previous, c.kind, ids])
        previous = c
    return json.dumps(data, separators=(",", ":"))


def record_change(collection: Collection, ids: Sequence[str] | None, *, kind: str = COMMIT) -> str:
    """Log a change of `ids` (None: of anything) under a new generation, in one metadata update."""
    metadata = collection.metadata()
    previous = str(metadata.get(GENERATION_KEY, ""))
    generation = uuid.uuid4().hex
    unique = tuple(dict.fromkeys(ids)) if ids is not None else None
    if unique is not None and len(unique) > MAX_LOG_IDS:
        unique = None
    entries = [*parse_log(metadata), Change(generation, previous, kind, unique)]
    kept: list[Change] = []
    total = 0
    for i, entry in enumerate(reversed(entries)):
        # A commit repeating its intent's ids costs nothing in the serialised log.
        repeats = i > 0 and kept[-1].previous == entry.generation and kept[-1].ids == entry.ids
        total += 0 if repeats else len(entry.ids or ())
        if kept and total > MAX_LOG_IDS:
            break
        kept.append(entry)
    collection.set_metadata({GENERATION_KEY: generation, LOG_KEY: _serialise(list(reversed(kept)))})
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

    def __init__(self, directory: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self._clock = clock
        self._counted_at = -math.inf  # when the collection's count last matched the index's
        self._index: Bm25Index | None = None
        self._generation = ""
        self._count = -1
        self._pending = False  # built at an intent: the write may still have been under way
        self._lock = threading.Lock()
        self._loaded = False
        self._unsaved = 0  # changed ids applied since the index was last written to disk

    @property
    def stamp(self) -> str | None:
        return f"{self._count}:{self._generation}" if self._index is not None else None

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else 0

    # ----- freshness ---------------------------------------------------------------------

    def ensure_fresh(self, collection: Collection, metadata: dict[str, Any] | None = None) -> bool:
        """Follow the collection: apply its logged changes, or rebuild; returns whether it changed.

        `metadata`: the collection's, when the caller has just read it. Every logged write shows
        in the generation at once. The record count, which catches writes that bypassed the log
        (an older ragbot, a hand edit), costs a scan of the collection, so it is checked at most
        every COUNT_CHECK_SECONDS while the generation stays the same.
        """
        if metadata is None:
            metadata = collection.metadata()
        generation = str(metadata.get(GENERATION_KEY, ""))
        if (
            self._index is not None
            and not self._pending
            and self._generation == generation
            and self._clock() - self._counted_at < COUNT_CHECK_SECONDS
        ):
            return False
        count = collection.count()
        if self._is_current(generation, count):
            self._counted_at = self._clock()
            return False
        with self._lock:
            if self._index is None and not self._loaded and self.directory is not None:
                self._loaded = True
                self._load()
            if self._is_current(generation, count):
                return False
            changes = parse_log(metadata)
            if self._index is None or not self._apply_log(collection, changes, generation):
                self.rebuild(collection, generation=generation, changes=changes)
            self._counted_at = self._clock()
        return True

    def _is_current(self, generation: str, count: int) -> bool:
        return (
            self._index is not None
            and not self._pending
            and self._generation == generation
            and self._count == count
        )

    def _apply_log(self, collection: Collection, changes: list[Change], generation: str) -> bool:
        assert self._index is not None
        changed, pending = changes_since(changes, self._generation, generation)
        if changed is None:
            return False
        self._apply(collection, sorted(changed))
        count = collection.count()
        if not pending and len(self._index) != count:
            # A write the log does not describe (an older ragbot, a hand edit): start over.
            log.info("BM25 index of %s disagrees with the collection; rebuilding", collection.name)
            return False
        self._generation, self._count, self._pending = generation, count, pending
        self._unsaved += len(changed)
        if self._unsaved >= SAVE_AFTER_IDS and not pending:
            # Writing the whole index costs about as much as loading it: not on every question.
            # A restarted process loads the older copy and follows the log from there.
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

    def rebuild(
        self, collection: Collection, *, generation: str | None = None, changes: list[Change] | None = None
    ) -> None:
        """Read every record of the collection and index it."""
        if generation is None or changes is None:
            metadata = collection.metadata()
            generation = str(metadata.get(GENERATION_KEY, ""))
            changes = parse_log(metadata)
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
        latest = next((e for e in changes if e.generation == generation), None)
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

    def document_frequencies(self, terms: Sequence[str]) -> tuple[int, list[int]]:
        """The number of indexed chunks, and per (tokenized) term how many contain it."""
        if self._index is None:
            return 0, [0 for _ in terms]
        return self._index.document_frequencies(terms)

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
        self._unsaved = 0

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
#: How often, at most, a query re-counts the collection to catch writes that bypassed the log.
COUNT_CHECK_SECONDS = 10.0
#: Saved again once this many changed ids were applied: well inside the log, so a restarted
#: process finds its saved generation there.
SAVE_AFTER_IDS = MAX_LOG_IDS // 4


def _record_text(record: Record) -> str:
    return lexical_text(record.text, record.metadata)


class LexicalIndexes:
    """One LexicalIndex per collection name, kept under RAGBOT_DATA_DIR/lexical/."""

    def __init__(self, root: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self._clock = clock
        self._indexes: dict[str, LexicalIndex] = {}
        self._lock = threading.Lock()

    def get(self, collection_name: str) -> LexicalIndex:
        with self._lock:
            if collection_name not in self._indexes:
                directory = self.root / collection_name if self.root is not None else None
                self._indexes[collection_name] = LexicalIndex(directory, clock=self._clock)
            return self._indexes[collection_name]

    def fresh(self, collection: Collection, metadata: dict[str, Any] | None = None) -> LexicalIndex:
        index = self.get(collection.name)
        index.ensure_fresh(collection, metadata)
        return index
