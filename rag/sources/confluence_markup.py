"""Confluence storage format (XHTML with `ac:`/`ri:` elements) → Markdown-like text.

The output keeps what a reader (and the heading-aware chunker) needs: `#` headings, lists,
tables as one row per line, links with their target, `@name` mentions, code macros as
fenced blocks with their language and exact whitespace, and the text of panels.

`CONVERTER_VERSION` changes whenever the same page would convert differently; the source
puts it in each page's version, so an upgrade re-converts (and re-embeds) every page once.
"""

from __future__ import annotations

import copy
import html.entities
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rag.sources.confluence_tables import Cell, render, span

CONVERTER_VERSION = 2

#: resolve_user({"userkey": ..., "account-id": ..., "username": ...}) → display name or None
UserResolver = Callable[[dict[str, str]], str | None]

# Storage format declares no namespaces; these are the URIs Confluence itself uses.
KNOWN_NAMESPACES = {
    "ac": "http://atlassian.com/content",
    "ri": "http://atlassian.com/resource/identifier",
    "at": "http://atlassian.com/template",
}
XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}
FENCE_LINE = re.compile(r"^\s*```")
PREFIX_RE = re.compile(r"</?([A-Za-z][\w.-]*):[\w.-]+|\s([A-Za-z][\w.-]*):[\w.-]+\s*=")
CDATA_RE = re.compile(r"(<!\[CDATA\[.*?\]\]>)", re.S)
ENTITY_RE = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")

BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "table",
    "pre",
    "blockquote",
    "hr",
    "dl",
    "ac:layout",
    "ac:layout-section",
    "ac:layout-cell",
    "ac:task-list",
    "ac:rich-text-body",
    "ac:adf-extension",
    "ac:adf-node",
    "ac:adf-content",
}
# Macros that sit inside a line of text rather than forming a block of their own.
INLINE_MACROS = {"status", "jira", "anchor", "emoticon", "mention", "cheese", "view-file"}
# Macros that show other content or navigation: nothing of their own to index.
SILENT_MACROS = {
    "toc",
    "toc-zone",
    "children",
    "pagetree",
    "pagetreesearch",
    "recently-updated",
    "contentbylabel",
    "content-report-table",
    "livesearch",
    "search",
    "blog-posts",
    "attachments",
    "gallery",
    "anchor",
    "create-from-template",
    "contributors",
    "page-index",
    "space-details",
    "popular-labels",
    "related-labels",
    "recently-used-labels",
    "listlabels",
}
PANEL_LABELS = {
    "info": "Info",
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
    "error": "Error",
    "success": "Success",
}
# Atlassian's own code macros and the common third-party ones (code-pro held half the code
# blocks of one real space); any other macro with a plain-text body and a language is code too.
CODE_MACROS = {"code", "code-pro", "noformat", "code-block", "sourcecode", "codeblock", "newcode"}
MARKS = {"strong": "**", "b": "**", "em": "*", "i": "*", "s": "~~", "del": "~~", "strike": "~~"}
MACRO_PARTS = {"ac:parameter", "ac:rich-text-body", "ac:plain-text-body", "ac:default-parameter"}


@dataclass(frozen=True)
class _Parsed:
    root: Any
    prefixes: dict[str, str]  # namespace URI → prefix


def _declare_namespaces(xhtml: str) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for match in PREFIX_RE.finditer(xhtml):
        prefix = match.group(1) or match.group(2)
        if prefix and prefix not in {"xml", "xmlns"}:
            prefixes[prefix] = KNOWN_NAMESPACES.get(prefix, f"urn:confluence-storage:{prefix}")
    for prefix, uri in KNOWN_NAMESPACES.items():
        prefixes.setdefault(prefix, uri)
    return prefixes


