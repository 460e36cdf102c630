"""Who may read each Confluence page (`permissions = "sync"`), read from the site on every sync.

Confluence lets a person view a page when they may view its space AND pass every read
restriction on the page and on each of its ancestors (restrictions are inherited and add up:
https://confluence.atlassian.com/doc/page-restrictions-139414.html). A page's readers are kept
in that form, a `Grant`: public (the space is open to anonymous users and nothing restricts the
page), or a list of clauses, each a set of principals of which a reader must hold one:
`u:<user id>` (Cloud accountId, Data Center userKey), `g:<group>` (Cloud group id, Data Center
group name) or `g:*` (any account of the site: "all licensed users", "authenticated users").
This is stricter than taking only the closest restriction, as some connectors do: a page
restricted to a group inside a team-only space is shown to members of the group who may also
view the space, exactly as Confluence does.

What each flavour is asked (relative to the site's URL), besides the listing's
`restrictions.read…` expansion for the restrictions of pages and ancestors:

- space view permission: Cloud `api/v2/spaces/{id}/permissions` (operation read/space);
  Data Center 9.1+ `rest/api/space/{key}/permissions`;
- group members: Cloud `rest/api/group/{groupId}/membersByGroupId`; Data Center
  `rest/api/group/{name}/member`;
- a user's e-mail: in the user objects, else Cloud `rest/api/user?accountId=`; Data Center
  `rest/mobile/1.0/profile/{username}` (a userKey first through `rest/api/user?key=`).

Anything the sync cannot read makes it fail (SourceError): answers then use public pages only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rag.errors import ConfigError, RagError, SourceError
from rag.sources.confluence_api import ConfluenceHTTPError

log = logging.getLogger(__name__)

EVERYONE = "g:*"
PUBLIC_KEY = "public"
MEMBER_LIMIT = 200
#: Cloud's access classes: anonymous users make a space public; the others are any account.
PUBLIC_CLASSES = frozenset({"anonymous-users"})
ACCOUNT_CLASSES = frozenset({"authenticated-users", "all-licensed-users"})


@dataclass(frozen=True)
class Grant:
    """Who may read a page: public, or every clause met (a clause: principals, one suffices)."""

    public: bool = False
    clauses: tuple[frozenset[str], ...] = ()

    @property
    def key(self) -> str:
        if self.public:
            return PUBLIC_KEY
        raw = json.dumps(sorted(sorted(c) for c in self.clauses))
        return "r" + hashlib.sha256(raw.encode()).hexdigest()[:16]

    def admits(self, principals: frozenset[str]) -> bool:
        return self.public or all(clause & principals for clause in self.clauses)

    def to_json(self) -> dict[str, Any]:
        return {"public": self.public, "clauses": [sorted(c) for c in self.clauses]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        return cls(bool(data.get("public")), tuple(frozenset(c) for c in data.get("clauses") or []))


@dataclass
class PageRule:
    """A page's grant, and what decided it (for `ragbot permissions explain`): each reason a
    label and the principals it admits (named when shown, with the names of the last sync)."""

    key: str
    reasons: list[tuple[str, list[str]]]


@dataclass
class SitePermissions:
    """One site's permissions as of one sync: stored whole, read by every process that answers."""

    source: str
    synced_at: float = 0.0
    error: str | None = None
    grants: dict[str, Grant] = field(default_factory=dict)
    pages: dict[str, PageRule] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # group → user ids
    group_names: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)  # user id → e-mail (lower case)
    user_names: dict[str, str] = field(default_factory=dict)
    #: When the last successful sync finished (kept across a failed one, for `status`).
    last_success: float = 0.0

    @property
    def restricted_pages(self) -> int:
        return sum(1 for rule in self.pages.values() if rule.key != PUBLIC_KEY)

    def _lookup(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """(e-mail → user ids, user id → groups), built once per snapshot."""
        cached = self.__dict__.get("_index")
        if cached is None:
            by_email: dict[str, set[str]] = {}
            for uid, email in self.emails.items():
                by_email.setdefault(email, set()).add(uid)
            groups_of: dict[str, set[str]] = {}
            for group, ids in self.members.items():
                for uid in ids:
                    groups_of.setdefault(uid, set()).add(group)
            cached = self.__dict__["_index"] = (by_email, groups_of)
        return cached

    def principals(self, email: str) -> frozenset[str]:
        """What a person holds: their accounts, their groups, `g:*` when they have an account."""
        by_email, groups_of = self._lookup()
        users = by_email.get(email.strip().lower(), set())
        if not users:
            return frozenset()
        groups = {g for uid in users for g in groups_of.get(uid, ())}
        return frozenset({*(f"u:{u}" for u in users), *(f"g:{g}" for g in groups), EVERYONE})

    def readable(self, email: str) -> set[str]:
        """The grant keys this person passes (public included)."""
        held = self.principals(email)
        return {key for key, grant in self.grants.items() if grant.admits(held)} | {PUBLIC_KEY}

    def describe_principal(self, principal: str) -> str:
        kind, _, ident = principal.partition(":")
        if principal == EVERYONE:
            return "any account of the site"
        if kind == "g":
            return f"group {self.group_names.get(ident, ident)}"
        name = self.user_names.get(ident) or ident
        email = self.emails.get(ident)
        return f"user {name}" + (f" <{email}>" if email else " (no visible e-mail)")

    def explain(self, page_id: str) -> list[str]:
        """Why the page has the readers it has, one line per rule, names filled in."""
        rule = self.pages.get(page_id)
        if rule is None:
            return []
        return [
            f"{label}: {_listing(principals, self)}" if principals else label
            for label, principals in rule.reasons
        ]

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "synced_at": self.synced_at,
                "last_success": self.last_success,
                "error": self.error,
                "grants": {k: g.to_json() for k, g in self.grants.items()},
                "pages": {p: [r.key, [list(x) for x in r.reasons]] for p, r in self.pages.items()},
                "members": self.members,
                "group_names": self.group_names,
                "emails": self.emails,
                "user_names": self.user_names,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> SitePermissions:
        data = json.loads(raw)
        return cls(
            source=str(data.get("source") or ""),
            synced_at=float(data.get("synced_at") or 0.0),
            last_success=float(data.get("last_success") or 0.0),
            error=data.get("error"),
            grants={k: Grant.from_json(v) for k, v in (data.get("grants") or {}).items()},
            pages={
                p: PageRule(str(v[0]), [(str(r[0]), list(r[1])) for r in v[1]])
                for p, v in (data.get("pages") or {}).items()
            },
            members={g: list(ids) for g, ids in (data.get("members") or {}).items()},
            group_names=dict(data.get("group_names") or {}),
            emails=dict(data.get("emails") or {}),
            user_names=dict(data.get("user_names") or {}),
        )


@dataclass
class ListedPage:
    """What the listing tells about a page's access: its own read restriction, its ancestors."""

    space: str
    title: str
    restriction: frozenset[str] | None  # principals; None: the page has no read restriction
    ancestors: tuple[str, ...] = ()  # ids, root first


def restriction_principals(page: dict[str, Any], users: dict[str, dict[str, Any]]) -> frozenset[str] | None:
    """A listed page's read restriction as principals (None: none); the users it names are
    collected into `users` (id → the user object, for e-mails and names)."""
    read = ((page.get("restrictions") or {}).get("read") or {}).get("restrictions") or {}
    principals: set[str] = set()
    restricted = False
    for entry in (read.get("user") or {}).get("results") or []:
        restricted = True
        uid = _user_id(entry)
        if uid:
            principals.add(f"u:{uid}")
            users.setdefault(uid, entry)
    for entry in (read.get("group") or {}).get("results") or []:
        restricted = True
        if isinstance(entry, dict) and (entry.get("id") or entry.get("name")):
            principals.add(f"g:{entry.get('id') or entry.get('name')}")
            if entry.get("id") and entry.get("name"):
                users.setdefault(f"group:{entry['id']}", {"groupName": entry["name"]})
    for kind in ("user", "group"):
        if int(((read.get(kind) or {}).get("size")) or 0) > 0:
            restricted = True
    # A restriction whose entries cannot be named admits nobody (an empty clause): fail closed.
    return frozenset(principals) if restricted else None


def _user_id(entry: Any) -> str:
    if not isinstance(entry, dict):
        return ""
    return str(entry.get("accountId") or entry.get("userKey") or "")


class PermissionReader:
    """Reads one site's space permissions, groups and e-mails through its ConfluenceClient."""

    def __init__(self, client: Any, *, cloud: bool, source: str, previous: SitePermissions | None = None):
        self.client = client
        self.cloud = cloud
        self.source = source
        self.previous = previous
        self.requests = 0  # listings (however many pages each) and single lookups

    def sync(
        self,
        spaces: dict[str, str],
        pages: dict[str, ListedPage],
        users: dict[str, dict[str, Any]],
    ) -> SitePermissions:
        """`spaces`: key → v2 id (Cloud) or ""; `pages`: the listing; `users`: the users it named."""
        started = time.time()
        snapshot = SitePermissions(source=self.source)
        for key, value in users.items():
            if key.startswith("group:"):
                snapshot.group_names[key[len("group:") :]] = str(value.get("groupName") or "")
        space_grants: dict[str, Grant] = {}
        space_reasons: dict[str, tuple[str, list[str]]] = {}
        for key, space_id in spaces.items():
            grant, how = self._space_grant(key, space_id, users)
            space_grants[key] = grant
            space_reasons[key] = how
        for page_id, page in pages.items():
            clauses: list[frozenset[str]] = []
            reasons: list[tuple[str, list[str]]] = []
            space = space_grants.get(page.space, Grant())
            if not space.public:
                clauses.extend(space.clauses)
            reasons.append(space_reasons.get(page.space, (f"space {page.space}: permissions not read", [])))
            for ancestor in page.ancestors:
                above = pages.get(ancestor)
                if above is not None and above.restriction is not None:
                    clauses.append(above.restriction)
                    label = f"restriction of the ancestor page {above.title!r} ({ancestor})"
                    reasons.append((label, sorted(above.restriction)))
            if page.restriction is not None:
                clauses.append(page.restriction)
                reasons.append(("the page's own read restriction", sorted(page.restriction)))
            grant = Grant(public=space.public and not clauses, clauses=tuple(clauses))
            snapshot.grants[grant.key] = grant
            snapshot.pages[page_id] = PageRule(grant.key, reasons)
        groups = {
            p[2:] for g in snapshot.grants.values() for c in g.clauses for p in c if p.startswith("g:")
        } - {"*"}
        for group in sorted(groups):
            snapshot.members[group] = self._members(group, snapshot.group_names.get(group, group), users)
        if EVERYONE in {p for g in snapshot.grants.values() for c in g.clauses for p in c}:
            # Any account: everyone the sync has met (group members, restriction users).
            snapshot.members["*"] = sorted(u for u in users if not u.startswith("group:"))
        self._emails(users, snapshot)
        snapshot.synced_at = snapshot.last_success = time.time()
        log.info(
            "Confluence %s permissions: %d page(s), %d restricted, %d group(s), %d user(s) with e-mail "
            "(%d listing(s) and lookup(s), %.1fs)",
            self.source,
            len(snapshot.pages),
            snapshot.restricted_pages,
            len(snapshot.members),
            len(snapshot.emails),
            self.requests,
            time.time() - started,
        )
        return snapshot

    # ----- spaces ----------------------------------------------------------------------------

    def _space_grant(
        self, key: str, space_id: str, users: dict[str, dict[str, Any]]
    ) -> tuple[Grant, tuple[str, list[str]]]:
        principals: set[str] = set()
        public = False
        try:
            if self.cloud:
                if not space_id:
                    raise SourceError(f"space {key}: no v2 space id to read its permissions with")
                path = f"api/v2/spaces/{quote(space_id)}/permissions"
                self.requests += 1
                for item, _base in self.client.paginate(path, {"limit": 250}):
                    op = item.get("operation") or {}
                    if op.get("key") != "read" or op.get("targetType") != "space":
                        continue
                    principal = item.get("principal") or {}
                    kind, ident = str(principal.get("type") or "").lower(), str(principal.get("id") or "")
                    if kind == "user" and ident:
                        principals.add(f"u:{ident}")
                        users.setdefault(ident, {"accountId": ident})
                    elif kind == "group" and ident:
                        principals.add(f"g:{ident}")
                    elif kind == "access_class" and ident in PUBLIC_CLASSES:
                        public = True
                    elif kind == "access_class" and ident in ACCOUNT_CLASSES:
                        principals.add(EVERYONE)
                    # roles and unknown kinds admit nobody: fail closed
            else:
                self.requests += 1
                for item in self.client.get_list(f"rest/api/space/{quote(key, safe='~')}/permissions"):
                    if not isinstance(item, dict):
                        continue
                    op = item.get("operation") or {}
                    if op.get("operationKey") != "read" or op.get("targetType") != "space":
                        continue
                    subject = item.get("subject") or {}
                    kind = str(subject.get("type") or "").lower()
                    if kind == "user" and (subject.get("userKey") or subject.get("username")):
                        uid = str(subject.get("userKey") or subject.get("username"))
                        principals.add(f"u:{uid}")
                        users.setdefault(uid, dict(subject))
                    elif kind == "group" and subject.get("name"):
                        principals.add(f"g:{subject['name']}")
                    elif kind == "anonymous":
                        public = True
        except ConfluenceHTTPError as e:
            hint = (
                " (Data Center older than 9.1 has no REST API for space permissions)"
                if e.status == 404 and not self.cloud
                else ""
            )
            raise SourceError(f"cannot read the permissions of space {key}: {e}{hint}") from e
        except ConfigError as e:
            raise SourceError(
                f"cannot read the permissions of space {key}: {e} (the account must be allowed to "
                "view the space's permissions)"
            ) from e
        if public:
            return Grant(public=True), (f"space {key}: open to anonymous users (public)", [])
        grant = Grant(clauses=(frozenset(principals),))
        return grant, (f"space {key} view permission", sorted(principals))

    # ----- groups and people -------------------------------------------------------------------

    def _members(self, group: str, name: str, users: dict[str, dict[str, Any]]) -> list[str]:
        """A group's members (user ids). Cloud names groups by id (membersByGroupId), Data Center
        by name; a Cloud restriction that gave only a name is asked by name."""
        paths = [f"rest/api/group/{quote(name, safe='')}/member"]
        if self.cloud:
            paths.insert(0, f"rest/api/group/{quote(group, safe='')}/membersByGroupId")
        for path in paths:
            ids: list[str] = []
            try:
                for entry, _base in self.client.paginate(path, {"limit": MEMBER_LIMIT}):
                    uid = _user_id(entry)
                    if uid:
                        ids.append(uid)
                        users.setdefault(uid, entry)
                self.requests += 1
                return sorted(set(ids))
            except ConfluenceHTTPError as e:
                if e.status != 404:
                    raise SourceError(f"cannot read the members of group {name}: {e}") from e
        # A group deleted since the restriction was set admits nobody.
        log.info("Confluence %s: group %s not found; it admits nobody", self.source, name)
        return []

    def _emails(self, users: dict[str, dict[str, Any]], snapshot: SitePermissions) -> None:
        known = self.previous.emails if self.previous is not None else {}
        for uid, entry in users.items():
            if uid.startswith("group:"):
                continue
            name = str(entry.get("displayName") or entry.get("publicName") or "")
            if name:
                snapshot.user_names[uid] = name
            email = str(entry.get("email") or "").strip().lower()
            if not email:
                email = known.get(uid) or self._lookup_email(uid, entry) or ""
            if email:
                snapshot.emails[uid] = email

    def _lookup_email(self, uid: str, entry: dict[str, Any]) -> str | None:
        try:
            if self.cloud:
                self.requests += 1
                data = self.client.get("rest/api/user", {"accountId": uid})
                return str(data.get("email") or "").strip().lower() or None  # hidden: ""
            username = entry.get("username")
            if not username:
                self.requests += 1
                data = self.client.get("rest/api/user", {"key": uid})
                username = data.get("username")
            if not username:
                return None
            self.requests += 1
            profile = self.client.get(f"rest/mobile/1.0/profile/{quote(str(username), safe='')}")
            return str(profile.get("email") or "").strip().lower() or None
        except ConfluenceHTTPError:
            return None  # a deactivated or unknown user: they match no reader
        except RagError as e:
            raise SourceError(f"cannot read the e-mail of Confluence user {uid}: {e}") from e


def _listing(principals: Iterable[str], snapshot: SitePermissions) -> str:
    names = sorted(snapshot.describe_principal(p) for p in principals)
    return ", ".join(names) if names else "nobody"
