"""What the long-running `ragbot run` and `ragbot worker` keep going beside their main work."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from rag.ops.metrics import serve_metrics
from rag.ops.retention import Purger, RetentionJob

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.ops.metrics import Metrics


class Watched(Protocol):
    """What the operations watch: rag.service.RagService is one."""

    metrics: Metrics

    def refresh_index_metrics(self) -> None: ...


@contextmanager
def operations(settings: Settings, service: Watched, purgers: Sequence[Purger] = ()) -> Iterator[None]:
    """The metrics endpoint (when RAGBOT_METRICS_PORT is set) and the retention job over `purgers`."""
    server = serve_metrics(settings, service.metrics)
    if server is not None:  # the index gauges before the first ingest; the store may be slow
        threading.Thread(target=service.refresh_index_metrics, name="ragbot-gauges", daemon=True).start()
    retention = RetentionJob(settings, purgers).start()
    try:
        yield
    finally:
        retention.stop()
        if server is not None:
            server.close()
