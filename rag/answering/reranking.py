"""An optional hosted reranker (`RERANK_MODEL=litellm:<model>`: Cohere, Voyage, Jina, a TEI or
LiteLLM gateway) that reorders the fused candidates before the prior and the top k.

It never costs an answer: a timeout (`RERANK_TIMEOUT`, the whole call, retries included) or an
error keeps the fused order, logs why once a minute at most, and is counted (`failures`, which the
service's metrics read as `ragbot_rerank_failures_total`).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from rag.config import Settings
from rag.errors import ProviderError
from rag.indexing.provider import PREFIX, Endpoint, call, litellm_kwargs
from rag.models import Hit

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Characters of each candidate sent to the reranker (its own limit is in tokens, often 512–8k).
DOCUMENT_CHARS = 4000
_LOG_EVERY_S = 60.0


class HostedReranker:
    """Reorders hits by a hosted reranker's relevance scores; thread-safe."""

    def __init__(self, endpoint: Endpoint, *, on_failure: Callable[[str], None] | None = None) -> None:
        self.endpoint = endpoint
        self.name = PREFIX + endpoint.model
        #: Called with "timeout" or "error" when the fused order is kept (the metrics).
        self.on_failure = on_failure
        self.failures = {"timeout": 0, "error": 0}
        self._lock = threading.Lock()
        self._logged_at = 0.0

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits best first by the reranker, each scored by its relevance; the hits as given
        when the reranker fails or is too slow."""
        if len(hits) < 2:
            return list(hits)
        import litellm

        kwargs = litellm_kwargs(self.endpoint)
        kwargs.pop("client", None)  # rerank calls go through litellm's own HTTP handler
        kwargs["api_base"] = _rerank_base(self.endpoint.api_base)
        documents = [_document_text(h) for h in hits]
        deadline = time.monotonic() + self.endpoint.timeout

        def once() -> object:
            left = max(0.1, deadline - time.monotonic())
            return litellm.rerank(
                query=query, documents=documents, top_n=len(documents), **{**kwargs, "timeout": left}
            )

        try:
            response = call(lambda: _quiet_first(once), self.endpoint, what="rerank", give_up_at=deadline)
            results = getattr(response, "results", None) or []
            order = [(int(str(_get(r, "index"))), float(str(_get(r, "relevance_score")))) for r in results]
        except (ProviderError, KeyError, TypeError, ValueError) as e:
            self._failed("timeout" if _is_timeout(e) else "error", e)
            return list(hits)
        seen: set[int] = set()
        out: list[Hit] = []
        for index, score in order:
            if 0 <= index < len(hits) and index not in seen:
                seen.add(index)
                out.append(replace(hits[index], score=score))
        if len(out) != len(hits):  # a reply that does not rank every candidate is not trusted
            self._failed("error", ValueError(f"the reranker ranked {len(out)} of {len(hits)} candidates"))
            return list(hits)
        return out

    def _failed(self, kind: str, error: BaseException) -> None:
        with self._lock:
            self.failures[kind] += 1
            now = time.monotonic()
            loud = now - self._logged_at >= _LOG_EVERY_S
            if loud:
                self._logged_at = now
        if loud:
            log.warning("reranker %s failed (%s), the fused order is kept: %s", self.name, kind, error)
        if self.on_failure is not None:
            self.on_failure(kind)


def reranker_for(
    settings: Settings, *, on_failure: Callable[[str], None] | None = None
) -> HostedReranker | None:
    """The reranker RERANK_MODEL names, through the embeddings' endpoint; None when unset."""
    if not settings.rerank_model:
        return None
    base, key, base_variable, key_variable = settings.embedding_endpoint()
    endpoint = Endpoint(
        model=settings.rerank_model[len(PREFIX) :],
        api_base=base,
        api_key=key,
        timeout=settings.rerank_timeout,
        max_retries=1,
        model_variable="RERANK_MODEL",
        base_variable=base_variable,
        key_variable=key_variable,
    )
    return HostedReranker(endpoint, on_failure=on_failure)


_FIRST_CALL = threading.Lock()
_warmed = False


def _quiet_first(fn: Callable[[], T]) -> T:
    """litellm imports its rerank modules on the first call, and pydantic warns (UserWarning,
    "ReadOnly qualifier") while building their types: a user-facing command must not print
    that. The first call runs with UserWarnings ignored; later calls run as they are."""
    global _warmed
    if _warmed:
        return fn()
    with _FIRST_CALL, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return fn()
        finally:
            _warmed = True


def _rerank_base(api_base: str | None) -> str | None:
    """litellm appends the provider's route (`/v1/rerank`, `/v2/rerank`) to the base: a base
    given for embeddings, ending in `/v1`, would be doubled."""
    if api_base and api_base.rstrip("/").endswith("/v1"):
        return api_base.rstrip("/")[: -len("/v1")]
    return api_base


def _document_text(hit: Hit) -> str:
    head = hit.path or hit.title or ""
    return f"{head}\n{hit.text}"[:DOCUMENT_CHARS]


def _get(item: object, name: str) -> object:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _is_timeout(error: BaseException) -> bool:
    import litellm

    return isinstance(error.__cause__ or error, litellm.Timeout)
