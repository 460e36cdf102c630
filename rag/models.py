"""The values that flow through the pipeline: Document → Chunk → Hit → Answer, and IngestReport."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["llm", "extractive"]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Document:
    """One unit a source yields: a file of the repository or a Confluence page."""

    source: str
    doc_id: str  # stable within the source: repo-relative path, or Confluence page id
    title: str
    text: str
    url: str | None = None
    path: str | None = None  # repo-relative path for code; None for pages
    language: str | None = None
    # What decides re-embedding: a content hash for files, the version for pages.
    version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return self.version or content_hash(self.text)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the unit that is embedded, stored and retrieved."""

    source: str
    doc_id: str
    index: int
    text: str  # what is shown and stored as the record's `documents`
    embed_text: str  # header + text: what the embedding model sees
    title: str
    url: str | None
    path: str | None
    start_line: int | None
    end_line: int | None
    language: str | None = None
    symbol: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The configured source's name (`backend`); the ingest sets it. `source` is the kind.
    source_name: str = ""

    @property
    def hash(self) -> str:
        return content_hash(self.embed_text)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score, as listed in `ask --json` sources."""

    source: str
    title: str
    url: str | None
    path: str | None
    start_line: int | None
    end_line: int | None
    score: float
    text: str
    chunk_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    source_name: str = ""
    #: Name the repository in the citation (set when several repositories are configured).
    show_source: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_name": self.source_name or self.source,
            "title": self.title,
            "url": self.url,
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "score": round(self.score, 6),
            "text": self.text,
        }

    def citation(self) -> str:
        """A short human label: `path:10-42` for code (`backend · path:10-42` when several
        repositories are configured), the page title otherwise."""
        if self.path:
            label = self.path
            if self.start_line is not None and self.end_line is not None:
                label = f"{self.path}:{self.start_line}-{self.end_line}"
            if self.show_source and self.source_name:
                label = f"{self.source_name} · {label}"
            return label
        return self.title


@dataclass(frozen=True)
class Answer:
    text: str
    mode: Mode
    hits: list[Hit]
    note: str | None = None  # why the answer is extractive, when it is
    #: False when retrieval judged that no indexed passage answers the question (rag.answering.grounding).
    found: bool = True
    #: What the answering loop did, in order ("Reading app/db.py:10-40"); empty for a single-shot answer.
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "mode": self.mode,
            "found": self.found,
            "sources": [h.to_json() for h in self.hits],
            "steps": list(self.steps),
        }


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation (Slack thread, chat session, API session)."""

    question: str
    answer: str


@dataclass
class IngestReport:
    """The per-source result of one ingest run, as in `ingest --json`."""

    source: str  # the kind: code or confluence
    source_name: str = ""
    ok: bool = True
    documents_seen: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_deleted: int = 0
    documents_unchanged: int = 0
    chunks_embedded: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # why the whole run failed, when ok is False
    warnings: list[str] = field(default_factory=list)
    #: The failure is a configuration problem (bad path, URL, credentials): CLI exit code 2.
    config_error: bool = False
    #: The source is no longer configured: this run deleted its chunks.
    removed: bool = False
    #: Symbol-index records (definitions and one per document) written by this run.
    symbols_indexed: int = 0
    #: Pages whose readers changed (synced Confluence permissions): chunks re-tagged, not re-embedded.
    documents_retagged: int = 0

    def __post_init__(self) -> None:
        self.source_name = self.source_name or self.source

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["config_error"]
        if not data["removed"]:
            del data["removed"]
        data["seconds"] = round(self.seconds, 3)
        if data["error"] is None:
            del data["error"]
        if not data["warnings"]:
            del data["warnings"]
        if not data["documents_retagged"]:
            del data["documents_retagged"]
        return data


@dataclass(frozen=True)
class Reader:
    """Who will see an answer. Confluence pages synced with their permissions
    (`permissions = "sync"`) are searched only where every one of `emails` may read them;
    `public_only` (nobody named, or someone who could not be identified) keeps to the pages
    anyone may read. Sources without synced permissions are searched as before."""

    emails: tuple[str, ...] = ()
    public_only: bool = True
    #: for logs and messages: "U123", "#C456 (12 members)", "api: ada@example.com"
    label: str = ""

    @classmethod
    def public(cls, label: str = "") -> Reader:
        return cls((), True, label)

    @classmethod
    def person(cls, email: str, label: str = "") -> Reader:
        return cls((email.strip().lower(),), False, label or email)

    @classmethod
    def people(cls, emails: Iterable[str], label: str = "") -> Reader:
        """Everyone who will see the answer (a channel's members): what all of them may read."""
        unique = tuple(sorted({e.strip().lower() for e in emails if e.strip()}))
        return cls(unique, not unique, label)
