"""What a reader may see: the synced Confluence permissions, applied inside every search.

A Confluence site with `permissions = "sync"` tags each chunk with who may read its page
(`access` = `<source>:<grant key>`, rag.sources.confluence_permissions). For a question, the
reader (rag.models.Reader: a person, or everyone who will see the answer) becomes an
`AccessScope`: the tags they pass. The dense search filters on it in Chroma's `where`, BM25
masks with it, and the answering loop's tools check it for every chunk they read — nothing is
found and then dropped. Anything unknown narrows to public pages: no reader named, a person
without a Confluence account, a sync that failed or is older than
4 × CONFLUENCE_PERMISSION_SYNC_MINUTES, permissions that cannot be read from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rag.config import Settings
from rag.errors import RagError
from rag.indexing.permissions import PermissionStore
from rag.models import Reader
from rag.sources.confluence_permissions import PUBLIC_KEY, SitePermissions
from rag.sources.registry import SourceRegistry
from rag.sources.specs import ConfluenceSpec

log = logging.getLogger(__name__)

#: A sync older than this many sync intervals is not trusted: public pages only.
STALE_INTERVALS = 4
#: Per-person tag sets remembered between questions (cleared when the permissions change).
CACHE_PEOPLE = 4096


@dataclass(frozen=True)
class AccessScope:
    """The access tags one reader passes, for the sites whose permissions are synced."""

    synced: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()

    def gated(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.synced]

    def where(self, names: Sequence[str]) -> dict[str, Any] | None:
        """Chroma's `where` for a search of `names`; None when nothing of them may be shown."""
        gated = self.gated(names)
        open_names = [n for n in names if n not in self.synced]
        allowed = sorted(t for t in self.allowed if t.split(":", 1)[0] in gated)
        parts: list[dict[str, Any]] = []
        if open_names:
            parts.append(_names(open_names))
        if allowed:
            parts.append({"access": allowed[0]} if len(allowed) == 1 else {"access": {"$in": allowed}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$or": parts}

    def gate(self, names: Sequence[str]) -> tuple[list[str], list[str]] | None:
        """BM25's mask: (open sources, allowed tags); None when no source of `names` is gated."""
        if not self.gated(names):
            return None
        return [n for n in names if n not in self.synced], sorted(self.allowed)

    def admits(self, metadata: dict[str, Any]) -> bool:
        """May this reader see a chunk with this metadata (the tools' and memory's check)?"""
        name = str(metadata.get("source_name") or metadata.get("source") or "")
        return name not in self.synced or str(metadata.get("access") or "") in self.allowed


def public_scope(registry: SourceRegistry) -> AccessScope:
    """What a search with no reader may see: the public pages of synced sites (fail closed)."""
    synced = synced_names(registry)
    return AccessScope(frozenset(synced), frozenset(f"{name}:{PUBLIC_KEY}" for name in synced))


def synced_names(registry: SourceRegistry) -> list[str]:
    """The Confluence sources whose permissions are synced (`permissions = "sync"`)."""
    return [s.name for s in registry.specs if isinstance(s, ConfluenceSpec) and s.permissions == "sync"]


def _names(names: Sequence[str]) -> dict[str, Any]:
    return {"source_name": names[0]} if len(names) == 1 else {"source_name": {"$in": list(names)}}


class AccessControl:
    """Turns a Reader into an AccessScope from each synced site's stored permissions."""

    def __init__(
        self,
        settings: Settings,
        registry: SourceRegistry,
        permissions: PermissionStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.permissions = permissions
        self._clock = clock
        self._lock = threading.Lock()
        self._people: dict[tuple[str, str, float], frozenset[str]] = {}

    def synced_sources(self) -> list[str]:
        return synced_names(self.registry)

    def site(self, name: str) -> tuple[SitePermissions | None, str | None]:
        """The site's permissions if they may be used now, else None and why not."""
        try:
            snapshot = self.permissions.load(name)
        except RagError as e:
            log.warning("synced permissions of %s cannot be read (public pages only): %s", name, e)
            return None, f"cannot be read: {e}"
        if snapshot is None or not snapshot.last_success:
            return None, "never synced"
        if snapshot.error:
            return None, f"the last sync failed: {snapshot.error}"
        limit = STALE_INTERVALS * self.settings.confluence_permission_sync_minutes * 60
        if self._clock() - snapshot.last_success > limit:
            return None, f"the last successful sync is older than {limit // 60:.0f} minutes"
        return snapshot, None

    def scope(self, reader: Reader | None) -> AccessScope:
        synced = self.synced_sources()
        if not synced:
            return AccessScope()
        reader = reader if reader is not None else Reader.public()
        allowed: set[str] = set()
        for name in synced:
            public = {f"{name}:{PUBLIC_KEY}"}
            snapshot, _why = self.site(name)
            if snapshot is None or reader.public_only or not reader.emails:
                allowed |= public
                continue
            keys: set[str] | None = None
            for email in reader.emails:
                mine = self._readable(snapshot, email)
                keys = set(mine) if keys is None else keys & mine
                if keys <= {PUBLIC_KEY}:
                    break
            allowed |= {f"{name}:{key}" for key in (keys or set())} | public
        log.debug("reading as %s: %d access tag(s)", reader.label or "nobody named", len(allowed))
        return AccessScope(frozenset(synced), frozenset(allowed))

    def _readable(self, snapshot: SitePermissions, email: str) -> frozenset[str]:
        cache_key = (snapshot.source, email, snapshot.synced_at)
        with self._lock:
            found = self._people.get(cache_key)
        if found is None:
            found = frozenset(snapshot.readable(email))
            with self._lock:
                if len(self._people) >= CACHE_PEOPLE:
                    self._people.clear()
                self._people[cache_key] = found
        return found
