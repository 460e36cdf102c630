"""Confluence tables as text that loses nothing: valid Markdown tables, or one line per cell.

Pages written by people (and by Markdown-to-Confluence tools) hold tables that Markdown
cannot say directly: cells spanning columns or rows, a first row of `<td>` rather than
`<th>`, code blocks inside cells. The converter collects the cells (`Cell`), and this module
lays them out: spans are padded so every row has the same width, a missing header row is
synthesised (empty), and a table with multi-line cells (code) becomes one `header: value`
line per cell, with the code fenced below its label, so line breaks and indentation survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SPAN = 64  # a colspan="1000" typo must not make a thousand empty cells


@dataclass(frozen=True)
class Cell:
    text: str  # the cell's blocks joined by newlines (a fenced block keeps its lines)
    header: bool = False
    colspan: int = 1
    rowspan: int = 1

    @property
    def multiline(self) -> bool:
        return "\n" in self.text.strip("\n")


def span(value: str | None) -> int:
    """A colspan/rowspan attribute as a small positive integer."""
    try:
        return max(1, min(MAX_SPAN, int(value or 1)))
    except ValueError:
        return 1


def grid(rows: list[list[Cell]]) -> list[list[Cell | None]]:
    """Rows of equal width: a spanning cell then None for each column or row it also covers."""
    out: list[list[Cell | None]] = []
    pending: dict[int, int] = {}  # column → rows still covered by a rowspan from above
    for cells in rows:
        row: list[Cell | None] = []
        queue = list(cells)
        col = 0
        while True:
            if pending.get(col, 0) > 0:
                pending[col] -= 1
                row.append(None)
                col += 1
            elif queue:
                cell = queue.pop(0)
                for offset in range(cell.colspan):
                    row.append(cell if offset == 0 else None)
                    if cell.rowspan > 1:
                        pending[col + offset] = cell.rowspan - 1
                col += cell.colspan
            elif any(c > col and n > 0 for c, n in pending.items()):
                row.append(None)  # a gap before a column still covered from above
                col += 1
            else:
                break
        out.append(row)
    width = max((len(r) for r in out), default=0)
    return [r + [None] * (width - len(r)) for r in out]


def _escape(text: str) -> str:
    return re.sub(r" {2,}", " ", text.replace("\n", " ")).strip().replace("|", "\\|")


def _is_header_row(row: list[Cell | None]) -> bool:
    cells = [c for c in row if c is not None]
    if not cells:
        return False
    if all(c.header for c in cells):
        return True
    # A first row of <td>s whose every non-empty cell is bold is a header written by hand.
    texts = [c.text.strip() for c in cells if c.text.strip()]
    return bool(texts) and all(re.fullmatch(r"\*\*[^*\n]+\*\*", t) for t in texts)


def _label(cell: Cell | None) -> str:
    if cell is None:
        return ""
    return _escape(cell.text).removeprefix("**").removesuffix("**").strip()


def render(rows: list[list[Cell]]) -> str:
    """The table as Markdown: a valid pipe table, or `label: value` lines for multi-line cells."""
    table = [r for r in grid(rows) if any(c is not None for c in r)]
    if not table:
        return ""
    # A header cell holding code is content, not a label to repeat before every value.
    has_header = _is_header_row(table[0]) and not any(c is not None and c.multiline for c in table[0])
    if any(c is not None and c.multiline for r in table for c in r):
        return _records(table, has_header)
    lines: list[str] = []
    body = table
    if has_header:
        lines.append("| " + " | ".join(_label(c) for c in table[0]) + " |")
        body = table[1:]
    else:
        lines.append("|" + "|".join("  " for _ in table[0]) + "|")
    lines.append("|" + "|".join(" --- " for _ in table[0]) + "|")
    for row in body:
        lines.append("| " + " | ".join(_escape(c.text) if c is not None else "" for c in row) + " |")
    return "\n".join(lines)


def _records(table: list[list[Cell | None]], has_header: bool) -> str:
    """One paragraph per row, one `label: value` line per cell; fenced code stays multi-line."""
    labels = [_label(c) for c in table[0]] if has_header else [""] * len(table[0])
    body = table[1:] if has_header else table
    if has_header and not body:
        body = table  # a table that is only a header row still says something
        labels = [""] * len(table[0])
    blocks: list[str] = []
    used = {i for row in body for i, c in enumerate(row) if c is not None and c.text.strip()}
    if any(label and i not in used for i, label in enumerate(labels)):
        blocks.append(" | ".join(label for label in labels if label))  # a header over empty columns
    for row in body:
        lines: list[str] = []
        for label, cell in zip(labels, row, strict=True):
            if cell is None or not cell.text.strip():
                continue
            text = cell.text.strip("\n")
            prefix = f"{label}: " if label else ""
            if cell.multiline:
                lines.append(f"{label}:" if label else "")
                lines.append(text)
            else:
                lines.append(prefix + text.strip())
        block = "\n".join(line for line in lines if line)
        if block:
            blocks.append(block)
    return "\n\n".join(blocks)
