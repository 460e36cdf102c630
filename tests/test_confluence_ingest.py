"""End to end: the real pipeline (RagService, embedded Chroma, the bundled model) against the fake server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import Collection
from rag.service import RagService
from rag.sources.confluence import ConfluenceSource, RetryPolicy
from tests.confluence_samples import FAILOVER_PAGE, SeededSpace
from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence
from tests.reliability import record

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(max_attempts=3, max_seconds=5.0, backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def settings(make_settings: Any, fake: FakeConfluence) -> Settings:
    settings: Settings = make_settings(
        confluence_url=fake.url,
        confluence_space=["ENG"],
        confluence_username=USERNAME,
        confluence_password=PASSWORD,
    )
    return settings


@pytest.fixture
def service(settings: Settings, embedders: EmbedderPool) -> RagService:
    return RagService(settings, embedders=embedders)


def collection(service: RagService) -> Collection:
    embedder = service.embedders.get(service.settings.embedding_model_for("confluence"))
    found = service.store.collection("confluence", embedder.key, create=False)
    assert found is not None
    return found


def body_requests(fake: FakeConfluence, since: int = 0) -> list[str]:
    return [r.params["cql"] for r in fake.requests[since:] if "body.storage" in r.params.get("expand", "")]


def test_ingest_indexes_every_page_through_capping_and_a_429(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    fake.inject("/content/search", status=429, retry_after="1")
    [report] = service.ingest(["confluence"])
    assert report.ok, report.error
    assert report.errors == []
    assert report.documents_seen == report.documents_added == len(space.visible)
    assert any(r.status == 429 for r in fake.requests)
    assert any(r.params.get("start") == "25" for r in fake.requests_to("/content/search"))
    states = collection(service).document_states()
    assert set(states) == set(space.visible)
    assert all(state.complete for state in states.values())


def test_second_run_embeds_only_the_edited_page_and_forgets_the_deleted_one(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    [first] = service.ingest(["confluence"])
    assert first.ok, first.error
    deleted = space.notes[3]
    fake.edit_page(space.failover, body=FAILOVER_PAGE.replace("under 5 seconds", "under 2 seconds"))
    fake.delete_page(deleted)
    mark = len(fake.requests)

    [second] = service.ingest(["confluence"])

    assert second.ok, second.error
    assert (second.documents_updated, second.documents_deleted, second.documents_added) == (1, 1, 0)
    assert second.documents_unchanged == len(space.visible) - 2
    assert body_requests(fake, mark) == [f"id in ({space.failover})"]
    states = collection(service).document_states()
    assert second.chunks_embedded == states[space.failover].present_chunks
    assert deleted not in states
    answer = service.ask("What did we discuss in meeting 3?", top_k=10, source="confluence")
    assert answer.hits and all(h.metadata.get("doc_id") != deleted for h in answer.hits)
    updated = service.ask("How much replication lag is allowed before promoting the replica?", top_k=3)
    assert any("under 2 seconds" in h.text for h in updated.hits)
    assert not any("under 5 seconds" in h.text for h in updated.hits)


def test_ask_cites_the_right_page_with_its_url(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    [report] = service.ingest(["confluence"])
    assert report.ok, report.error
    answer = service.ask("How do I promote the Postgres replica when the primary is lost?", top_k=3)
    top = answer.to_json()["sources"][0]
    assert top["source"] == "confluence"
    assert top["title"] == "Database failover runbook"
    assert top["url"] == f"{fake.url}/spaces/ENG/pages/{space.failover}/Database+failover+runbook"
    assert top["path"] is None
    code = service.ask("which kubectl command restarts the api deployment", top_k=3)
    assert code.hits[0].title == "Deploying the API"
    assert "kubectl rollout restart deploy/api" in code.hits[0].text
    assert code.hits[0].metadata["breadcrumb"] == "Engineering > Engineering home > Deploying the API"


def test_restricted_pages_never_reach_the_index(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    [report] = service.ingest(["confluence"])
    assert report.ok, report.error
    states = collection(service).document_states()
    assert space.salary not in states and space.salary_child not in states
    answer = service.ask("What are the salary bands for engineers?", top_k=10)
    assert not any("Salary" in h.title for h in answer.hits)


def test_a_page_that_becomes_restricted_is_removed(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    [first] = service.ingest(["confluence"])
    assert first.ok, first.error
    fake.pages[space.oncall].restricted_to = ["u-grace"]
    [second] = service.ingest(["confluence"])
    assert second.documents_deleted == 1
    assert space.oncall not in collection(service).document_states()


@pytest.mark.reliability
def test_5xx_mid_listing_fails_the_run_and_leaves_the_index_untouched(
    fake: FakeConfluence, space: SeededSpace, service: RagService
) -> None:
    [first] = service.ingest(["confluence"])
    assert first.ok, first.error
    before = collection(service).document_states()
    fake.edit_page(space.deploy, body="<p>rewritten</p>")
    fake.delete_page(space.oncall)
    fake.inject("/content/search", status=500, times=1000, after=1)  # the listing's 2nd page fails
    service.ingestor.source_factory = lambda s, name: ConfluenceSource.from_settings(
        s, retry=FAST, sleep=lambda _: None
    )

    [report] = service.ingest(["confluence"])

    assert not report.ok
    assert report.error is not None and "HTTP 500" in report.error
    assert report.documents_deleted == 0 and report.chunks_embedded == 0
    assert collection(service).document_states() == before
    assert service.status()["sources"]["confluence"]["last_run"]["ok"] is False

    # The next run, with Confluence healthy again, succeeds and applies the changes.
    fake.faults.clear()
    [after] = service.ingest(["confluence"])
    assert after.ok, after.error
    assert after.documents_updated == 1 and after.documents_deleted == 1
    assert space.oncall not in collection(service).document_states()
    record(
        "Faults: Confluence HTTP 500 in the middle of a listing (2nd page), then a healthy run",
        "run reported failed with the HTTP status; nothing deleted or re-embedded, index identical; "
        "the next run succeeds and applies the edit and the deletion",
        failed_run_s=round(report.seconds, 2),
        next_run_updated=after.documents_updated,
        next_run_deleted=after.documents_deleted,
    )


# ----- the real command line ---------------------------------------------------------------------


def run_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def confluence_env(fake: FakeConfluence, **overrides: str) -> dict[str, str]:
    env = {
        "CONFLUENCE_URL": fake.url,
        "CONFLUENCE_SPACE": "ENG",
        "CONFLUENCE_USERNAME": USERNAME,
        "CONFLUENCE_PASSWORD": PASSWORD,
    }
    env.update(overrides)
    return env


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CONFLUENCE_SPACE": "ENG,NOPE"}, "CONFLUENCE_SPACE: space 'NOPE' was not found"),
        ({"CONFLUENCE_PASSWORD": "wrong"}, "Confluence authentication failed (HTTP 401)"),
    ],
    ids=["unknown-space", "bad-credentials"],
)
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_cli_reports_bad_configuration_in_one_line_and_exits_2(
    tmp_path: Path,
    fake: FakeConfluence,
    space: SeededSpace,
    overrides: dict[str, str],
    expected: str,
    as_json: bool,
) -> None:
    args = ["ingest", "confluence", *(["--json"] if as_json else [])]
    done = run_cli(tmp_path, confluence_env(fake, **overrides), *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"ragbot: {expected}") and done.stderr.count("\n") == 1, done.stderr
    assert "wrong" not in done.stderr  # the bad password is not echoed
    assert not fake.requests_to("/content/search")


@pytest.mark.parametrize(
    ("spaces", "password", "expected"),
    [
        ('["ENG", "NOPE"]', PASSWORD, 'key spaces: space \'NOPE\' was not found'),
        ('["ENG"]', "wrong", "check CONFLUENCE_USERNAME and ENG_WIKI_PASSWORD"),
    ],
    ids=["unknown-space", "bad-credentials"],
)
def test_a_file_configured_site_names_its_table_and_variables_in_errors(
    tmp_path: Path, fake: FakeConfluence, space: SeededSpace, spaces: str, password: str, expected: str
) -> None:
    # The CONFLUENCE_* variables do not configure this source: an error naming them would send
    # the reader to the wrong place.
    sources = tmp_path / "ragbot.toml"
    sources.write_text(
        f'[[confluence]]\nname = "eng-wiki"\nurl = "{fake.url}"\nspaces = {spaces}\n'
        'password_env = "ENG_WIKI_PASSWORD"\n'
    )
    env = {
        "RAGBOT_SOURCES_FILE": str(sources),
        "CONFLUENCE_USERNAME": USERNAME,
        "ENG_WIKI_PASSWORD": password,
    }
    done = run_cli(tmp_path, env, "ingest", "eng-wiki")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("ragbot: ") and expected in line, line
    if "spaces" in expected:
        assert f'{sources}: [[confluence]] #1 "eng-wiki", key spaces' in line
    assert "CONFLUENCE_SPACE" not in line and "CONFLUENCE_URL" not in line and "CONFLUENCE_PASSWORD" not in line
    assert "wrong" not in line


def test_bad_space_fails_a_run_started_without_preflight(
    fake: FakeConfluence, space: SeededSpace, make_settings: Any, embedders: EmbedderPool
) -> None:
    # The scheduler, Slack and the HTTP API call ingest directly: the report carries the reason.
    service = RagService(
        make_settings(
            confluence_url=fake.url,
            confluence_space=["NOPE"],
            confluence_username=USERNAME,
            confluence_password=PASSWORD,
        ),
        embedders=embedders,
    )
    [report] = service.ingest(["confluence"], trigger="scheduler")
    assert not report.ok and report.config_error
    assert report.error is not None and "space 'NOPE' was not found" in report.error
    assert report.documents_seen == 0


def test_cli_ingest_then_ask_cites_the_page(tmp_path: Path, fake: FakeConfluence, space: SeededSpace) -> None:
    fake.inject("/content/search", status=429, retry_after="1")
    done = run_cli(tmp_path, confluence_env(fake), "ingest", "confluence", "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)["sources"]
    assert report["ok"] is True and report["documents_added"] == len(space.visible)

    asked = run_cli(
        tmp_path,
        confluence_env(fake),
        "ask",
        "Who do I page after 15 minutes?",
        "--source",
        "confluence",
        "--json",
    )
    assert asked.returncode == 0, asked.stderr
    top = json.loads(asked.stdout)["sources"][0]
    assert top["title"] == "On-call rotation"
    assert top["url"] == f"{fake.url}/spaces/ENG/pages/{space.oncall}/On-call+rotation"
