"""Implementation first, then diversity: the prior, the per-file cap and merging of adjacent chunks."""

from __future__ import annotations

from rag.answering.ranking import chunk_indexes, diversify, intent_of, merge, prior, rerank, role_of
from rag.models import Hit


def hit(path: str, start: int, end: int, score: float, text: str = "x = 1", index: int | None = None) -> Hit:
    meta = {"doc_id": path, "chunk_index": index if index is not None else start // 10}
    return Hit("code", path, None, path, start, end, score, text, chunk_id=f"{path}:{start}", metadata=meta)


def test_intent_defaults_to_the_implementation_and_follows_test_and_doc_words() -> None:
    assert intent_of("where are chunk ids computed?") == "implementation"
    assert intent_of("how does the ingest skip unchanged files?") == "implementation"
    assert intent_of("which tests cover the ingest lock?") == "tests"
    assert intent_of("where is the retry policy documented?") == "docs"


def test_roles_from_paths() -> None:
    assert role_of(hit("rag/indexing/store.py", 1, 5, 1)) == "source"
    assert role_of(hit("tests/test_lexical.py", 1, 5, 1)) == "test"
    assert role_of(hit("pkg/store_test.go", 1, 5, 1)) == "test"
    assert role_of(hit("src/app.spec.ts", 1, 5, 1)) == "test"
    assert role_of(hit("tests/fixtures/repo/a.py", 1, 5, 1)) == "fixture"
    assert role_of(hit("docs/retrieval.md", 1, 5, 1)) == "doc"
    assert role_of(hit("README.md", 1, 5, 1)) == "doc"
    assert role_of(hit("examples/basic.py", 1, 5, 1)) == "example"
    page = Hit("confluence", "Deploying", "https://x/1", None, None, None, 1.0, "text")
    assert role_of(page) == "doc"


def test_where_question_ranks_the_definition_above_tests_and_docs() -> None:
    # The order the issue saw for "where are chunk ids computed?" before the prior.
    fused = [
        hit("tests/test_lexical.py", 1, 20, 0.30, "def test_chunk_ids():\n    assert chunk_id(...)"),
        hit("docs/retrieval.md", 1, 20, 0.29, "Chunk ids are computed from ..."),
        hit("docs/interface.md", 1, 20, 0.28, "chunk ids"),
        hit("rag/indexing/store.py", 20, 28, 0.27, "def chunk_id(source, doc_id, index):\n    return ..."),
    ]
    ranked = rerank("where are chunk ids computed?", fused, top_k=4)
    assert ranked[0].path == "rag/indexing/store.py"
    assert prior("implementation", fused[3]) > prior("implementation", fused[0])


def test_a_question_about_tests_ranks_tests_first() -> None:
    fused = [
        hit("rag/indexing/lexical.py", 1, 20, 0.30, "def tokenize(text):"),
        hit("tests/test_lexical.py", 1, 20, 0.25, "def test_tokenize_splits_identifiers():"),
    ]
    ranked = rerank("which tests check that tokenize splits identifiers?", fused, top_k=2)
    assert [h.path for h in ranked] == ["tests/test_lexical.py", "rag/indexing/lexical.py"]


def test_at_most_two_separate_places_per_file() -> None:
    hits = [
        hit("a.py", 1, 10, 0.9, index=0),
        hit("a.py", 40, 50, 0.8, index=4),
        hit("a.py", 80, 90, 0.7, index=8),
        hit("b.py", 1, 10, 0.6, index=0),
    ]
    out = diversify(hits, top_k=3)
    assert [(h.path, h.start_line) for h in out] == [("a.py", 1), ("a.py", 40), ("b.py", 1)]


def test_adjacent_chunks_merge_into_one_cited_range_without_repeating_the_overlap() -> None:
    first = hit("a.py", 1, 3, 0.9, "line1\nline2\nline3", index=0)
    second = hit("a.py", 3, 5, 0.5, "line3\nline4\nline5", index=1)
    other = hit("b.py", 1, 2, 0.4, "other", index=0)
    out = diversify([first, second, other], top_k=2)
    assert len(out) == 2
    merged = out[0]
    assert (merged.path, merged.start_line, merged.end_line) == ("a.py", 1, 5)
    assert merged.text == "line1\nline2\nline3\nline4\nline5"
    assert merged.score == 0.9
    assert chunk_indexes(merged) == [0, 1]
    assert merged.citation() == "a.py:1-5"
    assert out[1].path == "b.py"


def test_merge_of_touching_chunks_keeps_all_lines() -> None:
    merged = merge(hit("a.py", 11, 12, 0.5, "c\nd", index=1), hit("a.py", 9, 10, 0.4, "a\nb", index=0))
    assert (merged.start_line, merged.end_line, merged.text) == (9, 12, "a\nb\nc\nd")


def test_capped_hits_fill_the_top_k_when_other_files_run_out() -> None:
    hits = [hit("a.py", 100 * i, 100 * i + 10, 1.0 - i / 10, index=10 * i) for i in range(4)]
    out = diversify(hits, top_k=4)
    assert [h.start_line for h in out] == [0, 100, 200, 300]


def test_data_like_chunks_are_told_from_code_that_does_something() -> None:
    from rag.answering.ranking import data_like

    table = "STATUS = {\n" + "".join(f'    "code{i}": {i},\n' for i in range(12)) + "}\n"
    rows = "COLORS = [\n" + "".join(f"    ('red{i}', 0x{i:02x}, 1.5, None),\n" for i in range(10)) + "]\n"
    code = "def paint(canvas):\n" + "".join(f"    canvas.fill(x={i}, colour=pick({i}))\n" for i in range(12))
    assert data_like(table) and data_like(rows)
    assert data_like("var a=function(){return 1};" * 30)  # minified
    assert not data_like(code)
    assert not data_like("x = 1\ny = 2\n")  # too short to be a table
    # Hostile input is judged without a backtracking regex: a huge single line is minified, and
    # lines of brackets or operators are no table.
    assert data_like("(" * 50_000) and data_like("1+" * 50_000)
    assert not data_like(("(" * 300 + "\n") * 10) and not data_like(("1+" * 150 + "x\n") * 10)
