"""Prometheus metrics: one `Metrics` object per process, built by the entry point and passed down.

Each object owns its own CollectorRegistry (nothing is registered globally, so tests and the
benchmark can run several side by side). A disabled object (`Metrics(enabled=False)`, what
`ragbot run`/`worker` use while RAGBOT_METRICS_PORT is unset) records nothing.

Label values are bounded: surfaces, outcomes, vote values, LLM error kinds and source names —
never a user, a channel or a question. Every metric is described in docs/deployment.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.models import Answer, IngestReport

log = logging.getLogger(__name__)

SURFACES = ("slack", "api", "cli")
OUTCOMES = ("answered", "not_found", "refused", "rate_limited", "error")
RERANK_FAILURE_KINDS = ("timeout", "error")
LLM_ERROR_KINDS = ("timeout", "rate_limited", "connection", "auth", "server", "request", "empty", "other")

# Seconds: answers stream for several seconds; retrieval is tens of milliseconds.
ANSWER_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
INGEST_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)

# litellm exception class names (Answer.note "LLM failed: <class>") → a bounded kind.
_LLM_KIND_BY_NAME = (
    ("Timeout", "timeout"),
    ("RateLimit", "rate_limited"),
    ("Connection", "connection"),
    ("Authentication", "auth"),
    ("PermissionDenied", "auth"),
    ("InternalServer", "server"),
    ("ServiceUnavailable", "server"),
    ("BadGateway", "server"),
    ("BadRequest", "request"),
    ("NotFound", "request"),
    ("ContextWindow", "request"),
    ("UnprocessableEntity", "request"),
)


ESCALATION_OUTCOMES = ("mentioned", "nobody")


def answer_found(answer: Answer) -> bool:
    """Whether the index had the answer: the grounding judgement (`Answer.found`), and some hit."""
    return bool(answer.found) and bool(answer.hits)


def llm_error_kind(note: str | None) -> str | None:
    """The kind of LLM failure behind an extractive answer's note, or None when the LLM did not fail."""
    if not note:
        return None
    if note == "empty LLM answer":
        return "empty"
    if not note.startswith("LLM failed"):
        return None
    return next((kind for fragment, kind in _LLM_KIND_BY_NAME if fragment in note), "other")


