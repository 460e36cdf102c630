"""Confluence storage format (XHTML with `ac:`/`ri:` elements) → Markdown-like text.

The output keeps what a reader (and the heading-aware chunker) needs: `#` headings, lists,
tables as one row per line, links with their target, `@name` mentions, code macros as
fenced blocks with their language and exact whitespace, and the text of panels.

`CONVERTER_VERSION` changes whenever the same page would convert differently; the source
puts it in each page's version, so an upgrade re-converts (and re-embeds) every page once.

The conversion is layered: `confluence_storage` parses and names elements,
`confluence_inline` renders text within a line, `confluence_macros` renders macros, and
this module's renderer the blocks (headings, lists, tasks, tables, quotes) built from them,
with `confluence_tables` laying out table rows.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from rag.sources.confluence_inline import UserResolver
from rag.sources.confluence_macros import MacroRenderer
from rag.sources.confluence_storage import collapse, parse_storage
from rag.sources.confluence_tables import Cell, render, span

# parse_storage and UserResolver were defined here before the split; callers still import them here.
__all__ = ["CONVERTER_VERSION", "UserResolver", "parse_storage", "storage_to_markdown"]

CONVERTER_VERSION = 2

FENCE_LINE = re.compile(r"^\s*```")


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


class _Renderer(MacroRenderer):
    """The blocks of a page; the inline and macro layers are inherited."""

    def container(self, el: Any) -> list[str]:
        """The blocks of an element holding a mix of text, inline elements and blocks."""
        blocks: list[str] = []
        # Newlines in the source are whitespace; only <br/> (rendered as "\n") breaks a line.
        inline: list[str] = [collapse(el.text or "")]

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
            inline.append(collapse(group[-1].tail or ""))
        flush()
        return blocks

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
                loose.append(self.paragraph(collapse(child.tail)))
        if stray:
            rows.append(stray)

    def collect_row(self, tr: Any, rows: list[list[Cell]], loose: list[str]) -> None:
        cells: list[Cell] = []
        nested: list[Any] = []
        self.collect_cells(tr, cells, nested, loose)
        if (tr.text or "").strip():
            cells.insert(0, Cell(collapse(tr.text).strip()))
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
                cells.append(Cell(collapse(child.tail).strip()))

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
