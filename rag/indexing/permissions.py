"""The synced Confluence permissions, kept in the Chroma store beside the chunks.

The ingest writes them; every process that answers reads them. So they live where the chunks
live — a `ragbot-permissions` collection in the same Chroma (embedded or a server), one record
per Confluence site holding its `SitePermissions` as JSON — and a bot on another host than the
ingest worker sees the same permissions as the chunks' tags. Each write bumps the collection's
generation, which makes an embedded reader in another process reopen the store, and readers
re-read a site's record when that generation changes (checked at most every few seconds).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from rag.errors import StoreError
from rag.indexing.changelog import GENERATION_KEY
from rag.indexing.store import VectorStore
from rag.sources.confluence_permissions import SitePermissions

log = logging.getLogger(__name__)

COLLECTION = "ragbot-permissions"
#: How long a reader trusts what it read before asking the store whether it changed.
RECHECK_SECONDS = 5.0


class PermissionStore:
    """Load and save each site's synced permissions (records keyed by source name)."""

    def __init__(self, store: VectorStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, SitePermissions | None] = {}
        self._generation: str | None = None
        self._checked = -1e18

    def _collection(self, *, create: bool) -> Any:
        return self.store.named_collection(COLLECTION, create=create, metadata={"role": "permissions"})

    def save(self, snapshot: SitePermissions) -> None:
        collection = self._collection(create=True)
        generation = uuid.uuid4().hex
        collection.upsert_records(
            [snapshot.source],
            [[1.0]],
            [snapshot.to_json()],
            [
                {
                    "source_name": snapshot.source,
                    "synced_at": snapshot.synced_at,
                    "error": snapshot.error or "",
                }
            ],
        )
        collection.set_metadata({GENERATION_KEY: generation})
        with self._lock:
            self._cache[snapshot.source] = snapshot
            self._generation = generation
            self._checked = self._clock()

    def record_failure(self, source: str, error: str) -> SitePermissions:
        """A sync that failed: kept as an error (answers then use public pages only)."""
        previous = self.load(source, fresh=True)
        snapshot = previous if previous is not None else SitePermissions(source=source)
        snapshot.error = error
        snapshot.synced_at = time.time()
        self.save(snapshot)
        return snapshot

    def load(self, source: str, *, fresh: bool = False) -> SitePermissions | None:
        """The site's last saved permissions; None when never synced. Raises StoreError."""
        with self._lock:
            now = self._clock()
            if not fresh and source in self._cache and now - self._checked < RECHECK_SECONDS:
                return self._cache[source]
        collection = self._collection(create=False)
        if collection is None:
            return None
        generation = str(collection.metadata(fresh=False).get(GENERATION_KEY, ""))
        with self._lock:
            if generation != self._generation:
                self._cache.clear()
                self._generation = generation
            self._checked = self._clock()
            if source in self._cache and not fresh:
                return self._cache[source]
        records = collection.get([source])
        snapshot: SitePermissions | None = None
        if records:
            try:
                snapshot = SitePermissions.from_json(records[0].text)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise StoreError(f"the synced permissions of {source} cannot be read: {e}") from e
        with self._lock:
            self._cache[source] = snapshot
        return snapshot

    def forget(self, source: str) -> None:
        collection = self._collection(create=False)
        if collection is None:
            return
        collection.delete_ids([source])
        collection.set_metadata({GENERATION_KEY: uuid.uuid4().hex})
        with self._lock:
            self._cache.pop(source, None)
