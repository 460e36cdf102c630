"""Embeddings from a hosted model through litellm: `LOCAL_EMB_MODEL` / `CODE_EMB_MODEL` =
`litellm:<provider>/<model>` (a company LiteLLM gateway, OpenAI, Mistral, Voyage, Cohere, an
Ollama or text-embeddings-inference server).

- **Batches** bounded by count (`EMBEDDING_BATCH_SIZE`) and by estimated tokens
  (`EMBEDDING_BATCH_TOKENS`), up to `EMBEDDING_CONCURRENCY` requests in flight; each request
  under the retry policy of `rag.indexing.provider` (Retry-After on 429, back-off on 5xx and
  timeouts, `EMBEDDING_TIMEOUT` per request).
- **The vector space** is the model's name, the dimension its first response had, and the input
  type sent with documents: all three are in the collection key, so switching any of them never
  mixes vector spaces. The dimension is learnt by one probe request, before any work
  (`check`): a wrong key, URL or model name is a ModelError naming the variable to fix.
- **The vectors are stored as the provider sent them**, in its order (`index`), without
  renormalising: the collections compare by cosine, which does not need unit length.
- Only what the ingest hands over leaves the process: texts that were redacted before chunking.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from rag.errors import ProviderError
from rag.indexing.embedding import QUERY_CACHE_SIZE, Embedder, Progress
from rag.indexing.provider import PREFIX, Endpoint, RetryCounter, call, litellm_kwargs, probe_failure

log = logging.getLogger(__name__)

#: (document input type, query input type) for providers whose models are trained with one.
INPUT_TYPES: dict[str, tuple[str, str]] = {
    "cohere": ("search_document", "search_query"),
    "voyage": ("document", "query"),
}
PROBE_TEXT = "ragbot embedding probe"


class ProviderEmbedder(Embedder):
    """A hosted embedding model; thread-safe, one per model per process (EmbedderPool)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        concurrency: int = 4,
        batch_size: int = 96,
        batch_tokens: int = 16_000,
        max_tokens: int = 512,
    ) -> None:
        self.endpoint = endpoint
        self.name = PREFIX + endpoint.model
        self.concurrency = max(1, concurrency)
        self.max_batch = max(1, batch_size)
        self.batch_tokens = max(1, batch_tokens)
        #: The chunk size the chunker aims at (estimated tokens): the provider's own limit is
        #: usually far above it, and retrieval wants chunks of this size.
        self.max_tokens = max_tokens
        self.document_type, self.query_type = INPUT_TYPES.get(endpoint.provider, ("", ""))
        self.dimension: int | None = None
        self.retries = RetryCounter()
        self.requests = 0
        self._lock = threading.Lock()
        self._query_cache: OrderedDict[str, list[float]] = OrderedDict()

    # ----- the vector space --------------------------------------------------------------

    def check(self) -> None:
        """One probe request, before any work (every ingest run's preflight): a provider that
        refuses — a key revoked since the last run too — is a ModelError (CLI exit 2,
        `/ragingest`'s reply) naming the variable to fix. Learns the dimension."""
        try:
            vectors = self._request([PROBE_TEXT], self.document_type, what="embedding probe", probe=True)
        except ProviderError as e:
            raise probe_failure(e) from e
        dimension = len(vectors[0])
        with self._lock:
            if self.dimension != dimension:
                if self.dimension is not None:
                    log.warning(
                        "embedding model %s now answers with %d dimensions (was %d): a new collection",
                        self.name,
                        dimension,
                        self.dimension,
                    )
                self.dimension = dimension
                log.info("embedding model %s answers with %d dimensions", self.name, dimension)

    def _known(self) -> None:
        """The dimension, probing once per process when it is not known yet."""
        if self.dimension is None:
            self.check()

    @property
    def variant(self) -> str:
        """What, besides the model, shapes the vectors (chunk fingerprints include it)."""
        self._known()
        return f"provider:{self.dimension}d:{self.document_type or 'plain'}"

    @property
    def key(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.endpoint.model.lower().rsplit("/", 1)[-1]).strip("-")[:24]
        digest = hashlib.sha256(f"{self.name}|{self.variant}".encode()).hexdigest()[:8]
        return f"{slug or 'model'}-{self.dimension}d-{digest}"

    # ----- requests ----------------------------------------------------------------------

    def _request(
        self, texts: Sequence[str], input_type: str, *, what: str, probe: bool = False
    ) -> list[list[float]]:
        import litellm

        kwargs = litellm_kwargs(self.endpoint)
        if input_type:
            kwargs["input_type"] = input_type

        def once() -> Any:
            return litellm.embedding(input=list(texts), **kwargs)

        response = call(once, self.endpoint, what=what, counter=self.retries)
        with self._lock:
            self.requests += 1
        data = sorted(response.data, key=lambda d: _field(d, "index"))
        vectors = [list(_field(d, "embedding")) for d in data]
        if len(vectors) != len(texts):
            raise ProviderError(
                f"{what}: {self.endpoint.where} sent {len(vectors)} vectors for {len(texts)} texts"
            )
        dims = {len(v) for v in vectors}
        if not probe and self.dimension is not None and dims != {self.dimension}:
            raise ProviderError(
                f"{what}: {self.name} changed dimension ({self.dimension} → {sorted(dims)}); "
                "the index keeps the old vectors until the next run re-probes"
            )
        return vectors

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self._known()
        return self._request(texts, self.document_type, what="embedding")

    def batches(self, texts: Sequence[str], batch_tokens: int | None = None) -> list[list[int]]:
        """Indices of `texts` in request-sized groups, in order: at most `max_batch` texts and
        `batch_tokens` estimated tokens each (a single longer text is a request of its own)."""
        limit = batch_tokens or self.batch_tokens
        groups: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for i, text in enumerate(texts):
            cost = estimate_tokens(text)
            if current and (len(current) >= self.max_batch or tokens + cost > limit):
                groups.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += cost
        if current:
            groups.append(current)
        return groups

    def embed_documents(
        self, texts: Sequence[str], *, batch_tokens: int | None = None, progress: Progress | None = None
    ) -> list[list[float]]:
        """Vectors for many texts, `concurrency` requests in flight; the first failure (after its
        retries) cancels the requests not yet sent and is raised."""
        if not texts:
            return []
        self._known()
        groups = self.batches(texts, batch_tokens)
        out: list[list[float] | None] = [None] * len(texts)

        def run(group: list[int]) -> int:
            vectors = self._request([texts[i] for i in group], self.document_type, what="embedding")
            for i, vector in zip(group, vectors, strict=True):
                out[i] = vector
            return len(group)

        if self.concurrency == 1 or len(groups) == 1:
            for group in groups:
                done = run(group)
                if progress:
                    progress(done)
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="ragbot-embed") as pool:
                pending: set[Future[int]] = {pool.submit(run, g) for g in groups}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        error = future.exception()
                        if error is not None:
                            for other in pending:
                                other.cancel()
                            raise error
                        if progress:
                            progress(future.result())
        return [v for v in out if v is not None]

    def embed_query(self, text: str) -> list[float]:
        """The query input type where the provider has one; cached like the local models'."""
        with self._lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        self._known()
        vector = self._request([text], self.query_type, what="query embedding")[0]
        with self._lock:
            self._query_cache[text] = vector
            if len(self._query_cache) > QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return vector


def estimate_tokens(text: str) -> int:
    """An upper-side estimate of a provider's tokens: code runs 3–4 characters a token."""
    return max(1, len(text) // 3)


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)
