"""The configured sources, by name: one registry built from Settings and the sources file.

Without a file, the v1 variables define at most a repository named `code` (`CODE_REPO_*`) and a
Confluence source named `confluence` (`CONFLUENCE_*`), exactly as before. With a file, its
`[[repository]]` and `[[confluence]]` tables are the sources. Everything that iterates over
sources (ingest, retrieval, status, the scheduler, Slack, the HTTP API) asks this registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError
from rag.sources.file import (
    KINDS,
    check_name,
    entry_label,
    error_line,
    parse_sources_file,
)
from rag.sources.specs import (
    ChannelScope,
    ConfluenceSettingNames,
    ConfluenceSpec,
    RepositorySpec,
    SlackScopes,
    SourceSpec,
)
from rag.sources.weblinks import derive_web_url

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.sources.base import Source

log = logging.getLogger(__name__)

DEFAULT_FILE = Path("ragbot.toml")


class SourceRegistry:
    """The configured sources, in configuration order, with target resolution."""

    def __init__(
        self,
        specs: Sequence[SourceSpec],
        *,
        slack: SlackScopes | None = None,
        file: Path | None = None,
    ) -> None:
        self.specs: tuple[SourceSpec, ...] = tuple(specs)
        self.slack = slack or SlackScopes()
        self.file = file
        self._by_name = {s.name: s for s in self.specs}

    # ----- building ------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        """The sources file when one is configured (or ./ragbot.toml exists), else the v1 variables."""
        path = settings.ragbot_sources_file
        if path is None and DEFAULT_FILE.is_file():
            path = DEFAULT_FILE
        if path is None:
            return cls(_v1_specs(settings))
        return _from_file(path, settings)

    # ----- lookups -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str) -> SourceSpec | None:
        return self._by_name.get(name)

    def of_kind(self, kind: str) -> list[SourceSpec]:
        return [s for s in self.specs if s.kind == kind]

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def several_repositories(self) -> bool:
        """Citations name the repository when more than one is configured."""
        return len(self.of_kind("code")) > 1

    def describe_names(self) -> str:
        return ", ".join(self.names()) or "none"

    def resolve(self, targets: Iterable[str]) -> list[SourceSpec]:
        """Targets (names, kinds, `all`) → sources, each once, in configuration order."""
        chosen: set[str] = set()
        for target in targets:
            target = target.strip()
            if target == "all":
                if not self.specs:
                    raise ConfigError(
                        "no source configured: set RAGBOT_SOURCES_FILE (or create ./ragbot.toml), "
                        "or CODE_REPO_PATH / CODE_REPO_URL and/or CONFLUENCE_URL"
                    )
                chosen.update(self.names())
            elif target in KINDS and target not in self._by_name:
                of_kind = self.of_kind(target)
                if not of_kind:
                    hint = "CONFLUENCE_URL is not set" if target == "confluence" else "no repository"
                    raise ConfigError(f"no {target} source configured ({hint}); {self._choices()}")
                chosen.update(s.name for s in of_kind)
            elif target in self._by_name:
                chosen.add(target)
            else:
                raise ConfigError(f"unknown source {target!r}; {self._choices()}")
        return [s for s in self.specs if s.name in chosen]

    def _choices(self) -> str:
        names = self.describe_names()
        return f"configured sources: {names} (or a kind: code, confluence; or all)"

    def build(self, spec: SourceSpec, settings: Settings) -> Source:
        """The Source implementation for a spec (imports lazily: unused kinds cost nothing)."""
        if isinstance(spec, RepositorySpec):
            from rag.sources.repository import RepositorySource

            return RepositorySource.from_spec(spec, settings)
        from rag.sources.confluence import ConfluenceSource

        return ConfluenceSource.from_spec(spec)


# ----- v1 variables ---------------------------------------------------------------------------


def _v1_specs(settings: Settings) -> list[SourceSpec]:
    specs: list[SourceSpec] = []
    if settings.code_configured:
        specs.append(
            RepositorySpec(
                name="code",
                path=settings.code_repo_path,
                url=settings.code_repo_url,
                branch=settings.code_repo_branch,
                web_url=settings.code_repo_web_url or derive_web_url(settings.code_repo_url),
            )
        )
    if settings.confluence_configured:
        assert settings.confluence_url is not None
        specs.append(
            ConfluenceSpec(
                name="confluence",
                url=settings.confluence_url,
                spaces=tuple(settings.confluence_space),
                username=settings.confluence_username,
                password=settings.confluence_password,
                token=settings.confluence_token,
                include_restricted=settings.confluence_include_restricted,
                permissions=settings.confluence_permissions,
            )
        )
    return specs


# ----- the file -------------------------------------------------------------------------------


def _env_value(name: str, dotenv: dict[str, str | None]) -> str | None:
    value = os.environ.get(name)
    if value is None:
        value = dotenv.get(name)
    return value.strip() if value and value.strip() else None


def _from_file(path: Path, settings: Settings) -> SourceRegistry:
    parsed = parse_sources_file(path)
    base = path.resolve().parent
    dotenv = _read_dotenv()
    specs: list[SourceSpec] = []
    seen: dict[str, str] = {}

    def claim(label: str, name: str) -> None:
        check_name(path, label, name)
        if name in seen:
            raise ConfigError(error_line(path, label, "name", f"{name!r} is already used by {seen[name]}"))
        seen[name] = label

    for i, repo in enumerate(parsed.repository):
        label = entry_label("repository", i, repo.name)
        claim(label, repo.name)
        if bool(repo.path) == bool(repo.url):
            which = "both path and url are set" if repo.path else "set path or url"
            raise ConfigError(error_line(path, label, "path", f"{which} (exactly one of the two)"))
        local = Path(repo.path).expanduser() if repo.path else None
        if local is not None and not local.is_absolute():
            local = base / local  # relative to the file, not to wherever ragbot was started
        specs.append(
            RepositorySpec(
                name=repo.name,
                path=local,
                url=repo.url,
                branch=repo.branch,
                web_url=(repo.web_url.rstrip("/") if repo.web_url else derive_web_url(repo.url)),
                interval_minutes=repo.interval_minutes,
                experts=tuple(repo.experts),
            )
        )
    for i, site in enumerate(parsed.confluence):
        label = entry_label("confluence", i, site.name)
        claim(label, site.name)
        creds: dict[str, str | None] = {}
        env_names: dict[str, str | None] = {}
        for key, default in (
            ("username", settings.confluence_username),
            ("password", settings.confluence_password),
            ("token", settings.confluence_token),
        ):
            env_name = getattr(site, f"{key}_env")
            env_names[key] = env_name
            if env_name is None:
                creds[key] = default  # the v1 variable, when set
                continue
            value = _env_value(env_name, dotenv)
            if value is None:
                raise ConfigError(
                    error_line(path, label, f"{key}_env", f"the environment variable {env_name} is not set")
                )
            creds[key] = value
        specs.append(
            ConfluenceSpec(
                name=site.name,
                url=site.url.rstrip("/"),
                spaces=tuple(s.strip() for s in site.spaces if s.strip()),
                username=creds["username"],
                password=creds["password"],
                token=creds["token"],
                include_restricted=site.include_restricted,
                permissions=site.permissions,
                interval_minutes=site.interval_minutes,
                experts=tuple(site.experts),
                names=ConfluenceSettingNames.in_file(path, label, env_names),
            )
        )

    scopes = []
    for i, channel in enumerate(parsed.slack.channel):
        for name in channel.sources or ():
            if name not in seen:
                raise ConfigError(
                    error_line(
                        path,
                        f"[[slack.channel]] #{i + 1} ({channel.id})",
                        "sources",
                        f"{name!r} names no source (configured: {', '.join(seen) or 'none'})",
                    )
                )
        scopes.append(
            ChannelScope(
                channel.id,
                tuple(channel.sources) if channel.sources is not None else None,
                answer=channel.answer,
                private=channel.private,
                experts=tuple(channel.experts),
            )
        )
    people = {key.strip().lower(): value for key, value in parsed.slack.people.items()}
    slack = SlackScopes(tuple(parsed.slack.allowed_channels), tuple(scopes), people)

    ignored = [
        alias
        for alias, value in (
            ("CODE_REPO_PATH", "code_repo_path" in settings.model_fields_set),
            ("CODE_REPO_URL", settings.code_repo_url),
            ("CONFLUENCE_URL", settings.confluence_url),
            ("CONFLUENCE_SPACE", settings.confluence_space),
        )
        if value
    ]
    if ignored:
        log.warning("%s: sources come from this file; %s ignored", path, ", ".join(ignored))
    return SourceRegistry(specs, slack=slack, file=path)


def _read_dotenv() -> dict[str, str | None]:
    """`.env` in the working directory, as pydantic-settings reads it for Settings."""
    env_file = Path(".env")
    if not env_file.is_file():
        return {}
    from dotenv import dotenv_values

    return dict(dotenv_values(env_file))
