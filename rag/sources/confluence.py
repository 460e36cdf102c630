"""Confluence spaces as documents (one per page), through the REST API and CQL.

`scan()` lists every page of the configured spaces cheaply (id, version, ancestors and read
restrictions, no bodies) on every run: that listing is what finds deleted pages. `load()`
then fetches bodies only for the pages the pipeline asks for (new or changed versions),
25 at a time through CQL `id in (...)`.

atlassian-python-api provides the authenticated HTTP session; paging and retries are done
here because its generator helpers stop early when a server caps `limit` and join relative
`next` links against the host root, losing a `/wiki` context path. Which endpoints serve
spaces and single pages (Cloud's v2 or Data Center's v1) is decided in `confluence_api`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rag.config import Settings
from rag.errors import ConfigError, RagError, SourceError
from rag.models import Document
from rag.sources.base import DocumentRef, LoadFailure
from rag.sources.confluence_api import ConfluenceHTTPError, SiteApi, SpaceInfo, looks_like_cloud
from rag.sources.confluence_markup import CONVERTER_VERSION, storage_to_markdown
from rag.sources.registry import ConfluenceSettingNames

if TYPE_CHECKING:
    from rag.sources.registry import ConfluenceSpec

log = logging.getLogger(__name__)

SEARCH_PATH = "rest/api/content/search"
# The listing needs only what decides re-embedding, deletion and restriction (no bodies).
LIST_EXPAND = "version,ancestors,restrictions.read.restrictions.user,restrictions.read.restrictions.group"
PAGE_EXPAND = "body.storage,version,ancestors,metadata.labels,history,space"
LIST_LIMIT = 100  # asked for; servers may return fewer per page, the pager follows `next`
BODY_LIMIT = 25  # what Cloud and Data Center allow per request once bodies are expanded
MAX_PAGES_PER_LISTING = 100_000
FAILED_BATCHES_BEFORE_GIVING_UP = 2
SPACE_KEY = re.compile(r"^~?[A-Za-z0-9_.-]+$")
RETRYABLE_STATUS = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request is retried: bounded both in attempts and in total seconds."""

    max_attempts: int = 6
    max_seconds: float = 120.0
    retry_after_cap: float = 30.0  # a Retry-After longer than this is waited for this long
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential with jitter: ~base, 2·base, 4·base … capped at backoff_max."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_message(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        message = data.get("message") or data.get("reason") or ""
        return str(message)[:200]
    return ""


