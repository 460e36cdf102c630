"""The sources file: typed parsing, one-line errors naming file/table/key, targets, the v1 mapping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.sources.registry import SourceRegistry
from rag.sources.specs import ConfluenceSpec, RepositorySpec

ROOT = Path(__file__).resolve().parents[1]


def registry_for(tmp_path: Path, make_settings, text: str, **settings: object) -> SourceRegistry:  # type: ignore[no-untyped-def]
    path = tmp_path / "ragbot.toml"
    path.write_text(text)
    return SourceRegistry.from_settings(make_settings(ragbot_sources_file=path, **settings))


def error_for(tmp_path: Path, make_settings, text: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        registry_for(tmp_path, make_settings, text)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(tmp_path / "ragbot.toml"), "ragbot.toml")


THREE_REPOS = """
[[repository]]
name = "backend"
path = "checkouts/backend"

[[repository]]
name = "frontend"
url = "git@github.com:acme/frontend.git"
branch = "main"

[[repository]]
name = "infra"
url = "https://gitlab.com/acme/platform/infra.git"
web_url = "https://gitlab.example.com/acme/infra/"
interval_minutes = 15

[[confluence]]
name = "eng-wiki"
url = "https://acme.atlassian.net/wiki/"
spaces = ["ENG", "OPS"]
token_env = "ENG_WIKI_TOKEN"

[slack]
allowed_channels = ["C1", "C2"]

[[slack.channel]]
id = "C1"
sources = ["backend", "eng-wiki"]
"""


def test_a_file_defines_named_sources_of_both_kinds(tmp_path: Path, make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ENG_WIKI_TOKEN", "pat-123")
    registry = registry_for(tmp_path, make_settings, THREE_REPOS)
    assert registry.names() == ["backend", "frontend", "infra", "eng-wiki"]
    backend, frontend, infra, wiki = registry.specs
    assert isinstance(backend, RepositorySpec) and backend.path == tmp_path / "checkouts" / "backend"
    assert isinstance(frontend, RepositorySpec) and frontend.web_url == "https://github.com/acme/frontend"
    assert frontend.branch == "main" and frontend.path is None
    assert isinstance(infra, RepositorySpec) and infra.web_url == "https://gitlab.example.com/acme/infra"
    assert infra.interval_minutes == 15
    assert isinstance(wiki, ConfluenceSpec) and wiki.token == "pat-123" and wiki.spaces == ("ENG", "OPS")
    assert wiki.url == "https://acme.atlassian.net/wiki"
    assert "pat-123" not in repr(wiki)
    assert registry.several_repositories
    assert registry.slack.allowed_channels == ("C1", "C2")
    assert registry.slack.sources_for("C1") == ("backend", "eng-wiki")
    assert registry.slack.sources_for("C9") is None


def test_targets_are_names_kinds_or_all(tmp_path: Path, make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ENG_WIKI_TOKEN", "pat-123")
    registry = registry_for(tmp_path, make_settings, THREE_REPOS)
    names = lambda targets: [s.name for s in registry.resolve(targets)]  # noqa: E731
    assert names(["all"]) == ["backend", "frontend", "infra", "eng-wiki"]
    assert names(["code"]) == ["backend", "frontend", "infra"]
    assert names(["confluence"]) == ["eng-wiki"]
    assert names(["infra", "backend", "infra"]) == ["backend", "infra"]  # configuration order, once each
    with pytest.raises(ConfigError) as caught:
        registry.resolve(["backnd"])
    assert str(caught.value) == (
        "unknown source 'backnd'; configured sources: backend, frontend, infra, eng-wiki "
        "(or a kind: code, confluence; or all)"
    )


def test_the_shipped_example_is_valid(tmp_path: Path, make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONFLUENCE_USERNAME", "me@example.com")
    monkeypatch.setenv("CONFLUENCE_PASSWORD", "api-token")
    registry = SourceRegistry.from_settings(make_settings(ragbot_sources_file=ROOT / "ragbot.example.toml"))
    assert registry.names() == ["backend", "frontend", "infra", "eng-wiki"]
    assert [s.kind for s in registry.specs] == ["code", "code", "code", "confluence"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[repository]]\nname = "api"\npath = "."\npth = "x"\n',
            'ragbot.toml: [[repository]] #1 "api", key pth: unknown key',
        ),
        (
            '[[repository]]\nname = "api"\npath = "."\n[[repository]]\nname = "web"\n',
            'ragbot.toml: [[repository]] #2 "web", key path: set path or url (exactly one of the two)',
        ),
        (
            '[[repository]]\nname = "api"\npath = "."\nurl = "git@github.com:a/b.git"\n',
            'ragbot.toml: [[repository]] #1 "api", key path: both path and url are set (exactly one of the two)',
        ),
        (
            '[[repository]]\nname = "Backend"\npath = "."\n',
            "ragbot.toml: [[repository]] #1 \"Backend\", key name: 'Backend' is not a valid name "
            "(use [a-z0-9][a-z0-9_-]{0,39})",
        ),
        (
            '[[repository]]\nname = "code"\npath = "."\n',
            "ragbot.toml: [[repository]] #1 \"code\", key name: 'code' is reserved "
            "(all, code, confluence, status are targets)",
        ),
        (
            '[[repository]]\nname = "api"\npath = "."\n'
            '[[confluence]]\nname = "api"\nurl = "https://w.example.com"\nspaces = ["ENG"]\n',
            "ragbot.toml: [[confluence]] #1 \"api\", key name: 'api' is already used by "
            '[[repository]] #1 "api"',
        ),
        (
            '[[confluence]]\nname = "wiki"\nspaces = ["ENG"]\n',
            'ragbot.toml: [[confluence]] #1 "wiki", key url: required key is missing',
        ),
        (
            '[[confluence]]\nname = "wiki"\nurl = "https://w.example.com"\nspaces = ["ENG"]\n'
            'token_env = "RAGBOT_TEST_UNSET_TOKEN"\n',
            'ragbot.toml: [[confluence]] #1 "wiki", key token_env: the environment variable '
            "RAGBOT_TEST_UNSET_TOKEN is not set",
        ),
        (
            '[[repository]]\nname = "api"\npath = "."\ninterval_minutes = 0\n',
            'ragbot.toml: [[repository]] #1 "api", key interval_minutes: Input should be greater than or equal to 1',
        ),
        (
            '[[repository]]\nname = "api"\npath = "."\n[[slack.channel]]\nid = "C1"\nsources = ["api", "wiki"]\n',
            "ragbot.toml: [[slack.channel]] #1 (C1), key sources: 'wiki' names no source (configured: api)",
        ),
        (
            '[slack]\nallowed_channel = ["C1"]\n',
            "ragbot.toml: [slack], key allowed_channel: unknown key",
        ),
        ('[sources]\nname = "x"\n', "ragbot.toml: [sources]: unknown table"),
    ],
)
def test_every_bad_file_is_one_line_naming_file_table_and_key(
    tmp_path: Path, make_settings, text: str, error: str  # type: ignore[no-untyped-def]
) -> None:
    assert error_for(tmp_path, make_settings, text) == error


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    message = error_for(tmp_path, make_settings, '[[repository]]\nname = "api\n')
    assert message.startswith("ragbot.toml: not valid TOML: ") and "line 2" in message


def test_a_missing_file_is_a_configuration_error(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"^RAGBOT_SOURCES_FILE: cannot read .*nope.toml: No such file"):
        SourceRegistry.from_settings(make_settings(ragbot_sources_file=tmp_path / "nope.toml"))


def test_without_a_file_the_v1_variables_define_code_and_confluence(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "repo").mkdir()
    registry = SourceRegistry.from_settings(
        make_settings(
            code_repo_url="git@github.com:acme/api.git",
            confluence_url="https://w.example.com/wiki",
            confluence_space=["ENG"],
            confluence_token="t",
        )
    )
    assert registry.names() == ["code", "confluence"]
    code, wiki = registry.specs
    assert isinstance(code, RepositorySpec) and code.web_url == "https://github.com/acme/api"
    assert isinstance(wiki, ConfluenceSpec) and wiki.spaces == ("ENG",) and wiki.token == "t"
    assert not registry.several_repositories


def test_with_a_file_the_v1_source_variables_are_ignored_with_one_warning(
    tmp_path: Path, make_settings, caplog  # type: ignore[no-untyped-def]
) -> None:
    registry = registry_for(
        tmp_path,
        make_settings,
        '[[repository]]\nname = "api"\npath = "."\n',
        confluence_url="https://w.example.com/wiki",
    )
    assert registry.names() == ["api"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CODE_REPO_PATH, CONFLUENCE_URL ignored" in warnings[0]


def test_ragbot_toml_in_the_working_directory_is_read_by_default(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ragbot.toml").write_text('[[repository]]\nname = "api"\npath = "."\n')
    assert SourceRegistry.from_settings(make_settings()).names() == ["api"]


def test_the_cli_reports_a_bad_file_in_one_line_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "ragbot.toml").write_text('[[repository]]\nname = "api"\n')
    env = {**os.environ, "RAGBOT_DATA_DIR": str(tmp_path / "data"), "CHROMA_DB_DIR": str(tmp_path / "chroma")}
    for args in (["ingest"], ["status"], ["ask", "where?"]):
        done = subprocess.run(
            [sys.executable, "-m", "rag.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            'ragbot: ragbot.toml: [[repository]] #1 "api", key path: set path or url (exactly one of the two)'
        ]
        assert done.stdout == ""
    assert not (tmp_path / "chroma").exists()  # nothing ran


SLACK_KEYS = """
[[repository]]
name = "backend"
path = "checkouts/backend"
experts = ["U0ALICE", "S0PLATFORM"]

