"""BM25 over chunk texts with a code-aware tokenizer, persisted beside the store and rebuilt from it.

The vectors may live in a Chroma server that several hosts share (an ingest worker and one or
more bots), so the Chroma collection is the single source of truth: each process keeps a BM25
index built from the collection's documents in its own RAGBOT_DATA_DIR, and rebuilds it only
when the collection's *stamp* (its record count and the generation marker that every ingest
writes into the collection metadata) differs from the one the index was built at.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.store import Collection, Record

log = logging.getLogger(__name__)

GENERATION_KEY = "lexical_generation"
FORMAT_VERSION = 3  # 2: terms are Snowball-stemmed; 3: each record's source name

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


def bump_generation(collection: Collection) -> None:
    """Called by ingest after it changed a collection: every process's BM25 index becomes stale."""
    collection.set_metadata({GENERATION_KEY: uuid.uuid4().hex})


@dataclass
class _Built:
    stamp: str
    ids: list[str]
    hashes: list[str]
    tokens: list[list[str]]
    names: list[str]  # each record's source name, for searches narrowed to some sources
    retriever: Any  # bm25s.BM25 (or None when the collection is empty)


class LexicalIndex:
    """BM25 for one collection; `search` returns record ids best first with their BM25 scores."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._built: _Built | None = None
        self._lock = threading.Lock()

    @property
    def stamp(self) -> str | None:
        return self._built.stamp if self._built else None

    def __len__(self) -> int:
        return len(self._built.ids) if self._built else 0

    # ----- freshness ---------------------------------------------------------------------

    def ensure_fresh(self, collection: Collection) -> bool:
        """Rebuild from the collection if its stamp moved; returns whether a rebuild happened."""
        stamp = collection_stamp(collection)
        if self._built is not None and self._built.stamp == stamp:
            return False
        with self._lock:
            if self._built is None and self.directory is not None:
                self._built = self._load()
            if self._built is not None and self._built.stamp == stamp:
                return False
            self.rebuild(collection, stamp=stamp)
        return True

    def rebuild(self, collection: Collection, *, stamp: str | None = None) -> None:
        """Read every record of the collection and index it; unchanged chunks reuse their tokens."""
        stamp = stamp or collection_stamp(collection)
        previous: dict[str, list[str]] = {}
        if self._built is not None:
            previous = dict(zip(self._built.hashes, self._built.tokens, strict=True))
        ids: list[str] = []
        hashes: list[str] = []
        tokens: list[list[str]] = []
        names: list[str] = []
        for record in collection.iter_records(include_documents=True):
            ids.append(record.id)
            names.append(str(record.metadata.get("source_name") or record.metadata.get("source") or ""))
            digest = str(record.metadata.get("chunk_hash") or "")
            hashes.append(digest)
            cached = previous.get(digest) if digest else None
            tokens.append(cached if cached is not None else tokenize(_record_text(record)))
        self._built = self._index(stamp, ids, hashes, tokens, names)
        if self.directory is not None:
            self._save(self._built)
        log.info("BM25 index of %s rebuilt: %d chunks", collection.name, len(ids))

    def build(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index given texts directly (no collection): used by evaluation and tests."""
        tokens = [tokenize(t) for t in texts]
        self._built = self._index("adhoc", list(ids), [""] * len(ids), tokens, [""] * len(ids))

    @staticmethod
    def _index(
        stamp: str, ids: list[str], hashes: list[str], tokens: list[list[str]], names: list[str]
    ) -> _Built:
        retriever = None
        if ids:
            import bm25s

            retriever = bm25s.BM25(k1=1.2, b=0.75)
            # Documents without any term still need a slot so positions map back to ids.
            retriever.index([t or ["\x00empty"] for t in tokens], show_progress=False)
        return _Built(stamp, ids, hashes, tokens, names, retriever)

    # ----- search ------------------------------------------------------------------------

    def search(
        self, query: str, k: int, *, source_names: Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """The best `k` records (of `source_names` only, when given) with their BM25 scores."""
        built = self._built
        if built is None or built.retriever is None or k <= 0:
            return []
        terms = tokenize(query)
        if not terms:
            return []
        import numpy as np

        scores = built.retriever.get_scores(terms)
        if source_names is not None:
            # Masked before the top k is taken, so a narrowed search still finds k hits.
            allowed = np.isin(np.asarray(built.names, dtype=object), list(source_names))
            scores = np.where(allowed, scores, 0.0)
        n = min(k, len(built.ids))

        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(built.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def document_frequencies(self, terms: Sequence[str]) -> tuple[int, list[int]]:
        """The number of indexed chunks, and per (tokenized) term how many contain it."""
        built = self._built
        if built is None or built.retriever is None:
            return 0, [0 for _ in terms]
        vocab = built.retriever.vocab_dict
        indptr = built.retriever.scores["indptr"]
        counts = []
        for term in terms:
            i = vocab.get(term)
            counts.append(int(indptr[i + 1] - indptr[i]) if i is not None else 0)
        return len(built.ids), counts

    # ----- persistence -------------------------------------------------------------------

    def _save(self, built: _Built) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT_VERSION,
            "stamp": built.stamp,
            "ids": built.ids,
            "hashes": built.hashes,
            "tokens": built.tokens,
            "names": built.names,
        }
        # Written aside, then swapped in by one rename: a reader (another process sharing the
        # data dir) sees the old index or the new one, never half of one.
        tmp = self.directory / f"index.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, self.directory / "index.json")

    def _load(self) -> _Built | None:
        assert self.directory is not None
        path = self.directory / "index.json"
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT_VERSION:
                return None
            return self._index(data["stamp"], data["ids"], data["hashes"], data["tokens"], data["names"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


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
