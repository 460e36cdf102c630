"""Line packing: chunks fit the model, keep exact line ranges, and Markdown splits at headings."""

from __future__ import annotations

import itertools

from rag.indexing.chunking import LineChunker, markdown_sections
from rag.indexing.embedding import EmbedderPool
from rag.models import Document


def chunker(embedders: EmbedderPool, size: int = 64, overlap: int = 0) -> LineChunker:
    e = embedders.get(None)
    return LineChunker(
        count_tokens=e.count_tokens, chunk_tokens=size, overlap_tokens=overlap, max_tokens=e.token_limit()
    )


def doc(text: str, path: str = "src/app.py", language: str = "python") -> Document:
    return Document(source="code", doc_id=path, title=path, text=text, path=path, language=language)


def test_chunks_fit_the_budget_and_cover_every_line_once(embedders: EmbedderPool) -> None:
    lines = [f"value_{i} = compute_something(argument_{i}, other={i})" for i in range(200)]
    c = chunker(embedders, size=64)
    chunks = c.chunk(doc("\n".join(lines) + "\n"))
    e = embedders.get(None)
    assert len(chunks) > 5
    for ch in chunks:
        assert e.count_tokens([ch.embed_text])[0] <= 64
        assert ch.text.split("\n") == lines[ch.start_line - 1 : ch.end_line]
        assert ch.embed_text.startswith("src/app.py\n")
    covered = [n for ch in chunks for n in range(ch.start_line, ch.end_line + 1)]
    assert covered == list(range(1, 201))


def test_overlap_repeats_trailing_lines(embedders: EmbedderPool) -> None:
    lines = [f"line_number_{i} = {i}" for i in range(100)]
    chunks = chunker(embedders, size=64, overlap=16).chunk(doc("\n".join(lines)))
    for a, b in itertools.pairwise(chunks):
        assert b.start_line <= a.end_line  # overlapping ranges
        assert b.start_line > a.start_line


def test_a_line_longer_than_the_model_window_is_cut_without_overflow(embedders: EmbedderPool) -> None:
    blob = "x = '" + "abcd efgh " * 2000 + "'"
    chunks = chunker(embedders, size=128).chunk(doc(f"a = 1\n{blob}\nb = 2\n"))
    e = embedders.get(None)
    assert len(chunks) > 10
    assert all(e.count_tokens([ch.embed_text])[0] <= 254 for ch in chunks)
    assert {(ch.start_line, ch.end_line) for ch in chunks[1:-1]} == {(2, 2)}
    assert "".join(ch.text for ch in chunks if ch.start_line == 2) == blob


def test_markdown_sections_follow_headings_outside_code_fences() -> None:
    text = "# Guide\nintro\n## Install\nrun it\n```\n# not a heading\n```\n## Deploy\nship it\n"
    sections = markdown_sections(text.split("\n"))
    symbols = [s.symbol for s in sections]
    assert symbols == ["Guide", "Guide > Install", "Guide > Deploy"]
    assert (sections[1].start, sections[1].end) == (2, 7)


def test_markdown_chunks_carry_their_heading_path(embedders: EmbedderPool) -> None:
    text = "# Runbook\n\n## Rollback\n\nRun `./rollback.sh v1.2`.\n\n## Paging\n\nCall the on-call.\n"
    chunks = chunker(embedders).chunk(doc(text, "docs/runbook.md", "markdown"))
    assert [c.symbol for c in chunks] == ["Runbook > Rollback", "Runbook > Paging"]
    assert chunks[0].embed_text.startswith("docs/runbook.md | Runbook > Rollback\n")
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 5)
    assert (chunks[1].start_line, chunks[1].end_line) == (7, 9)


def test_empty_text_has_no_chunks(embedders: EmbedderPool) -> None:
    assert chunker(embedders).chunk(doc("  \n\n")) == []