[slack.people]
"@Octocat" = "U0OCTO"
"jane@example.com" = "W0JANE"

[[slack.channel]]
id = "C0SUPPORT"
answer = "questions"
private = true
experts = ["S0ONCALL"]

[[slack.channel]]
id = "C0SCOPED"
sources = ["backend"]
"""


def test_support_private_and_expert_keys(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    registry = registry_for(tmp_path, make_settings, SLACK_KEYS)
    support = registry.slack.channel("C0SUPPORT")
    assert support is not None
    assert (support.answer, support.private, support.experts) == ("questions", True, ("S0ONCALL",))
    assert support.sources is None and registry.slack.sources_for("C0SUPPORT") is None  # every source
    scoped = registry.slack.channel("C0SCOPED")
    assert scoped is not None and (scoped.answer, scoped.private) == ("mention", False)
    assert registry.slack.people == {"@octocat": "U0OCTO", "jane@example.com": "W0JANE"}
    backend = registry.get("backend")
    assert backend is not None and backend.experts == ("U0ALICE", "S0PLATFORM")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[slack.channel]]\nid = "C1"\nanswer = "always"\n', "[[slack.channel]] #1, key answer"),
        ('[[slack.channel]]\nid = "C1"\nsources = []\n', "[[slack.channel]] #1, key sources"),
        ('[[slack.channel]]\nid = "C1"\nexperts = ["@here"]\n', "[[slack.channel]] #1, key experts.0"),
        ('[slack.people]\n"@octocat" = "octocat"\n', "[slack], key people.@octocat"),
    ],
)
def test_bad_slack_keys_are_one_line_errors(tmp_path: Path, make_settings, text: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in error_for(tmp_path, make_settings, text)
