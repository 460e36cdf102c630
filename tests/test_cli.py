"""The `ragbot` command as a user runs it: a subprocess, env configuration, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, write_files
from tests.fakes.llm_server import FakeLLM

RAGBOT = str(Path(sys.executable).parent / "ragbot")

pytestmark = pytest.mark.slow

REPO: dict[str, str | bytes] = {
    "service/retry.py": (
        "def retry_with_backoff(call, attempts=5):\n"
        '    """Retry a flaky network call with exponential backoff."""\n'
        "    for i in range(attempts):\n"
        "        try:\n"
        "            return call()\n"
        "        except ConnectionError:\n"
        "            sleep(2 ** i)\n"
    ),
    "docs/oncall.md": "# On-call\n\n## Paging\n\nPages go to the #ops-oncall rotation via PagerDuty.\n",
    "scripts/deploy.sh": "#!/bin/sh\n# deploy to production\nhelm upgrade api ./chart\n",
}


def run(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    base = {
        **os.environ,
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(tmp_path / "repo"),
    }
    base.update(env or {})
    return subprocess.run(
        [RAGBOT, *args],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )


def test_ingest_then_reingest_then_ask_as_json(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    first = run(tmp_path, "ingest", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    (code,) = report["sources"]
    assert set(code) >= {
        "source",
        "ok",
        "documents_seen",
        "documents_added",
        "documents_updated",
        "documents_deleted",
        "documents_unchanged",
        "chunks_embedded",
        "errors",
        "seconds",
    }
    assert code["source"] == "code" and code["ok"] and code["documents_added"] == 3
    assert code["seconds"] > 0

    second = json.loads(run(tmp_path, "ingest", "code", "--json").stdout)
    assert second["sources"][0]["chunks_embedded"] == 0
    assert second["sources"][0]["documents_unchanged"] == 3

    root = tmp_path / "repo"
    write_files(
        root, {"scripts/deploy.sh": REPO["scripts/deploy.sh"] + "kubectl rollout status deploy/api\n"}
    )
    git(root, "commit", "-qam", "edit")
    third = json.loads(run(tmp_path, "ingest", "--json").stdout)["sources"][0]
    assert third["documents_updated"] == 1 and third["documents_unchanged"] == 2
    assert third["chunks_embedded"] == 1

    asked = run(tmp_path, "ask", "how are flaky network calls retried?", "--json", "--top-k", "2")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["mode"] == "extractive"
    top = answer["sources"][0]
    assert top["path"] == "service/retry.py" and top["source"] == "code"
    assert (top["start_line"], top["end_line"]) == (1, 7)
    assert set(top) == {"source", "source_name", "title", "url", "path", "start_line", "end_line", "score", "text"}
    assert len(answer["sources"]) == 2

    status = json.loads(run(tmp_path, "status", "--json").stdout)
    assert status["sources"]["code"]["documents"] == 3
    assert status["sources"]["code"]["last_run"]["ok"] is True


def test_ask_through_an_llm_and_chat_with_memory(tmp_path: Path, git_repo, fake_llm: FakeLLM) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    env = {
        "LITELLM_MODEL": "openai/fake",
        "LITELLM_API_BASE": fake_llm.url,
        "LITELLM_API_KEY": "k",
        "CODE_REPO_WEB_URL": "https://github.com/acme/api",
    }
    assert run(tmp_path, "ingest", env=env).returncode == 0
    asked = json.loads(run(tmp_path, "ask", "who gets paged?", "--json", env=env).stdout)
    assert asked["mode"] == "llm" and asked["answer"] == "Answer to: who gets paged? [1]"
    commit = git(tmp_path / "repo", "rev-parse", "HEAD").strip()
    urls = [s["url"] for s in asked["sources"]]
    assert f"https://github.com/acme/api/blob/{commit}/docs/oncall.md#L1-L5" in urls

    chat = run(
        tmp_path, "chat", env=env, stdin="how are network calls retried?\nand how many attempts?\nexit\n"
    )
    assert chat.returncode == 0, chat.stderr
    assert "Answer to: how are network calls retried? [1]" in chat.stdout
    assert "Answer to: and how many attempts? [1]" in chat.stdout
    follow_up = fake_llm.requests[-1]["body"]["messages"]
    assert follow_up[1]["content"] == "how are network calls retried?"
    assert follow_up[2]["content"].startswith("Answer to: how are network calls retried?")


def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = run(tmp_path, "ingest", "code", env={"CODE_REPO_PATH": str(tmp_path / "nope")})
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"ragbot: CODE_REPO_PATH: {tmp_path / 'nope'} is not a directory"
    ]

    bad_url = run(tmp_path, "ingest", "--json", env={"CODE_REPO_URL": f"file://{tmp_path}/absent.git"})
    assert bad_url.returncode == 2
    assert bad_url.stdout == ""
    (line,) = bad_url.stderr.strip().splitlines()
    assert line.startswith("ragbot: CODE_REPO_URL: cannot clone file://")

    invalid = run(tmp_path, "status", env={"INGEST_INTERVAL_MINUTES": "soon"})
    assert invalid.returncode == 2
    assert invalid.stderr.strip().startswith("ragbot: INGEST_INTERVAL_MINUTES:")
    assert len(invalid.stderr.strip().splitlines()) == 1


def test_missing_model_is_named_with_exit_2(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    git_repo(REPO)
    done = run(tmp_path, "ingest", env={"LOCAL_EMB_MODEL": "acme/not-a-model"})
    assert done.returncode == 2
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("ragbot:")]
    assert len(errors) == 1 and "acme/not-a-model" in errors[0]
    assert "Traceback" not in done.stderr


def test_help_is_fast_to_import() -> None:
    # `ragbot --help` must not import torch, chromadb or litellm (no import-time side effects).
    code = "import sys, rag.cli; print(any(m in sys.modules for m in ('torch', 'chromadb', 'litellm')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    helped = subprocess.run([RAGBOT, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "ingest" in helped.stdout and "ask" in helped.stdout
