"""The converter on pages as people write them: third-party code macros, links in inline code,
repaired tables, split marks, spans, code in cells, emoticons; and a property test over any page."""

from __future__ import annotations

import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.sources.confluence_markup import storage_to_markdown


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block in `text`."""
    return [(m.group(2), m.group(3)) for m in re.finditer(r"^(`{3,})(\S*)\n(.*?)^\1$", text, re.S | re.M)]


def macro(name: str, code: str, language: str | None = None, title: str | None = None) -> str:
    params = "".join(
        f'<ac:parameter ac:name="{k}">{v}</ac:parameter>'
        for k, v in (("language", language), ("title", title))
        if v is not None
    )
    return (
        f'<ac:structured-macro ac:name="{name}" ac:schema-version="1" ac:macro-id="3b1f">{params}'
        f"<ac:plain-text-body><![CDATA[{code}]]></ac:plain-text-body></ac:structured-macro>"
    )


TEMPLATE = '<div class="card">\n  <h2>{{ title }}</h2>\n  <p>{{ body }}</p>\n</div>\n'


# ----- 1. third-party code macros ---------------------------------------------------------------


def test_code_pro_macro_is_a_fenced_block_not_prose() -> None:
    body = f"<h2>Card template</h2>{macro('code-pro', TEMPLATE, 'html', 'card.html')}<p>Then render it.</p>"
    text = storage_to_markdown(body)
    assert fenced_blocks(text) == [("html", TEMPLATE)]
    assert "**card.html**" in text


def test_known_code_macro_names_are_fenced() -> None:
    for name in ("codeblock", "newcode", "sourcecode", "code-block"):
        text = storage_to_markdown(macro(name, "SELECT 1;\n  FROM dual;\n", "sql"))
        assert fenced_blocks(text) == [("sql", "SELECT 1;\n  FROM dual;\n")], name


def test_any_macro_with_a_plain_text_body_and_a_language_is_code() -> None:
    text = storage_to_markdown(macro("highlightjs-code", "def f():\n    return 1\n", "Python"))
    assert fenced_blocks(text) == [("python", "def f():\n    return 1\n")]


def test_a_plain_text_macro_without_language_stays_text() -> None:
    text = storage_to_markdown(macro("html-comment", "reviewed by Ada"))
    assert text == "reviewed by Ada\n"


# ----- 2. links inside inline code --------------------------------------------------------------


def test_page_link_inside_inline_code_keeps_the_page_title() -> None:
    body = (
        '<p>Call <code><ac:link><ri:page ri:content-title="cmsfn" /></ac:link></code> from a template, '
        'or <code><ac:link><ri:page ri:space-key="DEV" ri:content-title="navfn" />'
        "<ac:plain-text-link-body><![CDATA[navfn.root()]]></ac:plain-text-link-body></ac:link></code>.</p>"
    )
    assert storage_to_markdown(body) == (
        "Call `cmsfn` from a template, or [`navfn.root()`](page: DEV: navfn).\n"
    )


def test_external_link_inside_inline_code_keeps_text_and_url() -> None:
    body = (
        '<p>Use <code><a href="https://docs.example.com/api#add">add</a></code> and '
        '<code>list --all <a href="https://docs.example.com/api#list">docs</a></code>.</p>'
    )
    assert storage_to_markdown(body) == (
        "Use [`add`](https://docs.example.com/api#add) and "
        "`list --all docs` (https://docs.example.com/api#list).\n"
    )


def test_inline_code_with_a_backtick_uses_a_double_backtick_span() -> None:
    assert storage_to_markdown("<p>Run <code>echo `date`</code> now</p>") == "Run `` echo `date` `` now\n"


# ----- 3. malformed tables ----------------------------------------------------------------------

MALFORMED_TABLE = (
    "<p>Ports:</p><table><tbody>"
    "<tr><th>Service</th><th>Port</th></tr>"
    "<tr><td><p>api<td>8080</td></tr>"  # an unclosed <p> and <td>: lxml nests the next rows
    "<tr><td>worker</td><td>8081</td></tr>"
    "<tr><td>metrics</td><td>9090</td></tr>"
    "</tbody></table><p>Open them in the firewall.</p>"
)


def test_rows_a_repaired_table_nests_inside_a_row_are_all_kept() -> None:
    text = storage_to_markdown(MALFORMED_TABLE)
    assert [line for line in text.splitlines() if line.startswith("|")] == [
        "| Service | Port |",
        "| --- | --- |",
        "| api | 8080 |",
        "| worker | 8081 |",
        "| metrics | 9090 |",
    ]
    assert "Ports:" in text and "Open them in the firewall." in text


# ----- 4. adjacent marks ------------------------------------------------------------------------


def test_adjacent_runs_of_one_mark_are_merged_into_one_word() -> None:
    body = (
        "<h2><strong>I</strong><strong>nstall</strong></h2>"
        "<p><em>Re</em><em>start</em> the <strong>agent </strong>then<strong> </strong>"
        "<code>sys</code><code>temctl</code> <strong>a</strong> <strong>b</strong></p>"
    )
    assert (
        storage_to_markdown(body)
        == "## **Install**\n\n*Restart* the **agent** then `systemctl` **a** **b**\n"
    )


def test_spaces_inside_a_mark_are_kept_between_words() -> None:
    assert storage_to_markdown("<p><strong>Note:</strong>see <em>this </em>page</p>") == (
        "**Note:**see *this* page\n"
    )


# ----- 5. spans and td-only headers -------------------------------------------------------------


def test_colspan_and_rowspan_are_padded_into_a_valid_table() -> None:
    body = (
        "<table><tbody>"
        "<tr><th>Region</th><th>Primary</th><th>Replica</th></tr>"
        '<tr><td rowspan="2">eu-west-1</td><td colspan="2">db-eu-1 (shared)</td></tr>'
        "<tr><td>db-eu-2</td><td>db-eu-3</td></tr>"
        "</tbody></table>"
    )
    rows = storage_to_markdown(body).splitlines()
    assert rows == [
        "| Region | Primary | Replica |",
        "| --- | --- | --- |",
        "| eu-west-1 | db-eu-1 (shared) |  |",
        "|  | db-eu-2 | db-eu-3 |",
    ]


def test_a_td_only_table_gets_a_header_row_so_it_is_valid_markdown() -> None:
    body = (
        "<table><tbody><tr><td>Owner</td><td>Team</td></tr>"
        "<tr><td>Ada</td><td>Billing</td></tr></tbody></table>"
    )
    assert storage_to_markdown(body).splitlines() == [
        "|  |  |",
        "| --- | --- |",
        "| Owner | Team |",
        "| Ada | Billing |",
    ]


def test_a_bold_td_first_row_is_the_header() -> None:
    body = (
        "<table><tbody><tr><td><strong>Owner</strong></td><td><strong>Team</strong></td></tr>"
        "<tr><td>Ada</td><td>Billing</td></tr></tbody></table>"
    )
    assert storage_to_markdown(body).splitlines() == [
        "| Owner | Team |",
        "| --- | --- |",
        "| Ada | Billing |",
    ]


def test_every_row_of_a_table_has_the_header_width() -> None:
    body = (
        "<table><tbody><tr><th>a</th><th>b</th></tr>"
        "<tr><td>1</td><td>2</td><td>3</td><td>4</td></tr><tr><td>5</td></tr></tbody></table>"
    )
    rows = storage_to_markdown(body).splitlines()
    assert {row.count(" | ") for row in rows if not row.startswith("| ---")} == {3}
    assert rows[1] == "| --- | --- | --- | --- |"


# ----- 6. code in cells, emoticons -------------------------------------------------------------


def test_code_in_a_table_cell_keeps_its_lines_as_a_record() -> None:
    code = "ragbot serve \\\n    --port 8080 \\\n\t--workers 2\n"
    body = (
        "<table><tbody><tr><th>Option</th><th>Example</th></tr>"
        f"<tr><td><code>--port</code></td><td>{macro('code', code, 'bash')}</td></tr>"
        "<tr><td><code>--workers</code></td><td>processes</td></tr></tbody></table>"
    )
    text = storage_to_markdown(body)
    assert fenced_blocks(text) == [("bash", code)]
    assert "Option: `--port`\nExample:\n```bash\n" in text
    assert "Option: `--workers`\nExample: processes" in text


def test_emoticons_keep_their_name() -> None:
    body = (
        '<p><ac:emoticon ac:name="warning" /> Never on Fridays. '
        '<ac:emoticon ac:name="blue-star" ac:emoji-shortname=":white_check_mark:" ac:emoji-id="2705" '
        'ac:emoji-fallback="\u2705" /> Tested.</p>'
    )
    assert storage_to_markdown(body) == ":warning: Never on Fridays. :white_check_mark: Tested.\n"


def test_html_entities_inside_code_are_left_as_written() -> None:
    code = '<p class="legal">&copy; 2026&nbsp;Example &amp; Co &unknown;</p>\n'
    text = storage_to_markdown(f"<p>Footer&nbsp;&mdash; HTML:</p>{macro('code', code, 'html')}")
    assert fenced_blocks(text) == [("html", code)]
    assert text.startswith("Footer \u2014 HTML:")


# ----- property: nothing lost, nothing leaked ---------------------------------------------------

WORD = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
CODE_LINE = st.text(alphabet=string.ascii_letters + string.digits + " \t<>&\"'(){}=;#.,+-/", max_size=30)
CODE_MACROS = ["code", "code-pro", "noformat", "codeblock", "newcode", "sourcecode", "code-block"]


class Page:
    """A storage-format page being generated, with the text and code it must come out with."""

    def __init__(self, *, malformed: bool) -> None:
        self.malformed = malformed  # whether table cells may be left unclosed
        self.words: list[str] = []
        self.code: list[str] = []

    def word(self, draw: st.DrawFn) -> str:
        w = draw(WORD)
        self.words.append(w)
        return w

    def inline(self, draw: st.DrawFn, depth: int = 0) -> str:
        parts = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["text", "mark", "code", "link", "page", "emoticon", "br"]))
            if kind == "mark" and depth < 2:
                tag = draw(st.sampled_from(["strong", "em", "b", "i", "s", "u", "span"]))
                parts.append(f"<{tag}>{self.inline(draw, depth + 1)}</{tag}>")
            elif kind == "code":
                parts.append(f"<code>{self.word(draw)}</code>")
            elif kind == "link":
                text = self.word(draw)
                parts.append(f'<a href="https://example.com/{text}">{text}</a>')
            elif kind == "page":
                parts.append(f'<ac:link><ri:page ri:content-title="{self.word(draw)}" /></ac:link>')
            elif kind == "emoticon":
                parts.append('<ac:emoticon ac:name="tick" />')
            elif kind == "br":
                parts.append("<br />")
            else:
                parts.append(self.word(draw))
            parts.append(draw(st.sampled_from(["", " ", "\n"])))
        return "".join(parts)

    def code_macro(self, draw: st.DrawFn) -> str:
        lines = draw(st.lists(CODE_LINE, min_size=1, max_size=5))
        self.code.extend(line for line in lines if line.strip())
        name = draw(st.sampled_from([*CODE_MACROS, "third-party-code"]))
        language = draw(st.sampled_from(["python", "bash", None])) if name != "third-party-code" else "go"
        return macro(name, "\n".join(lines), language)

    def block(self, draw: st.DrawFn, depth: int = 0) -> str:
        kinds = ["p", "h", "list", "code", "panel", "table"] if depth < 2 else ["p", "code"]
        kind = draw(st.sampled_from(kinds))
        if kind == "p":
            return f"<p>{self.inline(draw)}</p>"
        if kind == "h":
            level = draw(st.integers(1, 4))
            return f"<h{level}>{self.inline(draw)}</h{level}>"
        if kind == "list":
            tag = draw(st.sampled_from(["ul", "ol"]))
            items = "".join(f"<li>{self.inline(draw)}</li>" for _ in range(draw(st.integers(1, 3))))
            return f"<{tag}>{items}</{tag}>"
        if kind == "code":
            return self.code_macro(draw)
        if kind == "panel":
            name = draw(st.sampled_from(["info", "note", "warning", "expand", "panel"]))
            inner = "".join(self.block(draw, depth + 1) for _ in range(draw(st.integers(1, 2))))
            return (
                f'<ac:structured-macro ac:name="{name}"><ac:rich-text-body>{inner}'
                "</ac:rich-text-body></ac:structured-macro>"
            )
        rows = []
        for r in range(draw(st.integers(1, 4))):
            cells = []
            for _ in range(draw(st.integers(1, 4))):
                tag = "th" if r == 0 and draw(st.booleans()) else "td"
                span = f' colspan="{draw(st.integers(2, 3))}"' if draw(st.integers(0, 5)) == 0 else ""
                content = self.block(draw, depth + 1) if draw(st.booleans()) else self.inline(draw, 1)
                unclosed = self.malformed and draw(st.integers(0, 4)) == 0
                closer = "" if unclosed else f"</{tag}>"
                cells.append(f"<{tag}{span}>{content}{closer}")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return "<table><tbody>" + "".join(rows) + "</tbody></table>"


@st.composite
def pages(draw: st.DrawFn, *, malformed: bool) -> tuple[str, Page]:
    page = Page(malformed=malformed)
    body = "".join(page.block(draw) for _ in range(draw(st.integers(1, 6))))
    return body, page


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(malformed=True))
def test_any_page_keeps_every_text_and_code_line_and_leaks_no_markup(generated: tuple[str, Page]) -> None:
    body, page = generated
    text = storage_to_markdown(body)
    flat = squeeze(text)
    missing = [w for w in page.words if w not in flat]
    assert not missing, (missing, body, text)
    lines = {line.rstrip() for line in text.split("\n")}
    lost = [line for line in page.code if line.rstrip() not in lines and squeeze(line) not in flat]
    assert not lost, (lost, body, text)
    for leak in ("<ac:", "</ac:", "ri:", "CDATA", "<![", "]]>"):
        assert leak not in text, (leak, body, text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(malformed=False))
def test_code_lines_of_a_well_formed_page_come_out_exactly(generated: tuple[str, Page]) -> None:
    body, page = generated
    lines = set(storage_to_markdown(body).split("\n"))
    assert all(line in lines for line in page.code), body
