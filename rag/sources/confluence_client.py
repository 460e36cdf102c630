"""The HTTP side of the Confluence source: one authenticated session, bounded retries, paging.

`ConfluenceClient` owns every GET the source makes: timeouts, retries of 429/5xx and dropped
connections within a `RetryPolicy` budget (attempts and seconds, honouring `Retry-After`),
the mapping of 401/403 to a `ConfigError` naming the settings to check, and the paging of
list endpoints. atlassian-python-api provides the authenticated session; paging and retries
are done here because its generator helpers stop early when a server caps `limit` and join
relative `next` links against the host root, losing a `/wiki` context path. What is asked
for (CQL, expansions, v1 or v2) is decided by `confluence` and `confluence_api`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from rag.errors import ConfigError, SourceError
from rag.sources.confluence_api import ConfluenceHTTPError
from rag.sources.specs import ConfluenceSettingNames

log = logging.getLogger(__name__)

MAX_PAGES_PER_LISTING = 100_000
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

    def get_list(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """GET → a JSON array (Data Center's space permissions), with `get`'s errors and retries."""
        data = self.request(path, params, array=True)[0]
        return list(data.get("results") or [])

    def request(
        self, path: str, params: dict[str, Any] | None = None, *, array: bool = False
    ) -> tuple[dict[str, Any], str | None]:
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
                    return self._decode(response, shown, array=array), link
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

    def _decode(self, response: Any, shown: str, *, array: bool = False) -> dict[str, Any]:
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
        if array and isinstance(data, list):
            return {"results": data}
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
