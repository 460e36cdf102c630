"""The HTTP API through a real HTTP client against `ragbot serve` on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.indexing.locking import IngestLock
from rag.models import Answer
from tests.conftest import CONTRACT_VARS, git, write_files
from tests.fakes.llm_server import FakeLLM

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-api-token-5d1e0c"
LLM_KEY = "fake-llm-key-0a9b8c7d"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ragbot_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, llm: FakeLLM) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("api")
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(
        repo,
        {
            "greet.py": 'def greet(name):\n    """Say hello to someone."""\n    return f\'hello {name}\'\n',
            "docs/deploy.md": "# Deploying\n\nRun `make deploy` to ship the service to production.\n",
        },
    )
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
    data_dir = base / "data"
    port = free_port()
    env = ragbot_env(
        CODE_REPO_PATH=str(repo),
        CHROMA_DB_DIR=str(base / "chroma"),
        RAGBOT_DATA_DIR=str(data_dir),
        RAGBOT_API_TOKEN=TOKEN,
        LITELLM_MODEL="openai/fake-model",
        LITELLM_API_BASE=llm.url,
        LITELLM_API_KEY=LLM_KEY,
    )
    log_path = base / "server.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=base,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"ragbot serve did not start:\n{log_path.read_text()}")
        time.sleep(0.2)
    client = httpx.Client(base_url=url, timeout=120)
    try:
        yield {"client": client, "data_dir": data_dir, "log": log_path, "proc": proc}
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def ingested(api: dict[str, Any]) -> httpx.Response:
    return api["client"].post("/ingest_local_code", headers=auth())


def test_ingest_local_code_returns_the_source_report(ingested: httpx.Response) -> None:
    assert ingested.status_code == 200, ingested.text
    report = ingested.json()
    assert report["source"] == "code"
    assert report["ok"] is True
    assert report["documents_seen"] == 2
    assert report["documents_added"] == 2
    assert report["chunks_embedded"] >= 2
    assert report["errors"] == []
    for key in ("documents_updated", "documents_deleted", "documents_unchanged", "seconds"):
        assert key in report


def test_healthz_needs_no_token_and_shows_the_index(api: dict[str, Any], ingested: httpx.Response) -> None:
    response = httpx.get(f"{api['client'].base_url}/healthz", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    code = body["sources"]["code"]
    assert code["documents"] == 2 and code["chunks"] >= 2
    assert code["last_run"]["outcome"] == "ok" and code["last_run"]["trigger"] == "api"
    assert "next_scheduled_run" in body
    for secret in (TOKEN, LLM_KEY, str(api["data_dir"])):
        assert secret not in response.text


def test_ingest_targets_returns_the_ingest_json_document(api: dict[str, Any], ingested: httpx.Response) -> None:
    response = api["client"].post("/ingest", json={"targets": ["code"], "full": False}, headers=auth())
    assert response.status_code == 200, response.text
    (report,) = response.json()["sources"]
    assert report["source"] == "code" and report["source_name"] == "code"
    assert report["chunks_embedded"] == 0 and report["documents_unchanged"] == 2
    unknown = api["client"].post("/ingest", json={"targets": ["nope"]}, headers=auth())
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == (
        "unknown source 'nope'; configured sources: code (or a kind: code, confluence; or all)"
    )


def test_query_takes_a_source_target(api: dict[str, Any], ingested: httpx.Response) -> None:
    client: httpx.Client = api["client"]
    response = client.post("/query", json={"query": "what does greet do?", "source": "code"}, headers=auth())
    assert response.status_code == 200, response.text
    assert {s["source_name"] for s in response.json()["sources"]} == {"code"}
    response = client.post("/query", json={"query": "what does greet do?", "source": "wiki"}, headers=auth())
    assert response.status_code == 400 and "unknown source 'wiki'" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/query", "/ingest", "/ingest_local_code", "/ingest_confluence"])
def test_routes_require_the_bearer_token(api: dict[str, Any], path: str) -> None:
    client: httpx.Client = api["client"]
    body = {"query": "what does greet do?"}
    missing = client.post(path, json=body)
    wrong = client.post(path, json=body, headers=auth("not-the-token"))
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "missing or wrong bearer token"


def test_ingest_while_another_runs_is_409(api: dict[str, Any], ingested: httpx.Response) -> None:
    with IngestLock(api["data_dir"], holder="slack"):
        response = api["client"].post("/ingest_local_code", headers=auth())
    assert response.status_code == 409
    assert "already running" in response.json()["detail"]
    assert "slack" in response.json()["detail"]


def test_unconfigured_source_is_400_naming_the_setting(api: dict[str, Any]) -> None:
    response = api["client"].post("/ingest_confluence", headers=auth())
    assert response.status_code == 400
    assert "CONFLUENCE_URL is not set" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "hi", "top_k": 0}, "top_k"),
        ({"query": "hi", "top_k": "many"}, "top_k"),
        ({"session_id": "s"}, "query"),
    ],
)
def test_invalid_query_is_422_with_a_message(api: dict[str, Any], body: dict[str, Any], field: str) -> None:
    response = api["client"].post("/query", json=body, headers=auth())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and field in detail


def test_malformed_json_is_422(api: dict[str, Any]) -> None:
    response = api["client"].post(
        "/query", content=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "body: invalid JSON"
    assert "Traceback" not in response.text


def test_query_answers_like_ask_json_and_sessions_keep_memory(
    api: dict[str, Any], ingested: httpx.Response, llm: FakeLLM
) -> None:
    client: httpx.Client = api["client"]
    first = client.post(
        "/query", json={"session_id": "alpha", "query": "What does greet do?", "top_k": 3}, headers=auth()
    )
    assert first.status_code == 200, first.text
    answer = first.json()
    assert set(answer) == {"answer", "mode", "found", "sources", "steps"}
    assert answer["steps"] == []  # no model: no answering loop
    assert answer["mode"] == "llm"
    assert answer["answer"].startswith("Answer to: What does greet do?")
    assert 1 <= len(answer["sources"]) <= 3
    assert {"source", "title", "url", "path", "start_line", "end_line", "score", "text"} <= set(
        answer["sources"][0]
    )
    assert any(s["path"] == "greet.py" for s in answer["sources"])

    follow_up = client.post(
        "/query", json={"session_id": "alpha", "query": "and who calls it?"}, headers=auth()
    )
    assert follow_up.status_code == 200
    sent = json.dumps(llm.requests[-1]["body"]["messages"])
    assert "What does greet do?" in sent  # the earlier turn went to the model
    assert answer["answer"] in sent

    other = client.post("/query", json={"session_id": "beta", "query": "How do I deploy?"}, headers=auth())
    assert other.status_code == 200
    assert "What does greet do?" not in json.dumps(llm.requests[-1]["body"]["messages"])


def test_openapi_docs_are_served(api: dict[str, Any]) -> None:
    client: httpx.Client = api["client"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/query", "/ingest_confluence", "/ingest_local_code", "/healthz"} <= set(paths)


def test_secrets_stay_out_of_the_server_log(api: dict[str, Any], ingested: httpx.Response) -> None:
    api["client"].post("/query", json={"query": "what does greet do?"}, headers=auth())
    text = api["log"].read_text()
    assert "POST /query" in text  # the access log is there
    assert TOKEN not in text and LLM_KEY not in text


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=ragbot_env(RAGBOT_DATA_DIR=str(tmp_path / "data")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RAGBOT_API_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_unexpected_errors_are_a_generic_500_with_an_id(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from rag.api import create_app

    class BrokenService:
        def ask(self, *args: Any, **kwargs: Any) -> Answer:
            raise RuntimeError("db password is hunter2")

    app = create_app(make_settings(), BrokenService())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/query", json={"query": "hello"})
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert any(body["error_id"] in r.getMessage() for r in caplog.records)


def metric_samples(response: httpx.Response) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_need_the_token_and_move_by_exactly_one_query(
    api: dict[str, Any], ingested: httpx.Response
) -> None:
    client: httpx.Client = api["client"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("not-the-token")).status_code == 401
    before = metric_samples(client.get("/metrics", headers=auth()))
    assert before[("ragbot_ingest_runs_total", frozenset({("source_name", "code"), ("outcome", "ok")}))] >= 1
    assert before[("ragbot_index_chunks", frozenset({("source_name", "code")}))] >= 2

    assert client.post("/query", json={"query": "What does greet do?"}, headers=auth()).status_code == 200
    after = metric_samples(client.get("/metrics", headers=auth()))
    changed = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    questions = {k: d for k, d in changed.items() if k[0] == "ragbot_questions_total"}
    assert questions == {
        ("ragbot_questions_total", frozenset({("surface", "api"), ("outcome", "answered")})): 1.0
    }
    for name in ("ragbot_answer_seconds", "ragbot_retrieval_seconds", "ragbot_llm_seconds"):
        assert changed[(f"{name}_count", frozenset())] == 1, name
    assert not any(k[0].startswith(("ragbot_ingest_", "ragbot_llm_errors")) for k in changed)
