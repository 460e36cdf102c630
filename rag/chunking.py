"""Chunkers: cut a document into pieces that fit the embedding model, keeping line ranges."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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

log = logging.getLogger(__name__)


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


# ----- syntax-aware code chunking (tree-sitter) -----------------------------------------------

SYNTAX_CHUNKER_VERSION = "syntax-1"

#: language → (grammar module, function returning the language pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}

#: Nodes that open a named scope; their first line (the signature) becomes the chunk's symbol.
DEFINITIONS = frozenset(
    {
        # python
        "function_definition",
        "class_definition",
        # javascript / typescript
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "abstract_class_declaration",
        "method_definition",
        "interface_declaration",
        "enum_declaration",
        "module",
        "internal_module",
        # java
        "method_declaration",
        "constructor_declaration",
        "record_declaration",
        "annotation_type_declaration",
        # c / c++
        "struct_specifier",
        "class_specifier",
        "union_specifier",
        "namespace_definition",
        "template_declaration",
        # go
        "type_declaration",
        # rust
        "function_item",
        "impl_item",
        "trait_item",
        "struct_item",
        "enum_item",
        "mod_item",
        "macro_definition",
    }
)
COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
SYMBOL_CHARS = 120


def _grammar(language: str) -> object | None:
    import importlib

    spec = GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec[0])
    except ImportError:
        return None
    from tree_sitter import Language

    return Language(getattr(module, spec[1])())


_LANGUAGES: dict[str, object | None] = {}


def parse(text: str, language: str) -> object | None:
    """The tree-sitter root node of `text`, or None without a grammar for `language`."""
    if language not in _LANGUAGES:
        _LANGUAGES[language] = _grammar(language)
    grammar = _LANGUAGES[language]
    if grammar is None:
        return None
    from tree_sitter import Parser

    # A Parser is cheap and not thread-safe: one per call.
    return Parser(grammar).parse(text.encode("utf-8", "surrogatepass")).root_node  # type: ignore[arg-type]


def _error_count(node: object) -> int:
    n = 0
    stack = [node]
    while stack:
        cur: Any = stack.pop()
        if cur.type == "ERROR" or cur.is_missing:
            n += 1
        if cur.has_error:
            stack.extend(cur.children)
    return n


def code_language_of(text: str) -> str | None:
    """Guess a file's language from its content (for sets that give no file names): fewest parse errors."""
    best: tuple[int, str] | None = None
    for language in ("python", "rust", "go", "java", "typescript", "cpp", "c", "javascript"):
        root = parse(text, language)
        if root is None:
            continue
        errors = _error_count(root)
        if best is None or errors < best[0]:
            best = (errors, language)
    return best[1] if best else None


def signature(node: Any) -> str:
    """A definition's first line, trimmed of its body opener: `class Foo(Base)`, `fn run(&self)`."""
    text = node.text.decode("utf-8", "replace")
    body = node.child_by_field_name("body")
    if body is not None and body.start_byte > node.start_byte:
        text = text[: body.start_byte - node.start_byte]
    line = " ".join(text.split())
    return line.rstrip("{:= ").strip()[:SYMBOL_CHARS]


def _scopes(root: Any, first: int, last: int) -> list[str]:
    """Signatures of the definitions enclosing 0-based rows [first, last], outermost first."""
    chain: list[str] = []
    node = root
    while True:
        inner = None
        for child in node.children:
            if (
                child.start_point[0] <= first
                and child.end_point[0] >= last
                and child.end_byte > child.start_byte
            ):
                inner = child
                break
        if inner is None:
            return chain
        if inner.type in DEFINITIONS:
            chain.append(signature(inner))
        node = inner


def enclosing_symbol(text: str, language: str, start_line: int, end_line: int) -> str | None:
    """`class A > def f(self)` for the lines start_line..end_line (1-based) of a file, if any."""
    root = parse(text, language)
    if root is None:
        return None
    chain = _scopes(root, start_line - 1, end_line - 1)
    return " > ".join(chain) or None


@dataclass(frozen=True)
class _Unit:
    """Rows [first, last] (0-based, inclusive) that stay together, inside the given scope chain."""

    first: int
    last: int
    tokens: int
    scope: tuple[str, ...]


