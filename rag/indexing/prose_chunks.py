"""Line packing for prose and plain text: the base chunker, and Markdown cut at its headings.

This module owns `LineChunker`, which packs whole lines up to the embedding model's token budget
and gives every chunk a header saying where it is from, and the Markdown structure it respects:
`markdown_sections` (heading paths that chunks never cross) and fenced code blocks kept whole
where they fit. The syntax-aware code chunker in `rag.indexing.code_chunks` builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.models import Chunk, Document
from rag.sources.weblinks import line_anchor

TokenCounter = Callable[[Sequence[str]], list[int]]

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})")
# Not bumped for the fence-aware packing of Markdown (fenced blocks kept whole where they fit):
# a bump would re-embed every repository after an upgrade. Changed and new Markdown files get the
# new packing; Confluence pages get it because their converter version re-converts them once;
# `ragbot ingest --full` re-chunks everything at once.
CHUNKER_VERSION = "lines-1"


@dataclass(frozen=True)
class Section:
    """A run of lines [start, end) that chunks never cross, with its heading path."""

    start: int
    end: int
    symbol: str | None


def markdown_sections(lines: Sequence[str]) -> list[Section]:
    """Split at Markdown headings (not inside fenced code); symbol = 'H1 > H2 > H3'."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    symbol: str | None = None
    in_fence = False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if not match:
            continue
        if i > start:
            sections.append(Section(start, i, symbol))
        level = len(match.group(1))
        stack = [(lvl, title) for lvl, title in stack if lvl < level] + [(level, match.group(2))]
        symbol = " > ".join(title for _, title in stack)
        start = i
    if start < len(lines):
        sections.append(Section(start, len(lines), symbol))
    return _merge_bare_headings(sections, lines)


def _fenced_blocks(lines: Sequence[str], section: Section) -> dict[int, int]:
    """First line → last line (closing fence included) of each fenced block in the section."""
    blocks: dict[int, int] = {}
    opened: tuple[int, str] | None = None
    for i in range(section.start, section.end):
        if opened is None:
            if match := FENCE_OPEN.match(lines[i]):
                opened = (i, match.group(1))
            continue
        fence = lines[i].strip()
        # Closed by a line of the same fence character, at least as long as the opening one.
        if len(fence) >= len(opened[1]) and fence == opened[1][0] * len(fence):
            blocks[opened[0]] = i
            opened = None
    if opened is not None:
        blocks[opened[0]] = section.end - 1  # unclosed: runs to the end of the section
    return blocks


def _merge_bare_headings(sections: list[Section], lines: Sequence[str]) -> list[Section]:
    """A heading directly followed by a sub-heading joins it, so no chunk is a lone title."""
    merged: list[Section] = []
    carry: int | None = None
    for section in sections:
        start = carry if carry is not None else section.start
        content = [ln for ln in lines[section.start : section.end] if ln.strip()]
        if len(content) <= 1 and section is not sections[-1]:
            carry = start
            continue
        merged.append(Section(start, section.end, section.symbol))
        carry = None
    return merged


