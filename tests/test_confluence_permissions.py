"""Confluence permissions synced and enforced per reader: the real pipeline (RagService, embedded
Chroma, BM25) against the fake Confluence over HTTP, as Cloud and as Data Center."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag.indexing.embedding import EmbedderPool
from rag.models import Reader
from rag.ops.status_text import status_lines
from rag.service import RagService
from tests.conftest import CONTRACT_VARS
from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence
from tests.fakes.hash_embedder import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]
ADA, BOB, CY, HIDDEN = "ada@example.com", "bob@example.com", "cy@example.com", "hid@example.com"


@dataclass
class Site:
    fake: FakeConfluence
    public: str
    oncall: str
    reviews: str
    postmortem: str
    vault: str


def seed(fake: FakeConfluence) -> Site:
    fake.add_space("ENG", "Engineering")
    fake.add_space("SEC", "Security")
    fake.add_user("u-ada", "Ada Lovelace", ADA)
    fake.add_user("u-bob", "Bob Builder", BOB)
    fake.add_user("u-cy", "Cy Twombly", CY)
    fake.add_user("u-hid", "Hidden Person", HIDDEN, email_hidden=True)
    fake.add_group("oncall", ["u-ada", "u-hid"])
    fake.add_group("security", ["u-ada", "u-cy"])
    fake.set_space_permissions("ENG", [("anonymous", ""), ("group", "confluence-users")])
    fake.set_space_permissions("SEC", [("group", "security")])
    public = fake.add_page(
        "ENG", "Deploy runbook", "<p>The deploy script ship.sh pushes builds with a blue green cutover.</p>"
    )
    oncall = fake.add_page(
        "ENG",
        "Pager bridge",
        "<p>The zebra bridge number for sev1 escalation is 555 0199.</p>",
        restricted_groups=["oncall"],
    )
    reviews = fake.add_page(
        "ENG", "Incident reviews", "<p>Index of the reviews.</p>", restricted_groups=["oncall"]
    )
    postmortem = fake.add_page(
        "ENG", "Kangaroo outage", "<p>The kangaroo outage came from a flaky quokka cache.</p>", parent=reviews
    )
    vault = fake.add_page("SEC", "Vault unsealing", "<p>Unseal the vault with three platypus shards.</p>")
    return Site(fake, public, oncall, reviews, postmortem, vault)


@contextmanager
def running(mode: str) -> Iterator[Site]:
    """A fake Confluence of this flavour on 127.0.0.1, seeded, stopped afterwards."""
    fake = FakeConfluence(mode=mode).start()
    try:
        yield seed(fake)
    finally:
        fake.stop()


@pytest.fixture(params=["cloud", "datacenter"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    with running(request.param) as seeded:
        yield seeded


@pytest.fixture
def service(site: Site, make_settings: Any) -> Iterator[RagService]:
    settings = make_settings(
        confluence_url=site.fake.url,
        confluence_space=["ENG", "SEC"],
        confluence_username=USERNAME,
        confluence_password=PASSWORD,
        confluence_permissions="sync",
    )
    service = RagService(settings, embedders=EmbedderPool(lambda _model: HashEmbedder()))
    [report] = service.ingest(["confluence"])
    assert report.ok, report.error
    assert report.documents_seen == 5  # every page is indexed, restricted ones too
    yield service
    service.store.close()


def seen(service: RagService, question: str, reader: Reader | None) -> str:
    """Everything an answer shows: its text, and each source's title and text."""
    answer = service.ask(question, reader=reader)
    return "\n".join([answer.text, *(f"{h.title}\n{h.text}" for h in answer.hits)])


def test_a_group_restricted_page_is_read_by_a_member_and_refused_to_others(service: RagService) -> None:
    assert "zebra bridge" in seen(service, "zebra bridge number sev1", Reader.person(ADA))
    for reader in (Reader.person(BOB), Reader.public(), None):
        shown = seen(service, "zebra bridge number sev1", reader)
        assert "zebra" not in shown and "Pager bridge" not in shown
    # Public pages stay visible to everyone.
    assert "ship.sh" in seen(service, "deploy script ship.sh", Reader.public())


def test_a_restricted_ancestor_restricts_its_children(service: RagService) -> None:
    assert "quokka" in seen(service, "kangaroo outage quokka cache", Reader.person(ADA))
    shown = seen(service, "kangaroo outage quokka cache", Reader.person(BOB))
    assert "quokka" not in shown and "Kangaroo" not in shown


def test_a_team_only_space_is_read_by_its_team_only(service: RagService) -> None:
    assert "platypus" in seen(service, "unseal the vault platypus shards", Reader.person(CY))
    assert "platypus" not in seen(service, "unseal the vault platypus shards", Reader.person(BOB))
    assert "platypus" not in seen(service, "unseal the vault platypus shards", Reader.public())


def test_several_readers_see_only_what_every_one_of_them_may_read(service: RagService) -> None:
    both_security = Reader.people([ADA, CY])
    assert "platypus" in seen(service, "unseal the vault platypus shards", both_security)
    assert "zebra" not in seen(service, "zebra bridge number sev1", both_security)  # Cy is not on call
    assert "platypus" not in seen(service, "unseal the vault platypus shards", Reader.people([ADA, BOB]))


