"""What a configured source is: the spec classes that the registry builds and the sources read.

The registry (rag.sources.registry) makes these from Settings and the sources file; each source
(rag.sources.repository, rag.sources.confluence) is built from one. Both import this module, so
neither imports the other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from rag.config import Settings


def redact_url(url: str) -> str:
    """A git URL without the credentials it may carry (`https://user:token@host/...`)."""
    return re.sub(r"//[^/@]+@", "//***@", url)


@dataclass(frozen=True)
class RepositorySpec:
    """A code repository: a local checkout (`path`) or a git URL to clone (`url`, `branch`)."""

    name: str
    path: Path | None = None
    url: str | None = None
    branch: str | None = None
    web_url: str | None = None
    interval_minutes: int | None = None
    #: Slack ids (U…/W… people, S… user groups) "Ask an expert" may mention for this source
    experts: tuple[str, ...] = ()
    kind: ClassVar[str] = "code"

    def location(self) -> str:
        if self.url:
            return redact_url(self.url) + (f" ({self.branch})" if self.branch else "")
        return str(self.path)


@dataclass(frozen=True)
class ConfluenceSettingNames:
    """What a Confluence source's messages call its settings, so that an error names the thing
    to fix: the v1 environment variables, or a sources file's table and keys."""

    url: str = "CONFLUENCE_URL"
    spaces: str = "CONFLUENCE_SPACE"
    username: str = "CONFLUENCE_USERNAME"
    password: str = "CONFLUENCE_PASSWORD"  # noqa: S105 - the variable's name, not its value
    token: str = "CONFLUENCE_TOKEN"  # noqa: S105 - likewise
    include_restricted: str = "CONFLUENCE_INCLUDE_RESTRICTED=true"

    @classmethod
    def in_file(cls, file: Path, label: str, env: dict[str, str | None]) -> ConfluenceSettingNames:
        """Names for a `[[confluence]]` table; credentials are environment variables either way
        (`username_env` etc. when set, else the v1 names)."""
        where = f"{file}: {label}"
        return cls(
            url=f"{where}, key url",
            spaces=f"{where}, key spaces",
            username=env.get("username") or cls.username,
            password=env.get("password") or cls.password,
            token=env.get("token") or cls.token,
            include_restricted=f"include_restricted = true in {where}",
        )


@dataclass(frozen=True)
class ConfluenceSpec:
    """One Confluence site and the spaces to index from it."""

    name: str
    url: str
    spaces: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    include_restricted: bool = False
    #: "sync": every page indexed with its readers (rag.sources.confluence_permissions)
    permissions: str = "skip"
    interval_minutes: int | None = None
    names: ConfluenceSettingNames = field(default_factory=ConfluenceSettingNames)
    experts: tuple[str, ...] = ()
    kind: ClassVar[str] = "confluence"

    def location(self) -> str:
        return f"{self.url} ({', '.join(self.spaces) or 'no space'})"


SourceSpec = RepositorySpec | ConfluenceSpec


@dataclass(frozen=True)
class ChannelScope:
    """`[[slack.channel]]`: the sources a channel's questions may search (None: every source),
    whether it answers unaddressed questions (`answer = "questions"`), privately, and its experts."""

    channel_id: str
    sources: tuple[str, ...] | None
    answer: str = "mention"
    private: bool = False
    experts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlackScopes:
    allowed_channels: tuple[str, ...] = ()
    channels: tuple[ChannelScope, ...] = ()
    #: `[slack] people`: a CODEOWNERS owner or an e-mail (lower-cased) → a Slack user or group id
    people: dict[str, str] = field(default_factory=dict)

    def channel(self, channel_id: str) -> ChannelScope | None:
        for scope in self.channels:
            if scope.channel_id == channel_id:
                return scope
        return None

    def sources_for(self, channel_id: str) -> tuple[str, ...] | None:
        """The source names a channel may search, or None for every source."""
        scope = self.channel(channel_id)
        return scope.sources if scope is not None else None


def clone_dir_for(settings: Settings, spec: RepositorySpec) -> Path:
    """Where a source's git URL is cloned: one folder per source under RAGBOT_DATA_DIR/repos."""
    assert spec.url is not None
    # The v1 source `code` keeps its v1 folder (keyed by URL alone), so an upgrade does not re-clone.
    key = spec.url if spec.name == "code" else f"{spec.name}\0{spec.url}"
    slug = hashlib.sha256(key.encode()).hexdigest()[:12]
    return settings.ragbot_data_dir / "repos" / slug
