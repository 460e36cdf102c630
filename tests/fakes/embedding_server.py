"""An embedding and rerank provider on 127.0.0.1 that behaves like a hosted one, for litellm to call.

- `POST /v1/embeddings` in OpenAI's shape: `{"model", "input": [str, ...], "encoding_format"?,
  "input_type"?}` → `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
  "model", "usage": {"prompt_tokens", "total_tokens"}}`; `encoding_format: "base64"` (what the
  OpenAI SDK asks for by default) returns each vector as base64 of little-endian float32.
- `POST /v1/rerank` in Cohere's v1 shape: `{"model", "query", "documents", "top_n"?}` →
  `{"id", "results": [{"index", "relevance_score"}], "meta"}`, best first.
- Errors as OpenAI sends them (`{"error": {"message", "type", "param", "code"}}`): 401
  `invalid_api_key` for a wrong bearer key, 404 `model_not_found` for a model it does not serve,
  400 past `max_inputs` texts in one request, 429 `rate_limit_exceeded` with `Retry-After` past
  `rate_limit` requests per second, and scripted failures (`fail_next`: a status, or "hang" to
  answer after `hang_s`).
- Latency like a real server: `latency_s` per request plus `per_text_s` per input text.

The vectors are deterministic and deliberately *not* unit length (a bag of hashed words, scaled by
the text's length), so a test can tell whether the client stored exactly what it received.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def fake_vector(text: str, dims: int) -> list[float]:
    """Each word adds ±1 to a hashed dimension; the vector's length grows with the text's (not
    normalised). Rounded through float32, as a server that answers in base64 would send it."""
    vec = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dims] += 1.0 if (h >> 32) & 1 else -1.0
    if not any(vec):
        vec[0] = 1.0
    norm = math.sqrt(sum(x * x for x in vec))
    scale = (1.0 + len(text) % 7) / norm
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x * scale for x in vec))))


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@dataclass
class FakeEmbeddingServer:
    """Records every request (`requests`: path, body, headers); its fields set its behaviour."""

    #: model name → dimension; a request for any other model gets 404 `model_not_found`.
    models: dict[str, int] = field(default_factory=lambda: {"fake-embed": 64, "fake-rerank": 0})
    api_key: str = "sk-fake"
    latency_s: float = 0.0
    per_text_s: float = 0.0
    max_inputs: int = 128
    #: Requests per second past which 429 is answered (0: no limit), with `Retry-After: retry_after`.
    rate_limit: float = 0.0
    retry_after: str = "1"
    #: Scripted failures for the next requests, in order: an HTTP status (500, 503, 429 …) or "hang".
    fail_next: list[int | str] = field(default_factory=list)
    hang_s: float = 5.0
    #: After this many successful embedding requests, every embedding request answers 500 (0: never).
    fail_after: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._window: list[float] = []
        self.served = 0

    @property
    def url(self) -> str:
        """The base URL a client is given (OpenAI style, ending in /v1)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def inputs(self) -> list[str]:
        """Every text received in embedding requests, in arrival order."""
        return [
            t for r in self.requests if r["path"].endswith("embeddings") for t in r["body"].get("input", [])
        ]

    def embedding_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("embeddings")]

    def _admit(self) -> tuple[int | str | None, bool]:
        """(scripted failure or None, rate limited?) for the request arriving now."""
        with self._lock:
            if self.fail_next:
                return self.fail_next.pop(0), False
            if self.rate_limit:
                now = time.monotonic()
                self._window = [t for t in self._window if now - t < 1.0]
                if len(self._window) >= self.rate_limit:
                    return None, True
                self._window.append(now)
        return None, False

    def start(self) -> FakeEmbeddingServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle's algorithm on, every request
            # after the first on a kept-alive connection would wait ~40 ms for a delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._error(400, "We could not parse the JSON body of your request.", "invalid_json")
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append({"path": self.path, "body": body, "headers": headers})
                auth = headers.get("authorization", "")
                if auth != f"Bearer {fake.api_key}":
                    shown = auth.removeprefix("Bearer ")[-4:]
                    self._error(
                        401,
                        f"Incorrect API key provided: ****{shown}.",
                        "invalid_api_key",
                        status_type="invalid_request_error",
                    )
                    return
                path = self.path.rstrip("/")
                if not (path.endswith("/embeddings") or path.endswith("/rerank")):
                    self._error(404, f"Invalid URL (POST {self.path})", None)
                    return
                model = str(body.get("model", ""))
                if model not in fake.models:
                    self._error(
                        404,
                        f"The model `{model}` does not exist or you do not have access to it.",
                        "model_not_found",
                    )
                    return
                failure, limited = fake._admit()
                if limited or failure == 429:
                    self._error(
                        429,
                        f"Rate limit reached for {model} on requests per min (RPM). Please try again later.",
                        "rate_limit_exceeded",
                        status_type="requests",
                        extra_headers={"Retry-After": fake.retry_after},
                    )
                    return
                if failure == "hang":
                    time.sleep(fake.hang_s)
                elif isinstance(failure, int):
                    self._error(
                        failure,
                        "The server had an error while processing your request.",
                        None,
                        status_type="server_error",
                    )
                    return
                if path.endswith("/rerank"):
                    self._rerank(body)
                else:
                    self._embed(body, model)

            def _embed(self, body: dict[str, Any], model: str) -> None:
                texts = body.get("input")
                if isinstance(texts, str):
                    texts = [texts]
                if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                    self._error(400, "'$.input' is invalid. Please check the API reference.", None)
                    return
                if len(texts) > fake.max_inputs:
                    self._error(400, f"Too many inputs. The max number of inputs is {fake.max_inputs}.", None)
                    return
                with fake._lock:
                    if fake.fail_after and fake.served >= fake.fail_after:
                        failing = True
                    else:
                        failing = False
                        fake.served += 1
                if failing:
                    self._error(
                        500,
                        "The server had an error while processing your request.",
                        None,
                        status_type="server_error",
                    )
                    return
                time.sleep(fake.latency_s + fake.per_text_s * len(texts))
                dims = fake.models[model]
                as_base64 = body.get("encoding_format") == "base64"
                data = []
                for i, text in enumerate(texts):
                    vector = fake_vector(text, dims)
                    value: Any = (
                        base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
                    )
                    data.append({"object": "embedding", "index": i, "embedding": value})
                tokens = sum(len(re.findall(r"\w+|[^\w\s]", t)) for t in texts)
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": model,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    },
                )

            def _rerank(self, body: dict[str, Any]) -> None:
                query = _words(str(body.get("query", "")))
                documents = body.get("documents") or []
                time.sleep(fake.latency_s + fake.per_text_s * len(documents))
                scored = []
                for i, doc in enumerate(documents):
                    text = doc if isinstance(doc, str) else str(doc.get("text", ""))
                    words = _words(text)
                    scored.append((len(query & words) / (1 + len(words)) ** 0.5, i))
                scored.sort(key=lambda s: (-s[0], s[1]))
                top_n = body.get("top_n") or len(scored)
                results = [{"index": i, "relevance_score": round(score, 6)} for score, i in scored[:top_n]]
                self._json(
                    200,
                    {
                        "id": "rerank-fake",
                        "results": results,
                        "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}},
                    },
                )

            def _error(
                self,
                status: int,
                message: str,
                code: str | None,
                *,
                status_type: str = "invalid_request_error",
                extra_headers: dict[str, str] | None = None,
            ) -> None:
                payload = {"error": {"message": message, "type": status_type, "param": None, "code": code}}
                self._json(status, payload, extra_headers)

            def _json(
                self, status: int, data: dict[str, Any], extra_headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (extra_headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
