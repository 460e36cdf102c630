"""Calls to a hosted model (embeddings, reranking) through litellm: one retry policy, clear errors.

Every request goes through `call`: a 429 waits what the provider's `Retry-After` says (capped),
a 5xx, a timeout or a dropped connection backs off exponentially with jitter, both bounded by
`max_retries`; anything else (a wrong key, model or URL, a request the provider rejects) fails at
once. litellm's own retries are off (`num_retries=0`), and so are the OpenAI SDK's for the
providers litellm sends through it, so the policy above is the only one.

`describe_failure` turns a provider error into one line that names the variable to fix.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rag.errors import ModelError, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest wait a `Retry-After` may impose; a provider asking for more is retried later anyway.
MAX_RETRY_AFTER_S = 60.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0

#: litellm providers whose embedding calls go through the OpenAI SDK, which retries by itself
#: unless handed a client that does not.
_OPENAI_SDK_PROVIDERS = ("openai", "together_ai", "nvidia_nim", "litellm_proxy")

PREFIX = "litellm:"


def is_provider_model(model: str | None) -> bool:
    """Whether a model setting names a hosted model (`litellm:<provider>/<model>`)."""
    return bool(model) and str(model).startswith(PREFIX)


@dataclass(frozen=True)
class Endpoint:
    """Where and how a hosted model is called."""

    model: str  # litellm's model name, e.g. "mistral/codestral-embed"
    api_base: str | None
    api_key: str | None
    timeout: float
    max_retries: int
    #: The settings a user fixes when this endpoint is wrong (named in error messages).
    model_variable: str = "CODE_EMB_MODEL"
    base_variable: str = "EMBEDDING_API_BASE"
    key_variable: str = "EMBEDDING_API_KEY"

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0] if "/" in self.model else "openai"

    @property
    def where(self) -> str:
        return self.api_base or f"{self.provider}'s default endpoint"


class _Clients:
    """OpenAI SDK clients with retries off, one per (base, key, timeout), shared by threads."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str | None, str | None, float], Any] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: Endpoint) -> Any:
        key = (endpoint.api_base, endpoint.api_key, endpoint.timeout)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = _no_retry_client(endpoint)
            return self._clients[key]


def _no_retry_client(endpoint: Endpoint) -> Any:
    import openai

    class NoRetryOpenAI(openai.OpenAI):
        """litellm sets `client.max_retries` to 2 when asked for 0; this client keeps 0."""

        @property
        def max_retries(self) -> int:
            return 0

        @max_retries.setter
        def max_retries(self, value: int) -> None:
            pass

    return NoRetryOpenAI(api_key=endpoint.api_key, base_url=endpoint.api_base, timeout=endpoint.timeout)


_CLIENTS = _Clients()


def litellm_kwargs(endpoint: Endpoint) -> dict[str, Any]:
    """What every litellm call to this endpoint carries."""
    kwargs: dict[str, Any] = {
        "model": endpoint.model,
        "api_base": endpoint.api_base,
        "api_key": endpoint.api_key,
        "timeout": endpoint.timeout,
        "num_retries": 0,
    }
    if endpoint.provider in _OPENAI_SDK_PROVIDERS and endpoint.api_base and endpoint.api_key:
        # With no base or key given, litellm finds the provider's own (OPENAI_API_KEY, …) and
        # the SDK's two quick retries come on top of ours.
        kwargs["client"] = _CLIENTS.get(endpoint)
    return kwargs


