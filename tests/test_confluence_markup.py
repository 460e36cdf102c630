"""Storage-format XHTML → Markdown-like text, on realistic page bodies."""

from __future__ import annotations

import re

from rag.indexing.chunking import markdown_sections
from rag.sources.confluence_markup import storage_to_markdown
from tests.confluence_samples import (
    CHECKLIST_PAGE,
    DEPLOY_CODE,
    DEPLOY_PAGE,
    FAILOVER_PAGE,
    ONCALL_PAGE,
)

USERS = {"u-ada": "Ada Lovelace", "u-grace": "Grace Hopper", "557058:f00d": "Linus Ops"}


def resolve(ids: dict[str, str]) -> str | None:
    return USERS.get(ids.get("userkey") or ids.get("account-id") or "")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block in `text`."""
    return [(m.group(2), m.group(3)) for m in re.finditer(r"^(`{3,})(\S*)\n(.*?)^\1$", text, re.S | re.M)]


def test_code_macro_becomes_fenced_block_with_language_and_exact_whitespace() -> None:
    text = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    blocks = fenced_blocks(text)
    assert ("bash", DEPLOY_CODE) in blocks


def test_code_without_trailing_newline_keeps_every_line_and_closes_the_fence() -> None:
    text = storage_to_markdown(FAILOVER_PAGE)
    assert fenced_blocks(text) == [
        ("sql", "SELECT pg_promote(wait => true);\nSELECT now() - pg_last_xact_replay_timestamp() AS lag;\n")
    ]


def test_code_containing_a_fence_gets_a_longer_fence() -> None:
    body = (
        '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">markdown</ac:parameter>'
        "<ac:plain-text-body><![CDATA[```python\nprint(1)\n```\n]]></ac:plain-text-body></ac:structured-macro>"
    )
    text = storage_to_markdown(body)
    assert text.startswith("````markdown\n```python\nprint(1)\n```\n````")


def test_noformat_and_pre_keep_whitespace_without_language() -> None:
    body = (
        '<ac:structured-macro ac:name="noformat"><ac:plain-text-body><![CDATA[  a\n    b]]>'
        "</ac:plain-text-body></ac:structured-macro><pre>x  =  1\n  y</pre>"
    )
    assert fenced_blocks(storage_to_markdown(body)) == [("", "  a\n    b\n"), ("", "x  =  1\n  y\n")]


def test_headings_become_markdown_headings_that_the_chunker_splits_at() -> None:
    text = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    headings = [line for line in text.splitlines() if re.match(r"#{1,6} ", line)]
    assert headings == ["# Deploying the API", "## Rollout script", "## Environments"]
    symbols = [s.symbol for s in markdown_sections(text.split("\n"))]
    assert symbols == [
        "Deploying the API",
        "Deploying the API > Rollout script",
        "Deploying the API > Environments",
    ]


def test_a_comment_line_inside_code_is_not_taken_for_a_heading() -> None:
    body = (
        '<h1>Setup</h1><ac:structured-macro ac:name="code"><ac:plain-text-body>'
        "<![CDATA[# install\npip install x]]></ac:plain-text-body></ac:structured-macro>"
    )
    sections = markdown_sections(storage_to_markdown(body).split("\n"))
    assert [s.symbol for s in sections] == ["Setup"]


def test_table_is_one_row_per_line_with_header_and_escaped_pipes() -> None:
    text = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows == [
        "| Environment | Host | Owner |",
        "| --- | --- | --- |",
        "| production | api.example.com | @Linus Ops |",
        "| staging | staging.example.com \\| eu-west-1 | platform team |",
    ]


def test_links_keep_their_text_and_target() -> None:
    text = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    assert "[the checklist](page: Release checklist)" in text
    assert "[status page](https://status.example.com/billing)" in text
    body = (
        '<p><ac:link><ri:page ri:space-key="OPS" ri:content-title="Pager duty" /></ac:link> and '
        '<ac:link><ri:attachment ri:filename="diagram.pdf" /><ac:link-body>the <b>diagram</b></ac:link-body>'
        "</ac:link></p>"
    )
    assert storage_to_markdown(body) == "[OPS: Pager duty] and [the **diagram**](attachment: diagram.pdf)\n"


def test_user_mentions_are_resolved_to_display_names() -> None:
    text = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    assert "Ask @Ada Lovelace before a deploy on Fridays — see" in text


def test_unresolvable_mention_falls_back_without_losing_the_sentence() -> None:
    body = '<p>Ping <ac:link><ri:user ri:userkey="u-gone" /></ac:link> today.</p>'
    assert storage_to_markdown(body, resolve_user=resolve) == "Ping @unknown user today.\n"
    old_server = '<p>Ping <ac:link><ri:user ri:username="jsmith" /></ac:link>.</p>'
    assert storage_to_markdown(old_server) == "Ping @jsmith.\n"


def test_resolver_receives_the_identifiers_of_the_mention() -> None:
    seen: list[dict[str, str]] = []

    def record(ids: dict[str, str]) -> str:
        seen.append(ids)
        return "X"

    storage_to_markdown(
        '<p><ac:link><ri:user ri:account-id="557058:f00d" /></ac:link></p>', resolve_user=record
    )
    assert seen == [{"account-id": "557058:f00d"}]


def test_panels_keep_their_label_title_and_text() -> None:
    deploy = storage_to_markdown(DEPLOY_PAGE, resolve_user=resolve)
    assert "**Info:** Freeze window\n\nNo deploys between 22:00 and 06:00 UTC." in deploy
    oncall = storage_to_markdown(ONCALL_PAGE, resolve_user=resolve)
    assert "**Warning:**\n\nNever silence the `PaymentsDown` alert." in oncall
    failover = storage_to_markdown(FAILOVER_PAGE)
    assert "**Note:**\n\nReplication lag must be under 5 seconds before promotion." in failover
    panel = (
        '<ac:structured-macro ac:name="panel"><ac:parameter ac:name="title">Contacts</ac:parameter>'
        "<ac:rich-text-body><ul><li>ops@example.com</li></ul></ac:rich-text-body></ac:structured-macro>"
        '<ac:structured-macro ac:name="expand"><ac:rich-text-body><p>Hidden detail</p></ac:rich-text-body>'
        "</ac:structured-macro>"
    )
    assert storage_to_markdown(panel) == "**Contacts**\n\n- ops@example.com\n\nHidden detail\n"


def test_nested_lists_are_indented_under_their_item() -> None:
    text = storage_to_markdown(ONCALL_PAGE, resolve_user=resolve)
    assert (
        "1. Page the primary on-call.\n"
        "2. After 15 minutes page the secondary:\n"
        "   - weekdays: @Grace Hopper\n"
        "   - weekends: the duty manager"
    ) in text


def test_task_list_shows_done_and_open_tasks() -> None:
    text = storage_to_markdown(CHECKLIST_PAGE)
    assert "- [x] Changelog updated\n- [ ] Smoke tests green on staging" in text


def test_navigation_macros_add_nothing_and_status_is_inline() -> None:
    text = storage_to_markdown(FAILOVER_PAGE)
    assert "toc" not in text
    status = (
        '<p>Build is <ac:structured-macro ac:name="status"><ac:parameter ac:name="title">green'
        "</ac:parameter></ac:structured-macro> now</p>"
    )
    assert storage_to_markdown(status) == "Build is [GREEN] now\n"


def test_html_entities_and_layouts_are_read() -> None:
    body = (
        "<ac:layout><ac:layout-section ac:type='two_equal'><ac:layout-cell>"
        "<p>Left&nbsp;cell &rsquo;quoted&rsquo;</p></ac:layout-cell>"
        "<ac:layout-cell><h3>Right</h3><p>caf&eacute; &amp; more</p></ac:layout-cell>"
        "</ac:layout-section></ac:layout>"
    )
    assert storage_to_markdown(body) == "Left cell \u2019quoted\u2019\n\n### Right\n\ncafé & more\n"


def test_malformed_markup_is_recovered_rather_than_dropped() -> None:
    body = "<p>First <b>bold</p><p>Second paragraph</p>"
    text = storage_to_markdown(body)
    assert "First" in text and "Second paragraph" in text


def test_unknown_namespace_prefix_does_not_break_parsing() -> None:
    body = "<p>Hello <at:var at:name='who' /> world</p>"
    assert storage_to_markdown(body) == "Hello world\n"


def test_empty_body_gives_empty_text() -> None:
    assert storage_to_markdown("") == ""
    assert storage_to_markdown('<ac:structured-macro ac:name="children" />') == ""
