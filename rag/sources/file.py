"""The sources file (`RAGBOT_SOURCES_FILE`, TOML): its typed shape and its one-line errors.

```toml
[[repository]]   name, path | url, branch, web_url, interval_minutes, experts
[[confluence]]   name, url, spaces, include_restricted, permissions, username_env, password_env, token_env,
                 interval_minutes, experts
[slack]          allowed_channels, people
[[slack.channel]] id, sources, answer, private, experts
```

Every problem is a ConfigError whose message is one line naming the file, the table and the key.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from rag.errors import ConfigError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
#: Target words that can't also be source names.
RESERVED_NAMES = frozenset({"all", "code", "confluence", "status"})
KINDS = ("code", "confluence")


#: A Slack user (U…, W…) or user group (S…) id, as `experts` and `[slack] people` name them.
SLACK_ID_PATTERN = r"^[UWS][A-Z0-9]{2,}$"
SlackId = Annotated[str, StringConstraints(pattern=SLACK_ID_PATTERN)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepositoryEntry(_Table):
    name: str
    path: str | None = None
    url: str | None = None
    branch: str | None = None
    web_url: str | None = None
    interval_minutes: int | None = Field(None, ge=1)
    experts: list[SlackId] = Field(default_factory=list)


class ConfluenceEntry(_Table):
    name: str
    url: str
    spaces: list[str] = Field(min_length=1)
    include_restricted: bool = False
    permissions: Literal["skip", "sync"] = "skip"
    username_env: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    interval_minutes: int | None = Field(None, ge=1)
    experts: list[SlackId] = Field(default_factory=list)


class SlackChannelEntry(_Table):
    id: str = Field(min_length=1)
    #: absent = every source; listed = only these (an empty list is an error)
    sources: list[str] | None = Field(None, min_length=1)
    answer: Literal["mention", "questions"] = "mention"
    private: bool = False
    experts: list[SlackId] = Field(default_factory=list)


class SlackEntry(_Table):
    allowed_channels: list[str] = Field(default_factory=list)
    channel: list[SlackChannelEntry] = Field(default_factory=list)
    #: a CODEOWNERS owner (`@octocat`, `@acme/ops`) or an e-mail → a Slack user or group id
    people: dict[str, SlackId] = Field(default_factory=dict)


class SourcesFile(_Table):
    repository: list[RepositoryEntry] = Field(default_factory=list)
    confluence: list[ConfluenceEntry] = Field(default_factory=list)
    slack: SlackEntry = Field(default_factory=SlackEntry)


def _table_label(data: dict[str, Any], loc: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """`[[repository]] #2 "backend"` and the rest of the location, from a pydantic error loc."""
    head = str(loc[0])
    rest = list(loc[1:])
    if head in ("repository", "confluence") and rest and isinstance(rest[0], int):
        index = rest.pop(0)
        entries = data.get(head) or []
        entry = entries[index] if index < len(entries) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"[[{head}]] #{index + 1}" + (f' "{name}"' if isinstance(name, str) else "")
        return label, rest
    if head == "slack":
        if rest[:1] == ["channel"] and len(rest) > 1 and isinstance(rest[1], int):
            return f"[[slack.channel]] #{rest[1] + 1}", rest[2:]
        return "[slack]", rest
    return f"[{head}]", rest


def _error_line(file: Path, table: str, key: str | None, message: str) -> str:
    where = f"{table}, key {key}" if key else table
    return f"{file}: {where}: {message}"


def parse_sources_file(path: Path) -> SourcesFile:
    """Read and validate the file's shape (names and references are checked by the registry)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"RAGBOT_SOURCES_FILE: cannot read {path}: {e.strerror or e}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        return SourcesFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first.get("loc") or ("?",))
        table, rest = _table_label(data, loc)
        if first.get("type") == "extra_forbidden":
            if len(loc) == 1:
                raise ConfigError(_error_line(path, f"[{loc[0]}]", None, "unknown table")) from e
            message = "unknown key"
        elif first.get("type") == "missing":
            message = "required key is missing"
        else:
            message = str(first.get("msg", "invalid value"))
        key = ".".join(str(p) for p in rest) or None
        raise ConfigError(_error_line(path, table, key, message)) from e


def check_name(file: Path, table: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            _error_line(file, table, "name", f"{name!r} is not a valid name (use [a-z0-9][a-z0-9_-]{{0,39}})")
        )
    if name in RESERVED_NAMES:
        raise ConfigError(
            _error_line(
                file, table, "name", f"{name!r} is reserved (all, code, confluence, status are targets)"
            )
        )


def entry_label(kind: str, index: int, name: str) -> str:
    return f'[[{kind}]] #{index + 1} "{name}"'


error_line = _error_line
