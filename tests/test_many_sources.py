"""Many named sources: a file of repositories, targets, scoped retrieval, removal, status, scheduling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.ops.scheduler import start_scheduler
from rag.service import RagService
from tests.conftest import git, write_files
from tests.fakes.hash_embedder import HashEmbedder
from tests.servers import ChromaServer

BACKEND = {
    "app/db.py": "def invoice_total(conn, invoice_id):\n    '''Sum of the invoice lines in cents.'''\n"
    "    return conn.execute('SELECT SUM(amount) FROM lines WHERE invoice = ?', (invoice_id,))\n",
    "README.md": "# Backend\n\nThe billing API. Invoices are stored in Postgres.\n",
}
FRONTEND_MAIN = {"src/app.ts": "export function renderInvoice(total: number): string {\n  return `${total}`;\n}\n"}
FRONTEND_RELEASE = {
    "src/checkout.ts": "export function checkoutButton(label: string): string {\n"
    "  // the checkout button shown on the cart page\n  return `<button>${label}</button>`;\n}\n"
}


def make_repo(root: Path, files: dict[str, str | bytes], *, branch: str = "main") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", branch)
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def hash_service(settings: Settings) -> RagService:
    return RagService(settings, embedders=EmbedderPool(lambda _model: HashEmbedder()))


def write_sources(path: Path, repos: dict[str, str]) -> Path:
    """`repos`: name → the body of its [[repository]] table after the name."""
    path.write_text("".join(f'[[repository]]\nname = "{name}"\n{body}\n' for name, body in repos.items()))
    return path


# ----- the real CLI: two repositories, one cloned from a file:// URL at a branch ------------------


def cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_two_repositories_through_the_cli_with_targets_scoping_and_removal(tmp_path: Path) -> None:
    backend = make_repo(tmp_path / "backend", BACKEND)
    upstream = make_repo(tmp_path / "frontend-upstream", FRONTEND_MAIN)
    git(upstream, "checkout", "-q", "-b", "release")
    write_files(upstream, FRONTEND_RELEASE)
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "release only")
    git(upstream, "checkout", "-q", "main")
    sources = write_sources(
        tmp_path / "ragbot.toml",
        {
            "backend": 'path = "backend"\nweb_url = "https://github.com/acme/backend"',
            "frontend": f'url = "file://{upstream}"\nbranch = "release"\nweb_url = "https://gitlab.com/acme/web/frontend"',
        },
    )
    env = {
        **os.environ,
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_SOURCES_FILE": str(sources),
    }

    done = cli(tmp_path, "ingest", "--json", env=env)
    assert done.returncode == 0, done.stderr
    reports = {r["source_name"]: r for r in json.loads(done.stdout)["sources"]}
    assert set(reports) == {"backend", "frontend"}
    assert all(r["source"] == "code" and r["ok"] and r["chunks_embedded"] > 0 for r in reports.values())
    assert reports["backend"]["documents_added"] == 2
    assert reports["frontend"]["documents_added"] == 2  # the release branch: app.ts and checkout.ts

    done = cli(tmp_path, "ask", "checkout button on the cart page", "--source", "frontend", "--json", env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["sources"] and {s["source_name"] for s in answer["sources"]} == {"frontend"}
    top = answer["sources"][0]
    assert top["source"] == "code" and top["path"] == "src/checkout.ts"  # relative to its repository
    assert top["url"].startswith("https://gitlab.com/acme/web/frontend/-/blob/")
    assert top["url"].endswith("/src/checkout.ts#L1-4")
    assert "frontend · src/checkout.ts:1-4" in answer["answer"]  # citations name the repository

    done = cli(tmp_path, "ask", "invoice total in cents", "--source", "backend", "--json", env=env)
    hits = json.loads(done.stdout)["sources"]
    assert hits and {h["source_name"] for h in hits} == {"backend"}
    assert hits[0]["url"].startswith("https://github.com/acme/backend/blob/")

    done = cli(tmp_path, "ingest", "backend", "--json", env=env)
    assert [r["source_name"] for r in json.loads(done.stdout)["sources"]] == ["backend"]
    assert json.loads(done.stdout)["sources"][0]["chunks_embedded"] == 0

    for bad in (["ingest", "backnd"], ["ask", "q", "--source", "backnd"]):
        done = cli(tmp_path, *bad, env=env)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            "ragbot: unknown source 'backnd'; configured sources: backend, frontend "
            "(or a kind: code, confluence; or all)"
        ]

    status = json.loads(cli(tmp_path, "status", "--json", env=env).stdout)
    assert status["configured_sources"] == ["backend", "frontend"]
    front = status["sources"]["frontend"]
    assert front["kind"] == "code" and front["documents"] == 2 and front["chunks"] >= 2
    assert front["location"] == f"file://{upstream} (release)"
    assert front["last_run"]["ok"] and front["last_run"]["source_name"] == "frontend"
    text = cli(tmp_path, "status", env=env).stderr + cli(tmp_path, "status", env=env).stdout
    assert f"backend (code, {backend})" in text

    # frontend leaves the configuration: a targeted ingest keeps it; `ingest all` prunes it.
    write_sources(sources, {"backend": 'path = "backend"'})
    done = cli(tmp_path, "ingest", "backend", "--json", env=env)
    assert [r["source_name"] for r in json.loads(done.stdout)["sources"]] == ["backend"]
    status = json.loads(cli(tmp_path, "status", "--json", env=env).stdout)
    assert status["sources"]["frontend"]["configured"] is False and status["sources"]["frontend"]["documents"] == 2

    done = cli(tmp_path, "ingest", "--json", env=env)
    assert done.returncode == 0, done.stderr
    removed = [r for r in json.loads(done.stdout)["sources"] if r.get("removed")]
    assert [(r["source_name"], r["documents_deleted"]) for r in removed] == [("frontend", 2)]
    status = json.loads(cli(tmp_path, "status", "--json", env=env).stdout)
    assert set(status["sources"]) == {"backend"}
    answer = json.loads(cli(tmp_path, "ask", "checkout button", "--json", env=env).stdout)
    assert {s["source_name"] for s in answer["sources"]} <= {"backend"}
    assert "backend · " not in answer["answer"]  # one repository again: plain citations


# ----- twelve repositories in one collection --------------------------------------------------------


TWELVE = [f"svc-{i:02d}" for i in range(12)]


def twelve_repos(tmp_path: Path) -> dict[str, Path]:
    repos = {}
    for i, name in enumerate(TWELVE):
        repos[name] = make_repo(
            tmp_path / name,
            {
                "handler.py": f"def handle_{name.replace('-', '_')}(request):\n"
                f"    '''Serve the zebra{i} endpoint of {name}.'''\n    return 'zebra{i}'\n",
                "README.md": f"# {name}\n\nOwns the zebra{i} endpoint; shared words: deploy rollback.\n",
            },
        )
    return repos


def test_twelve_repositories_share_one_collection_and_scope_by_name(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    repos = twelve_repos(tmp_path)
    sources = write_sources(tmp_path / "ragbot.toml", {n: f'path = "{p}"' for n, p in repos.items()})
    service = hash_service(make_settings(ragbot_sources_file=sources))
    reports = service.ingest(["all"])
    assert [r.source_name for r in reports] == TWELVE and all(r.ok and r.documents_added == 2 for r in reports)
    names = service.store.collection_names()
    # One collection of chunks for every repository (and the symbol index beside it).
    assert sorted(names) == ["ragbot-code-hash-256-016b65cb", "ragbot-symbols-code-hash-256-016b65cb"]

    # Unscoped: the one repository that knows zebra7 answers, its name in the citation.
    hits = service.retriever.search("zebra7 endpoint", top_k=3)
    assert hits[0].source_name == "svc-07" and hits[0].citation().startswith("svc-07 · ")
    # Scoped: only those sources, in the dense and the BM25 ranking alike — and every chunk they
    # have (2 per repository) still comes back, though 10 other repositories match better.
    for scope in (["svc-03"], ["svc-01", "svc-10"]):
        hits = service.retriever.search("deploy rollback zebra7 endpoint", top_k=10, sources=scope)
        assert len(hits) == 2 * len(scope) and {h.source_name for h in hits} == set(scope)
    assert service.retriever.search("zebra7", top_k=3, sources=[]) == []

    status = service.status()
    assert list(status["sources"]) == TWELVE
    assert all(info["documents"] == 2 and info["kind"] == "code" for info in status["sources"].values())


def test_a_failing_source_does_not_stop_the_others_nor_lets_removal_run(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    repos = twelve_repos(tmp_path)
    sources = write_sources(tmp_path / "ragbot.toml", {n: f'path = "{p}"' for n, p in list(repos.items())[:3]})
    settings = make_settings(ragbot_sources_file=sources)
    hash_service(settings).ingest(["all"])

    # svc-00 is dropped from the file and svc-01's checkout disappears: svc-02 is still ingested,
    # and nothing is pruned by a run in which a configured source failed.
    write_sources(sources, {"svc-01": f'path = "{tmp_path / "gone"}"', "svc-02": f'path = "{repos["svc-02"]}"'})
    service = hash_service(settings)
    reports = service.ingest(["all"])
    assert [(r.source_name, r.ok) for r in reports] == [("svc-01", False), ("svc-02", True)]
    assert "repository 'svc-01' path" in (reports[0].error or "")
    status = service.status()
    assert status["sources"]["svc-00"]["configured"] is False and status["sources"]["svc-00"]["documents"] == 2
    assert status["sources"]["svc-01"]["last_run"]["outcome"] == "failed"

    write_sources(sources, {"svc-02": f'path = "{repos["svc-02"]}"'})
    service = hash_service(settings)
    reports = service.ingest(["all"])
    assert [(r.source_name, r.removed, r.documents_deleted) for r in reports] == [
        ("svc-02", False, 0),
        ("svc-00", True, 2),
        ("svc-01", True, 2),
    ]
    assert list(service.status()["sources"]) == ["svc-02"]


# ----- a Chroma server -----------------------------------------------------------------------------


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-server").start()
    yield server
    server.stop()


@pytest.mark.slow
def test_named_sources_against_a_chroma_server(chroma: ChromaServer, tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    repos = twelve_repos(tmp_path)
    picked = {n: repos[n] for n in ("svc-00", "svc-05")}
    sources = write_sources(tmp_path / "ragbot.toml", {n: f'path = "{p}"' for n, p in picked.items()})
    settings = make_settings(ragbot_sources_file=sources, chroma_host="127.0.0.1", chroma_port=chroma.port)
    service = hash_service(settings)
    assert [r.ok for r in service.ingest(["code"])] == [True, True]
    hits = service.retriever.search("zebra5 endpoint", top_k=2, sources=["svc-00"])
    assert hits and {h.source_name for h in hits} == {"svc-00"}
    write_sources(sources, {"svc-05": f'path = "{picked["svc-05"]}"'})
    service = hash_service(settings)
    reports = service.ingest(["all"])
    assert [(r.source_name, r.removed) for r in reports] == [("svc-05", False), ("svc-00", True)]
    assert {h.source_name for h in service.retriever.search("zebra0 endpoint", top_k=5)} == {"svc-05"}


# ----- the scheduler --------------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], *, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_the_scheduler_ingests_every_source_and_honours_interval_minutes(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    repos = twelve_repos(tmp_path)
    sources = write_sources(
        tmp_path / "ragbot.toml",
        {
            "svc-00": f'path = "{repos["svc-00"]}"',
            "svc-01": f'path = "{tmp_path / "missing"}"',  # fails every time
            "svc-02": f'path = "{repos["svc-02"]}"\ninterval_minutes = 30',
        },
    )
    settings = make_settings(ragbot_sources_file=sources)
    service = hash_service(settings)
    handle = start_scheduler(settings, service, trigger=IntervalTrigger(seconds=0.5))
    try:
        assert handle.scheduler is not None
        own = handle.scheduler.get_job("ingest:svc-02")
        assert own is not None and own.trigger.interval.total_seconds() == 1800
        runs = lambda name: service.ingestor.state.last_runs(limit=50, source=name)  # noqa: E731
        wait_for(lambda: len(runs("svc-00")) >= 3, what="periodic runs of svc-00")
        assert all(not r["ok"] for r in runs("svc-01")) and len(runs("svc-01")) >= 2
        # svc-02 has its own 30-minute schedule: only the start-up ingest (its index was empty) ran.
        assert len(runs("svc-02")) == 1
        status = service.status()
        assert status["sources"]["svc-00"]["documents"] == 2
        assert status["sources"]["svc-01"]["last_run"]["outcome"] == "failed"
        assert "is not a directory" in status["sources"]["svc-01"]["last_run"]["error"]
    finally:
        handle.shutdown()