def _numeric_entities(xhtml: str) -> str:
    """HTML named entities (&nbsp; &rsquo; …) are not XML: turn them into character references."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in XML_ENTITIES:
            return match.group(0)
        codepoint = html.entities.name2codepoint.get(name)
        return f"&#{codepoint};" if codepoint is not None else f"&amp;{name};"

    # Not inside CDATA: `&copy;` in an HTML code sample is the code itself.
    parts = CDATA_RE.split(xhtml)
    return "".join(part if part.startswith("<![CDATA[") else ENTITY_RE.sub(replace, part) for part in parts)


def parse_storage(xhtml: str) -> _Parsed:
    """Parse a storage-format fragment; strict XML first, lxml's recovering parser if that fails."""
    from lxml import etree

    namespaces = _declare_namespaces(xhtml)
    declarations = " ".join(f'xmlns:{p}="{uri}"' for p, uri in sorted(namespaces.items()))
    document = f"<storage-root {declarations}>{_numeric_entities(xhtml)}</storage-root>"
    options: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False}
    try:
        root = etree.fromstring(document.encode("utf-8"), etree.XMLParser(**options))
    except etree.XMLSyntaxError:
        root = etree.fromstring(document.encode("utf-8"), etree.XMLParser(recover=True, **options))
        if root is None:
            raise ValueError("the page body is not well-formed storage format") from None
    return _Parsed(root, {uri: prefix for prefix, uri in namespaces.items()})


def storage_to_markdown(xhtml: str, *, resolve_user: UserResolver | None = None) -> str:
    """Convert a page body in storage format to Markdown-like text."""
    if not xhtml or not xhtml.strip():
        return ""
    parsed = parse_storage(xhtml)
    renderer = _Renderer(parsed.prefixes, resolve_user)
    text = "\n\n".join(b for b in renderer.container(parsed.root) if b.strip()).strip("\n")
    return text + "\n" if text else ""


def _drop_keeping_tail(el: Any) -> None:
    parent = el.getparent()
    previous = el.getprevious()
    if el.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _collapse(text: str) -> str:
    return re.sub(r"[ \t\r\n\f\v\u00a0]+", " ", text)  # &nbsp; is a space to a reader


