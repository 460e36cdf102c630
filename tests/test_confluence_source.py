"""ConfluenceSource against a real HTTP server on 127.0.0.1: paging, retries, validation, restrictions."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from rag.errors import ConfigError, SourceError
from rag.models import Document
from rag.sources.base import DocumentRef, LoadFailure
from rag.sources.confluence import ConfluenceClient, ConfluenceSource, RetryPolicy, page_version
from tests.confluence_samples import SeededSpace
from tests.fakes.confluence_server import PASSWORD, TOKEN, USERNAME, FakeConfluence

FAST = RetryPolicy(max_attempts=4, max_seconds=10.0, retry_after_cap=5.0, backoff_base=0.01, backoff_max=0.05)


class SleepRecorder:
    """Stands in for time.sleep: records the waits the retry logic chose, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_source(fake: FakeConfluence, **overrides: Any) -> ConfluenceSource:
    values: dict[str, Any] = {
        "url": fake.url,
        "spaces": ["ENG"],
        "username": USERNAME,
        "password": PASSWORD,
        "retry": FAST,
        "sleep": SleepRecorder(),
    }
    values.update(overrides)
    return ConfluenceSource(**values)


def loaded(source: ConfluenceSource, refs: list[DocumentRef]) -> dict[str, Document | LoadFailure]:
    return {item.doc_id: item for item in source.load(refs)}


# ----- listing -------------------------------------------------------------------------------


def test_scan_lists_every_page_through_capped_pages_and_relative_next_links(
    fake: FakeConfluence, space: SeededSpace
) -> None:
    source = make_source(fake)
    source.prepare()
    refs = source.scan()
    assert sorted(r.doc_id for r in refs) == sorted(space.visible)
    assert all(r.version == page_version(1) for r in refs)
    listing = [r for r in fake.requests_to("/content/search")]
    # 35 visible + 2 restricted pages, capped at 25 per answer although 100 were asked for.
    assert [r.params.get("start", "0") for r in listing] == ["0", "25"]
    assert listing[0].params["limit"] == "100" and listing[1].params["limit"] == "25"
    assert all(r.path.startswith("/wiki/rest/api/") and r.status == 200 for r in fake.requests)
    assert not any("body" in r.params.get("expand", "") for r in listing)


