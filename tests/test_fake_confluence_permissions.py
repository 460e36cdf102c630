"""The fake Confluence serves what a permission sync reads, in Cloud's and Data Center's shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence

AUTH = (USERNAME, PASSWORD)
LISTING = "version,restrictions.read.restrictions.user,restrictions.read.restrictions.group"


def _fake(mode: str) -> FakeConfluence:
    fake = FakeConfluence(mode=mode, list_limit=2)
    fake.add_space("ENG", "Engineering")
    fake.add_space("OPS", "Operations")
    fake.add_user("u-ada", "Ada Lovelace", "ada@example.com", username="ada")
    fake.add_user("u-bob", "Bob Hidden", "bob@example.com", username="bob", email_hidden=True)
    fake.add_user("u-cy", "Cy Young", "cy@example.com")
    fake.add_group("eng-team", ["u-ada", "u-bob", "u-cy"])
    fake.add_group("hr team", ["u-cy"])
    return fake


@pytest.fixture
def cloud() -> Iterator[FakeConfluence]:
    fake = _fake("cloud").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(params=["datacenter", "v1"])
def dc(request: pytest.FixtureRequest) -> Iterator[FakeConfluence]:
    fake = _fake(request.param).start()
    try:
        yield fake
    finally:
        fake.stop()


def get(fake: FakeConfluence, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{fake.url}/{path.lstrip('/')}", params=params, auth=AUTH, timeout=5)


def listing(fake: FakeConfluence, space: str = "ENG", expand: str = LISTING) -> dict[str, Any]:
    cql = f'space = "{space}" and type = page order by created asc'
    answer = get(fake, "rest/api/content/search", cql=cql, expand=expand, limit=25)
    assert answer.status_code == 200
    return {page["id"]: page for page in answer.json()["results"]}


def read_restrictions(page: dict[str, Any]) -> dict[str, Any]:
    return page["restrictions"]["read"]["restrictions"]


# ----- restrictions in the listing -------------------------------------------------------------


def test_cloud_listing_names_restricted_users_by_account_id_and_groups_by_id(cloud: FakeConfluence) -> None:
    open_id = cloud.add_page("ENG", "Open", "<p>x</p>")
    shut = cloud.add_page(
        "ENG", "Shut", "<p>x</p>", restricted_to=["u-ada", "u-bob"], restricted_groups=["hr team"]
    )
    pages = listing(cloud)
    assert read_restrictions(pages[open_id])["user"] == {"results": [], "start": 0, "limit": 200, "size": 0}
    assert read_restrictions(pages[open_id])["group"]["size"] == 0
    users = read_restrictions(pages[shut])["user"]
    assert users["size"] == 2
    ada, bob = users["results"]
    assert ada["accountId"] == "u-ada" and ada["type"] == "known"
    assert ada["email"] == "ada@example.com" and ada["displayName"] == ada["publicName"] == "Ada Lovelace"
    assert bob["email"] == ""  # hidden by the user's profile visibility
    assert "userKey" not in ada and "username" not in ada
    groups = read_restrictions(pages[shut])["group"]
    assert groups["size"] == 1
    assert groups["results"] == [
        {"type": "group", "name": "hr team", "id": FakeConfluence.group_id("hr team")}
    ]


def test_datacenter_listing_names_users_by_key_without_email_and_groups_by_name(dc: FakeConfluence) -> None:
    shut = dc.add_page(
        "ENG", "Shut", "<p>x</p>", restricted_to=["u-ada", "u-cy"], restricted_groups=["eng-team"]
    )
    page = listing(dc)[shut]
    users = read_restrictions(page)["user"]
    assert users["size"] == 2
    assert users["results"][0] == {
        "type": "known",
        "username": "ada",
        "userKey": "u-ada",
        "displayName": "Ada Lovelace",
    }
    assert users["results"][1]["username"] == "u-cy"  # the username defaults to the key
    assert all("email" not in u for u in users["results"])
    assert read_restrictions(page)["group"] == {
        "results": [{"type": "group", "name": "eng-team"}],
        "start": 0,
        "limit": 200,
        "size": 1,
    }


def test_unexpanded_group_restrictions_stay_expandable(dc: FakeConfluence) -> None:
    shut = dc.add_page("ENG", "Shut", "<p>x</p>", restricted_groups=["eng-team"])
    restrictions = read_restrictions(listing(dc, expand="restrictions.read.restrictions.user")[shut])
    assert "group" not in restrictions and "group" in restrictions["_expandable"]
    assert restrictions["user"]["size"] == 0


def test_restrict_sets_and_clears_without_a_new_version(cloud: FakeConfluence) -> None:
    page_id = cloud.add_page("ENG", "Page", "<p>x</p>")
    cloud.restrict(page_id, groups=["eng-team"])
    page = listing(cloud)[page_id]
    assert page["version"]["number"] == 1
    assert read_restrictions(page)["group"]["results"][0]["name"] == "eng-team"
    cloud.restrict(page_id, users=["u-ada"])
    page = listing(cloud)[page_id]
    assert read_restrictions(page)["group"]["size"] == 0
    assert [u["accountId"] for u in read_restrictions(page)["user"]["results"]] == ["u-ada"]
    cloud.restrict(page_id)
    page = listing(cloud)[page_id]
    assert read_restrictions(page)["user"]["size"] == read_restrictions(page)["group"]["size"] == 0
    assert page["version"]["number"] == 1


# ----- space permissions -----------------------------------------------------------------------


def test_cloud_space_permissions_are_cursor_paged_and_carry_other_operations(cloud: FakeConfluence) -> None:
    cloud.set_space_permissions(
        "ENG", [("group", "eng-team"), ("user", "u-cy"), ("anonymous", ""), ("group", "hr team")]
    )
    items: list[dict[str, Any]] = []
    host = cloud.url[: -len("/wiki")]
    answer = get(cloud, f"api/v2/spaces/{cloud.space_id('ENG')}/permissions", limit=2)
    pages = 1
    while True:
        assert answer.status_code == 200
        data = answer.json()
        assert data["_links"]["base"] == cloud.url
        items.extend(data["results"])
        nxt = data["_links"].get("next")
        if not nxt:
            break
        assert nxt.startswith("/wiki/api/v2/spaces/") and "cursor=" in nxt  # relative, with /wiki
        assert f'<{nxt}>; rel="next"' in answer.headers["Link"]
        answer = requests.get(host + nxt, auth=AUTH, timeout=5)
        pages += 1
    assert pages > 1
    assert all(set(i) == {"id", "principal", "operation"} and isinstance(i["id"], str) for i in items)
    reads = [i["principal"] for i in items if i["operation"] == {"key": "read", "targetType": "space"}]
    assert reads == [
        {"type": "group", "id": FakeConfluence.group_id("eng-team")},
        {"type": "user", "id": "u-cy"},
        {"type": "access_class", "id": "anonymous-users"},
        {"type": "group", "id": FakeConfluence.group_id("hr team")},
    ]
    others = [i for i in items if i["operation"]["key"] != "read"]
    assert others and {o["operation"]["key"] for o in others} >= {"create", "administer"}
    assert all(o["principal"] == {"type": "group", "id": cloud.group_id("space-admins")} for o in others)


def test_cloud_space_permissions_default_and_unknown_space(cloud: FakeConfluence) -> None:
    data = get(cloud, f"api/v2/spaces/{cloud.space_id('OPS')}/permissions").json()
    reads = [i["principal"] for i in data["results"] if i["operation"]["key"] == "read"]
    assert reads == [{"type": "group", "id": FakeConfluence.group_id("confluence-users")}]
    missing = get(cloud, "api/v2/spaces/4242/permissions")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["status"] == 404


def test_cloud_v1_space_permissions_are_gone(cloud: FakeConfluence) -> None:
    assert get(cloud, "rest/api/space/ENG/permissions").status_code == 410
    assert get(cloud, "rest/api/space/ENG").status_code == 410


def test_datacenter_space_permissions_are_one_array(dc: FakeConfluence) -> None:
    dc.set_space_permissions("ENG", [("group", "eng-team"), ("user", "u-ada"), ("anonymous", "")])
    answer = get(dc, "rest/api/space/ENG/permissions")
    assert answer.status_code == 200
    items = answer.json()
    assert isinstance(items, list)
    assert all(i["spaceKey"] == "ENG" and i["spaceId"] == int(dc.space_id("ENG")) for i in items)
    reads = [i["subject"] for i in items if i["operation"] == {"targetType": "space", "operationKey": "read"}]
    assert reads == [
        {"type": "group", "name": "eng-team"},
        {"type": "user", "userKey": "u-ada"},
        {"type": "anonymous"},
    ]
    others = {(i["operation"]["operationKey"], i["operation"]["targetType"]) for i in items} - {
        ("read", "space")
    }
    assert ("create", "page") in others and ("administer", "space") in others
    default = get(dc, "rest/api/space/OPS/permissions").json()
    assert [i["subject"] for i in default if i["operation"]["operationKey"] == "read"] == [
        {"type": "group", "name": "confluence-users"}
    ]
    assert get(dc, "rest/api/space/NOPE/permissions").status_code == 404
    dc.space_permissions_api = False  # Data Center before 9.1
    old = get(dc, "rest/api/space/ENG/permissions")
    assert old.status_code == 404 and old.json()["statusCode"] == 404


def test_faults_apply_to_the_new_paths(dc: FakeConfluence) -> None:
    dc.inject("/permissions", status=503)
    assert get(dc, "rest/api/space/ENG/permissions").status_code == 503
    assert get(dc, "rest/api/space/ENG/permissions").status_code == 200
    dc.inject("/rest/mobile/", status=429, retry_after="1")
    throttled = get(dc, "rest/mobile/1.0/profile/ada")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"


# ----- group members ---------------------------------------------------------------------------


def _all_members(fake: FakeConfluence, path: str) -> tuple[list[dict[str, Any]], int]:
    members: list[dict[str, Any]] = []
    answer = get(fake, path, limit=50)
    calls = 1
    while True:
        assert answer.status_code == 200
        data = answer.json()
        assert data["limit"] == 2  # capped at list_limit
        assert data["size"] == len(data["results"])
        members.extend(data["results"])
        nxt = data["_links"].get("next")
        if not nxt:
            return members, calls
        assert nxt.startswith("/rest/api/group/")  # relative to _links.base, no /wiki
        answer = requests.get(data["_links"]["base"] + nxt, auth=AUTH, timeout=5)
        calls += 1


def test_cloud_group_members_by_group_id(cloud: FakeConfluence) -> None:
    members, calls = _all_members(cloud, f"rest/api/group/{cloud.group_id('eng-team')}/membersByGroupId")
    assert calls == 2
    assert [m["accountId"] for m in members] == ["u-ada", "u-bob", "u-cy"]
    assert [m["email"] for m in members] == ["ada@example.com", "", "cy@example.com"]
    assert get(cloud, "rest/api/group/g-unknown/membersByGroupId").status_code == 404
    cloud.remove_member("eng-team", "u-bob")
    members, _ = _all_members(cloud, f"rest/api/group/{cloud.group_id('eng-team')}/membersByGroupId")
    assert [m["accountId"] for m in members] == ["u-ada", "u-cy"]


def test_datacenter_group_members_by_name(dc: FakeConfluence) -> None:
    members, calls = _all_members(dc, "rest/api/group/eng-team/member")
    assert calls == 2
    assert [m["userKey"] for m in members] == ["u-ada", "u-bob", "u-cy"]
    assert members[0] == {
        "type": "known",
        "username": "ada",
        "userKey": "u-ada",
        "displayName": "Ada Lovelace",
    }
    assert all("email" not in m for m in members)
    spaced = get(dc, "rest/api/group/hr%20team/member")
    assert [m["userKey"] for m in spaced.json()["results"]] == ["u-cy"]
    dc.set_members("hr team", ["u-ada"])
    assert [m["userKey"] for m in get(dc, "rest/api/group/hr%20team/member").json()["results"]] == ["u-ada"]
    # add_user puts everyone in confluence-users, as a new account joins the default group.
    everyone, _ = _all_members(dc, "rest/api/group/confluence-users/member")
    assert len(everyone) == 3
    assert get(dc, "rest/api/group/nobody/member").status_code == 404


# ----- e-mails ---------------------------------------------------------------------------------


def test_cloud_user_lookup_carries_the_email_unless_hidden(cloud: FakeConfluence) -> None:
    ada = get(cloud, "rest/api/user", accountId="u-ada").json()
    assert ada["email"] == "ada@example.com" and ada["displayName"] == "Ada Lovelace"
    assert get(cloud, "rest/api/user", accountId="u-bob").json()["email"] == ""
    assert get(cloud, "rest/mobile/1.0/profile/ada").status_code == 404


def test_datacenter_email_through_the_mobile_profile(dc: FakeConfluence) -> None:
    user = get(dc, "rest/api/user", key="u-ada").json()
    assert user["username"] == "ada" and user["userKey"] == "u-ada" and "email" not in user
    assert get(dc, "rest/api/user", username="ada").json()["userKey"] == "u-ada"
    profile = get(dc, "rest/mobile/1.0/profile/ada")
    assert profile.status_code == 200
    assert profile.json() == {
        "username": "ada",
        "userKey": "u-ada",
        "fullName": "Ada Lovelace",
        "email": "ada@example.com",
    }
    assert get(dc, "rest/mobile/1.0/profile/nobody").status_code == 404
    unauthorised = requests.get(f"{dc.url}/rest/mobile/1.0/profile/ada", timeout=5)
    assert unauthorised.status_code == 401
