"""web_url derivation from git remotes and each host's link shape."""

from __future__ import annotations

import pytest

from rag.sources.weblinks import derive_web_url, file_url, line_anchor


@pytest.mark.parametrize(
    ("remote", "web_url"),
    [
        ("git@github.com:acme/api.git", "https://github.com/acme/api"),
        ("git@github.com:acme/api", "https://github.com/acme/api"),
        ("https://github.com/acme/api.git", "https://github.com/acme/api"),
        ("https://github.com/acme/api", "https://github.com/acme/api"),
        ("https://user:token@github.com/acme/api.git", "https://github.com/acme/api"),
        ("ssh://git@github.com/acme/api.git", "https://github.com/acme/api"),
        ("ssh://git@ssh.github.com:443/acme/api.git", "https://github.com/acme/api"),
        ("git@gitlab.com:acme/platform/api.git", "https://gitlab.com/acme/platform/api"),
        ("https://gitlab.com/acme/platform/team/api.git", "https://gitlab.com/acme/platform/team/api"),
        ("ssh://git@gitlab.example.com:2222/acme/api.git", "https://gitlab.example.com/acme/api"),
        ("git@bitbucket.org:acme/api.git", "https://bitbucket.org/acme/api"),
        ("https://jane@bitbucket.org/acme/api.git", "https://bitbucket.org/acme/api"),
        ("file:///srv/git/api.git", None),
        ("/srv/git/api.git", None),
        ("https://git.example.com/acme/api.git", None),  # unknown host: set web_url yourself
        ("git@github.com:api.git", None),  # no owner
        (None, None),
    ],
)
def test_web_url_is_derived_from_the_remote(remote: str | None, web_url: str | None) -> None:
    assert derive_web_url(remote) == web_url


@pytest.mark.parametrize(
    ("web_url", "expected"),
    [
        ("https://github.com/acme/api", "https://github.com/acme/api/blob/abc123/app/db.py#L10-L42"),
        ("https://gitlab.com/acme/platform/api", "https://gitlab.com/acme/platform/api/-/blob/abc123/app/db.py#L10-42"),
        ("https://bitbucket.org/acme/api", "https://bitbucket.org/acme/api/src/abc123/app/db.py#lines-10:42"),
        ("https://gitlab.example.com/acme/api/", "https://gitlab.example.com/acme/api/-/blob/abc123/app/db.py#L10-42"),
    ],
)
def test_each_host_links_a_line_range_its_own_way(web_url: str, expected: str) -> None:
    assert line_anchor(file_url(web_url, "abc123", "app/db.py"), 10, 42) == expected


def test_a_single_line_and_odd_paths() -> None:
    assert line_anchor("https://github.com/a/b/blob/s/x.py", 7, 7) == "https://github.com/a/b/blob/s/x.py#L7"
    assert line_anchor("https://bitbucket.org/a/b/src/s/x.py", 7) == "https://bitbucket.org/a/b/src/s/x.py#lines-7"
    assert file_url("https://github.com/a/b", "main", "docs/my notes.md") == (
        "https://github.com/a/b/blob/main/docs/my%20notes.md"
    )
