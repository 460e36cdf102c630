"""Errors raised by the core; the edges (CLI, Slack, HTTP) turn them into short messages."""


class RagError(Exception):
    """Base class: the message is safe to show to a user (no secrets, no traceback)."""


class ConfigError(RagError):
    """A setting a command needs is missing or invalid (CLI exit code 2)."""


class SourceError(RagError):
    """A source could not be listed or reached; the run fails and nothing is deleted."""


class ModelError(RagError):
    """An embedding model could not be loaded."""


class StoreError(RagError):
    """The vector store is unreachable or not writable."""


class IngestBusyError(RagError):
    """Another ingest holds the single-flight lock."""

    def __init__(self, message: str, holder: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class IngestCancelled(RagError):
    """The ingest was interrupted (process shutdown); what was written stays consistent."""


class ProviderError(RagError):
    """A hosted model (embeddings, reranking) failed after the retries its policy allows."""
