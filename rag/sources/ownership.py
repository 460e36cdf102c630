"""Who owns what an answer cited: CODEOWNERS for code, the last editors for pages, `experts`.

**CODEOWNERS** is read from the indexed repository *at the indexed commit* (`git show
<commit>:<file>`; the working tree only for a folder that is not a git repository), from the
first of the locations the hosts look at: `.github/CODEOWNERS`, `CODEOWNERS`, `docs/CODEOWNERS`
(GitHub: docs.github.com/…/about-code-owners#codeowners-file-location), then
`.gitlab/CODEOWNERS` (GitLab: docs.gitlab.com/user/project/codeowners/). Both syntaxes:

- GitHub: one pattern and its owners per line (`@user`, `@org/team`, an e-mail); gitignore-like
  patterns (`*`, `**`, `?`; a leading `/` or a `/` inside anchors at the root; a trailing `/` is a
  directory; `docs/*` owns `docs/a.md` but not `docs/x/a.md`); the **last** matching line wins; a
  pattern without owners un-owns. `\\#` escapes a pattern starting with `#`.
- GitLab: the same lines grouped in sections, `[Section]`, `^[Optional]`, `[Section][2]`, with
  the section's default owners after the bracket for lines that name none; a path without a
  leading `/` matches at any depth; `!pattern` excludes; within a section the last match wins
  and the owners of every matching section combine.

**Pages**: the last editor and the creator recorded at ingest (`last_modified_by`, `author`,
with their e-mails where Confluence shows them). **Experts**: the source's `experts`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rag.sources.specs import ConfluenceSpec, RepositorySpec, clone_dir_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rag.config import Settings
    from rag.models import Hit
    from rag.sources.registry import SourceRegistry

log = logging.getLogger(__name__)

LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
_SECTION = re.compile(r"^\^?\[(?P<name>[^\]]+)\](?:\[\d+\])?\s*(?P<owners>.*)$")
GIT_TIMEOUT = 20


@dataclass(frozen=True)
class Owner:
    """Someone to ask about a cited passage: a CODEOWNERS owner (`@user`, `@org/team`, an
    e-mail), a page editor (an e-mail or a display name), or a configured Slack id."""

    handle: str
    kind: str  # "codeowners" | "editor" | "expert"
    source_name: str
    why: str


@dataclass
class Rule:
    pattern: str
    owners: tuple[str, ...]
    line: int
    regex: re.Pattern[str]
    exclude: bool = False


@dataclass
class CodeOwners:
    """A parsed CODEOWNERS file: rules per section ("" = GitHub's single list)."""

    path: str
    sections: dict[str, list[Rule]] = field(default_factory=dict)

    def owners(self, file: str) -> tuple[tuple[str, ...], Rule | None]:
        """The owners of a repo-relative path, and the (last) rule that decided it."""
        found: list[str] = []
        deciding: Rule | None = None
        for rules in self.sections.values():
            match = next((r for r in reversed(rules) if r.regex.match(file)), None)
            if match is None or match.exclude:
                continue
            deciding = deciding or match
            found += [o for o in match.owners if o not in found]
        return tuple(found), deciding


def pattern_regex(pattern: str, *, gitlab: bool = False) -> re.Pattern[str]:
    """A CODEOWNERS path pattern as a regex over repo-relative POSIX paths."""
    directory = pattern.endswith("/")
    anchored = pattern.startswith("/") or (not gitlab and "/" in pattern.strip("/"))
    segments = [s for s in pattern.strip("/").split("/") if s]
    out = ""
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            out += ".*" if last else "(?:[^/]+/)*"
            continue
        piece = "".join(
            "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
            for ch in segment.replace("\\#", "#")
        )
        out += piece + ("" if last else "/")
    wildcard_leaf = bool(segments) and any(ch in segments[-1] for ch in "*?")
    if directory:
        tail = "/.*"  # everything under the directory
    elif wildcard_leaf:
        tail = ""  # `docs/*`: the files there, not deeper
    else:
        tail = "(?:/.*)?"  # a name: the file, or everything under a directory of that name
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{out}{tail}$")


def parse_codeowners(text: str, path: str = "CODEOWNERS") -> CodeOwners:
    gitlab = path.startswith(".gitlab/") or any(_SECTION.match(line.strip()) for line in text.splitlines())
    parsed = CodeOwners(path)
    section = ""
    defaults: tuple[str, ...] = ()
    parsed.sections[section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION.match(line) if gitlab else None
        if header:
            section = header.group("name").strip().lower()
            defaults = tuple(_owners(header.group("owners")))
            parsed.sections.setdefault(section, [])
            continue
        parts = _split(line)
        if not parts:
            continue
        pattern, owners = parts[0], tuple(parts[1:])
        exclude = gitlab and pattern.startswith("!")
        pattern = pattern.lstrip("!") if exclude else pattern
        if gitlab and not owners:
            owners = defaults
        try:
            regex = pattern_regex(pattern, gitlab=gitlab)
        except re.error:
            log.warning("%s line %d: cannot read the pattern %r; skipped", path, number, pattern)
            continue
        parsed.sections[section].append(Rule(pattern, owners, number, regex, exclude))
    return parsed


def _split(line: str) -> list[str]:
    """Pattern and owners; a ` #` starts a trailing comment; `\\ ` keeps a space in a pattern."""
    line = re.split(r"\s+#", line, maxsplit=1)[0]
    parts = re.split(r"(?<!\\)\s+", line.strip())
    return [p.replace("\\ ", " ") for p in parts if p]


def _owners(text: str) -> list[str]:
    return [o for o in _split(text) if o.startswith("@") or "@" in o]


class Ownership:
    """The owners of cited hits, with CODEOWNERS files cached per (source, commit)."""

    def __init__(self, settings: Settings, registry: SourceRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._files: dict[tuple[str, str], CodeOwners | None] = {}
        self._lock = threading.Lock()

    def owners(self, hits: Sequence[Hit], *, limit: int = 3) -> list[Owner]:
        found: list[Owner] = []
        seen: set[str] = set()

        def add(owner: Owner) -> None:
            if owner.handle.lower() not in seen:
                seen.add(owner.handle.lower())
                found.append(owner)

        for hit in hits:
            spec = self.registry.get(hit.source_name) if hit.source_name else None
            try:
                if isinstance(spec, RepositorySpec) and hit.path:
                    for owner in self._code_owners(spec, hit):
                        add(owner)
                elif isinstance(spec, ConfluenceSpec) or hit.source == "confluence":
                    for owner in _editors(hit):
                        add(owner)
            except Exception as e:  # fewer owners, never a failed click
                log.warning("could not find the owners of %s: %s", hit.citation(), e)
            if spec is not None:
                for expert in spec.experts:
                    add(Owner(expert, "expert", spec.name, f"expert for {spec.name}"))
            if len(found) >= limit:
                break
        return found[:limit]

    def _code_owners(self, spec: RepositorySpec, hit: Hit) -> list[Owner]:
        commit = str(hit.metadata.get("commit") or "") or None
        parsed = self.codeowners(spec, commit)
        if parsed is None or not hit.path:
            return []
        owners, rule = parsed.owners(hit.path)
        if rule is None:
            return []
        why = f"{parsed.path} line {rule.line}: {rule.pattern}"
        return [Owner(o, "codeowners", spec.name, why) for o in owners]

    def codeowners(self, spec: RepositorySpec, commit: str | None) -> CodeOwners | None:
        key = (spec.name, commit or "")
        with self._lock:
            if key in self._files:
                return self._files[key]
        parsed = self._read(spec, commit)
        with self._lock:
            self._files[key] = parsed
        return parsed

    def _read(self, spec: RepositorySpec, commit: str | None) -> CodeOwners | None:
        root = clone_dir_for(self.settings, spec) if spec.url else (spec.path or Path("."))
        for location in LOCATIONS:
            text = _git_show(root, commit, location) if commit else None
            if text is None and not commit:
                file = root / location
                text = file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None
            if text is not None:
                return parse_codeowners(text, location)
        return None


def _git_show(root: Path, commit: str, location: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "show", f"{commit}:{location}"],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("git show %s:%s in %s failed: %s", commit[:12], location, root, e)
        return None
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else None


def _editors(hit: Hit) -> list[Owner]:
    m = hit.metadata
    people = [
        (m.get("last_modified_by_email") or m.get("last_modified_by"), "last edited"),
        (m.get("author_email") or m.get("author"), "created"),
    ]
    return [Owner(str(who), "editor", hit.source_name, f"{why} '{hit.title}'") for who, why in people if who]
