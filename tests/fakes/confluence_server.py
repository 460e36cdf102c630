"""A Confluence REST server on 127.0.0.1 (context path /wiki) that the real client talks to.

It answers the endpoints ragbot uses the way Data Center / Cloud do: CQL content search with
expansions, `limit` capped by the server (25 once bodies are expanded), RELATIVE `next`
links (relative to `_links.base`, so a client that joins them with the host root loses
`/wiki`), spaces, single pages and users. Faults can be injected: 429 with Retry-After,
5xx, and every request is recorded.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

CONTEXT = "/wiki"
SPACE_CQL = re.compile(r'space = "((?:[^"\\]|\\.)+)" and type = page order by created asc')
ID_CQL = re.compile(r"id in \(([0-9, ]+)\)")
USERNAME = "bot@example.com"
PASSWORD = "api-token-123"
TOKEN = "pat-456"


@dataclass
class FakePage:
    id: str
    space: str
    title: str
    body: str
    version: int = 1
    parent: str | None = None
    labels: list[str] = field(default_factory=list)
    restricted_to: list[str] = field(default_factory=list)  # user keys allowed to read; [] = open
    author: str = "u-ada"
    editor: str = "u-ada"
    created: float = 0.0
    modified: float = 0.0


@dataclass
class Fault:
    match: str
    status: int
    times: int
    after: int = 0  # let this many matching requests through first
    retry_after: str | None = None


@dataclass
class Request:
    path: str
    params: dict[str, str]
    status: int = 200


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class FakeConfluence:
    """Spaces, pages and users in memory; `url` is the base URL with the /wiki context path."""

    def __init__(
        self,
        *,
        username: str = USERNAME,
        password: str = PASSWORD,
        token: str | None = TOKEN,
        body_limit: int = 25,
        list_limit: int = 25,
    ) -> None:
        self.username = username
        self.password = password
        self.token = token
        self.body_limit = body_limit
        self.list_limit = list_limit
        self.spaces: dict[str, str] = {}
        self.pages: dict[str, FakePage] = {}
        self.users: dict[str, str] = {}  # userkey or accountId → display name
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.delay = 0.0  # seconds before every answer (timeouts)
        self._next_id = 10_000
        self._clock = 1_700_000_000.0
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # ----- content -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}{CONTEXT}"

    def _tick(self) -> float:
        self._clock += 60
        return self._clock

    def add_space(self, key: str, name: str) -> None:
        self.spaces[key] = name

    def add_page(
        self,
        space: str,
        title: str,
        body: str,
        *,
        parent: str | None = None,
        labels: list[str] | None = None,
        restricted_to: list[str] | None = None,
        author: str = "u-ada",
    ) -> str:
        with self._lock:
            self._next_id += 1
            page_id = str(self._next_id)
            now = self._tick()
            self.pages[page_id] = FakePage(
                id=page_id,
                space=space,
                title=title,
                body=body,
                parent=parent,
                labels=list(labels or []),
                restricted_to=list(restricted_to or []),
                author=author,
                editor=author,
                created=now,
                modified=now,
            )
            return page_id

    def edit_page(self, page_id: str, *, body: str | None = None, title: str | None = None) -> None:
        """A new version, as an edit in the editor makes."""
        with self._lock:
            page = self.pages[page_id]
            if body is not None:
                page.body = body
            if title is not None:
                page.title = title
            page.version += 1
            page.modified = self._tick()

    def delete_page(self, page_id: str) -> None:
        with self._lock:
            del self.pages[page_id]

    def inject(
        self, match: str, *, status: int, times: int = 1, after: int = 0, retry_after: str | None = None
    ) -> None:
        """The next `times` requests whose path contains `match` (after `after` others) fail."""
        with self._lock:
            self.faults.append(Fault(match, status, times, after, retry_after))

    def requests_to(self, fragment: str) -> list[Request]:
        return [r for r in self.requests if fragment in r.path]

    # ----- serving -------------------------------------------------------------------------

    def start(self) -> FakeConfluence:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _authorised(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and password == self.password
        if scheme.lower() == "bearer":
            return self.token is not None and value == self.token
        return False

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in path and fault.times > 0:
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        record = Request(parts.path, params)
        self.requests.append(record)
        if self.delay:
            time.sleep(self.delay)

        def reply(status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            record.status = status
            raw = json.dumps(data).encode()
            http.send_response(status)
            http.send_header("Content-Type", "application/json;charset=UTF-8")
            http.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(raw)

        if not parts.path.startswith(CONTEXT + "/rest/api/"):
            record.status = 404
            raw = b"<html><body>Not Found</body></html>"
            http.send_response(404)
            http.send_header("Content-Type", "text/html")
            http.send_header("Content-Length", str(len(raw)))
            http.end_headers()
            http.wfile.write(raw)
            return
        if not self._authorised(http.headers.get("Authorization")):
            reply(401, {"statusCode": 401, "message": "Authentication required"})
            return
        fault = self._fault_for(parts.path)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            reply(fault.status, {"statusCode": fault.status, "message": "injected fault"}, headers)
            return
        api = parts.path[len(CONTEXT + "/rest/api") :]
        with self._lock:
            status, data = self._route(api, params)
        reply(status, data)

    # ----- endpoints -------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return self.url

    def _route(self, api: str, params: dict[str, str]) -> tuple[int, Any]:
        expand = {e for e in params.get("expand", "").split(",") if e}
        if match := re.fullmatch(r"/space/([^/]+)", api):
            key = match.group(1)
            if key not in self.spaces:
                return 404, {"statusCode": 404, "message": f"No space with key : {key}"}
            return 200, {
                "key": key,
                "name": self.spaces[key],
                "type": "global",
                "_links": {"webui": f"/spaces/{key}", "base": self.base, "context": CONTEXT},
            }
        if api == "/content/search":
            return self._search(params, expand)
        if match := re.fullmatch(r"/content/(\d+)", api):
            page = self.pages.get(match.group(1))
            if page is None:
                return 404, {"statusCode": 404, "message": "No content found with id"}
            data = self._page_json(page, expand)
            data["_links"]["base"] = self.base
            data["_links"]["context"] = CONTEXT
            return 200, data
        if api == "/user":
            ident = params.get("accountId") or params.get("key") or params.get("username") or ""
            if ident not in self.users:
                return 404, {"statusCode": 404, "message": "No user found"}
            return 200, {"type": "known", "displayName": self.users[ident], "accountId": ident}
        return 404, {"statusCode": 404, "message": f"no such endpoint {api}"}

    def _search(self, params: dict[str, str], expand: set[str]) -> tuple[int, Any]:
        cql = params.get("cql", "")
        if match := SPACE_CQL.fullmatch(cql):
            key = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
            found = sorted(
                (p for p in self.pages.values() if p.space == key), key=lambda p: (p.created, int(p.id))
            )
        elif match := ID_CQL.fullmatch(cql):
            wanted = [i.strip() for i in match.group(1).split(",") if i.strip()]
            found = [self.pages[i] for i in wanted if i in self.pages]
        else:
            return 400, {"statusCode": 400, "message": f"Could not parse cql : {cql}"}
        cap = self.body_limit if any(e.startswith("body") for e in expand) else self.list_limit
        try:
            limit = min(int(params.get("limit", "25")), cap)
            start = int(params.get("start", "0"))
        except ValueError:
            return 400, {"statusCode": 400, "message": "bad limit or start"}
        window = found[start : start + limit]
        links: dict[str, Any] = {
            "base": self.base,
            "context": CONTEXT,
            "self": f"{self.base}/rest/api/content/search",
        }
        if start + limit < len(found):
            query = {"cql": cql, "limit": str(limit), "start": str(start + limit)}
            if params.get("expand"):
                query["expand"] = params["expand"]
            # Relative to `_links.base`, exactly as Confluence returns it: no /wiki in front.
            links["next"] = "/rest/api/content/search?" + urlencode(query)
        return 200, {
            "results": [self._page_json(p, expand) for p in window],
            "start": start,
            "limit": limit,
            "size": len(window),
            "_links": links,
        }

    def _user(self, key: str) -> dict[str, Any]:
        return {"type": "known", "userKey": key, "displayName": self.users.get(key, key)}

    def _page_json(self, page: FakePage, expand: set[str]) -> dict[str, Any]:
        slug = quote(page.title, safe="").replace("%20", "+")
        data: dict[str, Any] = {
            "id": page.id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "_links": {
                "webui": f"/spaces/{page.space}/pages/{page.id}/{slug}",
                "self": f"{self.base}/rest/api/content/{page.id}",
            },
            "_expandable": {"body": "", "version": "", "ancestors": "", "space": ""},
        }
        if "version" in expand:
            data["version"] = {
                "number": page.version,
                "when": _iso(page.modified),
                "by": self._user(page.editor),
            }
        if "ancestors" in expand:
            chain: list[FakePage] = []
            parent = page.parent
            while parent is not None and parent in self.pages:
                chain.insert(0, self.pages[parent])
                parent = self.pages[parent].parent
            data["ancestors"] = [{"id": a.id, "type": "page", "title": a.title} for a in chain]
        if "body.storage" in expand:
            data["body"] = {"storage": {"value": page.body, "representation": "storage"}}
        if "metadata.labels" in expand:
            data["metadata"] = {
                "labels": {
                    "results": [
                        {"prefix": "global", "name": n, "id": str(i)} for i, n in enumerate(page.labels)
                    ],
                    "size": len(page.labels),
                }
            }
        if "history" in expand:
            data["history"] = {
                "latest": True,
                "createdBy": self._user(page.author),
                "createdDate": _iso(page.created),
            }
        if "space" in expand:
            data["space"] = {"key": page.space, "name": self.spaces.get(page.space, page.space)}
        if any(e.startswith("restrictions.read") for e in expand):
            users = [self._user(k) for k in page.restricted_to]
            data["restrictions"] = {
                "read": {
                    "operation": "read",
                    "restrictions": {
                        "user": {"results": users, "size": len(users)},
                        "group": {"results": [], "size": 0},
                    },
                }
            }
        return data
