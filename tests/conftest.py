"""Shared fixtures: isolated settings, a real git repository, the real bundled model, a fake LLM."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.logs import serialize_ast_parse
from tests.confluence_samples import SeededSpace, seed_engineering_space
from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_agent import AgentFakeSlack
from tests.fakes.slack_server import FakeSlack


def pytest_configure(config: pytest.Config) -> None:
    # Bolt's threads log tracebacks while pytest formats its own: on Python 3.11.7 (CI's) that
    # race once ended a run with "SystemError: AST constructor recursion depth mismatch".
    serialize_ast_parse()


CONTRACT_VARS = [
    "CHROMA_DB_DIR",
    "CHROMA_HOST",
    "CHROMA_PORT",
    "RAGBOT_DATA_DIR",
    "CODE_REPO_PATH",
    "CODE_REPO_URL",
    "CODE_REPO_BRANCH",
    "CODE_REPO_WEB_URL",
    "CONFLUENCE_URL",
    "CONFLUENCE_USERNAME",
    "CONFLUENCE_PASSWORD",
    "CONFLUENCE_TOKEN",
    "CONFLUENCE_SPACE",
    "LOCAL_EMB_MODEL",
    "CODE_EMB_MODEL",
    "CHUNK_SIZE",
    "CHUNK_OVERLAP",
    "LITELLM_MODEL",
    "LITELLM_API_BASE",
    "LITELLM_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "RAGINGEST_ALLOWED_USERS",
    "INGEST_INTERVAL_MINUTES",
    "INGEST_CRON",
    "RAGBOT_SCHEDULER",
    "CONFLUENCE_INCLUDE_RESTRICTED",
    "RAGBOT_API_TOKEN",
    "LOG_LEVEL",
    "LOG_FORMAT",
    # Additions (v2)
    "RAGBOT_SOURCES_FILE",
    "SLACK_ALLOWED_CHANNELS",
    "SLACK_ALLOW_EXTERNAL_USERS",
    "SLACK_SHARED_CHANNELS",
    "RAGBOT_METRICS_PORT",
    "RAGBOT_METRICS_HOST",
    "RAGBOT_LIVENESS_GRACE_SECONDS",
    "RAGBOT_RETENTION_DAYS",
    # Additions (issue 20: the answering loop)
    "RAGBOT_AGENT",
    "RAGBOT_AGENT_MAX_STEPS",
    "RAGBOT_AGENT_SECONDS",
    # Additions (issue 22: hosted embeddings and reranking)
    "EMBEDDING_API_BASE",
    "EMBEDDING_API_KEY",
    "EMBEDDING_CONCURRENCY",
    "EMBEDDING_BATCH_SIZE",
    "EMBEDDING_BATCH_TOKENS",
    "EMBEDDING_TIMEOUT",
    "EMBEDDING_MAX_RETRIES",
    "RERANK_MODEL",
    "RERANK_TIMEOUT",
    # Additions (issue 23: Confluence permissions per reader)
    "CONFLUENCE_PERMISSIONS",
    "CONFLUENCE_PERMISSION_SYNC_MINUTES",
    "RAGBOT_MEMBER_CHECK_LIMIT",
]

# Offline, deterministic, no proxies: set for the whole session (and inherited by subprocesses).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(proxy, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No contract variable leaks in from the developer's shell, and no `.env` is read."""
    for name in CONTRACT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for one test: store and data in tmp_path; keyword overrides by field name."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "chroma_db_dir": tmp_path / "chroma",
            "ragbot_data_dir": tmp_path / "data",
            "code_repo_path": tmp_path / "repo",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture(scope="session")
def embedders() -> EmbedderPool:
    """The real bundled all-MiniLM-L6-v2, loaded once for the whole session."""
    return EmbedderPool()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    """A real git repository at `root` with one commit of `files`."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def git_repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """make(files) → a real git repository at tmp_path/repo with one commit of those files."""
    root = tmp_path / "repo"

    def make(files: dict[str, str | bytes], message: str = "initial") -> Path:
        root.mkdir(exist_ok=True)
        if not (root / ".git").exists():
            git(root, "init", "-q", "-b", "main")
        write_files(root, files)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", message, "--allow-empty")
        return root

    return make


@pytest.fixture
def slack() -> Iterator[AgentFakeSlack]:
    """A fake Slack (Web API + Socket Mode) on 127.0.0.1 that the real Bolt app connects to, with
    the agent-surface methods (App Home, suggested prompts, users.lookupByEmail, block checks)."""
    fake = AgentFakeSlack().start()
    yield fake
    fake.stop()


def _bot_starter(
    make_settings: Any, fake_llm: FakeLLM, slack: FakeSlack, embedders: EmbedderPool
) -> Iterator[Any]:
    from bot.app import SlackBot
    from rag.service import RagService

    bots: list[SlackBot] = []

    def start(**overrides: Any) -> SlackBot:
        settings = make_settings(
            litellm_model="openai/fake",
            litellm_api_base=fake_llm.url,
            litellm_api_key="x",
            slack_bot_token="xoxb-test-token",
            slack_app_token="xapp-test-token",
            slack_api_url=slack.api_url,
            **overrides,
        )
        service = RagService(settings, embedders=embedders)
        assert all(r.ok for r in service.ingest(["all"]))
        bot = SlackBot(settings, service, update_interval=0.05, ping_interval=1.0)
        bot.start()
        bots.append(bot)
        return bot

    yield start
    slack.hang_up()
    for bot in bots:
        bot.stop()
        bot.service.store.close()  # its embedded Chroma's files: a long run must not run out of them


@pytest.fixture
def hash_bot(make_settings: Any, fake_llm: FakeLLM, slack: FakeSlack) -> Iterator[Any]:
    """start(**settings) → a running bot (real Bolt over the fake Slack's socket) whose sources are
    ingested with the hash embedder and whose LLM is the fake one; all stopped at the end."""
    from tests.fakes.hash_embedder import HashEmbedder

    yield from _bot_starter(make_settings, fake_llm, slack, EmbedderPool(lambda _model: HashEmbedder()))


@pytest.fixture
def minilm_bot(
    make_settings: Any, fake_llm: FakeLLM, slack: FakeSlack, embedders: EmbedderPool
) -> Iterator[Any]:
    """Like `hash_bot`, with the real bundled MiniLM: for tests that rely on the grounding
    judgement, which is calibrated on it."""
    yield from _bot_starter(make_settings, fake_llm, slack, embedders)


@pytest.fixture
def fake() -> Iterator[FakeConfluence]:
    """A fake Confluence REST server (context path /wiki) on 127.0.0.1."""
    server = FakeConfluence().start()
    yield server
    server.stop()


@pytest.fixture
def space(fake: FakeConfluence) -> SeededSpace:
    """The ENG space seeded with realistic pages."""
    return seed_engineering_space(fake)