class SyntaxChunker(LineChunker):
    """Code cut along its syntax tree: whole functions and classes packed up to the budget.

    A definition that does not fit is split along its children (the body's statements, a
    class's methods), recursively; small neighbours are packed together; comments stay with
    the code that follows them. Languages without a grammar (and Markdown, prose) are cut by
    the line packer. Each chunk's header names the file, the enclosing class/function
    signature and the line range.
    """

    def __init__(
        self,
        *,
        count_tokens: TokenCounter,
        chunk_tokens: int,
        overlap_tokens: int,
        max_tokens: int,
        vector_variant: str = "",
    ) -> None:
        super().__init__(
            count_tokens=count_tokens,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            max_tokens=max_tokens,
        )
        # How the vectors are computed (e.g. int8) beyond the model name: part of the signature
        # so that switching it re-embeds each document once instead of mixing two kinds of vectors.
        self.vector_variant = vector_variant

    @property
    def signature(self) -> str:
        variant = f":{self.vector_variant}" if self.vector_variant else ""
        return f"{SYNTAX_CHUNKER_VERSION}:{super().signature}{variant}"

    def chunk(self, doc: Document) -> list[Chunk]:
        language = doc.language or ""
        text = doc.text.replace("\r\n", "\n")
        if language not in GRAMMARS or not text.strip():
            return super().chunk(doc)
        try:
            root: Any = parse(text, language)
        except Exception:  # a grammar crash must not lose the file: line packing still works
            log.warning("cannot parse %s as %s; falling back to line chunks", doc.doc_id, language)
            root = None
        if root is None or _unparsable(root):
            return super().chunk(doc)
        lines = text.split("\n")
        counts = self.count_tokens([line + "\n" for line in lines])
        budget = max(8, self.limit - self.count_tokens([self.header(doc, None) + " 0000-0000\n"])[0] - 24)
        units = self._units(root, 0, len(lines) - 1, (), counts, budget)
        chunks: list[Chunk] = []
        for first, last, scope in self._merge(units, budget):
            # Blank lines at either end belong to no one: the line range points at the code.
            while first < last and not lines[first].strip():
                first += 1
            while last > first and not lines[last].strip():
                last -= 1
            if sum(counts[first : last + 1]) > budget:
                pieces = self._pack(lines, counts, Section(first, last + 1, None), budget)
            else:
                pieces = [(first + 1, last + 1, "\n".join(lines[first : last + 1]))]
            symbol = " > ".join(scope) or None
            for start, end, body in pieces:
                if not body.strip():
                    continue
                header = f"{self.header(doc, symbol)} | lines {start}-{end}"
                if symbol and self.count_tokens([f"{header}\n{body}"])[0] > self.limit:
                    # A long nest of signatures: keep the innermost scope only, or none.
                    inner = f"{self.header(doc, scope[-1][: SYMBOL_CHARS // 2])} | lines {start}-{end}"
                    fits = self.count_tokens([f"{inner}\n{body}"])[0] <= self.limit
                    header = inner if fits else f"{self.header(doc, None)} | lines {start}-{end}"
                chunks.append(self._make(doc, len(chunks), header, body, start, end, symbol))
        return chunks

    def _units(
        self, node: Any, first: int, last: int, scope: tuple[str, ...], counts: Sequence[int], budget: int
    ) -> list[_Unit]:
        """Rows first..last of `node`, as units that each fit the budget (or are one long line)."""
        tokens = sum(counts[first : last + 1])
        if tokens <= budget or first == last:
            return [_Unit(first, last, tokens, scope)]
        inner = (*scope, signature(node)) if node.type in DEFINITIONS and node.parent is not None else scope
        # Children grouped by the row they start on; a group runs to the row before the next one.
        # Comments join the group that follows them, so a doc comment stays with its function.
        starts: list[tuple[int, Any]] = []
        pending_comment: int | None = None
        for child in node.children:
            row = child.start_point[0]
            if row < first or row > last:
                continue
            if child.type in COMMENTS:
                pending_comment = row if pending_comment is None else pending_comment
                continue
            row = pending_comment if pending_comment is not None else row
            pending_comment = None
            if starts and starts[-1][0] >= row:
                if child.end_point[0] > starts[-1][1].end_point[0]:
                    starts[-1] = (starts[-1][0], child)
                continue
            starts.append((row, child))
        if len(starts) == 1 and starts[0][0] <= first and starts[0][1].end_point[0] >= last:
            # One child spans everything (a decorated definition, a body block): descend into it.
            return self._units(starts[0][1], first, last, inner, counts, budget)
        if not starts:  # nothing to split along (a long string or comment): line-packed later
            return [_Unit(first, last, tokens, inner)]
        units: list[_Unit] = []
        if starts[0][0] > first:  # the node's own opening lines (a signature, `class X {`)
            units.extend(self._lines(first, starts[0][0] - 1, inner, counts))
        for i, (row, child) in enumerate(starts):
            end = starts[i + 1][0] - 1 if i + 1 < len(starts) else last
            child_end = min(max(child.end_point[0], row), end)
            units.extend(self._units(child, row, child_end, inner, counts, budget))
            if child_end < end:
                units.extend(self._lines(child_end + 1, end, inner, counts))
        return units

    @staticmethod
    def _lines(first: int, last: int, scope: tuple[str, ...], counts: Sequence[int]) -> list[_Unit]:
        return [_Unit(first, last, sum(counts[first : last + 1]), scope)]

    @staticmethod
    def _merge(units: Sequence[_Unit], budget: int) -> list[tuple[int, int, tuple[str, ...]]]:
        """Greedy packing of consecutive units up to the budget; scope = their common prefix."""
        out: list[tuple[int, int, tuple[str, ...]]] = []
        cur: list[_Unit] = []
        used = 0

        def flush() -> None:
            if cur:
                # Blank lines (no tokens) say nothing about where the chunk is.
                scoped = [u for u in cur if u.tokens > 0] or cur
                scope = scoped[0].scope
                for u in scoped[1:]:
                    n = 0
                    while n < min(len(scope), len(u.scope)) and scope[n] == u.scope[n]:
                        n += 1
                    scope = scope[:n]
                out.append((cur[0].first, cur[-1].last, scope))

        for unit in units:
            if cur and used + unit.tokens > budget:
                flush()
                cur, used = [], 0
            cur.append(unit)
            used += unit.tokens
        flush()
        return out


def _unparsable(root: Any) -> bool:
    """Too broken to trust the tree: most top-level content is inside ERROR nodes."""
    if not root.has_error:
        return False
    total = max(1, root.end_byte - root.start_byte)
    broken = sum(c.end_byte - c.start_byte for c in root.children if c.type == "ERROR")
    return broken / total > 0.5