def _fence_for(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    return "`" * max(3, longest + 1)


def _indent(text: str, first: str, rest: str) -> str:
    """Prefix the first line with `first` and the others with `rest`, leaving fenced code as is."""
    out: list[str] = []
    fence: str | None = None
    for i, line in enumerate(text.split("\n")):
        if fence is not None:
            out.append(line)
            if line.strip() == fence:
                fence = None
            continue
        stripped = line.lstrip()
        if stripped.startswith("```"):
            fence = re.match(r"`+", stripped).group(0)  # type: ignore[union-attr]
            out.append(first + line if i == 0 else line)
            continue
        out.append((first if i == 0 else rest) + line if line or i == 0 else line)
    return "\n".join(out)


class _Renderer:
    def __init__(self, prefixes: dict[str, str], resolve_user: UserResolver | None) -> None:
        self.prefixes = prefixes
        self.resolve_user = resolve_user

    # ----- names ---------------------------------------------------------------------

    def name(self, el: Any) -> str:
        tag = el.tag
        if not isinstance(tag, str):
            return ""  # comment or processing instruction
        if tag.startswith("{"):
            uri, local = tag[1:].split("}", 1)
            prefix = self.prefixes.get(uri)
            return f"{prefix}:{local}" if prefix else local
        return tag.lower()

    def attr(self, el: Any, name: str, default: str = "") -> str:
        if ":" in name:
            prefix, local = name.split(":", 1)
            uri = next((u for u, p in self.prefixes.items() if p == prefix), None)
            if uri is not None:
                value = el.get(f"{{{uri}}}{local}")
                if value is not None:
                    return str(value)
        value = el.get(name)
        return str(value) if value is not None else default

    def children(self, el: Any, name: str) -> list[Any]:
        return [c for c in el if self.name(c) == name]

    def macro_name(self, el: Any) -> str:
        return self.attr(el, "ac:name").lower()

    def is_code_macro(self, el: Any) -> bool:
        if self.macro_name(el) in CODE_MACROS:
            return True
        has_plain = any(self.name(c) == "ac:plain-text-body" for c in el)
        return has_plain and bool(self.parameter(el, "language"))

    def groups(self, el: Any) -> list[list[Any]]:
        """The children of `el`, adjacent runs of one mark with nothing between them as one group.

        `<strong>I</strong><strong>nstall</strong>` (the editor splits runs like this) must read
        `**Install**`, not `**I****nstall**`, or the word is lost to search and to the reader.
        """
        out: list[list[Any]] = []
        for child in el:
            name = self.name(child)
            kind = MARKS.get(name) or ("`" if name == "code" else None)
            if out and kind is not None:
                previous = out[-1][-1]
                prev_name = self.name(previous)
                prev_kind = MARKS.get(prev_name) or ("`" if prev_name == "code" else None)
                if prev_kind == kind and not previous.tail:
                    out[-1].append(child)
                    continue
            out.append([child])
        return out

    def parameter(self, macro: Any, name: str) -> str:
        for child in macro:
            if self.name(child) == "ac:parameter" and self.attr(child, "ac:name") == name:
                return _collapse("".join(child.itertext())).strip()
        return ""

    def is_block(self, el: Any) -> bool:
        name = self.name(el)
        if name in BLOCK_TAGS:
            return True
        if name == "ac:structured-macro" or name == "ac:macro":
            return self.macro_name(el) not in INLINE_MACROS
        return False

    # ----- blocks ----------------------------------------------------------------------

    def container(self, el: Any) -> list[str]:
        """The blocks of an element holding a mix of text, inline elements and blocks."""
        blocks: list[str] = []
        # Newlines in the source are whitespace; only <br/> (rendered as "\n") breaks a line.
        inline: list[str] = [_collapse(el.text or "")]

        def flush() -> None:
            paragraph = self.paragraph("".join(inline))
            if paragraph:
                blocks.append(paragraph)
            inline.clear()

        for group in self.groups(el):
            child = group[0]
            name = self.name(child)
            if len(group) == 1 and name and self.is_block(child):
                flush()
                blocks.extend(b for b in self.block(child) if b.strip())
            else:
                inline.append(self.inline_group(group))
            inline.append(_collapse(group[-1].tail or ""))
        flush()
        return blocks

    @staticmethod
    def paragraph(text: str) -> str:
        lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
        return "\n".join(line for line in lines if line)

    def block(self, el: Any) -> list[str]:
        name = self.name(el)
        if re.fullmatch(r"h[1-6]", name):
            title = self.paragraph(self.inline_children(el)).replace("\n", " ")
            return [f"{'#' * int(name[1])} {title}"] if title else []
        if name in {"ul", "ol"}:
            return [self.list_block(el, ordered=name == "ol")]
        if name == "ac:task-list":
            return [self.task_list(el)]
        if name == "table":
            return self.table(el)
        if name == "pre":
            code = "".join(el.itertext())
            return [self.fenced(code, "")]
        if name == "blockquote":
            inner = "\n\n".join(self.container(el))
            return ["\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))]
        if name == "hr":
            return []
        if name == "dl":
            return self.definition_list(el)
        if name in {"ac:structured-macro", "ac:macro"}:
            return self.macro(el)
        return self.container(el)

    def fenced(self, code: str, language: str) -> str:
        fence = _fence_for(code)
        body = code if code.endswith("\n") else code + "\n"
        return f"{fence}{language}\n{body}{fence}"

    def list_block(self, el: Any, *, ordered: bool) -> str:
        items: list[str] = []
        try:
            number = int(el.get("start") or 1)
        except ValueError:
            number = 1
        for li in el:
            if self.name(li) != "li":
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            body = "\n".join(self.container(li)) or ""
            items.append(_indent(body, marker, " " * len(marker)))
        return "\n".join(items)

    def task_list(self, el: Any) -> str:
        items: list[str] = []
        for task in self.children(el, "ac:task"):
            status = ""
            body_blocks: list[str] = []
            for part in task:
                part_name = self.name(part)
                if part_name == "ac:task-status":
                    status = "".join(part.itertext()).strip()
                elif part_name == "ac:task-body":
                    body_blocks = self.container(part)
            box = "[x]" if status == "complete" else "[ ]"
            items.append(_indent("\n".join(body_blocks), f"- {box} ", "  "))
        return "\n".join(items)

    def table(self, el: Any) -> list[str]:
        """A table, then whatever a repaired (malformed) table held outside its cells."""
        rows: list[list[Cell]] = []
        loose: list[str] = []
        captions: list[str] = []
        self.collect_rows(el, rows, loose, captions)
        table = render(rows)
        return [*captions, *([table] if table else []), *loose]

    def collect_rows(self, node: Any, rows: list[list[Cell]], loose: list[str], captions: list[str]) -> None:
        # lxml's recovering parser nests the rows after an unclosed cell inside that cell's row:
        # rows are collected wherever they sit under the table (nested tables aside).
        stray: list[Cell] = []
        for child in node:
            name = self.name(child)
            if name == "tr":
                self.collect_row(child, rows, loose)
            elif name in {"td", "th"}:
                nested: list[Any] = []
                self.collect_cells(child, stray, nested, loose)
                if nested:
                    rows.append(stray)
                    stray = []
                for tr in nested:
                    self.collect_row(tr, rows, loose)
            elif name in {"thead", "tbody", "tfoot"}:
                self.collect_rows(child, rows, loose, captions)
            elif name == "caption":
                captions.extend(self.container(child))
            elif name and name not in {"colgroup", "col"}:
                loose.extend(self.loose(child))
            if (child.tail or "").strip():
                loose.append(self.paragraph(_collapse(child.tail)))
        if stray:
            rows.append(stray)

    def collect_row(self, tr: Any, rows: list[list[Cell]], loose: list[str]) -> None:
        cells: list[Cell] = []
        nested: list[Any] = []
        self.collect_cells(tr, cells, nested, loose)
        if (tr.text or "").strip():
            cells.insert(0, Cell(_collapse(tr.text).strip()))
        rows.append(cells)
        for inner in nested:
            self.collect_row(inner, rows, loose)

    def collect_cells(self, node: Any, cells: list[Cell], nested: list[Any], loose: list[str]) -> None:
        """The cells of a row, including cells and rows a repaired cell holds as children."""
        children = [node] if self.name(node) in {"td", "th"} else list(node)
        for child in children:
            name = self.name(child)
            if name in {"td", "th"}:
                cells.append(
                    Cell(
                        self.cell(child),
                        header=name == "th",
                        colspan=span(child.get("colspan")),
                        rowspan=span(child.get("rowspan")),
                    )
                )
                for stray in self.strays(child):
                    if self.name(stray) == "tr":
                        nested.append(stray)
                    else:
                        self.collect_cells(stray, cells, nested, loose)
            elif name == "tr":
                nested.append(child)
            elif name:
                loose.extend(self.loose(child))
            if child is not node and self.name(node) not in {"td", "th"} and (child.tail or "").strip():
                cells.append(Cell(_collapse(child.tail).strip()))

    def loose(self, el: Any) -> list[str]:
        if self.is_block(el):
            return [b for b in self.block(el) if b.strip()]
        text = self.paragraph(self.inline(el))
        return [text] if text else []

    def strays(self, el: Any) -> Iterator[Any]:
        """Cells and rows a repaired cell holds (at any depth, nested tables aside)."""
        for child in el:
            name = self.name(child)
            if name in {"td", "th", "tr"}:
                yield child
            elif name != "table":
                yield from self.strays(child)

    def cell(self, el: Any) -> str:
        if next(self.strays(el), None) is not None:
            el = copy.deepcopy(el)  # the strays are cells and rows of their own: not this cell's text
            for stray in list(self.strays(el)):
                _drop_keeping_tail(stray)
        blocks = self.container(el)
        if any(FENCE_LINE.match(line) for block in blocks for line in block.split("\n")):
            return "\n".join(blocks)  # code keeps its lines; the table is laid out as records
        text = " ".join(block.replace("\n", " ") for block in blocks)
        return re.sub(r" {2,}", " ", text).strip()

    def definition_list(self, el: Any) -> list[str]:
        lines: list[str] = []
        for child in el:
            text = " ".join(self.container(child)).replace("\n", " ")
            if self.name(child) == "dt":
                lines.append(f"**{text}**")
            elif self.name(child) == "dd":
                lines.append(f": {text}")
        return ["\n".join(lines)] if lines else []

    def macro(self, el: Any) -> list[str]:
        name = self.macro_name(el)
        if self.is_code_macro(el):
            return self.code_macro(el)
        if name in SILENT_MACROS:
            return self.macro_strays(el)
        if name in {"include", "excerpt-include"}:
            target = self.link_target(el)
            return ([f"(includes {target})"] if target else []) + self.macro_strays(el)
        body = next((c for c in el if self.name(c) == "ac:rich-text-body"), None)
        plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
        title = self.parameter(el, "title")
        blocks: list[str] = []
        if name in PANEL_LABELS:
            label = f"**{PANEL_LABELS[name]}:**"
            blocks.append(f"{label} {title}" if title else label)
        elif title:
            blocks.append(f"**{title}**")
        if body is not None:
            blocks.extend(self.container(body))
        elif plain is not None:
            text = "".join(plain.itertext())
            if text.strip():
                blocks.append(text.strip("\n"))
        else:
            inline = self.inline_macro(el)
            if inline:
                blocks.append(inline)
        return blocks + self.macro_strays(el)

    def macro_strays(self, el: Any) -> list[str]:
        """What a recovering parser moved into a macro beside its body (it belongs to the page)."""
        blocks: list[str] = []
        for child in el:
            name = self.name(child)
            if name and name not in MACRO_PARTS and not name.startswith("ri:"):
                blocks.extend(self.loose(child))
            if (child.tail or "").strip():
                blocks.append(self.paragraph(_collapse(child.tail)))
        return blocks

    def code_macro(self, el: Any) -> list[str]:
        language = self.parameter(el, "language").lower() if self.macro_name(el) != "noformat" else ""
        language = re.sub(r"[^\w+#.-]", "", language)
        plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
        code = "".join(plain.itertext()) if plain is not None else ""
        blocks = []
        title = self.parameter(el, "title")
        if title:
            blocks.append(f"**{title}**")
        if code.strip():
            blocks.append(self.fenced(code, language))
        return blocks + self.macro_strays(el)

    # ----- inline ----------------------------------------------------------------------

    def inline_children(self, el: Any) -> str:
        parts = [_collapse(el.text or "")]
        for group in self.groups(el):
            parts.append(self.inline_group(group))
            parts.append(_collapse(group[-1].tail or ""))
        return "".join(parts)

    def inline_group(self, group: list[Any]) -> str:
        if len(group) == 1:
            return self.inline(group[0])
        if self.name(group[0]) == "code":
            return self.code_span(group)
        return self.mark(group)

    def mark(self, group: list[Any]) -> str:
        """`**bold**` around a run of one mark, its outer spaces kept outside the marker."""
        marker = MARKS[self.name(group[0])]
        raw = "".join(self.inline_children(el) for el in group)
        inner = raw.strip()
        if not inner:
            return " " if raw else ""
        lead = " " if raw[:1].isspace() else ""
        trail = " " if raw[-1:].isspace() else ""
        return f"{lead}{marker}{inner}{marker}{trail}"

    def code_span(self, group: list[Any]) -> str:
        """Inline code; links inside keep their text, and their target where links show one."""
        parts: list[str] = []
        links: list[tuple[str, str]] = []
        for el in group:
            self.code_text(el, parts, links)
        raw = _collapse("".join(parts))
        inner = raw.strip()
        if not inner:
            return ""
        tick = "``" if "`" in inner else "`"
        pad = " " if len(tick) == 2 else ""
        code = f"{tick}{pad}{inner}{pad}{tick}"
        targets = [target for text, target in links if target and target != f"page: {text}"]
        lead = " " if raw[:1].isspace() else ""
        trail = " " if raw[-1:].isspace() else ""
        if len(links) == 1 and targets and links[0][0] == inner:
            return f"{lead}[{code}]({targets[0]}){trail}"
        return lead + code + "".join(f" ({t})" for t in targets) + trail

    def code_text(self, el: Any, parts: list[str], links: list[tuple[str, str]]) -> None:
        parts.append(el.text or "")
        for child in el:
            name = self.name(child)
            if name == "a":
                text = _collapse("".join(child.itertext())).strip()
                href = self.attr(child, "href")
                parts.append(text)
                links.append((text, href if href and not href.startswith("#") else ""))
            elif name == "ac:link":
                if any(self.name(c) == "ri:user" for c in child):
                    parts.append(self.ac_link(child))
                else:
                    target = self.link_target(child)
                    title = target.split(": ")[-1] if target.startswith("page: ") else target
                    text = self.link_body(child) or title
                    parts.append(text)
                    links.append((text, target))
            elif name == "ac:emoticon":
                parts.append(self.emoticon(child))
            elif name and not name.startswith("ri:") and name not in {"ac:parameter", "ac:placeholder"}:
                self.code_text(child, parts, links)
            parts.append(child.tail or "")

    def emoticon(self, el: Any) -> str:
        """An emoticon as its short name (`:warning:`): it often carries the meaning of a line."""
        short = self.attr(el, "ac:emoji-shortname").strip()
        if short:
            return short if short.startswith(":") else f":{short}:"
        name = self.attr(el, "ac:name").strip()
        return f":{name}:" if name else self.attr(el, "ac:emoji-fallback")

    def inline(self, el: Any) -> str:
        name = self.name(el)
        if not name:
            return ""
        if name == "br":
            return "\n"
        if name in MARKS:
            return self.mark([el])
        if name == "code":
            return self.code_span([el])
        if name == "a":
            return self.anchor(el)
        if name == "ac:link":
            return self.ac_link(el)
        if name == "ac:image":
            return self.image(el)
        if name == "ac:emoticon":
            return self.emoticon(el)
        if name == "time":
            return self.attr(el, "datetime") or self.inline_children(el)
        if name in {"ac:structured-macro", "ac:macro"}:
            return self.inline_macro(el)
        if name in {"ac:placeholder", "ac:parameter"}:
            return ""
        if name.startswith("ri:"):
            return ""
        if self.is_block(el):
            return " " + " ".join(b.replace("\n", " ") for b in self.block(el)) + " "
        return self.inline_children(el)

    def anchor(self, el: Any) -> str:
        text = self.paragraph(self.inline_children(el)).replace("\n", " ")
        href = self.attr(el, "href")
        if not href or href.startswith("#"):
            return text
        if not text or text == href:
            return f"<{href}>"
        return f"[{text}]({href})"

    def link_body(self, el: Any) -> str:
        for child in el:
            name = self.name(child)
            if name == "ac:plain-text-link-body":
                return _collapse("".join(child.itertext())).strip()
            if name == "ac:link-body":
                return self.paragraph(self.inline_children(child)).replace("\n", " ")
        return ""

    def link_target(self, el: Any) -> str:
        """A human label of what an `ac:link` (or include macro) points to."""
        for child in el.iter():
            name = self.name(child)
            if name == "ri:page":
                title = self.attr(child, "ri:content-title")
                space = self.attr(child, "ri:space-key")
                label = f"{space}: {title}" if space and title else title
                return f"page: {label}" if label else ""
            if name == "ri:blog-post":
                return f"blog post: {self.attr(child, 'ri:content-title')}"
            if name == "ri:attachment":
                return f"attachment: {self.attr(child, 'ri:filename')}"
            if name == "ri:url":
                return self.attr(child, "ri:value")
            if name == "ri:space":
                return f"space: {self.attr(child, 'ri:space-key')}"
            if name == "ri:content-entity":
                return f"content: {self.attr(child, 'ri:content-id')}"
        return ""

    def ac_link(self, el: Any) -> str:
        user = next((c for c in el if self.name(c) == "ri:user"), None)
        if user is not None:
            return self.mention(user, self.link_body(el))
        text = self.link_body(el)
        target = self.link_target(el)
        anchor = self.attr(el, "ac:anchor")
        if not target:
            return text or (f"#{anchor}" if anchor else "")
        if target.startswith("page: ") and not text:
            return f"[{target[len('page: ') :]}]"
        if not text:
            return f"[{target}]"
        return f"[{text}]({target})"

    def mention(self, user: Any, text: str) -> str:
        ids = {
            key: self.attr(user, f"ri:{key}")
            for key in ("userkey", "account-id", "username", "local-id")
            if self.attr(user, f"ri:{key}")
        }
        name = None
        if self.resolve_user is not None and ids:
            name = self.resolve_user(ids)
        name = name or text.lstrip("@") or ids.get("username") or "unknown user"
        return f"@{name}"

    def image(self, el: Any) -> str:
        alt = self.attr(el, "ac:alt") or self.attr(el, "ac:title")
        target = next((c for c in el if self.name(c) in {"ri:attachment", "ri:url"}), None)
        source = ""
        if target is not None:
            source = self.attr(target, "ri:filename") or self.attr(target, "ri:value")
        label = alt or source
        return f"[image: {label}]" if label else ""

    def inline_macro(self, el: Any) -> str:
        name = self.macro_name(el)
        if name == "status":
            title = self.parameter(el, "title") or self.parameter(el, "colour")
            return f"[{title.upper()}]" if title else ""
        if name == "jira":
            key = self.parameter(el, "key")
            return key or ""
        if name == "view-file":
            target = self.link_target(el)
            return f"[{target}]" if target else ""
        if name in SILENT_MACROS:
            return ""
        if self.is_code_macro(el):
            plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
            code = _collapse("".join(plain.itertext())).strip() if plain is not None else ""
            return f"`{code}`" if code else ""
        body = next((c for c in el if self.name(c) in {"ac:rich-text-body", "ac:plain-text-body"}), None)
        return self.inline_children(body) if body is not None else ""
