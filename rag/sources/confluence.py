"""Confluence spaces as documents (one per page), through the REST API and CQL.

`scan()` lists every page of the configured spaces cheaply (id, version, ancestors and read
restrictions, no bodies) on every run: that listing is what finds deleted pages. `load()`
then fetches bodies only for the pages the pipeline asks for (new or changed versions),
25 at a time through CQL `id in (...)`, and turns each into a Document with its metadata.

The HTTP session, retries and paging are in `confluence_client`; which endpoints serve spaces
and single pages (Cloud's v2 or Data Center's v1) is decided in `confluence_api`; storage
format becomes text in `confluence_markup`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rag.config import Settings
from rag.errors import ConfigError, RagError, SourceError
from rag.models import Document
from rag.sources.base import DocumentRef, LoadFailure
from rag.sources.confluence_api import ConfluenceHTTPError, SiteApi, SpaceInfo, looks_like_cloud
from rag.sources.confluence_client import ConfluenceClient, RetryPolicy
from rag.sources.confluence_markup import CONVERTER_VERSION, storage_to_markdown
from rag.sources.confluence_permissions import (
    ListedPage,
    PermissionReader,
    SitePermissions,
    restriction_principals,
)
from rag.sources.specs import ConfluenceSettingNames

if TYPE_CHECKING:
    from rag.sources.specs import ConfluenceSpec

log = logging.getLogger(__name__)

SEARCH_PATH = "rest/api/content/search"
# The listing needs only what decides re-embedding, deletion and restriction (no bodies).
LIST_EXPAND = "version,ancestors,restrictions.read.restrictions.user,restrictions.read.restrictions.group"
PAGE_EXPAND = "body.storage,version,ancestors,metadata.labels,history,space"
LIST_LIMIT = 100  # asked for; servers may return fewer per page, the pager follows `next`
BODY_LIMIT = 25  # what Cloud and Data Center allow per request once bodies are expanded
FAILED_BATCHES_BEFORE_GIVING_UP = 2
SPACE_KEY = re.compile(r"^~?[A-Za-z0-9_.-]+$")


def _cql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _has_read_restrictions(page: dict[str, Any]) -> bool:
    read = ((page.get("restrictions") or {}).get("read") or {}).get("restrictions") or {}
    for kind in ("user", "group"):
        entry = read.get(kind) or {}
        if entry.get("results") or int(entry.get("size") or 0) > 0:
            return True
    return False


def _version_number(page: dict[str, Any]) -> int:
    version = page.get("version") or {}
    number = version.get("number")
    if not isinstance(number, int):
        raise SourceError(f"Confluence listed page {page.get('id')} without a version number")
    return number


@dataclass
class _Listed:
    space: str
    restricted: bool


def page_version(number: int) -> str:
    """What decides re-embedding: the page's version, and the converter's (an upgrade re-converts)."""
    return f"{number}+md{CONVERTER_VERSION}"


@dataclass
class ConfluenceSource:
    """The pages of one or more Confluence spaces."""

    url: str
    spaces: list[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    include_restricted: bool = False
    #: "sync": every page is indexed, each tagged with who may read it (confluence_permissions)
    permissions: str = "skip"
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    list_limit: int = LIST_LIMIT
    body_limit: int = BODY_LIMIT
    names: ConfluenceSettingNames = field(default_factory=ConfluenceSettingNames)

    name: str = "confluence"
    kind = "confluence"

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._client: ConfluenceClient | None = None
        self._spaces: dict[str, SpaceInfo] = {}
        # Cloud (v2 for spaces and single pages) or Data Center (v1 only); None until asked.
        self.cloud: bool | None = True if looks_like_cloud(self.url) else None
        self._site: SiteApi | None = None
        self._listed: dict[str, _Listed] = {}
        self._users: dict[tuple[str, str], str | None] = {}
        self._user_lookup_broken = False
        self.skipped_restricted = 0
        #: The last sync's permissions (the ingest hands them in: e-mails already known are reused).
        self.previous_permissions: SitePermissions | None = None
        #: This run's, once `scan()` has read them (`permissions = "sync"`).
        self.permission_snapshot: SitePermissions | None = None

    @classmethod
    def from_spec(cls, spec: ConfluenceSpec, **overrides: Any) -> ConfluenceSource:
        values: dict[str, Any] = {
            "name": spec.name,
            "url": spec.url,
            "spaces": list(spec.spaces),
            "username": spec.username,
            "password": spec.password,
            "token": spec.token,
            "include_restricted": spec.include_restricted,
            "permissions": spec.permissions,
            "names": spec.names,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ConfluenceSource:
        if not settings.confluence_url:
            raise ConfigError("CONFLUENCE_URL is not set")
        values: dict[str, Any] = {
            "url": settings.confluence_url,
            "spaces": list(settings.confluence_space),
            "username": settings.confluence_username,
            "password": settings.confluence_password,
            "token": settings.confluence_token,
            "include_restricted": settings.confluence_include_restricted,
            "permissions": settings.confluence_permissions,
        }
        values.update(overrides)
        return cls(**values)

    def describe(self) -> str:
        spaces = ", ".join(self.spaces) or "no space"
        if self.permission_sync:
            restricted = ", permissions synced"
        else:
            restricted = ", restricted pages included" if self.include_restricted else ""
        return f"Confluence {self.url} (space {spaces}{restricted})"

    @property
    def permission_sync(self) -> bool:
        return self.permissions == "sync"

    def access_tag(self, page_id: str) -> str | None:
        """What a page's chunks carry in `access`: `<source>:<grant key>` (None: no sync)."""
        snapshot = self.permission_snapshot
        if snapshot is None or page_id not in snapshot.pages:
            return None
        return f"{self.name}:{snapshot.pages[page_id].key}"

    def access_tags(self) -> dict[str, str]:
        """Every listed page's tag (`permissions = "sync"`, after `scan()`)."""
        snapshot = self.permission_snapshot
        if snapshot is None:
            return {}
        return {pid: f"{self.name}:{rule.key}" for pid, rule in snapshot.pages.items()}

    @property
    def client(self) -> ConfluenceClient:
        if self._client is None:
            raise SourceError("ConfluenceSource.prepare() was not called")
        return self._client

    # ----- prepare -----------------------------------------------------------------------

    def check(self) -> None:
        """Check the settings, the credentials and that every space exists, before any listing."""
        n = self.names
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(f"{n.url}: {self.url!r} is not an http(s) URL")
        if not self.spaces:
            raise ConfigError(f"{n.spaces} is not set: name the space key(s) to index")
        for key in self.spaces:
            if not SPACE_KEY.match(key):
                raise ConfigError(f"{n.spaces}: {key!r} is not a space key")
        if self.username and not self.password:
            raise ConfigError(f"{n.password} is not set (needed with {n.username})")
        if self.password and not self.username:
            raise ConfigError(f"{n.username} is not set (needed with {n.password})")
        if not (self.username or self.token):
            log.info("no Confluence credentials set: reading %s anonymously", self.url)
        self._client = ConfluenceClient(
            self.url,
            username=self.username,
            password=self.password,
            token=self.token,
            timeout=self.timeout,
            retry=self.retry,
            sleep=self.sleep,
            names=self.names,
        )
        self._spaces = {}
        self._site = SiteApi(self._client, cloud=self.cloud, page_expand=PAGE_EXPAND)
        self._spaces = {key: self._check_space(key) for key in dict.fromkeys(self.spaces)}
        self.cloud = self._site.cloud
        log.info("Confluence %s: %s API", self.url, "Cloud (v2)" if self.cloud else "Data Center (v1)")

    def prepare(self) -> None:
        """Reach Confluence: the same checks as `check()`, done once per source object."""
        if self._client is None or not self._spaces:
            self.check()

    @property
    def site(self) -> SiteApi:
        if self._site is None:
            raise SourceError("ConfluenceSource.prepare() was not called")
        return self._site

    def _check_space(self, key: str) -> SpaceInfo:
        try:
            found = self.site.space(key)
        except ConfluenceHTTPError as e:
            if e.status == 404:
                raise ConfigError(
                    f"{self.names.url}: no Confluence REST API at {self.url}/rest/api (HTTP 404); "
                    "the URL must include the context path, e.g. https://example.atlassian.net/wiki"
                ) from e
            raise
        if found is None:
            raise ConfigError(
                f"{self.names.spaces}: space {key!r} was not found at {self.url} "
                "(or this account may not view it)"
            )
        return found

    # ----- scan --------------------------------------------------------------------------

    def scan(self) -> list[DocumentRef]:
        """Every page of every configured space: id and version only (restricted ones skipped,
        unless `permissions = "sync"`: then every page, and who may read each is synced)."""
        self.prepare()
        refs: list[DocumentRef] = []
        self._listed = {}
        self.skipped_restricted = 0
        self.permission_snapshot = None
        listed_pages: dict[str, ListedPage] = {}
        users: dict[str, dict[str, Any]] = {}
        for key, space in self._spaces.items():
            pages: dict[str, dict[str, Any]] = {}
            cql = f"space = {_cql_string(space.key)} and type = page order by created asc"
            params = {"cql": cql, "expand": LIST_EXPAND, "limit": self.list_limit}
            for page, _base in self.client.paginate(SEARCH_PATH, params):
                pages.setdefault(str(page.get("id")), page)
                # Titles for v2 single-page fetches, whose ancestors come without them.
                for entry in [page, *(page.get("ancestors") or [])]:
                    if isinstance(entry, dict) and entry.get("title"):
                        self.site.titles[str(entry.get("id"))] = str(entry["title"])
            # Read restrictions are inherited: a page under a restricted ancestor is restricted too.
            direct = {pid for pid, page in pages.items() if _has_read_restrictions(page)}
            kept = 0
            for pid, page in pages.items():
                if pid in self._listed:
                    continue
                chain = tuple(str(a.get("id")) for a in page.get("ancestors") or [] if isinstance(a, dict))
                restricted = pid in direct or bool(set(chain) & direct)
                if self.permission_sync:
                    listed_pages[pid] = ListedPage(
                        space=key,
                        title=str(page.get("title") or pid),
                        restriction=restriction_principals(page, users),
                        ancestors=chain,
                    )
                elif restricted and not self.include_restricted:
                    self.skipped_restricted += 1
                    continue
                refs.append(DocumentRef(doc_id=pid, version=page_version(_version_number(page))))
                self._listed[pid] = _Listed(space=key, restricted=restricted)
                kept += 1
            log.info("Confluence space %s: %d pages listed, %d kept", key, len(pages), kept)
        if self.permission_sync:
            reader = PermissionReader(
                self.client, cloud=bool(self.cloud), source=self.name, previous=self.previous_permissions
            )
            spaces = {key: space.id for key, space in self._spaces.items()}
            self.permission_snapshot = reader.sync(spaces, listed_pages, users)
        if self.skipped_restricted:
            log.info(
                "skipped %d page(s) with read restrictions (set %s to index them)",
                self.skipped_restricted,
                self.names.include_restricted,
            )
        return refs

    # ----- load --------------------------------------------------------------------------

    def load(self, refs: Iterable[DocumentRef]) -> Iterator[Document | LoadFailure]:
        """Bodies for `refs`, a batch of pages per request; a page that fails is yielded as a failure."""
        pending = list(refs)
        failed_batches = 0
        for start in range(0, len(pending), self.body_limit):
            batch = pending[start : start + self.body_limit]
            try:
                found = self._fetch_batch([ref.doc_id for ref in batch])
            except RagError as e:
                failed_batches += 1
                for ref in batch:
                    yield LoadFailure(ref.doc_id, str(e))
                if failed_batches >= FAILED_BATCHES_BEFORE_GIVING_UP:
                    # Confluence is down: do not spend the full retry budget on every batch.
                    for ref in pending[start + self.body_limit :]:
                        yield LoadFailure(ref.doc_id, f"not fetched, Confluence is failing: {e}")
                    return
                continue
            failed_batches = 0
            for ref in batch:
                yield self._load_one(ref, found.get(ref.doc_id))

    def _fetch_batch(self, ids: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
        cql = "id in (" + ", ".join(ids) + ")"
        params = {"cql": cql, "expand": PAGE_EXPAND, "limit": len(ids)}
        return {str(page.get("id")): (page, base) for page, base in self.client.paginate(SEARCH_PATH, params)}

    def _load_one(self, ref: DocumentRef, found: tuple[dict[str, Any], str] | None) -> Document | LoadFailure:
        if found is None:
            # Not in the search index (yet): ask for the page itself (v2 on Cloud, v1 on Data Center).
            try:
                found = self.site.page(
                    ref.doc_id, spaces_by_id=self._spaces_by_id(), user_name=self._account_name
                )
            except RagError as e:
                return LoadFailure(ref.doc_id, str(e))
            if found is None:
                return LoadFailure(ref.doc_id, "page not found (deleted since the listing?)")
        try:
            return self.document(*found)
        except RagError as e:
            return LoadFailure(ref.doc_id, str(e))
        except Exception as e:  # a page that does not convert must not stop the run
            log.warning("cannot convert Confluence page %s", ref.doc_id, exc_info=True)
            return LoadFailure(ref.doc_id, f"cannot convert the page: {type(e).__name__}: {e}")

    def _spaces_by_id(self) -> dict[str, SpaceInfo]:
        return {space.id: space for space in self._spaces.values() if space.id}

    def _account_name(self, account_id: str) -> str | None:
        return self._resolve_user({"account-id": account_id})

    def document(self, page: dict[str, Any], base: str) -> Document:
        """One page (as the REST API returns it with PAGE_EXPAND) as a Document."""
        page_id = str(page["id"])
        title = str(page.get("title") or page_id)
        body = ((page.get("body") or {}).get("storage") or {}).get("value") or ""
        text = storage_to_markdown(body, resolve_user=self._resolve_user)
        if not text.strip():
            # Pages that only hold child pages still deserve a record; and an empty document would
            # be re-fetched on every run, since it leaves nothing in the index to compare against.
            text = f"{title}\n"
        version = page.get("version") or {}
        history = page.get("history") or {}
        space = page.get("space") or {}
        listed = self._listed.get(page_id)
        space_key = str(space.get("key") or (listed.space if listed else ""))
        space_name = str(
            space.get("name") or (self._spaces[space_key].name if space_key in self._spaces else space_key)
        )
        ancestors = [str(a.get("title") or "") for a in page.get("ancestors") or [] if isinstance(a, dict)]
        labels = [
            str(label.get("name"))
            for label in ((page.get("metadata") or {}).get("labels") or {}).get("results") or []
            if isinstance(label, dict) and label.get("name")
        ]
        webui = str((page.get("_links") or {}).get("webui") or "")
        url = f"{base.rstrip('/')}{webui}" if webui else None
        metadata: dict[str, Any] = {
            "space": space_key,
            "space_name": space_name,
            "page_id": page_id,
            "version": _version_number(page),
            "last_modified": str(version.get("when") or (history.get("lastUpdated") or {}).get("when") or ""),
            "author": str((history.get("createdBy") or {}).get("displayName") or ""),
            "last_modified_by": str((version.get("by") or {}).get("displayName") or ""),
            # Where Confluence shows them (Cloud hides e-mails by the user's privacy setting):
            # "Ask an expert" finds the people in Slack by e-mail.
            "last_modified_by_email": str((version.get("by") or {}).get("email") or ""),
            "author_email": str((history.get("createdBy") or {}).get("email") or ""),
            "labels": ", ".join(labels),
            "ancestors": " > ".join(a for a in ancestors if a),
            "breadcrumb": " > ".join(p for p in [space_name, *ancestors, title] if p),
            "restricted": bool(listed.restricted) if listed else False,
        }
        tag = self.access_tag(page_id)
        if tag is not None:
            metadata["access"] = tag
        return Document(
            source=self.kind,
            doc_id=page_id,
            title=title,
            text=text,
            url=url,
            path=None,
            language="markdown",
            version=page_version(metadata["version"]),
            metadata=metadata,
        )

    # ----- users ---------------------------------------------------------------------------

    def _resolve_user(self, ids: dict[str, str]) -> str | None:
        """A mention's display name (cached per run); None when the lookup is not possible."""
        if "account-id" in ids:
            key, params = ("account-id", ids["account-id"]), {"accountId": ids["account-id"]}
        elif "userkey" in ids:
            key, params = ("userkey", ids["userkey"]), {"key": ids["userkey"]}
        elif "username" in ids:
            key, params = ("username", ids["username"]), {"username": ids["username"]}
        else:
            return None
        if key in self._users:
            return self._users[key]
        name: str | None = None
        if not self._user_lookup_broken:
            try:
                data = self.client.get("rest/api/user", params)
                name = str(data.get("displayName") or data.get("publicName") or "") or None
            except ConfluenceHTTPError:
                name = None  # an unknown or deactivated user
            except RagError as e:
                # No permission to browse users, or the endpoint is failing: stop asking this run.
                self._user_lookup_broken = True
                log.warning("Confluence user lookups disabled for this run: %s", e)
        self._users[key] = name
        return name