def test_listing_cql_names_the_space_and_pages(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    source.scan()
    cql = fake.requests_to("/content/search")[0].params["cql"]
    assert cql.startswith('space = "ENG" and type = page')


def test_several_spaces_are_listed(fake: FakeConfluence, space: SeededSpace) -> None:
    fake.add_space("OPS", "Operations")
    ops = fake.add_page("OPS", "Pager duty", "<p>Who carries the pager.</p>")
    source = make_source(fake, spaces=["ENG", "OPS"])
    source.prepare()
    ids = {r.doc_id for r in source.scan()}
    assert ids == {*space.visible, ops}


def test_pages_with_read_restrictions_and_their_children_are_skipped(
    fake: FakeConfluence, space: SeededSpace
) -> None:
    source = make_source(fake)
    source.prepare()
    ids = {r.doc_id for r in source.scan()}
    assert space.salary not in ids and space.salary_child not in ids
    assert source.skipped_restricted == 2


def test_restricted_pages_are_indexed_when_allowed(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake, include_restricted=True)
    source.prepare()
    refs = source.scan()
    assert {space.salary, space.salary_child} <= {r.doc_id for r in refs}
    docs = loaded(source, [r for r in refs if r.doc_id in {space.salary, space.salary_child, space.home}])
    assert docs[space.salary].metadata["restricted"] is True  # type: ignore[union-attr]
    assert docs[space.salary_child].metadata["restricted"] is True  # type: ignore[union-attr]
    assert docs[space.home].metadata["restricted"] is False  # type: ignore[union-attr]


def test_a_page_becoming_restricted_disappears_from_the_listing(
    fake: FakeConfluence, space: SeededSpace
) -> None:
    source = make_source(fake)
    source.prepare()
    assert space.oncall in {r.doc_id for r in source.scan()}
    fake.pages[space.oncall].restricted_to = ["u-grace"]
    assert space.oncall not in {r.doc_id for r in source.scan()}


# ----- loading --------------------------------------------------------------------------------


def test_load_fetches_bodies_only_for_the_given_refs(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    before = len(fake.requests)
    docs = loaded(source, [refs[space.deploy], refs[space.oncall]])
    assert set(docs) == {space.deploy, space.oncall}
    body_requests = [r for r in fake.requests[before:] if "body.storage" in r.params.get("expand", "")]
    assert len(body_requests) == 1
    assert body_requests[0].params["cql"] == f"id in ({space.deploy}, {space.oncall})"


def test_load_batches_bodies_within_the_server_cap(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    refs = source.scan()
    docs = loaded(source, refs)
    assert sorted(docs) == sorted(space.visible)
    assert all(isinstance(d, Document) for d in docs.values())
    body_requests = [r for r in fake.requests if "body.storage" in r.params.get("expand", "")]
    assert [int(r.params["limit"]) for r in body_requests] == [25, 10]


def test_document_carries_url_metadata_and_breadcrumb(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    fake.edit_page(space.checklist, body="<p>Updated checklist</p>")
    doc = loaded(source, [refs[space.checklist]])[space.checklist]
    assert isinstance(doc, Document)
    assert doc.source == "confluence" and doc.path is None and doc.language == "markdown"
    assert doc.title == "Release checklist"
    assert doc.url == f"{fake.url}/spaces/ENG/pages/{space.checklist}/Release+checklist"
    assert doc.version == page_version(2)  # the version fetched, newer than the listing's
    meta = doc.metadata
    assert meta["breadcrumb"] == "Engineering > Engineering home > Deploying the API > Release checklist"
    assert meta["space"] == "ENG" and meta["page_id"] == space.checklist and meta["version"] == 2
    assert meta["author"] == "Ada Lovelace"
    assert meta["last_modified"].endswith("Z")
    assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())
    deploy = loaded(source, [refs[space.deploy]])[space.deploy]
    assert isinstance(deploy, Document)
    assert deploy.metadata["labels"] == "deploy, api"
    assert "@Ada Lovelace" in deploy.text and "```bash\n" in deploy.text


def test_mentions_are_looked_up_once_per_user(fake: FakeConfluence, space: SeededSpace) -> None:
    fake.edit_page(space.home, body='<p><ac:link><ri:user ri:userkey="u-ada"/></ac:link></p>' * 3)
    source = make_source(fake)
    source.prepare()
    docs = loaded(source, source.scan())
    assert docs[space.home].text.count("@Ada Lovelace") == 3  # type: ignore[union-attr]
    lookups = [r.params for r in fake.requests_to("/rest/api/user")]
    assert lookups.count({"key": "u-ada"}) == 1


def test_a_page_deleted_between_listing_and_loading_is_a_failure_not_a_crash(
    fake: FakeConfluence, space: SeededSpace
) -> None:
    source = make_source(fake)
    source.prepare()
    refs = {r.doc_id: r for r in source.scan()}
    fake.delete_page(space.failover)
    docs = loaded(source, [refs[space.failover], refs[space.deploy]])
    assert isinstance(docs[space.failover], LoadFailure)
    assert "not found" in docs[space.failover].error  # type: ignore[union-attr]
    assert isinstance(docs[space.deploy], Document)


def test_a_body_that_fails_to_load_is_yielded_as_failures(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    refs = source.scan()
    fake.inject("/content/search", status=500, times=100)
    items = list(source.load(refs))
    assert len(items) == len(refs)
    assert all(isinstance(i, LoadFailure) and "HTTP 500" in i.error for i in items)
    # Two batches tried (each with its retries), the rest failed fast.
    assert len(fake.requests_to("/content/search")) == 2 + 2 * FAST.max_attempts


# ----- retries ----------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(fake: FakeConfluence, space: SeededSpace) -> None:
    sleep = SleepRecorder()
    source = make_source(fake, sleep=sleep)
    source.prepare()
    fake.inject("/content/search", status=429, retry_after="2")
    assert len(source.scan()) == len(space.visible)
    assert sleep.waits == [2.0]


def test_retry_after_is_clamped(fake: FakeConfluence, space: SeededSpace) -> None:
    sleep = SleepRecorder()
    source = make_source(fake, sleep=sleep)
    source.prepare()
    fake.inject("/content/search", status=429, retry_after="3600")
    source.scan()
    assert sleep.waits == [FAST.retry_after_cap]


def test_5xx_backs_off_exponentially_then_succeeds(fake: FakeConfluence, space: SeededSpace) -> None:
    sleep = SleepRecorder()
    policy = RetryPolicy(max_attempts=5, max_seconds=100, backoff_base=1.0, backoff_max=100)
    source = make_source(fake, sleep=sleep, retry=policy)
    source.prepare()
    fake.inject("/content/search", status=503, times=3)
    assert len(source.scan()) == len(space.visible)
    assert len(sleep.waits) == 3
    for attempt, wait in enumerate(sleep.waits, start=1):
        assert 0.5 * 2 ** (attempt - 1) <= wait <= 2 ** (attempt - 1)


def test_persistent_5xx_raises_after_the_attempt_limit(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake)
    source.prepare()
    fake.inject("/content/search", status=502, times=100, after=1)
    with pytest.raises(SourceError, match="HTTP 502"):
        source.scan()
    # One good page, then every attempt at the second page.
    assert len(fake.requests_to("/content/search")) == 1 + FAST.max_attempts


def test_total_retry_time_is_bounded(fake: FakeConfluence, space: SeededSpace) -> None:
    sleep = SleepRecorder()
    policy = RetryPolicy(max_attempts=100, max_seconds=10, retry_after_cap=30)
    source = make_source(fake, sleep=sleep, retry=policy)
    source.prepare()
    fake.inject("/content/search", status=429, times=100, retry_after="4")
    with pytest.raises(SourceError, match="HTTP 429"):
        source.scan()
    # The waits chosen never exceed the budget (the clock only advances by real time here).
    assert sum(sleep.waits) <= 10 and len(sleep.waits) >= 2


def test_unreachable_server_is_a_source_error_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleep = SleepRecorder()
    client = ConfluenceClient(
        f"http://127.0.0.1:{port}/wiki", username="u", password="p", retry=FAST, sleep=sleep
    )
    with pytest.raises(SourceError, match="ConnectionError"):
        client.get("rest/api/space/ENG")
    assert len(sleep.waits) == FAST.max_attempts - 1


def test_every_request_has_a_timeout(fake: FakeConfluence, space: SeededSpace) -> None:
    fake.delay = 2.0
    client = ConfluenceClient(
        fake.url, username=USERNAME, password=PASSWORD, timeout=0.2, retry=RetryPolicy(max_attempts=1)
    )
    with pytest.raises(SourceError, match="Timeout"):
        client.get("rest/api/space/ENG")


# ----- validation ---------------------------------------------------------------------------


def test_bad_credentials_fail_in_prepare_with_one_clear_line(
    fake: FakeConfluence, space: SeededSpace
) -> None:
    source = make_source(fake, password="wrong")
    with pytest.raises(ConfigError) as info:
        source.prepare()
    message = str(info.value)
    assert "authentication failed" in message and "\n" not in message
    assert "wrong" not in message  # no secret in the message
    assert len(fake.requests) == 1  # a 401 is not retried


def test_bad_token_fails_and_good_token_works(fake: FakeConfluence, space: SeededSpace) -> None:
    with pytest.raises(ConfigError, match=r"authentication failed.*CONFLUENCE_TOKEN"):
        make_source(fake, username=None, password=None, token="nope").prepare()
    source = make_source(fake, username=None, password=None, token=TOKEN)
    source.prepare()
    assert len(source.scan()) == len(space.visible)


def test_unknown_space_fails_in_prepare_naming_it(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake, spaces=["ENG", "NOPE"])
    with pytest.raises(ConfigError, match="CONFLUENCE_SPACE: space 'NOPE' was not found"):
        source.prepare()
    assert not fake.requests_to("/content/search")


def test_url_without_context_path_is_reported(fake: FakeConfluence, space: SeededSpace) -> None:
    source = make_source(fake, url=fake.url.removesuffix("/wiki"))
    with pytest.raises(ConfigError, match="CONFLUENCE_URL: no Confluence REST API"):
        source.prepare()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"spaces": []}, "CONFLUENCE_SPACE is not set"),
        ({"spaces": ['ENG" or space = "X']}, "is not a space key"),
        ({"password": None}, "CONFLUENCE_PASSWORD is not set"),
        ({"url": "ftp://example.com/wiki"}, "CONFLUENCE_URL"),
    ],
)
def test_invalid_settings_are_reported_before_any_request(
    fake: FakeConfluence, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_source(fake, **overrides).prepare()
    assert fake.requests == []


def test_settings_read_several_space_keys_from_the_environment(
    fake: FakeConfluence, space: SeededSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.config import load_settings

    fake.add_space("OPS", "Operations")
    monkeypatch.setenv("CONFLUENCE_URL", fake.url)
    monkeypatch.setenv("CONFLUENCE_SPACE", "ENG, OPS")
    monkeypatch.setenv("CONFLUENCE_TOKEN", TOKEN)
    monkeypatch.setenv("CONFLUENCE_INCLUDE_RESTRICTED", "true")
    settings = load_settings()
    assert settings.confluence_space == ["ENG", "OPS"]
    source = ConfluenceSource.from_settings(settings)
    assert (source.spaces, source.include_restricted, source.token) == (["ENG", "OPS"], True, TOKEN)
    source.check()
    assert "ENG, OPS" in source.describe() and TOKEN not in source.describe()


@pytest.mark.parametrize(
    "link",
    [
        "/rest/api/content/search?cql=x&start=25",  # relative to _links.base (Data Center, Cloud)
        "/wiki/rest/api/content/search?cql=x&start=25",  # context path included
        "https://internal-name:8090/wiki/rest/api/content/search?cql=x&start=25",  # a proxy's inside name
    ],
)
def test_next_links_resolve_against_the_configured_base_keeping_the_context_path(link: str) -> None:
    client = ConfluenceClient("https://example.com/wiki", username="u", password="p")
    links = {"base": "https://internal-name:8090/wiki", "context": "/wiki"}
    assert client.next_url(link, links) == "https://example.com/wiki/rest/api/content/search?cql=x&start=25"
