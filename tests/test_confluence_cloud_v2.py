"""Cloud (v2 where v1 is gone) and Data Center (v1 with its caps), against the fake in both modes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.models import Document
from rag.service import RagService
from rag.sources.base import DocumentRef
from rag.sources.confluence import ConfluenceSource, RetryPolicy
from rag.sources.confluence_api import looks_like_cloud
from tests.confluence_samples import SeededSpace, seed_engineering_space
from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence

FAST = RetryPolicy(max_attempts=3, max_seconds=5.0, backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def cloud() -> Iterator[FakeConfluence]:
    server = FakeConfluence(mode="cloud").start()
    yield server
    server.stop()


@pytest.fixture
def dc() -> Iterator[FakeConfluence]:
    server = FakeConfluence(mode="datacenter").start()
    yield server
    server.stop()


def make_source(fake: FakeConfluence, **overrides: Any) -> ConfluenceSource:
    values: dict[str, Any] = {
        "url": fake.url,
        "spaces": ["ENG"],
        "username": USERNAME,
        "password": PASSWORD,
        "retry": FAST,
    }
    values.update(overrides)
    return ConfluenceSource(**values)


def loaded(source: ConfluenceSource, refs: list[DocumentRef]) -> dict[str, Any]:
    return {item.doc_id: item for item in source.load(refs)}


def paths(fake: FakeConfluence) -> list[str]:
    return [r.path for r in fake.requests]


@pytest.mark.parametrize(
    ("url", "cloud"),
    [
        ("https://example.atlassian.net/wiki", True),
        ("https://EXAMPLE.atlassian.net/wiki/", True),
        ("https://old.jira.com/wiki", True),
        ("https://confluence.example.com", False),
        ("https://atlassian.net.example.com/wiki", False),
        ("http://127.0.0.1:8090/wiki", False),
    ],
)
def test_atlassian_hosted_sites_are_cloud_from_their_url(url: str, cloud: bool) -> None:
    assert looks_like_cloud(url) is cloud
    assert ConfluenceSource(url=url, spaces=["ENG"]).cloud is (True if cloud else None)


def test_a_410_from_v1_spaces_switches_the_run_to_v2_once(cloud: FakeConfluence) -> None:
    seed_engineering_space(cloud)
    cloud.add_space("OPS", "Operations")
    source = make_source(cloud, spaces=["ENG", "OPS"])
    source.prepare()
    assert source.cloud is True
    gone = [r for r in cloud.requests if r.status == 410]
    assert [r.path for r in gone] == ["/wiki/rest/api/space/ENG"]  # asked once, not for OPS
    spaces = cloud.requests_to("/wiki/api/v2/spaces")
    assert [r.params for r in spaces] == [{"keys": "ENG", "limit": "1"}, {"keys": "OPS", "limit": "1"}]


def test_an_atlassian_net_site_asks_v2_first_and_never_the_deprecated_v1_endpoints(
    cloud: FakeConfluence,
) -> None:
    space = seed_engineering_space(cloud)
    cloud.unsearchable.add(space.deploy)
    source = make_source(cloud)
    source.cloud = True  # what looks_like_cloud() says of https://<site>.atlassian.net/wiki
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    docs = loaded(source, [refs[space.deploy], refs[space.oncall]])
    assert all(isinstance(d, Document) for d in docs.values()), docs
    assert not [p for p in paths(cloud) if p.startswith(("/wiki/rest/api/space", "/wiki/rest/api/content/1"))]
    assert all(r.status == 200 for r in cloud.requests)


def test_cloud_single_page_fallback_reads_v2_with_labels_and_ancestors(cloud: FakeConfluence) -> None:
    space = seed_engineering_space(cloud)
    source = make_source(cloud)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    via_search = loaded(source, [refs[space.checklist], refs[space.deploy]])
    cloud.unsearchable.update({space.checklist, space.deploy})  # not in the search index (yet)
    mark = len(cloud.requests)
    via_v2 = loaded(source, [refs[space.checklist], refs[space.deploy]])
    for page_id in (space.checklist, space.deploy):
        a, b = via_search[page_id], via_v2[page_id]
        assert isinstance(a, Document) and isinstance(b, Document), b
        assert (b.title, b.text, b.url, b.version) == (a.title, a.text, a.url, a.version)
        for key in ("space", "space_name", "version", "labels", "ancestors", "breadcrumb", "author"):
            assert b.metadata[key] == a.metadata[key], key
        assert b.metadata["last_modified_by"] == "Ada Lovelace"
    deploy = via_v2[space.deploy]
    assert deploy.metadata["labels"] == "deploy, api"
    checklist = via_v2[space.checklist]
    assert checklist.metadata["breadcrumb"] == (
        "Engineering > Engineering home > Deploying the API > Release checklist"
    )
    sent = [(r.path, r.params) for r in cloud.requests[mark:] if "/api/v2/" in r.path]
    assert (f"/wiki/api/v2/pages/{space.deploy}", {"body-format": "storage"}) in sent
    assert (f"/wiki/api/v2/pages/{space.deploy}/labels", {"limit": "250"}) in sent
    assert (f"/wiki/api/v2/pages/{space.deploy}/ancestors", {"limit": "250"}) in sent
    assert not [r for r in cloud.requests if r.status == 410 and "/content/" in r.path]


def test_v2_labels_follow_the_link_header_cursor(cloud: FakeConfluence) -> None:
    space = seed_engineering_space(cloud)
    cloud.pages[space.deploy].labels = ["deploy", "api", "billing", "runbook", "blue-green"]
    cloud.v2_limit = 2  # two labels per answer
    cloud.v2_next_in_body = False  # the cursor only in `Link: <...>; rel="next"`
    cloud.unsearchable.add(space.deploy)
    source = make_source(cloud)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    doc = loaded(source, [refs[space.deploy]])[space.deploy]
    assert isinstance(doc, Document), doc
    assert doc.metadata["labels"] == "deploy, api, billing, runbook, blue-green"
    label_requests = cloud.requests_to(f"/api/v2/pages/{space.deploy}/labels")
    assert len(label_requests) == 3
    assert all(r.path.startswith("/wiki/api/v2/") for r in label_requests)  # /wiki kept
    assert "cursor" not in label_requests[0].params and all("cursor" in r.params for r in label_requests[1:])


def test_a_page_deleted_before_its_v2_fetch_is_a_failure(cloud: FakeConfluence) -> None:
    space = seed_engineering_space(cloud)
    source = make_source(cloud)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    cloud.delete_page(space.oncall)
    failure = loaded(source, [refs[space.oncall]])[space.oncall]
    assert not isinstance(failure, Document)
    assert "page not found" in failure.error


def test_a_404_from_v2_falls_back_to_v1(fake: FakeConfluence) -> None:
    space = seed_engineering_space(fake)  # the default fake: v1 only, its v2 paths answer 404
    fake.unsearchable.add(space.failover)
    source = make_source(fake)
    source.cloud = True
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    doc = loaded(source, [refs[space.failover]])[space.failover]
    assert isinstance(doc, Document), doc
    assert "pg_promote" in doc.text
    assert f"/wiki/api/v2/pages/{space.failover}" in paths(fake)
    assert f"/wiki/rest/api/content/{space.failover}" in paths(fake)


def test_deprecation_and_warning_headers_are_logged_once(
    cloud: FakeConfluence, caplog: pytest.LogCaptureFixture
) -> None:
    seed_engineering_space(cloud)
    cloud.headers_for["/content/search"] = {
        "Deprecation": "@1767225600",
        "Warning": '299 - "This endpoint is deprecated"',
    }
    source = make_source(cloud)
    source.prepare()
    with caplog.at_level(logging.WARNING, logger="rag.sources.confluence_client"):
        source.scan()
        source.scan()
    assert len(cloud.requests_to("/content/search")) == 4  # two listings of two pages each
    notes = [r.getMessage() for r in caplog.records if "answered" in r.getMessage()]
    assert len(notes) == 2
    assert any("Deprecation: @1767225600" in n for n in notes)
    assert any('Warning: 299 - "This endpoint is deprecated"' in n for n in notes)


def test_data_center_uses_v1_only_through_its_caps_and_under_counted_next_links(dc: FakeConfluence) -> None:
    space = seed_engineering_space(dc, notes=70)
    source = make_source(dc, body_limit=80)  # more than Data Center's 50 with a body expanded
    source.prepare()
    assert source.cloud is False
    refs = source.scan()
    assert sorted(r.doc_id for r in refs) == sorted(space.visible)  # repeats from next links dropped
    docs = loaded(source, refs)
    assert sorted(docs) == sorted(space.visible)
    assert all(isinstance(d, Document) for d in docs.values())
    body = [r for r in dc.requests if "body.storage" in r.params.get("expand", "")]
    assert [r.params.get("start", "0") for r in body[:2]] == ["0", "49"]  # capped at 50, start under-counted
    assert not [p for p in paths(dc) if "/api/v2/" in p]
    assert [r.path for r in dc.requests if "/space/" in r.path] == ["/wiki/rest/api/space/ENG"]


EXPECTED_PATHS = {
    "cloud": {
        "/wiki/rest/api/space/ENG",  # asked once: its 410 is what says "Cloud" on a custom domain
        "/wiki/api/v2/spaces",
        "/wiki/rest/api/content/search",
        "/wiki/api/v2/pages/{id}",
        "/wiki/api/v2/pages/{id}/labels",
        "/wiki/api/v2/pages/{id}/ancestors",
        "/wiki/rest/api/user",
    },
    "datacenter": {
        "/wiki/rest/api/space/ENG",
        "/wiki/rest/api/content/search",
        "/wiki/rest/api/content/{id}",
        "/wiki/rest/api/user",
    },
}


@pytest.mark.parametrize("mode", ["cloud", "datacenter"])
def test_the_paths_ragbot_sends_are_exactly_these(mode: str) -> None:
    """Spelled out so that no atlassian-python-api release (5.x moved /wiki and /rest/api/1.0) changes them."""
    fake = FakeConfluence(mode=mode).start()
    try:
        space = seed_engineering_space(fake)
        fake.unsearchable.add(space.checklist)
        source = make_source(fake)
        source.prepare()
        docs = loaded(source, source.scan())
        assert sorted(docs) == sorted(space.visible)
        assert all(isinstance(d, Document) for d in docs.values())
        sent = {re.sub(r"/\d{5,}", "/{id}", r.path) for r in fake.requests}
        assert sent == EXPECTED_PATHS[mode]
    finally:
        fake.stop()


# ----- end to end: the real pipeline against both modes ----------------------------------------


@pytest.fixture(params=["cloud", "datacenter"])
def site(request: pytest.FixtureRequest) -> Iterator[FakeConfluence]:
    server = FakeConfluence(mode=request.param).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_an_upgrade_reconverts_every_page_once_then_embeds_nothing(
    site: FakeConfluence,
    make_settings: Any,
    embedders: EmbedderPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    space: SeededSpace = seed_engineering_space(site, notes=4)
    settings: Settings = make_settings(
        confluence_url=site.url,
        confluence_space=["ENG"],
        confluence_username=USERNAME,
        confluence_password=PASSWORD,
    )
    service = RagService(settings, embedders=embedders)
    with monkeypatch.context() as before:
        # The index as the previous release left it: a page's version was its number alone.
        before.setattr("rag.sources.confluence.page_version", str)
        [old] = service.ingest(["confluence"])
    assert old.ok, old.error
    assert old.documents_added == len(space.visible)

    [upgraded] = service.ingest(["confluence"])
    assert upgraded.ok, upgraded.error
    assert upgraded.documents_updated == len(space.visible) and upgraded.documents_unchanged == 0
    assert upgraded.chunks_embedded > 0

    [again] = service.ingest(["confluence"])
    assert again.ok, again.error
    assert again.documents_unchanged == len(space.visible)
    assert again.chunks_embedded == 0 and again.documents_updated == 0
    body_fetches = [r for r in site.requests if "body.storage" in r.params.get("expand", "")]
    assert len(body_fetches) == 2  # one batch of bodies per converting run, none on the third

    answer = service.ask("which kubectl command restarts the api deployment", top_k=3)
    assert answer.hits and answer.hits[0].title == "Deploying the API"
