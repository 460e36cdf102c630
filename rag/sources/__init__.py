"""Sources yield documents: a code repository and Confluence spaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.config import Settings, SourceName
    from rag.sources.base import Source


def build_source(settings: Settings, name: SourceName) -> Source:
    """The configured source called `name` (imports lazily, so unused sources cost nothing)."""
    if name == "code":
        from rag.sources.repository import RepositorySource

        return RepositorySource.from_settings(settings)
    if name == "confluence":
        from rag.sources.confluence import ConfluenceSource

        return ConfluenceSource.from_settings(settings)
    raise ValueError(f"unknown source {name!r}")
