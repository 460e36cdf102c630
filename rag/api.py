"""The HTTP API (`ragbot serve`): the original backend's routes, plus /healthz and OpenAPI docs.

- `POST /ingest` `{"targets": ["backend"], "full": false}`: ingest those targets now; the answer
  is the `ingest --json` document (`{"sources": [...]}`; 502 when a source failed as a whole).
- `POST /ingest_confluence`, `POST /ingest_local_code`: ingest every source of that kind now; with
  one such source the body is its report as in `ingest --json` (v1), with several the
  `{"sources": [...]}` document (502 when one failed as a whole, 409 when another ingest runs).
- `POST /query` `{"session_id", "query", "top_k", "source", "as_user"}`: the `ask --json` document; a session
  keeps its recent turns like a Slack thread; `source` is a target (name, kind or `all`).
- `GET /healthz`: no token; index size, last runs and next scheduled run, no secrets.
- `GET /metrics`: Prometheus text (rag/ops/metrics.py), behind the token.

Every route but /healthz and the docs needs `Authorization: Bearer $RAGBOT_API_TOKEN` when the
token is set (it must be, unless the server is bound to loopback).
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures defined
# inside create_app at run time, and their types are local to that function.

import hmac
import ipaddress
import logging
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from rag.answering.memory import ConversationMemory
from rag.config import Settings
from rag.errors import ConfigError, IngestBusyError, RagError
from rag.models import Reader
from rag.ops.metrics import Metrics

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rag.service import RagService

log = logging.getLogger(__name__)

MAX_SESSIONS = 1000
MAX_QUERY_CHARS = 4000
DEFAULT_PORT = 8000


class SessionStore:
    """Conversation memory per session_id, the least recently used dropped beyond `max_sessions`."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, ConversationMemory] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> ConversationMemory:
        with self._lock:
            memory = self._sessions.pop(session_id, None) or ConversationMemory()
            self._sessions[session_id] = memory
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return memory

    def __len__(self) -> int:
        return len(self._sessions)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_serve_settings(settings: Settings, host: str) -> None:
    """Refuse to expose the API beyond this machine without a token (ConfigError, exit 2)."""
    if not settings.ragbot_api_token and not is_loopback(host):
        raise ConfigError(
            f"RAGBOT_API_TOKEN: must be set to serve the HTTP API on a non-loopback host ({host})"
        )


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """`status()` trimmed for an unauthenticated caller: counts and times, no messages or paths."""
    sources = {}
    for name, info in status["sources"].items():
        last = info.get("last_run")
        sources[name] = {
            "kind": info.get("kind"),
            "configured": info["configured"],
            "documents": info["documents"],
            "chunks": info["chunks"],
            "embedding_model": info["embedding_model"],
            "last_run": None
            if last is None
            else {
                key: last.get(key)
                for key in (
                    "started_at",
                    "finished_at",
                    "outcome",
                    "ok",
                    "trigger",
                    "seconds",
                    "documents_seen",
                    "documents_added",
                    "documents_updated",
                    "documents_deleted",
                    "documents_unchanged",
                    "chunks_embedded",
                    "errors",
                )
            },
        }
    scheduler = status.get("scheduler") or {}
    return {
        "status": "ok",
        "sources": sources,
        "ingest_running": bool(status.get("ingest_running")),
        "next_scheduled_run": status.get("next_scheduled_run"),
        "schedule": scheduler.get("schedule"),
        "store": "server" if "server" in str(status.get("store", "")) else "embedded",
    }


