"""The Source interface: list what exists cheaply, then load only what changed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from rag.models import Document


@dataclass(frozen=True)
class DocumentRef:
    """What a listing tells about a document: its id and a version that changes with it."""

    doc_id: str
    version: str


@dataclass(frozen=True)
class LoadFailure:
    """A document that could not be loaded; it keeps its previously indexed chunks."""

    doc_id: str
    error: str


class Source(Protocol):
    name: str

    def check(self) -> None:
        """Cheap validation before any work starts (no clone, no listing). Raises ConfigError."""

    def prepare(self) -> None:
        """Reach the source (clone/pull, check credentials). Raises ConfigError/SourceError."""

    def scan(self) -> list[DocumentRef]:
        """Every document that exists now. Raises SourceError if the listing is incomplete."""
        ...

    def load(self, refs: Iterable[DocumentRef]) -> Iterator[Document | LoadFailure]:
        """The documents for `refs`; a failure is yielded, never raised, so the run goes on."""
        ...

    def describe(self) -> str:
        """A one-line description for logs and status (no secrets)."""
        ...
