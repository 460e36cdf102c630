"""What the long-running `ragbot run` and `ragbot worker` keep going beside their main work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rag.metrics import serve_metrics
from rag.retention import RetentionJob

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.service import RagService


@contextmanager
def operations(settings: Settings, service: RagService) -> Iterator[None]:
    """The metrics endpoint (when RAGBOT_METRICS_PORT is set) and the retention job."""
    server = serve_metrics(settings, service.metrics)
    if server is not None:  # the index gauges before the first ingest; the store may be slow
        threading.Thread(target=service.refresh_index_metrics, name="ragbot-gauges", daemon=True).start()
    retention = RetentionJob(settings).start()
    try:
        yield
    finally:
        retention.stop()
        if server is not None:
            server.close()