class ConfluenceClient:
    """GET requests against one Confluence base URL, with timeouts, retries and paging."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        names: ConfluenceSettingNames | None = None,
    ) -> None:
        from atlassian import Confluence

        self.base_url = url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.names = n = names or ConfluenceSettingNames()
        self.auth_hint = (
            f"check {n.token}"
            if token and not (username and password)
            else f"check {n.username} and {n.password} (Cloud: your e-mail and an API token)"
            if username
            else f"set {n.username} and {n.password}, or {n.token}"
        )
        # The library sets up basic auth (username + password) or a Bearer token (PAT);
        # its own retry adapter stays off, retries are bounded here.
        api = Confluence(
            url=self.base_url,
            username=username if username and password else None,
            password=password if username and password else None,
            token=token if not (username and password) else None,
            timeout=max(1, int(timeout)),
        )
        self.session = api.session
        self.session.headers["Accept"] = "application/json"
        self._context = urlsplit(self.base_url).path.rstrip("/")
        self._noted: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.session.close()

    def url_for(self, path: str) -> str:
        """A path relative to the base URL (context path kept), or an absolute URL."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def next_url(self, link: str, links: dict[str, Any]) -> str:
        """Resolve a `_links.next` against the base URL, keeping the context path (e.g. /wiki).

        Servers answer `/rest/api/...` relative to `_links.base`; some include the context.
        The configured host is kept even if `_links.base` names another (a proxy's inside name).
        """
        parts = urlsplit(link)
        rel = parts.path + (f"?{parts.query}" if parts.query else "")
        contexts = {self._context}
        if isinstance(links.get("context"), str):
            contexts.add(links["context"].rstrip("/"))
        if isinstance(links.get("base"), str):
            contexts.add(urlsplit(links["base"]).path.rstrip("/"))
        for context in sorted((c for c in contexts if c), key=len, reverse=True):
            if rel == context or rel.startswith(context + "/"):
                rel = rel[len(context) :]
                break
        return f"{self.base_url}/{rel.lstrip('/')}"

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET → JSON object. 401/403 → ConfigError; retries 429/5xx/connection errors, then SourceError."""
        return self.request(path, params)[0]

    def request(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], str | None]:
        """Like `get`, with the `next` link of the answer's `Link` header (v2 paging), if any."""
        import requests

        url = self.url_for(path)
        shown = urlsplit(url).path
        started = time.monotonic()
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                problem = f"{type(e).__name__}"
                wait = self.retry.backoff(attempt)
            except requests.RequestException as e:
                raise SourceError(f"Confluence request to {shown} failed: {type(e).__name__}: {e}") from e
            else:
                status = response.status_code
                if status not in RETRYABLE_STATUS:
                    self._note_deprecation(response, shown)
                    link = (response.links.get("next") or {}).get("url")
                    return self._decode(response, shown), link
                problem = f"HTTP {status}"
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None and status in {429, 503}:
                    wait = min(retry_after, self.retry.retry_after_cap)
                else:
                    wait = self.retry.backoff(attempt)
            # Time spent so far: the clock, or the waits asked for if sleep does not really sleep.
            spent = max(time.monotonic() - started, waited)
            if attempt >= self.retry.max_attempts or spent + wait > self.retry.max_seconds:
                raise SourceError(
                    f"Confluence request to {shown} failed after {attempt} attempt(s) "
                    f"over {spent:.0f}s: {problem}"
                )
            log.warning("Confluence %s: %s; retrying in %.1fs (attempt %d)", shown, problem, wait, attempt)
            self.sleep(wait)
            waited += wait

    def _note_deprecation(self, response: Any, shown: str) -> None:
        """Log once per run each `Deprecation` / `Warning` header Confluence answers with."""
        for header in ("Deprecation", "Sunset", "Warning"):
            value = response.headers.get(header)
            if value and (header, value) not in self._noted:
                self._noted.add((header, value))
                log.warning("Confluence answered %s with %s: %s", shown, header, value[:300])

    def _decode(self, response: Any, shown: str) -> dict[str, Any]:
        status = response.status_code
        if status in {401, 403}:
            reason = response.headers.get("X-Seraph-LoginReason", "")
            extra = (
                " (a CAPTCHA is required after failed logins: sign in once in a browser)"
                if ("AUTHENTICATION_DENIED" in reason)
                else ""
            )
            denied = "" if status == 401 else " or access was denied"
            raise ConfigError(
                f"Confluence authentication failed{denied} (HTTP {status}) at {self.base_url}{extra}: "
                f"{self.auth_hint}"
            )
        content_type = response.headers.get("Content-Type", "")
        is_json = "json" in content_type
        if status >= 400:
            detail = _error_message(response) if is_json else ""
            raise ConfluenceHTTPError(
                f"Confluence answered HTTP {status} for {shown}" + (f": {detail}" if detail else ""),
                status=status,
                is_json=is_json,
            )
        try:
            data = response.json()
        except ValueError as e:
            raise SourceError(
                f"Confluence answered {shown} with something that is not JSON: is {self.names.url} "
                f"({self.base_url}) the Confluence base URL, context path included?"
            ) from e
        if not isinstance(data, dict):
            raise SourceError(f"Confluence answered {shown} with unexpected JSON")
        return data

    def paginate(self, path: str, params: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
        """Every result of a paged endpoint, with the `_links.base` it came with.

        Follows `_links.next` until there is none, whatever page size the server chose:
        a page shorter than the asked `limit` does not mean the end.
        """
        url: str = self.url_for(path)
        query: dict[str, Any] | None = params
        seen: set[str] = set()
        for _ in range(MAX_PAGES_PER_LISTING):
            data, header_next = self.request(url, query)
            links = data.get("_links") or {}
            base = str(links.get("base") or self.base_url).rstrip("/")
            for result in data.get("results") or []:
                if isinstance(result, dict):
                    yield result, base
            # v1 and v2 put the next page in `_links.next`; v2 also in the `Link` header.
            link = links.get("next") or header_next
            if not link:
                return
            url, query = self.next_url(str(link), links), None
            if url in seen:
                raise SourceError(f"Confluence paging loops at {urlsplit(url).path}")
            seen.add(url)
        raise SourceError(f"Confluence listing of {path} did not end after {MAX_PAGES_PER_LISTING} pages")


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
        }
        values.update(overrides)
        return cls(**values)

    def describe(self) -> str:
        spaces = ", ".join(self.spaces) or "no space"
        restricted = ", restricted pages included" if self.include_restricted else ""
        return f"Confluence {self.url} (space {spaces}{restricted})"

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
        """Every page of every configured space: id and version only (restricted ones skipped)."""
        self.prepare()
        refs: list[DocumentRef] = []
        self._listed = {}
        self.skipped_restricted = 0
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
                ancestors = {str(a.get("id")) for a in page.get("ancestors") or [] if isinstance(a, dict)}
                restricted = pid in direct or bool(ancestors & direct)
                if restricted and not self.include_restricted:
                    self.skipped_restricted += 1
                    continue
                refs.append(DocumentRef(doc_id=pid, version=page_version(_version_number(page))))
                self._listed[pid] = _Listed(space=key, restricted=restricted)
                kept += 1
            log.info("Confluence space %s: %d pages listed, %d kept", key, len(pages), kept)
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
            "labels": ", ".join(labels),
            "ancestors": " > ".join(a for a in ancestors if a),
            "breadcrumb": " > ".join(p for p in [space_name, *ancestors, title] if p),
            "restricted": bool(listed.restricted) if listed else False,
        }
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