def _retry_after(error: BaseException) -> float | None:
    """The provider's `Retry-After` (seconds or an HTTP date), if it sent one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = None
    for source in (
        headers,
        getattr(error, "litellm_response_headers", None) or {},
        getattr(error, "headers", None) or {},
    ):
        try:
            value = source.get("retry-after") or source.get("Retry-After")
        except AttributeError:
            continue
        if value:
            break
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(error: BaseException) -> bool:
    """429, 5xx, timeouts and connection failures are worth another try; the rest are not."""
    import litellm

    if isinstance(error, litellm.RateLimitError | litellm.Timeout):
        return True
    if isinstance(error, litellm.AuthenticationError | litellm.NotFoundError | litellm.BadRequestError):
        return False
    if isinstance(error, litellm.PermissionDeniedError):
        return False
    if isinstance(
        error, litellm.APIConnectionError | litellm.ServiceUnavailableError | litellm.InternalServerError
    ):
        return True
    status = _status(error)
    return status is not None and (status == 408 or status >= 500)


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter: 0.5 s, 1 s, 2 s … at most 8 s, each × 0.5–1."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2**attempt))
    return base * (0.5 + 0.5 * (rng or random).random())


class RetryCounter:
    """How many retries (by cause) a component made; read by the metrics."""

    def __init__(self) -> None:
        self.rate_limited = 0
        self.failed = 0
        self._lock = threading.Lock()

    def count(self, *, rate_limited: bool) -> None:
        with self._lock:
            if rate_limited:
                self.rate_limited += 1
            else:
                self.failed += 1


def call(
    fn: Callable[[], T],
    endpoint: Endpoint,
    *,
    what: str,
    counter: RetryCounter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    give_up_at: float | None = None,
) -> T:
    """`fn()` under the retry policy. Raises ProviderError when it gives up (after
    `endpoint.max_retries` retries, on a permanent error, or when the next wait would pass
    `give_up_at`, a `time.monotonic()` deadline)."""
    import litellm

    attempt = 0
    while True:
        try:
            return fn()
        except Exception as error:  # litellm raises its own, the OpenAI SDK's and httpx's errors
            if not is_transient(error) or attempt >= endpoint.max_retries:
                raise ProviderError(describe_failure(error, endpoint, what=what)) from error
            rate_limited = isinstance(error, litellm.RateLimitError) or _status(error) == 429
            wait = _retry_after(error) if rate_limited else None
            wait = min(MAX_RETRY_AFTER_S, wait) if wait is not None else backoff_s(attempt)
            if give_up_at is not None and time.monotonic() + wait > give_up_at:
                raise ProviderError(describe_failure(error, endpoint, what=what)) from error
            if counter is not None:
                counter.count(rate_limited=rate_limited)
            log.debug("%s: %s; retry %d in %.1f s", what, _first_line(error), attempt + 1, wait)
            sleep(wait)
            attempt += 1


def describe_failure(error: BaseException, endpoint: Endpoint, *, what: str) -> str:
    """One line for a person: what failed, where, and which variable to check."""
    import litellm

    detail = _first_line(error)
    where = endpoint.where
    if isinstance(error, litellm.AuthenticationError | litellm.PermissionDeniedError) or _status(error) in (
        401,
        403,
    ):
        return f"{what}: {where} refused the API key ({detail}); check {endpoint.key_variable}"
    model = repr(endpoint.model)
    if isinstance(error, litellm.NotFoundError) or _status(error) == 404:
        if "model" in detail.lower():
            return f"{what}: {where} does not serve {model} ({detail}); check {endpoint.model_variable}"
        return f"{what}: nothing answers at {where} ({detail}); check {endpoint.base_variable}"
    if "connection error" in detail.lower() or "connect" in type(error.__cause__ or error).__name__.lower():
        return f"{what}: cannot reach {where} ({detail}); check {endpoint.base_variable}"
    if isinstance(error, litellm.BadRequestError):
        return f"{what}: {where} rejected the request for {model} ({detail}); check {endpoint.model_variable}"
    if isinstance(error, litellm.RateLimitError):
        return f"{what}: {where} kept answering 429 (rate limited) after {endpoint.max_retries} retries"
    if isinstance(error, litellm.Timeout):
        return f"{what}: {where} did not answer within {endpoint.timeout:g} s, {endpoint.max_retries} retries"
    return f"{what}: {where} failed ({detail})"


def probe_failure(error: ProviderError) -> ModelError:
    """A failed probe is a configuration problem (exit 2), worded like the failure."""
    return ModelError(str(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    # litellm prefixes "litellm.NotFoundError: NotFoundError: OpenAIException - Error code: 404 - ..."
    for marker in (" - Error code: ", "Exception - "):
        if marker in line:
            line = line.rsplit(marker, 1)[-1]
    return line[:300]
