"""What an ingest tells whoever watches it: a terminal bar, periodic log lines, a test.

Per source, from the ingest's own thread and in this order: `started` (listing begins) →
`listed` → `advanced`, many times → `finished` (also after a failure, then maybe without
`listed`). The faces choose the display (rag/ingest_display.py); this room only counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rag.models import IngestReport

log = logging.getLogger(__name__)


class IngestProgress:
    """A watcher of ingests. Every event is a no-op here, so a watcher overrides only what it shows."""

    def started(self, source: str) -> None:
        """The source is being listed (a clone or a Confluence space's page list can take a while)."""

    def listed(self, source: str, *, documents: int, to_process: int) -> None:
        """`documents` listed, of which `to_process` are new or changed and will be loaded."""

    def advanced(self, source: str, *, documents: float, chunks: int) -> None:
        """Documents done so far (fractional while a batch of them is embedded), chunks embedded so far."""

    def finished(self, source: str, report: IngestReport) -> None:
        """The source is done; `report.ok` says whether it succeeded."""


#: The callable form, kept for callers that only want counts: (source, documents_done, to_process).
ProgressCallback = Callable[[str, int, int], None]
Progress = IngestProgress | ProgressCallback


class _Callback(IngestProgress):
    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.totals: dict[str, int] = {}

    def listed(self, source: str, *, documents: int, to_process: int) -> None:
        self.totals[source] = to_process
        self.callback(source, 0, to_process)

    def advanced(self, source: str, *, documents: float, chunks: int) -> None:
        self.callback(source, int(documents), self.totals.get(source, 0))


def as_watcher(progress: Progress | None) -> IngestProgress:
    """Any accepted `progress` argument as a watcher (one that shows nothing for None)."""
    if progress is None:
        return IngestProgress()
    if isinstance(progress, IngestProgress):
        return progress
    return _Callback(progress)


class SourceProgress:
    """One source's counts, told to a watcher as they change.

    A document is done once its chunks are stored (or it failed, or needed no embedding);
    while a flush embeds, each batch moves the counts by its share, so a bar never sits
    still through the slowest step. A watcher that raises is logged once and then left
    out: a display must never cost an ingest.
    """

    def __init__(self, watcher: IngestProgress, source: str) -> None:
        self.watcher = watcher
        self.source = source
        self.documents = 0
        self.chunks = 0
        self._broken = False

    def started(self) -> None:
        self._tell(self.watcher.started, self.source)

    def listed(self, documents: int, to_process: int) -> None:
        self._tell(self.watcher.listed, self.source, documents=documents, to_process=to_process)

    def finished(self, report: IngestReport) -> None:
        self._tell(self.watcher.finished, self.source, report)

    def done(self, documents: int, chunks: int = 0) -> None:
        self.documents += documents
        self.chunks += chunks
        self._tell(self.watcher.advanced, self.source, documents=self.documents, chunks=self.chunks)

    def embedding(self, documents: int, chunks: int) -> Callable[[int], None]:
        """The embedder's per-batch callback while `chunks` chunks of `documents` documents embed."""
        embedded = 0

        def batch(count: int) -> None:
            nonlocal embedded
            embedded += count
            share = documents * min(1.0, embedded / chunks) if chunks else 0.0
            self._tell(
                self.watcher.advanced,
                self.source,
                documents=self.documents + share,
                chunks=self.chunks + min(embedded, chunks),
            )

        return batch

    def _tell(self, event: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return
        try:
            event(*args, **kwargs)
        except Exception:
            self._broken = True
            log.warning("the ingest progress display failed; the ingest goes on without it", exc_info=True)
