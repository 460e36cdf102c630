"""Which Confluence REST endpoints a site gets: Cloud's v2 where v1 is going, Data Center's v1.

Confluence Cloud deprecated `GET /rest/api/content/{id}` and `GET /rest/api/space/{key}` in
2023; they answer 410 Gone through Atlassian's OAuth gateway already. Their v2 equivalents
are `GET /api/v2/spaces?keys=KEY` and `GET /api/v2/pages/{id}?body-format=storage` (labels
and ancestors by their own calls). v2 has no CQL and no restrictions, so the CQL listing and
the body batches stay on v1 `content/search` everywhere. Data Center 8.x/9.x has only v1.

Cloud or Data Center is decided once per run: a `*.atlassian.net` site is Cloud; any other
site is asked v1 first, and a 410 from it means Cloud (a Cloud site on a custom domain). A
404 from a v2 endpoint falls back to v1. Every path is spelled out here, relative to the
configured base URL, so that no version of atlassian-python-api changes what is requested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from rag.errors import SourceError

log = logging.getLogger(__name__)

CLOUD_HOST_SUFFIXES = (".atlassian.net", ".jira.com")  # jira.com: sites created before 2015
V1_SPACE = "rest/api/space/{key}"
V1_PAGE = "rest/api/content/{id}"
V2_SPACES = "api/v2/spaces"
V2_PAGE = "api/v2/pages/{id}"
V2_LABELS = "api/v2/pages/{id}/labels"
V2_ANCESTORS = "api/v2/pages/{id}/ancestors"
V2_LIMIT = 250  # the most v2 list endpoints return per answer
GONE = 410

#: user(account id) → display name or None
UserName = Callable[[str], str | None]


class ConfluenceHTTPError(SourceError):
    """A non-retryable HTTP error answer (4xx other than 401/403/429)."""

    def __init__(self, message: str, *, status: int, is_json: bool) -> None:
        super().__init__(message)
        self.status = status
        self.is_json = is_json


def looks_like_cloud(url: str) -> bool:
    """A site on Atlassian's own domains is Cloud (custom domains are found by a 410 from v1)."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(CLOUD_HOST_SUFFIXES)


@dataclass(frozen=True)
class SpaceInfo:
    key: str
    name: str
    id: str = ""  # v2's numeric space id (Cloud only)