def create_app(
    settings: Settings,
    service: "RagService",
    *,
    sessions: SessionStore | None = None,
    metrics: Metrics | None = None,
) -> "FastAPI":
    """The FastAPI application; `service` is shared with whatever else runs in the process."""
    import time
    from typing import Annotated

    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel, Field, field_validator
    from starlette.exceptions import HTTPException as StarletteHTTPException

    sessions = sessions or SessionStore()
    metrics = metrics or Metrics()
    bearer = HTTPBearer(auto_error=False, description="RAGBOT_API_TOKEN")

    class Problem(Exception):
        def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
            self.status = status
            self.detail = detail
            self.headers = headers

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        expected = settings.ragbot_api_token
        if not expected:
            return  # allowed only on loopback: check_serve_settings refused anything else
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    class IngestRequest(BaseModel):
        full: bool = Field(False, description="Re-embed everything, not only what changed.")

    class TargetsRequest(BaseModel):
        targets: list[str] = Field(
            default_factory=lambda: ["all"],
            description="Source names, kinds (code, confluence) or all.",
            max_length=200,
        )
        full: bool = Field(False, description="Re-embed everything, not only what changed.")

    class QueryRequest(BaseModel):
        session_id: str = Field("default", min_length=1, max_length=200)
        query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
        top_k: int = Field(5, ge=1, le=50)
        source: str | None = Field(None, max_length=100, description="A target: source name, kind or all.")
        as_user: str | None = Field(
            None,
            max_length=320,
            pattern=r"^[^@\s]+@[^@\s]+$",
            description="The e-mail of the person the answer is for: Confluence pages with synced "
            "permissions are searched as they may read them (needs RAGBOT_API_TOKEN). Without it, "
            "public pages only.",
        )

        @field_validator("query")
        @classmethod
        def _not_blank(cls, value: str) -> str:
            if not value.strip():
                raise ValueError("the query is empty")
            return value

    app = FastAPI(
        title="ragbot",
        description="Answers questions about your Confluence space and code repository, with cited sources.",
        version="1",
    )

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
            if e.get("type") == "json_invalid":
                loc, msg = ["body"], "invalid JSON"
            errors.append({"loc": loc, "msg": msg, "type": e.get("type")})
        message = "; ".join(
            f"{'.'.join(p for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors
        )
        return JSONResponse({"detail": message or "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "error %s on %s %s",
            error_id,
            request.method,
            request.url.path,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return JSONResponse({"detail": "internal error", "error_id": error_id}, status_code=500)

    status_cache: dict[str, Any] = {}
    status_lock = threading.Lock()

    def run_ingest(targets: list[str], full: bool, *, whole_document: bool = False) -> JSONResponse:
        try:
            reports = service.ingest(targets or ["all"], full=full, trigger="api")
        except IngestBusyError as e:
            raise Problem(409, str(e)) from e
        except ConfigError as e:
            raise Problem(400, str(e)) from e
        except RagError as e:
            raise Problem(503, str(e)) from e
        finally:
            with status_lock:
                status_cache.clear()
        if not reports:  # cancelled by shutdown before it began
            raise Problem(503, "the server is shutting down")
        ok = all(r.ok for r in reports)
        if len(reports) == 1 and not whole_document:
            return JSONResponse(reports[0].to_json(), status_code=200 if ok else 502)  # the v1 shape
        return JSONResponse({"sources": [r.to_json() for r in reports]}, status_code=200 if ok else 502)

    @app.post(
        "/ingest",
        dependencies=[Depends(require_token)],
        summary="Ingest the given targets now (source names, kinds or all)",
        responses={409: {"description": "an ingest is already running"}},
    )
    def ingest(body: TargetsRequest | None = None) -> JSONResponse:
        body = body or TargetsRequest(full=False)
        return run_ingest(body.targets, body.full, whole_document=True)

    # Plain `def` routes: FastAPI runs them in its threadpool, so an ingest or a model call
    # never blocks the event loop (and /healthz answers meanwhile).

    @app.post(
        "/ingest_confluence",
        dependencies=[Depends(require_token)],
        summary="Ingest the Confluence space(s) now",
        responses={409: {"description": "an ingest is already running"}},
    )
    def ingest_confluence(body: IngestRequest | None = None) -> JSONResponse:
        return run_ingest(["confluence"], bool(body and body.full))

    @app.post(
        "/ingest_local_code",
        dependencies=[Depends(require_token)],
        summary="Ingest the code repository now",
        responses={409: {"description": "an ingest is already running"}},
    )
    def ingest_local_code(body: IngestRequest | None = None) -> JSONResponse:
        return run_ingest(["code"], bool(body and body.full))

    @app.post("/query", dependencies=[Depends(require_token)], summary="Answer a question, with sources")
    def query(body: QueryRequest) -> dict[str, Any]:
        if body.as_user and not settings.ragbot_api_token:
            raise Problem(400, "as_user needs RAGBOT_API_TOKEN: without a token anyone could name anyone")
        reader = (
            Reader.person(body.as_user, label=f"api: {body.as_user}") if body.as_user else Reader.public()
        )
        # One person's conversation never continues as another's: the session is theirs alone.
        memory = sessions.get(f"{body.session_id}\0{(body.as_user or '').lower()}")
        started = time.perf_counter()
        try:
            answer = service.ask(
                body.query.strip(),
                top_k=body.top_k,
                source=body.source,
                history=memory.turns(),
                reader=reader,
            )
        except ConfigError as e:
            raise Problem(400, str(e)) from e
        except RagError as e:
            metrics.question("api", "error")
            raise Problem(503, str(e)) from e
        except Exception:
            metrics.question("api", "error")
            raise
        memory.add(body.query.strip(), answer.text)
        metrics.answered("api", answer, seconds=time.perf_counter() - started)
        return answer.to_json()

    @app.get("/metrics", dependencies=[Depends(require_token)], summary="Prometheus metrics")
    def metrics_route() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz", summary="Liveness and index status (no token needed)")
    def healthz() -> JSONResponse:
        # status() walks the index metadata: cache it briefly so frequent probes stay cheap.
        with status_lock:
            cached = status_cache.get("value")
            if cached is None or time.monotonic() - status_cache["at"] > 5:
                try:
                    cached = (200, public_status(service.status()))
                except RagError as e:
                    log.warning("health check: %s", e)
                    cached = (503, {"status": "error", "error": type(e).__name__})
                status_cache.update(value=cached, at=time.monotonic())
        code, data = cached
        return JSONResponse(data, status_code=code)

    return app


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the API with uvicorn until SIGTERM/SIGINT; an ingest in flight is interrupted safely."""
    import uvicorn

    from rag.service import RagService

    check_serve_settings(settings, host)
    metrics = Metrics()
    service = RagService(settings, metrics=metrics)
    app = create_app(settings, service, metrics=metrics)
    # The index gauges in the background: a Chroma server that is slow to answer must not delay startup.
    threading.Thread(target=service.refresh_index_metrics, name="ragbot-gauges", daemon=True).start()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn waits for requests in flight: make a running ingest stop early.
            service.ingestor.cancel()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=True, server_header=False)
    log.info("HTTP API on http://%s:%d (docs at /docs)", host, port)
    Server(config).run()
