"""Browsable links to a repository's files: web URLs derived from git remotes, per host's link shape.

GitHub `…/blob/<sha>/<path>#L10-L42`, GitLab `…/-/blob/<sha>/<path>#L10-42`, Bitbucket
`…/src/<sha>/<path>#lines-10:42`. Self-hosted instances are recognised by a `gitlab` or
`bitbucket` in their host name; anything else gets GitHub's shape (Gitea and Forgejo share it).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote, urlsplit

LinkStyle = Literal["github", "gitlab", "bitbucket"]

# git@host:owner/repo(.git)  and  ssh://git@host[:port]/owner/repo(.git)
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>[^\s]+)$")


def _strip(path: str) -> str:
    path = path.strip("/")
    return path[:-4] if path.endswith(".git") else path


def derive_web_url(remote: str | None) -> str | None:
    """The https page of a GitHub / GitLab / Bitbucket remote (https or ssh form), else None.

    `git@github.com:acme/api.git` → `https://github.com/acme/api`; GitLab subgroups are kept
    (`git@gitlab.com:acme/platform/api.git` → `https://gitlab.com/acme/platform/api`).
    """
    if not remote:
        return None
    remote = remote.strip()
    host: str | None
    path: str
    if "://" in remote:
        parts = urlsplit(remote)
        if parts.scheme not in ("https", "http", "ssh", "git", "git+ssh"):
            return None  # file://, local paths: nothing to browse
        host, path = parts.hostname, parts.path
    else:
        match = _SCP_LIKE.match(remote)
        if not match:
            return None
        host, path = match.group("host"), match.group("path")
    if not host or not _known_host(host):
        return None
    path = _strip(path)
    if host.lower().startswith("ssh.") and "bitbucket" not in host.lower():
        host = host[4:]  # ssh.github.com (port 443 ssh) browses as github.com
    if host.lower() == "altssh.bitbucket.org":
        host = "bitbucket.org"
    if "/" not in path:
        return None
    return f"https://{host}/{path}"


def _known_host(host: str) -> bool:
    host = host.lower()
    return host in {"github.com", "ssh.github.com"} or "gitlab" in host or "bitbucket" in host


def link_style(web_url: str) -> LinkStyle:
    host = (urlsplit(web_url).hostname or "").lower()
    if "gitlab" in host:
        return "gitlab"
    if "bitbucket" in host:
        return "bitbucket"
    return "github"


def file_url(web_url: str, ref: str, path: str) -> str:
    """The page of `path` at `ref` (a commit sha, or a branch when there is no commit)."""
    base = web_url.rstrip("/")
    quoted = quote(path)
    style = link_style(base)
    if style == "gitlab":
        return f"{base}/-/blob/{ref}/{quoted}"
    if style == "bitbucket":
        return f"{base}/src/{ref}/{quoted}"
    return f"{base}/blob/{ref}/{quoted}"


def line_anchor(url: str, start: int, end: int | None = None) -> str:
    """`url` with the fragment that selects lines start..end in that host's viewer."""
    style = link_style(url)
    one_line = end is None or end == start
    if style == "gitlab":
        return f"{url}#L{start}" + ("" if one_line else f"-{end}")
    if style == "bitbucket":
        return f"{url}#lines-{start}" + ("" if one_line else f":{end}")
    return f"{url}#L{start}" + ("" if one_line else f"-L{end}")