class LineChunker:
    """Packs whole lines up to a token budget; Markdown is cut at headings first.

    Every chunk's embedded text starts with a short header (path or title, and the section
    or symbol where known) so that a chunk found out of context still says where it is from.
    """

    def __init__(
        self, *, count_tokens: TokenCounter, chunk_tokens: int, overlap_tokens: int, max_tokens: int
    ) -> None:
        # Two special tokens ([CLS]/[SEP] or <s>/</s>) are added by the model on top.
        self.limit = max(16, min(chunk_tokens, max_tokens - 2))
        self.overlap = max(0, min(overlap_tokens, self.limit // 2))
        self.count_tokens = count_tokens

    @property
    def signature(self) -> str:
        """Changes whenever the same document would be cut differently."""
        return f"{CHUNKER_VERSION}:{self.limit}:{self.overlap}"

    def header(self, doc: Document, symbol: str | None) -> str:
        label = doc.path or doc.title
        crumbs = doc.metadata.get("breadcrumb") if doc.path is None else None
        parts = [label]
        if crumbs:
            parts.insert(0, str(crumbs))
        if symbol:
            parts.append(symbol)
        return " | ".join(parts)

    def sections(self, doc: Document, lines: Sequence[str]) -> list[Section]:
        if doc.language == "markdown":
            return markdown_sections(lines)
        return [Section(0, len(lines), None)]

    def chunk(self, doc: Document) -> list[Chunk]:
        text = doc.text.replace("\r\n", "\n")
        if not text.strip():
            return []
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline that ends the last line does not start another
        counts = self.count_tokens([line + "\n" for line in lines])
        chunks: list[Chunk] = []
        for section in self.sections(doc, lines):
            header = self.header(doc, section.symbol)
            budget = max(8, self.limit - self.count_tokens([header + "\n"])[0])
            fences = _fenced_blocks(lines, section) if doc.language == "markdown" else {}
            for start, end, body in self._pack(lines, counts, section, budget, fences):
                if not body.strip():
                    continue
                chunks.append(self._make(doc, len(chunks), header, body, start, end, section.symbol))
        return chunks

    def _pack(
        self,
        lines: Sequence[str],
        counts: Sequence[int],
        section: Section,
        budget: int,
        fences: dict[int, int] | None = None,
    ) -> list[tuple[int, int, str]]:
        """Greedy packing of lines [section.start, section.end) into (first, last, text) pieces.

        `fences` maps the first line of a fenced block to its last: a block that fits the budget
        starts a new piece rather than being cut, and is not repeated as overlap.
        """
        pieces: list[tuple[int, int, str]] = []
        current: list[int] = []
        used = 0
        fences = fences or {}
        fenced_until = -1
        whole: set[int] = set()  # lines of blocks kept whole: never repeated as a partial block
        for i in range(section.start, section.end):
            n = counts[i]
            if i in fences and i > fenced_until:
                last = fences[i]
                block = sum(counts[i : last + 1])
                if block <= budget:
                    if used + block > budget and current:
                        pieces.append(self._join(lines, current))
                        current = self._carry(current, counts, whole)
                        used = sum(counts[j] for j in current)
                        if used + block > budget:
                            current, used = [], 0
                    fenced_until = last
                    whole.update(range(i, last + 1))
            elif i <= fenced_until:
                current.append(i)  # inside a block already known to fit the current piece
                used += n
                continue
            if n > budget:
                if current:
                    pieces.append(self._join(lines, current))
                    current, used = [], 0
                pieces.extend(self._split_long_line(lines[i], i, n, budget))
                continue
            if used + n > budget and current:
                pieces.append(self._join(lines, current))
                carry = self._carry(current, counts, whole)
                current = carry
                used = sum(counts[j] for j in carry)
            current.append(i)
            used += n
        if current:
            pieces.append(self._join(lines, current))
        return pieces

    def _carry(self, indices: list[int], counts: Sequence[int], whole: set[int]) -> list[int]:
        """The overlap carried into the next piece, cut after any line of a block kept whole."""
        tail = self._overlap_tail(indices, counts)
        while tail and any(j in whole for j in tail):
            tail.pop(0)
        return tail

    def _overlap_tail(self, indices: list[int], counts: Sequence[int]) -> list[int]:
        tail: list[int] = []
        used = 0
        for j in reversed(indices[1:]):
            if used + counts[j] > self.overlap:
                break
            tail.insert(0, j)
            used += counts[j]
        return tail

    @staticmethod
    def _join(lines: Sequence[str], indices: list[int]) -> tuple[int, int, str]:
        # Blank lines at either end say nothing; leaving them out keeps line ranges tight.
        kept = list(indices)
        while len(kept) > 1 and not lines[kept[-1]].strip():
            kept.pop()
        while len(kept) > 1 and not lines[kept[0]].strip():
            kept.pop(0)
        return kept[0] + 1, kept[-1] + 1, "\n".join(lines[j] for j in kept)

    def _split_long_line(self, line: str, index: int, tokens: int, budget: int) -> list[tuple[int, int, str]]:
        # One line longer than the model's window (minified code, a data blob): cut it into
        # character windows sized from its token density, re-checked so none overflows.
        pieces: list[tuple[int, int, str]] = []
        width = max(16, int(len(line) * budget / max(tokens, 1) * 0.9))
        pos = 0
        while pos < len(line):
            piece = line[pos : pos + width]
            while len(piece) > 16 and self.count_tokens([piece])[0] > budget:
                piece = piece[: int(len(piece) * 0.8)]
            pieces.append((index + 1, index + 1, piece))
            pos += len(piece)
        return pieces

    def _make(
        self, doc: Document, index: int, header: str, body: str, start: int, end: int, symbol: str | None
    ) -> Chunk:
        url = doc.url
        if url and doc.path:
            url = line_anchor(url, start, end)  # GitHub, GitLab and Bitbucket each have their own
        return Chunk(
            source=doc.source,
            doc_id=doc.doc_id,
            index=index,
            text=body,
            embed_text=f"{header}\n{body}",
            title=doc.title,
            url=url,
            path=doc.path,
            start_line=start if doc.path else None,
            end_line=end if doc.path else None,
            language=doc.language,
            symbol=symbol,
        )
