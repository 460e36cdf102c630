"""Chroma, embedded or a server, behind a small interface: one collection per source and model."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag.config import Settings
from rag.errors import StoreError
from rag.models import Chunk

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "ragbot"
PAGE = 1000


def chunk_id(source: str, doc_id: str, index: int) -> str:
    """Stable across runs: the same position of the same document always has the same id."""
    digest = hashlib.sha256(f"{source}\0{doc_id}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{source}:{digest}:{index}"


@dataclass(frozen=True)
class DocumentState:
    """What the index holds for one document."""

    fingerprint: str | None  # None when its chunks disagree (an interrupted write)
    expected_chunks: int
    present_chunks: int
    ids: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.fingerprint is not None and self.present_chunks == self.expected_chunks


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    metadata: dict[str, Any]
    distance: float | None = None


def _clean_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    # Chroma metadata values must be str/int/float/bool; None means "absent".
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        elif not isinstance(value, (str, int, float, bool)):
            value = str(value)
        out[key] = value
    return out


class Collection:
    """One Chroma collection: the chunks of one source embedded by one model."""

    def __init__(self, raw: Any, max_batch: int, client: Any = None) -> None:
        self.raw = raw
        self.name: str = raw.name
        self.max_batch = max(1, max_batch)
        self.client = client

    def count(self) -> int:
        return int(self.raw.count())

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata as stored now (re-read: another process may have changed it)."""
        raw = self.client.get_collection(name=self.name, embedding_function=None) if self.client else self.raw
        return dict(raw.metadata or {})

    def set_metadata(self, values: dict[str, Any]) -> None:
        """Merge `values` into the collection's metadata."""
        self.raw.modify(metadata={**self.metadata(), **values})

    def upsert(
        self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]], extra: Sequence[dict[str, Any]]
    ) -> None:
        ids = [chunk_id(c.source, c.doc_id, c.index) for c in chunks]
        metadatas = [
            _clean_metadata(
                {
                    "source": c.source,
                    "doc_id": c.doc_id,
                    "chunk_index": c.index,
                    "title": c.title,
                    "url": c.url,
                    "path": c.path,
                    "start_line": c.start_line,
                    "end_line": c.end_line,
                    "language": c.language,
                    "symbol": c.symbol,
                    "chunk_hash": c.hash,
                    **c.metadata,
                    **e,
                }
            )
            for c, e in zip(chunks, extra, strict=True)
        ]
        documents = [c.text for c in chunks]
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self.raw.upsert(
                ids=ids[start:end],
                embeddings=[list(v) for v in vectors[start:end]],
                documents=documents[start:end],
                metadatas=metadatas[start:end],
            )

    def delete_ids(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            self.raw.delete(ids=list(ids[start : start + self.max_batch]))

    def iter_records(
        self, *, include_documents: bool = False, where: dict[str, Any] | None = None
    ) -> Iterator[Record]:
        include = ["metadatas", "documents"] if include_documents else ["metadatas"]
        offset = 0
        while True:
            page = self.raw.get(include=include, limit=PAGE, offset=offset, where=where)
            ids = page["ids"]
            if not ids:
                return
            docs = page.get("documents") or [""] * len(ids)
            for i, rid in enumerate(ids):
                yield Record(rid, docs[i] or "", dict(page["metadatas"][i] or {}))
            if len(ids) < PAGE:
                return
            offset += len(ids)

    def document_states(self) -> dict[str, DocumentState]:
        """Per document: its fingerprint if all its chunks agree, and how many are there."""
        grouped: dict[str, list[Record]] = {}
        for record in self.iter_records():
            doc_id = str(record.metadata.get("doc_id", ""))
            grouped.setdefault(doc_id, []).append(record)
        states: dict[str, DocumentState] = {}
        for doc_id, records in grouped.items():
            fps = {r.metadata.get("doc_fingerprint") for r in records}
            expected = {r.metadata.get("doc_chunks") for r in records}
            fingerprint = str(fps.pop()) if len(fps) == 1 and len(expected) == 1 else None
            n_expected = int(next(iter(expected)) or 0) if len(expected) == 1 else -1
            states[doc_id] = DocumentState(
                fingerprint, n_expected, len(records), tuple(r.id for r in records)
            )
        return states

    def query(self, vector: Sequence[float], k: int, where: dict[str, Any] | None = None) -> list[Record]:
        n = min(k, self.count())
        if n <= 0:
            return []
        result = self.raw.query(
            query_embeddings=[list(vector)],
            n_results=n,
            where=where,
            include=["metadatas", "documents", "distances"],
        )
        return [
            Record(
                rid,
                (result["documents"][0][i] or ""),
                dict(result["metadatas"][0][i] or {}),
                float(result["distances"][0][i]),
            )
            for i, rid in enumerate(result["ids"][0])
        ]

    def get(self, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        page = self.raw.get(ids=list(ids), include=["metadatas", "documents"])
        by_id = {
            rid: Record(rid, page["documents"][i] or "", dict(page["metadatas"][i] or {}))
            for i, rid in enumerate(page["ids"])
        }
        return [by_id[i] for i in ids if i in by_id]


class VectorStore:
    """Opens Chroma lazily: `PersistentClient(CHROMA_DB_DIR)` or `HttpClient` when CHROMA_HOST is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        s = self.settings
        if s.chroma_host:
            return f"Chroma server {s.chroma_host}:{s.chroma_port}"
        return f"embedded Chroma at {s.chroma_db_dir}"

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        s = self.settings
        try:
            if s.chroma_host:
                client = chromadb.HttpClient(host=s.chroma_host, port=s.chroma_port, settings=chroma_settings)
                client.heartbeat()
                return client
            s.chroma_db_dir.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(s.chroma_db_dir), settings=chroma_settings)
            return client
        except Exception as e:
            where = f"{s.chroma_host}:{s.chroma_port}" if s.chroma_host else str(s.chroma_db_dir)
            what = "CHROMA_HOST" if s.chroma_host else "CHROMA_DB_DIR"
            raise StoreError(f"{what}: cannot open the Chroma store at {where}: {_first_line(e)}") from e

    @staticmethod
    def collection_name(source: str, model_key: str) -> str:
        return f"{COLLECTION_PREFIX}-{source}-{model_key}"[:63].rstrip("-_.")

    def collection(self, source: str, model_key: str, *, create: bool = True) -> Collection | None:
        name = self.collection_name(source, model_key)
        try:
            if create:
                raw = self.client.get_or_create_collection(
                    name=name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={"source": source, "model": model_key},
                )
            else:
                if name not in self.collection_names():
                    return None
                raw = self.client.get_collection(name=name, embedding_function=None)
            return Collection(raw, self.client.get_max_batch_size(), self.client)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"Chroma collection {name}: {_first_line(e)}") from e

    def collection_names(self) -> list[str]:
        try:
            cols = self.client.list_collections()
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot list Chroma collections: {_first_line(e)}") from e
        return [c if isinstance(c, str) else c.name for c in cols]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
