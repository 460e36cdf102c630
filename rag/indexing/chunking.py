"""Chunkers: cut a document into pieces that fit the embedding model, keeping line ranges.

This module is the entry point the rest of ragbot imports chunking from. It owns no logic of its
own: `rag.indexing.prose_chunks` owns line packing and Markdown sections (`LineChunker`), and
`rag.indexing.code_chunks` owns tree-sitter parsing and the syntax-aware `SyntaxChunker` built on
it; ingest uses `SyntaxChunker`, which hands text without a grammar to `LineChunker`'s packing.
"""

from __future__ import annotations

from rag.indexing.code_chunks import (
    GRAMMARS,
    SYNTAX_CHUNKER_VERSION,
    SyntaxChunker,
    code_language_of,
    enclosing_symbol,
    parse,
    signature,
)
from rag.indexing.prose_chunks import CHUNKER_VERSION, LineChunker, Section, TokenCounter, markdown_sections

__all__ = [
    "CHUNKER_VERSION",
    "GRAMMARS",
    "SYNTAX_CHUNKER_VERSION",
    "LineChunker",
    "Section",
    "SyntaxChunker",
    "TokenCounter",
    "code_language_of",
    "enclosing_symbol",
    "markdown_sections",
    "parse",
    "signature",
]
