"""Chroma, embedded or a server, behind a small interface: one collection per kind and model.

Every source of a kind (all repositories, all Confluence sites) shares that kind's collection;
each record carries its source's name in `source_name`, and a search narrowed to some sources
filters on it (`where`). So a question costs one dense query and one BM25 search per kind,
however many sources there are. The collection's metadata lists the source names it holds.
v1 collections (one source per kind, records without `source_name`) are migrated in place the
first time they are opened: metadata only, nothing is re-embedded.

Embedded Chroma keeps each collection's vector index in the memory of the process that opened it,
and does not see another process's writes to the same directory. Every write is logged in the
collection's generation (rag.indexing.changelog), so a process that finds a generation it did not
write reopens the store before it reads or writes (`VectorStore.collection`): a bot or server
follows `ragbot ingest` run beside it, and an ingest never writes through a stale index.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag.config import Settings
from rag.errors import StoreError
from rag.indexing.changelog import GENERATION_KEY, bump_generation
from rag.models import Chunk

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "ragbot"
PAGE = 1000
#: Collection metadata: the record layout version and the source names the collection holds.
LAYOUT_KEY = "ragbot_layout"
LAYOUT = 2
SOURCE_NAMES_KEY = "source_names"
#: Generations of its own writes a process remembers: an ingest writes two (intent, commit) per batch.
OWN_GENERATIONS = 256


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
    #: Who may read it (`access`, synced Confluence permissions); "" when absent or mixed.
    access: str = ""

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

    def __init__(
        self,
        raw: Any,
        max_batch: int,
        client: Any = None,
        *,
        on_generation: Callable[[str, str], None] | None = None,
    ) -> None:
        self.raw = raw
        self.name: str = raw.name
        self.max_batch = max(1, max_batch)
        self.client = client
        #: Told of each generation this handle writes (the store then knows it is its own).
        self.on_generation = on_generation

    def count(self) -> int:
        return int(self.raw.count())

    def metadata(self, *, fresh: bool = True) -> dict[str, Any]:
        """The collection's metadata as stored now (re-read: another process may have changed it);
        `fresh=False`: as read when this handle was fetched, for a caller that just fetched it."""
        if fresh and self.client:
            raw = self.client.get_collection(name=self.name, embedding_function=None)
        else:
            raw = self.raw
        return dict(raw.metadata or {})

    def set_metadata(self, values: dict[str, Any]) -> None:
        """Merge `values` into the collection's metadata."""
        if self.on_generation is not None and GENERATION_KEY in values:
            # Before the write, so that no reader in this process takes it for another's.
            self.on_generation(self.name, str(values[GENERATION_KEY]))
        self.raw.modify(metadata={**self.metadata(), **values})

    def upsert(
        self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]], extra: Sequence[dict[str, Any]]
    ) -> None:
        ids = [chunk_id(c.source_name or c.source, c.doc_id, c.index) for c in chunks]
        metadatas = [
            _clean_metadata(
                {
                    "source": c.source,
                    "source_name": c.source_name or c.source,
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

    def upsert_records(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Records that are not chunks (the symbol index's), written like chunks."""
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self.raw.upsert(
                ids=list(ids[start:end]),
                embeddings=[list(v) for v in vectors[start:end]],
                documents=list(documents[start:end]),
                metadatas=[_clean_metadata(m) for m in metadatas[start:end]],
            )

    def update_metadata(self, ids: Sequence[str], values: dict[str, Any]) -> None:
        """Merge `values` into the metadata of the records `ids` (nothing is re-embedded)."""
        for start in range(0, len(ids), self.max_batch):
            batch = list(ids[start : start + self.max_batch])
            self.raw.update(ids=batch, metadatas=[_clean_metadata(values) for _ in batch])

    def delete_ids(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            self.raw.delete(ids=list(ids[start : start + self.max_batch]))

    def iter_records(
        self,
        *,
        include_documents: bool = False,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> Iterator[Record]:
        include = ["metadatas", "documents"] if include_documents else ["metadatas"]
        # The ids first (one scan, nothing else read), then pages by id: a page by offset costs
        # Chroma a scan up to the offset, which made reading 92k records take 38 s instead of 11
        # (docs/retrieval.md). A record deleted in between is simply not in its page.
        every = list(self.raw.get(include=[], where=where, where_document=where_document)["ids"])
        for start in range(0, len(every), PAGE):
            page = self.raw.get(ids=every[start : start + PAGE], include=include)
            ids = page["ids"]
            docs = page.get("documents") or [""] * len(ids)
            for i, rid in enumerate(ids):
                yield Record(rid, docs[i] or "", dict(page["metadatas"][i] or {}))

    # ----- the sources a collection holds ---------------------------------------------------

    def source_names(self, metadata: dict[str, Any] | None = None) -> list[str]:
        """The names of the sources with records here (as recorded by ingest and migration), from
        `metadata` when the caller has just read it."""
        raw = (metadata if metadata is not None else self.metadata()).get(SOURCE_NAMES_KEY)
        try:
            names = json.loads(raw) if isinstance(raw, str) else []
        except ValueError:
            names = []
        return [str(n) for n in names] if isinstance(names, list) else []

    def register_source(self, name: str) -> None:
        """Record `name` before its first chunk is written, so removal can always find it."""
        names = self.source_names()
        if name not in names:
            self.set_metadata({SOURCE_NAMES_KEY: json.dumps(sorted({*names, name}))})

    def forget_source(self, name: str) -> None:
        names = self.source_names()
        if name in names:
            self.set_metadata({SOURCE_NAMES_KEY: json.dumps(sorted(set(names) - {name}))})

    def has_source(self, name: str) -> bool:
        page = self.raw.get(where={"source_name": name}, limit=1, include=[])
        return bool(page["ids"])

    def migrate_layout(self, kind: str) -> int:
        """Give v1 records their `source_name` (= their kind); returns how many were updated."""
        if int(self.metadata().get(LAYOUT_KEY) or 0) >= LAYOUT:
            return 0
        names: set[str] = set()
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        for record in self.iter_records():
            name = record.metadata.get("source_name")
            if not name:
                name = str(record.metadata.get("source") or kind)
                ids.append(record.id)
                metas.append({**record.metadata, "source_name": name})
            names.add(str(name))
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self.raw.update(ids=ids[start:end], metadatas=metas[start:end])
        names.update(self.source_names())
        self.set_metadata({LAYOUT_KEY: LAYOUT, SOURCE_NAMES_KEY: json.dumps(sorted(names))})
        if ids:
            log.info(
                "collection %s: %d record(s) given their source name (no re-embedding)", self.name, len(ids)
            )
        return len(ids)

    def document_states(self, source_name: str | None = None) -> dict[str, DocumentState]:
        """Per document (of one source, or all): its fingerprint if all its chunks agree, and
        how many are there."""
        grouped: dict[str, list[Record]] = {}
        where = {"source_name": source_name} if source_name else None
        for record in self.iter_records(where=where):
            doc_id = str(record.metadata.get("doc_id", ""))
            grouped.setdefault(doc_id, []).append(record)
        states: dict[str, DocumentState] = {}
        for doc_id, records in grouped.items():
            fps = {r.metadata.get("doc_fingerprint") for r in records}
            expected = {r.metadata.get("doc_chunks") for r in records}
            fingerprint = str(fps.pop()) if len(fps) == 1 and len(expected) == 1 else None
            n_expected = int(next(iter(expected)) or 0) if len(expected) == 1 else -1
            tags = {str(r.metadata.get("access") or "") for r in records}
            states[doc_id] = DocumentState(
                fingerprint,
                n_expected,
                len(records),
                tuple(r.id for r in records),
                tags.pop() if len(tags) == 1 else "",
            )
        return states

    def query(self, vector: Sequence[float], k: int, where: dict[str, Any] | None = None) -> list[Record]:
        if k <= 0:
            return []
        # No count() first: Chroma returns what it has when k exceeds it, and counting costs a
        # scan of the collection (35 ms at 200k chunks, docs/retrieval.md).
        result = self.raw.query(
            query_embeddings=[list(vector)],
            n_results=k,
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
        self._migrated: set[str] = set()
        #: Embedded mode: the generation of each collection as this process's client last saw it,
        #: and the generations this process wrote itself (its own client holds those writes).
        self._seen: dict[str, str] = {}
        self._own: dict[str, deque[str]] = {}
        #: How often another process's write made this one reopen the embedded store.
        self.reopened = 0

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
    def collection_name(kind: str, model_key: str, *, symbols: bool = False) -> str:
        """`ragbot-<kind>-<model>`: the v1 names, now shared by every source of the kind; the
        symbol index beside it is `ragbot-symbols-<kind>-<model>` (rag.indexing.symbol_store)."""
        prefix = f"{COLLECTION_PREFIX}-symbols" if symbols else COLLECTION_PREFIX
        return f"{prefix}-{kind}-{model_key}"[:63].rstrip("-_.")

    def collection(
        self, kind: str, model_key: str, *, create: bool = True, symbols: bool = False
    ) -> Collection | None:
        """The chunks of a kind embedded by a model (`symbols`: the symbol index beside them); None
        when it does not exist and `create` is False."""
        name = self.collection_name(kind, model_key, symbols=symbols)
        metadata = {"source": kind, "model": model_key, **({"role": "symbols"} if symbols else {})}
        collection = self.named_collection(name, create=create, metadata=metadata, cosine=True)
        if collection is not None and name not in self._migrated and not symbols:
            try:
                if collection.migrate_layout(kind):
                    bump_generation(collection)  # BM25 indexes must learn the source names
            except StoreError:
                raise
            except Exception as e:
                raise StoreError(f"Chroma collection {name}: {_first_line(e)}") from e
            self._migrated.add(name)
        return collection

    def named_collection(
        self, name: str, *, create: bool = True, metadata: dict[str, Any] | None = None, cosine: bool = False
    ) -> Collection | None:
        """A collection by name (the chunks', or one that holds no chunks: the synced permissions),
        followed across processes; None when it does not exist and `create` is False."""
        try:
            if create:
                raw = self.client.get_or_create_collection(
                    name=name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}} if cosine else None,
                    metadata=metadata or {"role": name},
                )
            else:
                if name not in self.collection_names():
                    return None
                raw = self.client.get_collection(name=name, embedding_function=None)
            if not self.settings.chroma_host:
                raw = self._follow(raw)
            return Collection(
                raw, self.client.get_max_batch_size(), self.client, on_generation=self._saw_generation
            )
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"Chroma collection {name}: {_first_line(e)}") from e

    def _saw_generation(self, name: str, generation: str) -> None:
        with self._lock:
            self._own.setdefault(name, deque(maxlen=OWN_GENERATIONS)).append(generation)

    def _follow(self, raw: Any) -> Any:
        """`raw` as of now: reopens the embedded store when another process wrote to the collection
        since this process last saw it (its generation changed), else returns it as it is."""
        generation = str((raw.metadata or {}).get(GENERATION_KEY, ""))
        with self._lock:
            seen = self._seen.get(raw.name)
            self._seen[raw.name] = generation
            if seen is None or seen == generation or generation in self._own.get(raw.name, ()):
                return raw
            started = time.perf_counter()
            self._reopen()
            # The new client loads every collection from disk as it is now: whatever generation
            # each shows next is the one it holds (the chunks and the symbols: one reopen, not two).
            self._seen.clear()
            self._seen[raw.name] = generation
        fresh = self.client.get_collection(name=raw.name, embedding_function=None)
        log.info(
            "%s was changed by another process: reopened the embedded store (%.0f ms)",
            raw.name,
            (time.perf_counter() - started) * 1000,
        )
        return fresh

    def _reopen(self) -> None:
        """A new embedded client that loads the store from disk (the caller holds `_lock`).

        Chroma shares one system (and its in-memory indexes) per directory within a process;
        dropping it from that cache makes the next client load what is on disk now. The old
        system is not stopped: a search that holds it finishes on it. Its index (hundreds of MB
        at 200k chunks) sits in reference cycles, so a collection in the background frees it as
        soon as nothing holds it, instead of at some later collection.
        """
        from chromadb.api.shared_system_client import SharedSystemClient

        if self._client is not None:
            SharedSystemClient._identifier_to_system.pop(self._client._identifier, None)
        self._client = self._connect()
        self.reopened += 1
        threading.Thread(target=gc.collect, name="ragbot-store-gc", daemon=True).start()

    def close(self) -> None:
        """Let go of the store: an embedded one's files and threads are released (a later use
        opens it again). For a process that is done with it, and for tests."""
        with self._lock:
            client, self._client = self._client, None
            self._seen.clear()
        if client is None or self.settings.chroma_host:
            return
        from chromadb.api.shared_system_client import SharedSystemClient

        system = SharedSystemClient._identifier_to_system.pop(client._identifier, None)
        if system is not None:
            try:
                system.stop()
            except Exception as e:  # closing must never fail the caller
                log.debug("closing the embedded Chroma store: %s", e)

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
