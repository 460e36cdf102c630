"""Syntax-aware chunking of source code with tree-sitter.

This module owns the grammars (which languages have one, and parsing with them), the questions
asked of a syntax tree (`enclosing_symbol`: the class/function signatures around some lines;
`code_language_of`: a file's language guessed from its content), and `SyntaxChunker`, which
cuts code along whole definitions and falls back to `LineChunker`'s line packing for languages
without a grammar, for Markdown and prose, and for files too broken to parse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.indexing.prose_chunks import LineChunker, Section, TokenCounter
from rag.models import Chunk, Document

log = logging.getLogger(__name__)

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


def _unparsable(root: Any) -> bool:
    """Too broken to trust the tree: most top-level content is inside ERROR nodes."""
    if not root.has_error:
        return False
    total = max(1, root.end_byte - root.start_byte)
    broken = sum(c.end_byte - c.start_byte for c in root.children if c.type == "ERROR")
    return broken / total > 0.5


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
