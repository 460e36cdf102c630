"""The collection's change log: every ingest write is logged so that other processes can follow it.

The vectors may live in a Chroma server that several hosts share, or in one embedded store that
several processes open; the collection's own metadata carries a generation marker and a bounded
log of the ids each write changed. Readers (the BM25 index, rag.indexing.lexical) compare their
generation with the collection's and re-read just the changed ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol


class LoggedCollection(Protocol):
    """What the log needs of a collection (rag.indexing.store.Collection is one)."""

    def metadata(self, *, fresh: bool = True) -> dict[str, Any]: ...

    def set_metadata(self, values: dict[str, Any]) -> None: ...

    def count(self) -> int: ...


GENERATION_KEY = "lexical_generation"


def collection_stamp(collection: LoggedCollection) -> str:
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


def read_log(collection: LoggedCollection) -> list[Change]:
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


def record_change(collection: LoggedCollection, ids: Sequence[str] | None, *, kind: str = COMMIT) -> str:
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
def logged_change(collection: LoggedCollection, ids: Sequence[str] | None) -> Iterator[None]:
    """Wrap a write of `ids` to the collection so that every BM25 index can follow it."""
    record_change(collection, ids, kind=INTENT)
    yield
    record_change(collection, ids, kind=COMMIT)


def bump_generation(collection: LoggedCollection) -> None:
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
