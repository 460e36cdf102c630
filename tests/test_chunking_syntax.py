"""Syntax-aware chunking: whole definitions kept together, oversized ones split, line ranges right."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest

from rag.indexing.chunking import LineChunker, SyntaxChunker, code_language_of, enclosing_symbol
from rag.models import Chunk, Document


def word_tokens(texts: Sequence[str]) -> list[int]:
    """A deterministic stand-in for the model's tokenizer: words and punctuation."""
    return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


def chunker(limit: int) -> SyntaxChunker:
    return SyntaxChunker(count_tokens=word_tokens, chunk_tokens=limit, overlap_tokens=0, max_tokens=10_000)


def doc(text: str, language: str, path: str = "src/x") -> Document:
    return Document(source="code", doc_id=path, title=path, text=text, path=path, language=language)


def function(name: str, body_lines: int) -> str:
    body = "\n".join(f"    value_{i} = compute_{i}(value_{i - 1})" for i in range(1, body_lines + 1))
    return f'def {name}(value_0):\n    """Docstring of {name}."""\n{body}\n    return value_{body_lines}\n'


def lines_of(chunk: Chunk, text: str) -> str:
    assert chunk.start_line is not None and chunk.end_line is not None
    return "\n".join(text.split("\n")[chunk.start_line - 1 : chunk.end_line])


def test_functions_that_fit_are_never_cut_in_half() -> None:
    source = "\n\n".join(function(f"f{i}", 6) for i in range(8))
    chunks = chunker(150).chunk(doc(source, "python"))
    assert len(chunks) > 1
    for i in range(8):
        holding = [c for c in chunks if f"def f{i}(" in c.text]
        assert len(holding) == 1
        assert "return value_6" in holding[0].text.split(f"def f{i}(")[1]
    # Every chunk's text is exactly its line range of the file.
    for c in chunks:
        assert c.text == lines_of(c, source)


def test_oversized_function_is_split_along_its_statements_with_its_signature_in_the_header() -> None:
    source = (
        "import os\n\n\nclass Store:\n    def load(self, key):\n"
        + "\n".join(f"        item_{i} = self.read(key, {i})" for i in range(60))
        + "\n        return item_59\n"
    )
    chunks = chunker(120).chunk(doc(source, "python", "pkg/store.py"))
    body = [c for c in chunks if "self.read" in c.text and "def load" not in c.text]
    assert len(body) >= 2
    for c in body:
        assert c.symbol == "class Store > def load(self, key)"
        assert c.embed_text.startswith(
            f"pkg/store.py | class Store > def load(self, key) | lines {c.start_line}-"
        )
        assert word_tokens([c.embed_text])[0] <= 120
    # Consecutive pieces cover the body without gaps or overlaps.
    ranges = [(c.start_line, c.end_line) for c in chunks]
    assert ranges[0][0] == 1
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end + 1
    assert ranges[-1][1] == source.rstrip("\n").count("\n") + 1


def test_small_neighbours_are_merged_and_comments_stay_with_the_next_function() -> None:
    source = "\n".join(
        f"// helper {i} explains itself\nfunction h{i}(a) {{\n  return a + {i};\n}}\n" for i in range(12)
    )
    chunks = chunker(100).chunk(doc(source, "javascript", "web/h.js"))
    assert 1 < len(chunks) < 12
    for c in chunks:
        for i in re.findall(r"function h(\d+)", c.text):
            assert f"// helper {i} explains itself" in c.text


@pytest.mark.parametrize(
    ("language", "source", "symbol"),
    [
        ("java", "class Shop {\n  int total(int a) {\n    return a;\n  }\n}\n", "class Shop"),
        (
            "go",
            "package m\n\ntype Shop struct {\n  n int\n}\n\nfunc (s *Shop) Total() int {\n  return s.n\n}\n",
            None,
        ),
        (
            "typescript",
            "export class Shop {\n  total(a: number): number {\n    return a;\n  }\n}\n",
            "class Shop",
        ),
        ("c", "struct shop {\n  int n;\n};\n\nint total(struct shop *s) {\n  return s->n;\n}\n", None),
        ("cpp", "namespace m {\nclass Shop {\n public:\n  int total() { return 1; }\n};\n}\n", "namespace m"),
        (
            "rust",
            "struct Shop { n: i32 }\n\nimpl Shop {\n    fn total(&self) -> i32 {\n        self.n\n    }\n}\n",
            None,
        ),
    ],
)
def test_each_grammar_chunks_and_finds_enclosing_scopes(
    language: str, source: str, symbol: str | None
) -> None:
    chunks = chunker(500).chunk(doc(source, language))
    assert len(chunks) == 1
    assert chunks[0].text == source.rstrip("\n")
    assert (chunks[0].start_line, chunks[0].end_line) == (1, source.rstrip("\n").count("\n") + 1)
    if symbol:
        assert enclosing_symbol(source, language, 3, 3) is not None
        assert enclosing_symbol(source, language, 3, 3).startswith(symbol)  # type: ignore[union-attr]


def test_languages_without_grammar_and_broken_files_fall_back_to_line_packing() -> None:
    lines = "\n".join(f"line {i} of the file" for i in range(40))
    syntax, plain = (
        chunker(40),
        LineChunker(count_tokens=word_tokens, chunk_tokens=40, overlap_tokens=0, max_tokens=10_000),
    )
    for language in ("kotlin", None):
        d = doc(lines, language or "")
        assert [c.text for c in syntax.chunk(d)] == [c.text for c in plain.chunk(d)]
    garbage = ") ) ) ( ( ( } } } { { {\n" * 30
    assert [c.text for c in syntax.chunk(doc(garbage, "python"))] == [
        c.text for c in plain.chunk(doc(garbage, "python"))
    ]


def test_signature_differs_from_the_line_chunker_so_a_chunker_change_rechunks_once() -> None:
    plain = LineChunker(count_tokens=word_tokens, chunk_tokens=40, overlap_tokens=4, max_tokens=512)
    syntax = SyntaxChunker(count_tokens=word_tokens, chunk_tokens=40, overlap_tokens=4, max_tokens=512)
    assert syntax.signature != plain.signature
    assert (
        syntax.signature
        == SyntaxChunker(
            count_tokens=word_tokens, chunk_tokens=40, overlap_tokens=4, max_tokens=512
        ).signature
    )


def test_language_guess_from_content() -> None:
    assert code_language_of("def f(x):\n    return x\n") == "python"
    assert code_language_of('fn main() {\n    let x: i32 = 1;\n    println!("{}", x);\n}\n') == "rust"
    assert code_language_of("package main\n\nfunc main() {\n\tx := 1\n\t_ = x\n}\n") == "go"
