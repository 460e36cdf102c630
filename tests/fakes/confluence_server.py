"""A Confluence REST server on 127.0.0.1 (context path /wiki) that the real client talks to.

It answers the endpoints ragbot uses the way Data Center / Cloud do: CQL content search with
expansions, `limit` capped by the server (25 once bodies are expanded), RELATIVE `next`
links (relative to `_links.base`, so a client that joins them with the host root loses
`/wiki`), spaces, single pages and users. Faults can be injected: 429 with Retry-After,
5xx, and every request is recorded.

`mode` chooses which Confluence it plays:

- `"v1"` (default): the v1 REST API only, Cloud's and Data Center's common ground.
- `"cloud"`: Confluence Cloud in 2026. The deprecated `GET /rest/api/content/{id}` and
  `GET /rest/api/space/{key}` answer 410 Gone; the v2 API serves `GET /api/v2/spaces?keys=`,
  `GET /api/v2/pages/{id}?body-format=storage`, `/pages/{id}/labels` and `/pages/{id}/ancestors`
  with cursor paging (`_links.next`, relative with the /wiki context, and a `Link` header).
  CQL search, restrictions and users stay on v1, as on Cloud.
- `"datacenter"`: Data Center 8.x/9.x: v1 only (v2 paths 404), a CQL search with a body
  expanded returns at most 50 results, and the `start` of its `_links.next` under-counts by
  one (the first result of the next page repeats the last of this one).

What a permission sync reads (groups, space permissions, page restrictions, e-mails):

- page read restrictions to users and groups in the CQL listing
  (`restrictions.read.restrictions.user` / `.group`); Cloud names users by accountId (with
  `email`, "" when the user hides it) and groups by id and name, Data Center by username/userKey
  (no e-mail) and groups by name;
- space permissions: Cloud `GET /api/v2/spaces/{id}/permissions` (cursor-paged, principals
  `user`/`group`/`access_class`); Data Center 9.1+ (and `"v1"`)
  `GET /rest/api/space/{key}/permissions`, a JSON array (410 on Cloud; 404 when
  `space_permissions_api` is False, as on Data Center before 9.1). Both carry non-read grants;
- group members: Cloud `GET /rest/api/group/{groupId}/membersByGroupId`, Data Center
  `GET /rest/api/group/{groupName}/member`, `start`/`limit` paged (limit capped at `list_limit`)
  with a relative `_links.next`;
- e-mails: Cloud `GET /rest/api/user?accountId=` carries `email`; Data Center
  `GET /rest/mobile/1.0/profile/{username}` answers `{username, userKey, fullName, email}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

CONTEXT = "/wiki"
SPACE_CQL = re.compile(r'space = "((?:[^"\\]|\\.)+)" and type = page order by created asc')
ID_CQL = re.compile(r"id in \(([0-9, ]+)\)")
USERNAME = "bot@example.com"
PASSWORD = "api-token-123"
TOKEN = "pat-456"
MOBILE_PROFILE = "/rest/mobile/1.0/profile/"
DEFAULT_GROUP = "confluence-users"
ADMIN_GROUP = "space-admins"
Grant = tuple[str, str]  # ("group", name) | ("user", key) | ("anonymous", "")


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
    restricted_groups: list[str] = field(default_factory=list)  # group names allowed to read
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
        body_limit: int | None = None,
        list_limit: int = 25,
        mode: str = "v1",
    ) -> None:
        if mode not in {"v1", "cloud", "datacenter"}:
            raise ValueError(f"unknown fake Confluence mode {mode!r}")
        self.mode = mode
        self.username = username
        self.password = password
        self.token = token
        self.body_limit = body_limit if body_limit is not None else (50 if mode == "datacenter" else 25)
        self.list_limit = list_limit
        self.v2_limit = 250  # v2 list endpoints' cap
        self.v2_next_in_body = True  # False: the next cursor only in the `Link` header
        self.headers_for: dict[str, dict[str, str]] = {}  # path fragment → extra answer headers
        self.unsearchable: set[str] = set()  # page ids CQL `id in (...)` misses (index lag)
        self.spaces: dict[str, str] = {}
        self.pages: dict[str, FakePage] = {}
        self.users: dict[str, str] = {}  # userkey or accountId → display name
        self.emails: dict[str, str] = {}  # user key → e-mail address
        self.usernames: dict[str, str] = {}  # user key → Data Center username (default: the key)
        self.hidden_emails: set[str] = set()  # user keys whose e-mail Cloud hides ("")
        self.groups: dict[str, set[str]] = {DEFAULT_GROUP: set()}  # group name → member user keys
        # space key → read grants; a space not here: [("group", "confluence-users")]
        self.space_permissions: dict[str, list[Grant]] = {}
        self.space_permissions_api = True  # False: Data Center before 9.1 (404 on that path)
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
        restricted_groups: list[str] | None = None,
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
                restricted_groups=list(restricted_groups or []),
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

    def restrict(self, page_id: str, users: list[str] | None = None, groups: list[str] | None = None) -> None:
        """Set (or, with neither, clear) a page's read restriction; like Confluence, no new version."""
        with self._lock:
            page = self.pages[page_id]
            page.restricted_to = list(users or [])
            page.restricted_groups = list(groups or [])

    # ----- people and permissions ------------------------------------------------------------

    def add_user(
        self,
        key: str,
        display_name: str,
        email: str | None = None,
        *,
        username: str | None = None,
        email_hidden: bool = False,
    ) -> None:
        """A user (Cloud accountId or Data Center userKey), a member of confluence-users."""
        with self._lock:
            self.users[key] = display_name
            if email is not None:
                self.emails[key] = email
            self.usernames[key] = username if username is not None else key
            if email_hidden:
                self.hidden_emails.add(key)
            else:
                self.hidden_emails.discard(key)
            self.groups.setdefault(DEFAULT_GROUP, set()).add(key)

    def add_group(self, name: str, members: Iterable[str] = ()) -> None:
        with self._lock:
            self.groups.setdefault(name, set()).update(members)

    def set_members(self, name: str, members: Iterable[str]) -> None:
        with self._lock:
            self.groups[name] = set(members)

    def remove_member(self, name: str, key: str) -> None:
        with self._lock:
            self.groups.get(name, set()).discard(key)

    @staticmethod
    def group_id(name: str) -> str:
        """Cloud's id for a group: stable, derived from the name."""
        return "g-" + hashlib.sha256(name.encode()).hexdigest()[:16]

    def set_space_permissions(self, key: str, grants: Iterable[Grant]) -> None:
        """The space's read grants: ("group", name), ("user", key) or ("anonymous", "")."""
        with self._lock:
            self.space_permissions[key] = [(kind, ident) for kind, ident in grants]

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

        v2 = self.mode == "cloud" and parts.path.startswith(CONTEXT + "/api/v2/")
        mobile = parts.path.startswith(CONTEXT + MOBILE_PROFILE)
        if not parts.path.startswith(CONTEXT + "/rest/api/") and not v2 and not mobile:
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
        extra = {
            k: v for fragment, hs in self.headers_for.items() if fragment in parts.path for k, v in hs.items()
        }
        with self._lock:
            if v2:
                status, data, headers = self._route_v2(parts.path[len(CONTEXT + "/api/v2") :], params)
            elif mobile:
                status, data = self._mobile_profile(unquote(parts.path[len(CONTEXT + MOBILE_PROFILE) :]))
                headers = {}
            else:
                status, data = self._route(parts.path[len(CONTEXT + "/rest/api") :], params)
                headers = {}
        reply(status, data, {**headers, **extra})

    # ----- endpoints -------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return self.url

    def _route(self, api: str, params: dict[str, str]) -> tuple[int, Any]:
        expand = {e for e in params.get("expand", "").split(",") if e}
        if self.mode == "cloud" and re.fullmatch(r"/space/[^/]+(?:/permissions)?|/content/\d+", api):
            return 410, {"statusCode": 410, "message": "This endpoint has been deprecated and removed"}
        if match := re.fullmatch(r"/space/([^/]+)/permissions", api):
            return self._dc_space_permissions(unquote(match.group(1)))
        if self.mode == "cloud" and (match := re.fullmatch(r"/group/([^/]+)/membersByGroupId", api)):
            ident = unquote(match.group(1))
            name = next((n for n in self.groups if self.group_id(n) == ident), None)
            return self._members(name, f"/rest/api/group/{quote(ident, safe='')}/membersByGroupId", params)
        if self.mode != "cloud" and (match := re.fullmatch(r"/group/([^/]+)/member", api)):
            name = unquote(match.group(1))
            found = name if name in self.groups else None
            return self._members(found, f"/rest/api/group/{quote(name, safe='')}/member", params)
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
            if ident not in self.users and "username" in params:
                ident = next((k for k, u in self.usernames.items() if u == ident), ident)
            if ident not in self.users:
                return 404, {"statusCode": 404, "message": "No user found"}
            user: dict[str, Any] = {"type": "known", "displayName": self.users[ident], "accountId": ident}
            if self.mode == "cloud":
                user["email"] = self._email(ident)
                user["publicName"] = self.users[ident]
            else:
                user["username"] = self.usernames.get(ident, ident)
                user["userKey"] = ident
            return 200, user
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
            found = [self.pages[i] for i in wanted if i in self.pages and i not in self.unsearchable]
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
            # Data Center's next link can under-count: the next page repeats a result.
            after = start + limit - (1 if self.mode == "datacenter" and limit > 1 else 0)
            query = {"cql": cql, "limit": str(limit), "start": str(after)}
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
        user = {"type": "known", "userKey": key, "displayName": self.users.get(key, key)}
        if self.mode == "cloud":  # Cloud's user objects carry the e-mail where the profile shows it
            user.update(accountId=key, email="" if key in self.hidden_emails else self.emails.get(key, ""))
        return user

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
            everything = "restrictions.read" in expand or "restrictions.read.restrictions" in expand
            restrictions: dict[str, Any] = {}
            unexpanded: dict[str, str] = {}
            path = f"/rest/api/content/{page.id}/restriction/byOperation/read"
            if everything or "restrictions.read.restrictions.user" in expand:
                users = [self._member_json(k) for k in page.restricted_to]
                restrictions["user"] = {"results": users, "start": 0, "limit": 200, "size": len(users)}
            else:
                unexpanded["user"] = path + "/user"
            if everything or "restrictions.read.restrictions.group" in expand:
                groups = [self._group_json(n) for n in page.restricted_groups]
                restrictions["group"] = {"results": groups, "start": 0, "limit": 200, "size": len(groups)}
            else:
                unexpanded["group"] = path + "/group"
            if unexpanded:
                restrictions["_expandable"] = unexpanded
            data["restrictions"] = {"read": {"operation": "read", "restrictions": restrictions}}
        return data

    # ----- permissions, groups and people -------------------------------------------------------

    def _email(self, key: str) -> str:
        return "" if key in self.hidden_emails else self.emails.get(key, "")

    def _member_json(self, key: str) -> dict[str, Any]:
        """A user as restrictions and group member lists name them."""
        name = self.users.get(key, key)
        if self.mode == "cloud":
            return {
                "type": "known",
                "accountId": key,
                "accountType": "atlassian",
                "email": self._email(key),
                "displayName": name,
                "publicName": name,
            }
        # Data Center's REST user objects carry no e-mail.
        return {
            "type": "known",
            "username": self.usernames.get(key, key),
            "userKey": key,
            "displayName": name,
        }

    def _group_json(self, name: str) -> dict[str, Any]:
        data = {"type": "group", "name": name}
        if self.mode == "cloud":
            data["id"] = self.group_id(name)
        return data

    def _grants(self, key: str) -> list[tuple[Grant, str, str]]:
        """The space's permissions as (grant, operation, target), read grants among others."""
        reads = self.space_permissions.get(key, [("group", DEFAULT_GROUP)])
        admin: Grant = ("group", ADMIN_GROUP)
        return [
            (admin, "create", "page"),
            *((grant, "read", "space") for grant in reads),
            (admin, "administer", "space"),
            (admin, "delete", "page"),
        ]

    def _dc_space_permissions(self, key: str) -> tuple[int, Any]:
        """Data Center 9.1+: every permission of the space as one JSON array, unpaged."""
        if not self.space_permissions_api:
            return 404, {"statusCode": 404, "message": "null for uri: /rest/api/space/permissions"}
        if key not in self.spaces:
            return 404, {"statusCode": 404, "message": f"No space with key : {key}"}
        answer = []
        for i, ((kind, ident), operation, target) in enumerate(self._grants(key)):
            subject: dict[str, Any]
            if kind == "group":
                subject = {"type": "group", "name": ident}
            elif kind == "user":
                subject = {"type": "user", "userKey": ident}
            else:
                subject = {"type": "anonymous"}
            answer.append(
                {
                    "id": 5_000 + i,
                    "operation": {"targetType": target, "operationKey": operation},
                    "subject": subject,
                    "spaceKey": key,
                    "spaceId": int(self.space_id(key)),
                }
            )
        return 200, answer

    def _members(self, name: str | None, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if name is None:
            return 404, {"statusCode": 404, "message": "No group found"}
        try:
            limit = max(1, min(int(params.get("limit", "200")), self.list_limit))
            start = max(0, int(params.get("start", "0")))
        except ValueError:
            return 400, {"statusCode": 400, "message": "bad limit or start"}
        members = sorted(self.groups[name])
        window = members[start : start + limit]
        links: dict[str, Any] = {"base": self.base, "context": CONTEXT, "self": self.base + path}
        if start + limit < len(members):
            links["next"] = path + "?" + urlencode({"limit": str(limit), "start": str(start + limit)})
        return 200, {
            "results": [self._member_json(k) for k in window],
            "start": start,
            "limit": limit,
            "size": len(window),
            "_links": links,
        }

    def _mobile_profile(self, username: str) -> tuple[int, Any]:
        """Data Center's mobile profile, the one REST answer that carries a user's e-mail."""
        key = next((k for k in self.users if self.usernames.get(k, k) == username), None)
        if self.mode == "cloud" or key is None:
            return 404, {"statusCode": 404, "message": f"No user found: {username}"}
        return 200, {
            "username": username,
            "userKey": key,
            "fullName": self.users[key],
            "email": self.emails.get(key, ""),
        }

    # ----- Cloud's v2 API ----------------------------------------------------------------------

    def space_id(self, key: str) -> str:
        return str(98_000 + sorted(self.spaces).index(key))

    def _route_v2(self, api: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if api == "/spaces":
            keys = [k for k in params.get("keys", "").split(",") if k] or sorted(self.spaces)
            spaces = [
                {
                    "id": self.space_id(k),
                    "key": k,
                    "name": self.spaces[k],
                    "type": "global",
                    "status": "current",
                    "_links": {"webui": f"/spaces/{k}"},
                }
                for k in keys
                if k in self.spaces
            ]
            return self._v2_list("/spaces", spaces, params)
        if match := re.fullmatch(r"/spaces/([^/]+)/permissions", api):
            ident = unquote(match.group(1))
            key = next((k for k in self.spaces if self.space_id(k) == ident), None)
            if key is None:
                return 404, {"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Space not found"}]}, {}
            items = []
            for i, ((kind, name), operation, target) in enumerate(self._grants(key)):
                if kind == "group":
                    principal = {"type": "group", "id": self.group_id(name)}
                elif kind == "user":
                    principal = {"type": "user", "id": name}
                else:
                    principal = {"type": "access_class", "id": "anonymous-users"}
                items.append(
                    {
                        "id": str(7_000 + i),
                        "principal": principal,
                        "operation": {"key": operation, "targetType": target},
                    }
                )
            return self._v2_list(f"/spaces/{ident}/permissions", items, params)
        match = re.fullmatch(r"/pages/(\d+)(/labels|/ancestors)?", api)
        page = self.pages.get(match.group(1)) if match else None
        if match is None:
            return 404, {"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Not Found"}]}, {}
        if page is None:
            return 404, {"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Page not found"}]}, {}
        if match.group(2) == "/labels":
            labels = [{"id": str(9000 + i), "name": n, "prefix": "global"} for i, n in enumerate(page.labels)]
            return self._v2_list(f"/pages/{page.id}/labels", labels, params)
        if match.group(2) == "/ancestors":
            chain: list[FakePage] = []
            parent = page.parent
            while parent is not None and parent in self.pages:
                chain.insert(0, self.pages[parent])
                parent = self.pages[parent].parent
            return 200, {"results": [{"id": a.id, "type": "page"} for a in chain]}, {}
        return 200, self._v2_page(page, params.get("body-format")), {}

    def _v2_page(self, page: FakePage, body_format: str | None) -> dict[str, Any]:
        slug = quote(page.title, safe="").replace("%20", "+")
        data: dict[str, Any] = {
            "id": page.id,
            "status": "current",
            "title": page.title,
            "spaceId": self.space_id(page.space),
            "parentId": page.parent,
            "parentType": "page" if page.parent else None,
            "authorId": page.author,
            "ownerId": page.author,
            "createdAt": _iso(page.created),
            "version": {
                "createdAt": _iso(page.modified),
                "message": "",
                "number": page.version,
                "minorEdit": False,
                "authorId": page.editor,
            },
            "body": {},
            "_links": {
                "webui": f"/spaces/{page.space}/pages/{page.id}/{slug}",
                "editui": f"/pages/resumedraft.action?draftId={page.id}",
                "tinyui": f"/x/{page.id}",
                "base": self.base,
            },
        }
        if body_format == "storage":
            data["body"] = {"storage": {"representation": "storage", "value": page.body}}
        return data

    def _v2_list(
        self, path: str, items: list[dict[str, Any]], params: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """Cursor paging as v2 does it: `_links.next` relative with /wiki, and a `Link` header."""
        try:
            limit = max(1, min(int(params.get("limit", "25")), self.v2_limit))
            start = int(base64.urlsafe_b64decode(params["cursor"]).decode()) if params.get("cursor") else 0
        except (ValueError, binascii.Error):
            return 400, {"errors": [{"status": 400, "code": "INVALID_REQUEST_PARAMETER"}]}, {}
        window = items[start : start + limit]
        data: dict[str, Any] = {"results": window, "_links": {"base": self.base}}
        headers: dict[str, str] = {}
        if start + limit < len(items):
            query = {k: v for k, v in params.items() if k != "cursor"}
            query["cursor"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            link = f"{CONTEXT}/api/v2{path}?{urlencode(query)}"
            if self.v2_next_in_body:
                data["_links"]["next"] = link
            headers["Link"] = f'<{link}>; rel="next", <{self.base}>; rel="base"'
        return 200, data, headers