def test_an_unknown_or_hidden_email_reads_public_pages_only(service: RagService, site: Site) -> None:
    assert "zebra" not in seen(service, "zebra bridge number sev1", Reader.person("stranger@example.com"))
    if site.fake.mode == "cloud":  # Cloud hides this member's e-mail: no reader can be matched to it
        assert "zebra" not in seen(service, "zebra bridge number sev1", Reader.person(HIDDEN))
    else:  # Data Center tells the e-mail through the mobile profile
        assert "zebra" in seen(service, "zebra bridge number sev1", Reader.person(HIDDEN))


def test_removal_from_a_group_takes_effect_at_the_next_sync_without_re_embedding(
    service: RagService, site: Site
) -> None:
    assert "zebra" in seen(service, "zebra bridge number sev1", Reader.person(ADA))
    site.fake.remove_member("oncall", "u-ada")
    assert "zebra" in seen(service, "zebra bridge number sev1", Reader.person(ADA))  # until the sync
    [report] = service.sync_permissions()
    assert report.ok, report.error
    assert report.documents_retagged == 0  # the page's rule did not change, its group did
    assert "zebra" not in seen(service, "zebra bridge number sev1", Reader.person(ADA))


def test_a_page_newly_restricted_is_re_tagged_not_re_embedded(service: RagService, site: Site) -> None:
    site.fake.restrict(site.public, groups=["security"])  # no new version, as in Confluence
    [report] = service.ingest(["confluence"])
    assert report.ok, report.error
    assert report.chunks_embedded == 0 and report.documents_retagged == 1
    assert "ship.sh" not in seen(service, "deploy script ship.sh", Reader.person(BOB))
    assert "ship.sh" in seen(service, "deploy script ship.sh", Reader.person(CY))
    site.fake.restrict(site.public)  # lifted again: back for everyone after the next sync
    [again] = service.sync_permissions()
    assert again.documents_retagged == 1
    assert "ship.sh" in seen(service, "deploy script ship.sh", Reader.public())


def test_a_failed_sync_falls_back_to_public_pages_only(service: RagService, site: Site) -> None:
    site.fake.inject("/permissions", status=400, times=1)
    [report] = service.sync_permissions()
    assert not report.ok and "permissions of space" in str(report.error)
    assert "zebra" not in seen(service, "zebra bridge number sev1", Reader.person(ADA))
    assert "ship.sh" in seen(service, "deploy script ship.sh", Reader.person(ADA))
    status = service.status()["sources"]["confluence"]["permissions"]
    assert status["mode"] == "sync" and status["error"] and status["enforced"].startswith("public pages only")
    [recovered] = service.sync_permissions()
    assert recovered.ok, recovered.error
    assert "zebra" in seen(service, "zebra bridge number sev1", Reader.person(ADA))
    status = service.status()["sources"]["confluence"]["permissions"]
    assert status["enforced"] == "per reader" and status["restricted_pages"] == 4 and status["pages"] == 5


def test_the_answering_loops_tools_read_only_what_the_reader_may(service: RagService) -> None:
    names = service.search_scope(None)
    bob = service.toolbox(names, access=service.access.scope(Reader.person(BOB)))
    ada = service.toolbox(names, access=service.access.scope(Reader.person(ADA)))
    assert "zebra" not in bob.read("Pager bridge").text
    assert "zebra" in ada.read("Pager bridge").text
    assert "zebra" not in bob.search("zebra bridge sev1").text
    assert "zebra" in ada.search("zebra bridge sev1").text


def test_a_search_or_a_tool_that_names_no_reader_finds_public_pages_only(service: RagService) -> None:
    hits = service.retriever.search("zebra bridge number sev1", top_k=5)
    assert hits and not any("zebra" in h.text or h.title == "Pager bridge" for h in hits)
    toolbox = service.toolbox(service.search_scope(None))  # no scope given: fail closed
    assert "zebra" not in toolbox.read("Pager bridge").text
    assert "ship.sh" in toolbox.read("Deploy runbook").text


def test_explain_says_which_rule_decides(service: RagService, site: Site) -> None:
    data = service.explain_permissions(
        site.postmortem, [(BOB, Reader.person(BOB)), (ADA, Reader.person(ADA))]
    )
    text = "\n".join(data["lines"])
    assert "restriction of the ancestor page 'Incident reviews'" in text
    assert "group oncall" in text or "oncall" in text
    verdicts = {r["reader"]: r["may_see"] for r in data["readers"]}
    assert verdicts == {BOB: False, ADA: True}
    assert "bob@example.com: may not see it (" in text  # with the reason


# ----- the HTTP API and the command line ----------------------------------------------------------