class SiteApi:
    """The space and single-page endpoints for one run, on Cloud (v2) or Data Center (v1)."""

    def __init__(self, client: Any, *, cloud: bool | None, page_expand: str) -> None:
        self.client = client
        self.cloud = cloud  # None until the first answer decides it
        self.page_expand = page_expand
        self.titles: dict[str, str] = {}  # page id → title, from the listing and earlier fetches

    # ----- spaces ----------------------------------------------------------------------------

    def space(self, key: str) -> SpaceInfo | None:
        """The space with this key; None when the site has none (or this account cannot see it).

        Raises the client's HTTP error for a 404 that is not JSON (no REST API at this URL).
        """
        if self.cloud:
            try:
                return self._v2_space(key)
            except ConfluenceHTTPError as e:
                if e.status != 404:
                    raise
                log.info("Confluence v2 spaces endpoint answered 404; using v1 for space %s", key)
        try:
            data = self.client.get(V1_SPACE.format(key=quote(key, safe="~")))
        except ConfluenceHTTPError as e:
            if e.status == GONE and not self.cloud:
                log.info("Confluence v1 space endpoint is gone (HTTP 410): using Cloud's v2 API")
                self.cloud = True
                return self._v2_space(key)
            if e.status == 404 and e.is_json:
                return None
            raise
        if self.cloud is None:
            self.cloud = False
        return SpaceInfo(key=str(data.get("key") or key), name=str(data.get("name") or key))

    def _v2_space(self, key: str) -> SpaceInfo | None:
        data = self.client.get(V2_SPACES, {"keys": key, "limit": 1})
        for space in data.get("results") or []:
            if isinstance(space, dict) and str(space.get("key")) == key:
                return SpaceInfo(key=key, name=str(space.get("name") or key), id=str(space.get("id") or ""))
        return None

    # ----- pages -----------------------------------------------------------------------------

    def page(
        self, page_id: str, *, spaces_by_id: dict[str, SpaceInfo], user_name: UserName
    ) -> tuple[dict[str, Any], str] | None:
        """One page in the v1 shape `ConfluenceSource.document` reads, with its base URL; None if gone."""
        if self.cloud:
            try:
                data = self.client.get(V2_PAGE.format(id=quote(page_id)), {"body-format": "storage"})
            except ConfluenceHTTPError as e:
                if e.status != 404:
                    raise
            else:
                return self._from_v2(data, spaces_by_id, user_name)
        try:
            data = self.client.get(V1_PAGE.format(id=quote(page_id)), {"expand": self.page_expand})
        except ConfluenceHTTPError as e:
            if e.status in {404, GONE}:
                return None
            raise
        links = data.get("_links") or {}
        return data, str(links.get("base") or self.client.base_url)

    def _from_v2(
        self, data: dict[str, Any], spaces_by_id: dict[str, SpaceInfo], user_name: UserName
    ) -> tuple[dict[str, Any], str]:
        page_id = str(data.get("id") or "")
        if not page_id:
            raise SourceError("Confluence v2 answered a page without an id")
        version = data.get("version") or {}
        body = ((data.get("body") or {}).get("storage") or {}).get("value") or ""
        links = data.get("_links") or {}
        space = spaces_by_id.get(str(data.get("spaceId") or ""))
        self.titles[page_id] = str(data.get("title") or "")
        editor = str(version.get("authorId") or "")
        author = str(data.get("authorId") or "")
        page: dict[str, Any] = {
            "id": page_id,
            "type": "page",
            "status": data.get("status"),
            "title": data.get("title"),
            "version": {
                "number": version.get("number"),
                "when": version.get("createdAt") or "",
                "by": {"displayName": (user_name(editor) if editor else None) or ""},
            },
            "history": {"createdBy": {"displayName": (user_name(author) if author else None) or ""}},
            "body": {"storage": {"value": body, "representation": "storage"}},
            "ancestors": self._v2_ancestors(page_id),
            "metadata": {"labels": {"results": self._v2_labels(page_id)}},
            "_links": {"webui": links.get("webui") or ""},
        }
        if space is not None:
            page["space"] = {"key": space.key, "name": space.name}
        return page, str(links.get("base") or self.client.base_url)

    def _v2_labels(self, page_id: str) -> list[dict[str, Any]]:
        path = V2_LABELS.format(id=quote(page_id))
        return [
            {"name": str(label.get("name")), "prefix": label.get("prefix")}
            for label, _base in self.client.paginate(path, {"limit": V2_LIMIT})
            if label.get("name")
        ]

    def _v2_ancestors(self, page_id: str) -> list[dict[str, str]]:
        """Ancestors, top first. v2 gives only their ids: titles come from the listing, else v2."""
        data = self.client.get(V2_ANCESTORS.format(id=quote(page_id)), {"limit": V2_LIMIT})
        ancestors: list[dict[str, str]] = []
        for entry in data.get("results") or []:
            if not isinstance(entry, dict) or entry.get("type", "page") != "page":
                continue  # folders and whiteboards are not pages and have no page title here
            ancestor = str(entry.get("id") or "")
            if ancestor and ancestor not in self.titles:
                try:
                    parent = self.client.get(V2_PAGE.format(id=quote(ancestor)))
                    self.titles[ancestor] = str(parent.get("title") or "")
                except ConfluenceHTTPError:
                    self.titles[ancestor] = ""
            if ancestor:
                ancestors.append({"id": ancestor, "title": self.titles.get(ancestor, "")})
        return ancestors