class Metrics:
    """The process's counters, histograms and gauges, and their Prometheus text exposition."""

    def __init__(self, *, enabled: bool = True, process: bool = True) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        if not enabled:
            return
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.questions = Counter(
            "ragbot_questions", "Questions by surface and outcome.", ["surface", "outcome"], registry=r
        )
        self.answer_seconds = Histogram(
            "ragbot_answer_seconds",
            "Question received → final answer shown (Slack: the final message; API: the response).",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.first_text_seconds = Histogram(
            "ragbot_first_text_seconds",
            "Slack: question received → first visible answer text (first streamed update, or the answer).",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.retrieval_seconds = Histogram(
            "ragbot_retrieval_seconds", "Hybrid retrieval of one question.", buckets=FAST_BUCKETS, registry=r
        )
        self.llm_seconds = Histogram(
            "ragbot_llm_seconds",
            "One LLM answer, from the request to the last streamed token (or the failure).",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "ragbot_llm_errors",
            "LLM calls that failed (the answer fell back to quotes).",
            ["kind"],
            registry=r,
        )
        self.ingest_runs = Counter(
            "ragbot_ingest_runs", "Ingest runs by source and outcome.", ["source_name", "outcome"], registry=r
        )
        self.ingest_seconds = Histogram(
            "ragbot_ingest_seconds",
            "Duration of one source's ingest run.",
            ["source_name"],
            buckets=INGEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.chunks_embedded = Counter(
            "ragbot_chunks_embedded", "Chunks embedded by ingest runs.", ["source_name"], registry=r
        )
        self.index_chunks = Gauge(
            "ragbot_index_chunks", "Chunks in the index per source.", ["source_name"], registry=r
        )
        self.index_documents = Gauge(
            "ragbot_index_documents", "Documents in the index per source.", ["source_name"], registry=r
        )
        self.slack_connected = Gauge(
            "ragbot_slack_connected", "1 while the Socket Mode connection is up.", registry=r
        )
        self.slack_reconnects = Counter(
            "ragbot_slack_reconnects", "Socket Mode connections re-established after a loss.", registry=r
        )
        self.feedback_votes = Counter(
            "ragbot_feedback_votes", "👍/👎 votes on answers.", ["vote"], registry=r
        )
        self.rerank_failures = Counter(
            "ragbot_rerank_failures",
            "Hosted reranker calls that failed or ran past RERANK_TIMEOUT (the fused order was kept).",
            ["kind"],
            registry=r,
        )
        self.escalations = Counter(
            "ragbot_escalations",
            "Slack 'Ask an expert' clicks: owners mentioned in the thread, or nobody could be found.",
            ["outcome"],
            registry=r,
        )
        # Every combination of the bounded labels exists from the start, so a rate() over a
        # counter that has not moved yet is 0, not "no data".
        for surface in SURFACES:
            for outcome in OUTCOMES:
                self.questions.labels(surface, outcome)
        for kind in LLM_ERROR_KINDS:
            self.llm_errors.labels(kind)
        for kind in RERANK_FAILURE_KINDS:
            self.rerank_failures.labels(kind)
        for vote in ("up", "down"):
            self.feedback_votes.labels(vote)
        for outcome in ESCALATION_OUTCOMES:
            self.escalations.labels(outcome)

    # ----- recording ---------------------------------------------------------------------

    def question(self, surface: str, outcome: str, *, seconds: float | None = None) -> None:
        """One question finished on `surface`; `seconds` from receipt to the answer shown."""
        if not self.enabled:
            return
        self.questions.labels(surface, outcome).inc()
        if seconds is not None:
            self.answer_seconds.observe(seconds)

    def answered(self, surface: str, answer: Answer, *, seconds: float) -> None:
        self.question(surface, "answered" if answer_found(answer) else "not_found", seconds=seconds)

    def first_text(self, seconds: float) -> None:
        if self.enabled:
            self.first_text_seconds.observe(seconds)

    def asked(self, *, retrieval_seconds: float, llm_seconds: float | None, answer: Answer) -> None:
        """Retrieval and LLM timings of one `RagService.ask`, and the LLM's failure if any."""
        if not self.enabled:
            return
        self.retrieval_seconds.observe(retrieval_seconds)
        if llm_seconds is not None:
            self.llm_seconds.observe(llm_seconds)
            kind = llm_error_kind(answer.note)
            if kind:
                self.llm_errors.labels(kind).inc()

    def ingested(self, report: IngestReport) -> None:
        if not self.enabled:
            return
        # TODO(issue 10): report.source_name once IngestReport has it.
        name = report.source_name
        outcome = "failed" if not report.ok else ("partial" if report.errors else "ok")
        self.ingest_runs.labels(name, outcome).inc()
        self.ingest_seconds.labels(name).observe(report.seconds)
        self.chunks_embedded.labels(name).inc(report.chunks_embedded)

    def index_size(self, source_name: str, *, documents: int, chunks: int) -> None:
        if self.enabled:
            self.index_documents.labels(source_name).set(documents)
            self.index_chunks.labels(source_name).set(chunks)

    def slack_connection(self, connected: bool, *, reconnected: bool = False) -> None:
        if not self.enabled:
            return
        self.slack_connected.set(1 if connected else 0)
        if reconnected:
            self.slack_reconnects.inc()

    def rerank_failed(self, kind: str) -> None:
        """The hosted reranker failed (`error`) or was too slow (`timeout`)."""
        if self.enabled and kind in RERANK_FAILURE_KINDS:
            self.rerank_failures.labels(kind).inc()

    def escalation(self, outcome: str) -> None:
        """An "Ask an expert" click: `mentioned` (owners pinged) or `nobody` (none could be found)."""
        if self.enabled and outcome in ESCALATION_OUTCOMES:
            self.escalations.labels(outcome).inc()

    def vote(self, vote: str) -> None:
        if self.enabled and vote in ("up", "down"):
            self.feedback_votes.labels(vote).inc()

    # ----- exposition --------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsServer:
    """`/metrics` on RAGBOT_METRICS_HOST:RAGBOT_METRICS_PORT for `ragbot run` and `ragbot worker`."""

    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def metrics_for(settings: Settings) -> Metrics:
    """Recording on when the metrics will be served (RAGBOT_METRICS_PORT set), off otherwise."""
    return Metrics(enabled=settings.ragbot_metrics_port is not None)


def serve_metrics(settings: Settings, metrics: Metrics) -> MetricsServer | None:
    """Start the metrics endpoint in a background thread; None when RAGBOT_METRICS_PORT is unset."""
    from prometheus_client import start_http_server

    port = settings.ragbot_metrics_port
    if port is None or not metrics.enabled:
        return None
    try:
        server, thread = start_http_server(port, addr=settings.ragbot_metrics_host, registry=metrics.registry)
    except OSError as e:
        from rag.errors import ConfigError

        raise ConfigError(
            f"RAGBOT_METRICS_PORT: cannot listen on {settings.ragbot_metrics_host}:{port}: {e}"
        ) from e
    log.info("Prometheus metrics on http://%s:%d/metrics", settings.ragbot_metrics_host, port)
    return MetricsServer(server, thread)
