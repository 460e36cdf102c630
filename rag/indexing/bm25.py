"""An updatable BM25 (Lucene's formula, as bm25s computes it) over term-count matrices.

bm25s precomputes every (term, document) score, so one changed chunk moves the IDF and the
average length of all the others and only a full rebuild is exact. Here the index keeps raw
term counts in segments (a doc × term CSC matrix each) and scores at query time from the live
document count, document frequencies and average length: adding a segment for new chunks and
marking replaced or deleted ones dead gives exactly the ranking a full rebuild would.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

K1 = 1.2
B = 0.75
#: Fold segments into one when there are more than this many, or this share of slots is dead.
MAX_SEGMENTS = 12
MAX_DEAD_SHARE = 0.2


class _Segment:
    """Term counts of the slots [start, start + rows) as a doc × term CSC matrix."""

    def __init__(self, start: int, matrix: Any) -> None:
        self.start = start
        self.matrix = matrix  # scipy.sparse.csc_matrix, float32 counts

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.matrix
        if term >= m.shape[1]:
            return _EMPTY_I, _EMPTY_F
        lo, hi = m.indptr[term], m.indptr[term + 1]
        return m.indices[lo:hi] + self.start, m.data[lo:hi]


_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float32)


class Bm25Index:
    """Documents live in slots; an update kills the old slot and appends a new one."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.ids: list[str] = []
        self.hashes: list[str] = []
        self.source_list: list[str] = []  # distinct source names; slots hold their positions
        self._source_pos: dict[str, int] = {}
        self.sources = np.zeros(0, dtype=np.int32)
        #: Who may read each slot (`access`: synced Confluence permissions), "" for everyone.
        self.access_list: list[str] = [""]
        self._access_pos: dict[str, int] = {"": 0}
        self.accesses = np.zeros(0, dtype=np.int32)
        self.lengths = np.zeros(0, dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.slot_of: dict[str, int] = {}
        self.segments: list[_Segment] = []
        self._total_length = 0.0

    def __len__(self) -> int:
        return len(self.slot_of)

    # ----- changes -----------------------------------------------------------------------

    def remove(self, ids: Collection[str]) -> None:
        for rid in ids:
            slot = self.slot_of.pop(rid, None)
            if slot is not None:
                self.alive[slot] = False
                self._total_length -= float(self.lengths[slot])

    def add(
        self,
        ids: Sequence[str],
        tokens: Sequence[Sequence[str]],
        *,
        hashes: Sequence[str],
        sources: Sequence[str],
        accesses: Sequence[str] | None = None,
    ) -> None:
        """Index new documents (an id already present is replaced); ids must be distinct."""
        if not ids:
            return
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one BM25 update")
        from scipy.sparse import coo_matrix

        self.remove([i for i in ids if i in self.slot_of])
        start = len(self.ids)
        rows: list[int] = []
        cols: list[int] = []
        vocab = self.vocab
        for r, terms in enumerate(tokens):
            for term in terms:
                t = vocab.get(term)
                if t is None:
                    t = vocab[term] = len(vocab)
                cols.append(t)
            rows.extend([r] * len(terms))
        matrix = coo_matrix(
            (
                np.ones(len(rows), dtype=np.float32),
                (np.array(rows, dtype=np.int32), np.array(cols, dtype=np.int32)),
            ),
            shape=(len(ids), len(vocab)),
        ).tocsc()
        matrix.sum_duplicates()
        lengths = np.array([len(t) for t in tokens], dtype=np.float32)
        # Slot arrays first, then the postings that point into them, then the id map.
        self.ids.extend(ids)
        self.hashes.extend(hashes)
        self.lengths = np.concatenate([self.lengths, lengths])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.sources = np.concatenate(
            [self.sources, np.array([self._source(s) for s in sources], dtype=np.int32)]
        )
        tags = accesses if accesses is not None else [""] * len(ids)
        self.accesses = np.concatenate(
            [self.accesses, np.array([self._access(a) for a in tags], dtype=np.int32)]
        )
        self.segments.append(_Segment(start, matrix))
        for offset, rid in enumerate(ids):
            self.slot_of[rid] = start + offset
        self._total_length += float(lengths.sum())
        if len(self.segments) > MAX_SEGMENTS or self._dead_share() > MAX_DEAD_SHARE:
            self.compact()

    def _source(self, name: str) -> int:
        pos = self._source_pos.get(name)
        if pos is None:
            pos = self._source_pos[name] = len(self.source_list)
            self.source_list.append(name)
        return pos

    def _access(self, tag: str) -> int:
        pos = self._access_pos.get(tag)
        if pos is None:
            pos = self._access_pos[tag] = len(self.access_list)
            self.access_list.append(tag)
        return pos

    def _dead_share(self) -> float:
        return 1 - len(self.slot_of) / len(self.ids) if self.ids else 0.0

    def compact(self) -> None:
        """One segment holding only the live slots (same scores; less memory and work)."""
        from scipy.sparse import csc_matrix, csr_matrix, vstack

        keep = np.flatnonzero(self.alive)
        if self.segments:
            width = len(self.vocab)
            parts = []
            for seg in self.segments:
                m = seg.matrix.tocsr()  # rows index slots; a wider shape just adds empty columns
                parts.append(csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], width)))
            matrix = vstack(parts, format="csr")[keep].tocsc()
        else:
            matrix = csc_matrix((0, len(self.vocab)), dtype=np.float32)
        self.ids = [self.ids[i] for i in keep]
        self.hashes = [self.hashes[i] for i in keep]
        self.lengths = self.lengths[keep]
        self.sources = self.sources[keep]
        self.accesses = self.accesses[keep]
        self.alive = np.ones(len(keep), dtype=bool)
        self.slot_of = {rid: i for i, rid in enumerate(self.ids)}
        self.segments = [_Segment(0, matrix)] if len(keep) else []

    # ----- search ------------------------------------------------------------------------

    def search(
        self,
        terms: Sequence[str],
        k: int,
        *,
        source_names: Collection[str] | None = None,
        gate: tuple[Collection[str], Collection[str]] | None = None,
    ) -> list[tuple[str, float]]:
        """The k best live documents with a positive score, best first. `gate` = (open sources,
        allowed access tags): a document passes when its source is open or its tag allowed."""
        n = len(self.slot_of)
        if n == 0 or k <= 0:
            return []
        average = self._total_length / n if self._total_length > 0 else 1.0
        scores = np.zeros(len(self.ids), dtype=np.float32)
        norm: np.ndarray | None = None
        for term, repeats in Counter(terms).items():
            t = self.vocab.get(term)
            if t is None:
                continue
            found = [seg.postings(t) for seg in self.segments]
            slots = np.concatenate([s for s, _ in found])
            counts = np.concatenate([c for _, c in found])
            live = self.alive[slots]
            slots, counts = slots[live], counts[live]
            if not len(slots):
                continue
            if norm is None:
                norm = K1 * ((1 - B) + B * self.lengths / average)
            df = len(slots)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores[slots] += repeats * idf * counts / (norm[slots] + counts)
        if source_names is not None:
            wanted = [self._source_pos[s] for s in source_names if s in self._source_pos]
            scores[~np.isin(self.sources, np.array(wanted, dtype=np.int32))] = 0
        if gate is not None:
            open_names, allowed = gate
            opened = [self._source_pos[s] for s in open_names if s in self._source_pos]
            tags = [self._access_pos[a] for a in allowed if a and a in self._access_pos]
            passes = np.isin(self.sources, np.array(opened, dtype=np.int32)) | np.isin(
                self.accesses, np.array(tags, dtype=np.int32)
            )
            scores[~passes] = 0
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:  # keep every tie of the k-th score, then order them by id
            kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
            candidates = candidates[scores[candidates] >= kth]
        # Ties by id, not slot: an incremental index and a rebuilt one order them alike.
        best = sorted(candidates.tolist(), key=lambda i: (-scores[i], self.ids[i]))[:k]
        return [(self.ids[i], float(scores[i])) for i in best]

    def document_frequencies(self, terms: Sequence[str]) -> tuple[int, list[int]]:
        """The number of live documents, and per term how many live documents contain it."""
        counts = []
        for term in terms:
            t = self.vocab.get(term)
            if t is None:
                counts.append(0)
                continue
            slots = np.concatenate([seg.postings(t)[0] for seg in self.segments] or [_EMPTY_I])
            counts.append(int(self.alive[slots].sum()) if len(slots) else 0)
        return len(self.slot_of), counts

    # ----- persistence -------------------------------------------------------------------

    def save(self, directory: Path, header: dict[str, Any]) -> None:
        """Compacted, written aside and swapped in by renames (a reader sees old or new)."""
        self.compact()
        directory.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex
        matrix = self.segments[0].matrix if self.segments else None
        arrays_tmp = directory / f"bm25.{tag}.npz.tmp"
        with arrays_tmp.open("wb") as f:
            np.savez(
                f,
                indptr=matrix.indptr if matrix is not None else np.zeros(1, dtype=np.int32),
                indices=matrix.indices if matrix is not None else _EMPTY_I.astype(np.int32),
                data=matrix.data.astype(np.uint16) if matrix is not None else np.zeros(0, dtype=np.uint16),
                lengths=self.lengths,
                sources=self.sources,
                accesses=self.accesses,
            )
        meta = {
            **header,
            "arrays": f"bm25.{tag}.npz",
            "vocab": list(self.vocab),
            "ids": self.ids,
            "hashes": self.hashes,
            "source_list": self.source_list,
            "access_list": self.access_list,
        }
        meta_tmp = directory / f"index.json.{tag}.tmp"
        meta_tmp.write_text(json.dumps(meta, separators=(",", ":")))
        os.replace(arrays_tmp, directory / meta["arrays"])
        os.replace(meta_tmp, directory / "index.json")
        for old in directory.glob("bm25.*.npz"):
            if old.name != meta["arrays"]:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> tuple[Bm25Index, dict[str, Any]]:
        """The saved index and its header; raises OSError/ValueError/KeyError when unreadable."""
        from scipy.sparse import csc_matrix

        meta = json.loads((directory / "index.json").read_text())
        with np.load(directory / meta["arrays"]) as arrays:
            index = cls()
            index.vocab = {term: i for i, term in enumerate(meta["vocab"])}
            index.ids = list(meta["ids"])
            index.hashes = list(meta["hashes"])
            index.source_list = list(meta["source_list"])
            index._source_pos = {s: i for i, s in enumerate(index.source_list)}
            index.lengths = arrays["lengths"].astype(np.float32)
            index.sources = arrays["sources"].astype(np.int32)
            index.access_list = list(meta["access_list"])
            index._access_pos = {a: i for i, a in enumerate(index.access_list)}
            index.accesses = arrays["accesses"].astype(np.int32)
            if index.ids:
                matrix = csc_matrix(
                    (arrays["data"].astype(np.float32), arrays["indices"], arrays["indptr"]),
                    shape=(len(index.ids), len(index.vocab)),
                )
                index.segments = [_Segment(0, matrix)]
        if not (
            len(index.ids)
            == len(index.hashes)
            == len(index.lengths)
            == len(index.sources)
            == len(index.accesses)
        ):
            raise ValueError("inconsistent BM25 index files")
        index.alive = np.ones(len(index.ids), dtype=bool)
        index.slot_of = {rid: i for i, rid in enumerate(index.ids)}
        index._total_length = float(index.lengths.sum())
        return index, meta
