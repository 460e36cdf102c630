"""CODEOWNERS as GitHub and GitLab document it, read at the indexed commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.models import Hit
from rag.sources.ownership import Ownership, parse_codeowners
from rag.sources.registry import SourceRegistry
from tests.conftest import git, make_repo, write_files

# The example file of docs.github.com "About code owners" (abridged, same rules).
GITHUB = """\
# These owners will be the default owners for everything in the repo.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most precedence.
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/*  docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
"""


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("README.md", ("@global-owner1", "@global-owner2")),
        ("web/app.js", ("@js-owner",)),
        ("cmd/main.go", ("docs@example.com",)),
        ("notes/todo.txt", ("@octo-org/octocats",)),
        ("build/logs/today.log", ("@octocat",)),  # `**/logs` comes later and wins
        ("docs/getting-started.md", ("@doctocat",)),  # `/docs/` comes after `docs/*`
        ("scripts/deploy.sh", ("@doctocat", "@octocat")),
        ("deeply/nested/logs/x.txt", ("@octocat",)),
        ("apps/web/index.html", ("@octocat",)),
        ("apps/github/README.md", ()),  # a pattern without owners un-owns
        ("src/apps/x.py", ("@octocat",)),  # `apps/` matches an apps directory anywhere
    ],
)
def test_github_rules_last_match_wins(path: str, owners: tuple[str, ...]) -> None:
    assert parse_codeowners(GITHUB, ".github/CODEOWNERS").owners(path)[0] == owners


def test_a_wildcard_leaf_owns_one_level_only() -> None:
    parsed = parse_codeowners("docs/*  docs@example.com\n")
    assert parsed.owners("docs/getting-started.md")[0] == ("docs@example.com",)
    assert parsed.owners("docs/build-app/troubleshooting.md")[0] == ()


# GitLab: sections, default owners, optional sections, approvals counts, exclusions.
GITLAB = """\
* @default-owner

[Documentation][2] @docs-team
docs/
README.md @tech-writer

^[Database] @database-team
model/db/
config/db/database-setup.md @docs-team

[Backend]
internal/ @be-team
!internal/generated/
"""


def test_gitlab_sections_combine_and_use_their_default_owners() -> None:
    parsed = parse_codeowners(GITLAB, ".gitlab/CODEOWNERS")
    assert parsed.owners("docs/guide.md")[0] == ("@default-owner", "@docs-team")
    assert parsed.owners("README.md")[0] == ("@default-owner", "@tech-writer")
    assert parsed.owners("model/db/user.rb")[0] == ("@default-owner", "@database-team")
    assert parsed.owners("config/db/database-setup.md")[0] == ("@default-owner", "@docs-team")
    assert parsed.owners("src/internal/api.go")[0] == ("@default-owner", "@be-team")  # any depth
    assert parsed.owners("internal/generated/stub.go")[0] == ("@default-owner",)  # excluded there


def test_owners_are_read_at_the_indexed_commit_not_the_working_tree(
    tmp_path: Path, make_settings: Any
) -> None:
    repo = make_repo(tmp_path / "backend", {"CODEOWNERS": "/deploy/ @old-owner\n", "deploy/run.sh": "echo\n"})
    indexed = git(repo, "rev-parse", "HEAD").strip()
    write_files(repo, {"CODEOWNERS": "/deploy/ @new-owner\n"})
    git(repo, "commit", "-q", "-am", "new owners, not indexed yet")
    sources = tmp_path / "ragbot.toml"
    sources.write_text(f'[[repository]]\nname = "backend"\npath = "{repo}"\nexperts = ["UEXPERT"]\n')
    settings = make_settings(ragbot_sources_file=sources)
    ownership = Ownership(settings, SourceRegistry.from_settings(settings))
    hit = Hit(
        "code",
        "run.sh",
        None,
        "deploy/run.sh",
        1,
        1,
        1.0,
        "",
        metadata={"commit": indexed},
        source_name="backend",
    )
    owners = ownership.owners([hit], limit=5)
    assert [(o.handle, o.kind) for o in owners] == [("@old-owner", "codeowners"), ("UEXPERT", "expert")]
    assert owners[0].why == "CODEOWNERS line 1: /deploy/"
    unowned = Hit(
        "code", "x", None, "src/x.py", 1, 1, 1.0, "", metadata={"commit": indexed}, source_name="backend"
    )
    assert [o.handle for o in ownership.owners([unowned])] == ["UEXPERT"]  # no CODEOWNERS entry: the experts
    page = Hit(
        "confluence", "Runbook", "https://wiki/x", None, None, None, 1.0, "",
        metadata={"last_modified_by": "Jane Doe", "last_modified_by_email": "jane@example.com", "author": "Bob"},
        source_name="wiki",
    )  # fmt: skip
    assert [o.handle for o in ownership.owners([page])] == ["jane@example.com", "Bob"]