@pytest.fixture
def api_url(service: RagService) -> Iterator[str]:
    """The real FastAPI app under uvicorn on 127.0.0.1, sharing the test's service."""
    import socket
    import threading
    import time

    import uvicorn

    from rag.api import create_app

    service.settings = service.settings.model_copy(update={"ragbot_api_token": "s3cret"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service.settings, service), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_api_answers_as_the_named_user_and_public_pages_without_one(api_url: str) -> None:
    import httpx

    headers = {"Authorization": "Bearer s3cret"}
    body = {"query": "zebra bridge number sev1", "session_id": "s1"}
    as_ada = httpx.post(f"{api_url}/query", json={**body, "as_user": ADA}, headers=headers, timeout=60)
    assert as_ada.status_code == 200, as_ada.text
    assert "zebra bridge" in json.dumps(as_ada.json())
    anonymous = httpx.post(f"{api_url}/query", json=body, headers=headers, timeout=60)
    assert anonymous.status_code == 200 and "zebra" not in json.dumps(anonymous.json()["sources"])
    as_bob = httpx.post(f"{api_url}/query", json={**body, "as_user": BOB}, headers=headers, timeout=60)
    assert "zebra" not in json.dumps(as_bob.json()["sources"])
    bad = httpx.post(
        f"{api_url}/query", json={**body, "as_user": "not an e-mail"}, headers=headers, timeout=60
    )
    assert bad.status_code in (400, 422)


@pytest.fixture
def datacenter_site() -> Iterator[Site]:
    with running("datacenter") as seeded:
        yield seeded


@pytest.mark.slow
def test_the_cli_ingests_explains_syncs_and_reports_status(datacenter_site: Site, tmp_path: Path) -> None:
    site = datacenter_site  # one flavour is enough here: the others' tests cover both
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env.update(
        PYTHONPATH=str(ROOT),
        CHROMA_DB_DIR=str(tmp_path / "chroma"),
        RAGBOT_DATA_DIR=str(tmp_path / "data"),
        CONFLUENCE_URL=site.fake.url,
        CONFLUENCE_SPACE="ENG,SEC",
        CONFLUENCE_USERNAME=USERNAME,
        CONFLUENCE_PASSWORD=PASSWORD,
        CONFLUENCE_PERMISSIONS="sync",
    )

    def ragbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rag.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ingested = ragbot("ingest", "confluence", "--json")
    assert ingested.returncode == 0, ingested.stderr
    explained = ragbot("permissions", "explain", site.oncall, "--user", BOB)
    assert explained.returncode == 0, explained.stderr
    assert "the page's own read restriction: group oncall" in explained.stdout
    assert f"{BOB}: may not see it" in explained.stdout
    as_json = json.loads(ragbot("permissions", "explain", site.oncall, "--user", ADA, "--json").stdout)
    assert as_json["readers"] == [{"reader": ADA, "may_see": True, "why": None}]
    site.fake.restrict(site.vault, groups=["oncall"])
    synced = ragbot("permissions", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "confluence: ok; 5 pages, 1 re-tagged" in synced.stdout
    assert "WARNING" not in synced.stderr and "Traceback" not in synced.stderr
    data = json.loads(ragbot("status", "--json").stdout)
    status = data["sources"]["confluence"]["permissions"]
    assert status["mode"] == "sync" and status["enforced"] == "per reader" and status["restricted_pages"] == 4
    assert "confluence permissions: sync, 4 of 5 pages restricted" in "\n".join(status_lines(data))
    asked = ragbot("ask", "unseal the vault platypus shards", "--as-user", ADA, "--json")
    assert asked.returncode == 0, asked.stderr
    assert "Vault unsealing" in asked.stdout  # Ada: security and oncall
    no_reader = ragbot("permissions", "explain", site.oncall)
    assert no_reader.returncode == 2 and "--user EMAIL or --channel ID" in no_reader.stderr


def test_the_scheduler_re_reads_permissions_between_ingests(service: RagService, site: Site) -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    from rag.ops.scheduler import PERMISSIONS_JOB, start_scheduler

    handle = start_scheduler(service.settings, service, trigger=IntervalTrigger(hours=1))
    try:
        assert handle.scheduler is not None
        job = handle.scheduler.get_job(PERMISSIONS_JOB)
        assert job is not None and job.trigger.interval.total_seconds() == 30 * 60
        site.fake.remove_member("oncall", "u-ada")
        handle._permissions()  # what the job runs
        assert "zebra" not in seen(service, "zebra bridge number sev1", Reader.person(ADA))
    finally:
        handle.shutdown()


def test_a_site_no_longer_configured_takes_its_permissions_with_it(
    service: RagService, make_settings: Any, tmp_path: Path
) -> None:
    from tests.conftest import make_repo

    assert service.permissions.load("confluence") is not None
    service.store.close()
    repo = make_repo(tmp_path / "code", {"README.md": "# tools\n"})
    after = RagService(
        make_settings(code_repo_path=repo), embedders=EmbedderPool(lambda _model: HashEmbedder())
    )
    try:
        reports = after.ingest(["all"])
        assert any(r.removed and r.source_name == "confluence" for r in reports)
        assert after.permissions.load("confluence", fresh=True) is None
    finally:
        after.store.close()
