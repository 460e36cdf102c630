"""Incremental BM25: the change log lets another process follow an ingest without rebuilding."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from rag.indexing.changelog import MAX_LOG_IDS, logged_change, read_log, record_change
from rag.indexing.lexical import COUNT_CHECK_SECONDS, LexicalIndex, LexicalIndexes
from rag.indexing.store import Collection, VectorStore, chunk_id
from rag.models import Chunk

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [
    "how is the chunk id computed",
    "retry the request after a timeout",
    "where is the collection metadata read",
    "redact secret values before indexing",
    "parse the cron expression",
    "embedding model could not be loaded",
    "delete stale chunks of a document",
    "slack thread reply formatting",
]


def _code_lines() -> list[str]:
    """Real code: the non-blank lines of ragbot's own modules."""
    lines: list[str] = []
    for path in sorted((ROOT / "rag").glob("*.py")):
        lines += [line.strip() for line in path.read_text().splitlines() if len(line.strip()) > 20]
    return lines


def _chunks(doc: str, texts: list[str], source_name: str | None = None) -> list[Chunk]:
    meta = {"source_name": source_name} if source_name else {}
    return [
        Chunk(
            source="code",
            doc_id=doc,
            index=i,
            text=text,
            embed_text=text,
            title=doc,
            url=None,
            path=doc,
            start_line=i + 1,
            end_line=i + 1,
            metadata=meta,
        )
        for i, text in enumerate(texts)
    ]


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 + 0.01 for b in digest[:8]]


def _write(collection: Collection, chunks: list[Chunk], *, delete: Sequence[str] = ()) -> None:
    """What the ingest does: a logged upsert + delete."""
    ids = [chunk_id(c.source, c.doc_id, c.index) for c in chunks]
    with logged_change(collection, ids + list(delete)):
        if chunks:
            collection.upsert(chunks, [_vector(c.text) for c in chunks], [{} for _ in chunks])
        collection.delete_ids(list(delete))


def _docs(lines: list[str], n: int, per: int, offset: int = 0) -> dict[str, list[str]]:
    return {f"mod{d}.py": lines[offset + d * per : offset + (d + 1) * per] for d in range(n)}


def _rankings(index: LexicalIndex) -> list[list[tuple[str, float]]]:
    return [[(rid, round(score, 4)) for rid, score in index.search(q, 10)] for q in QUERIES]


def _fresh_rebuild(collection: Collection, tmp_path: Path, name: str) -> LexicalIndex:
    index = LexicalIndex(tmp_path / name)
    index.rebuild(collection)
    return index


@pytest.fixture
def collection(make_settings) -> Collection:  # type: ignore[no-untyped-def]
    col = VectorStore(make_settings()).collection("code", "fake-model")
    assert col is not None
    return col


def test_incremental_index_ranks_exactly_as_a_full_rebuild_after_adds_updates_and_deletes(
    collection: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _code_lines()
    assert len(lines) > 900
    docs = _docs(lines, 30, 20)
    for doc, texts in docs.items():
        _write(collection, _chunks(doc, texts))
    bot = LexicalIndexes(tmp_path / "bot")
    first = bot.fresh(collection)
    assert len(first) == 600

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the change log should have been applied instead")

    # Adds (new documents with new terms), updates (changed texts, fewer chunks) and deletes.
    _write(collection, _chunks("new.py", lines[700:760]))
    updated = _chunks("mod3.py", lines[800:812])
    stale = [chunk_id("code", "mod3.py", i) for i in range(12, 20)]
    _write(collection, updated, delete=stale)
    _write(collection, [], delete=[chunk_id("code", "mod7.py", i) for i in range(20)])

    monkeypatch.setattr(LexicalIndex, "rebuild", no_rebuild)
    assert bot.get(collection.name).ensure_fresh(collection) is True
    monkeypatch.undo()
    assert len(bot.get(collection.name)) == collection.count() == 600 + 60 - 8 - 20

    incremental = _rankings(bot.get(collection.name))
    rebuilt = _rankings(_fresh_rebuild(collection, tmp_path, "full"))
    assert any(incremental), "the query set must find something"
    assert incremental == rebuilt


def test_another_process_applies_the_delta_to_its_saved_index_without_rebuilding(
    collection: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _code_lines()
    for doc, texts in _docs(lines, 10, 20).items():
        _write(collection, _chunks(doc, texts))
    LexicalIndexes(tmp_path / "bot").fresh(collection)  # saved at this generation, then exits

    _write(collection, _chunks("mod2.py", lines[500:520]))  # 10% of the chunks change
    calls: list[int] = []
    monkeypatch.setattr(LexicalIndex, "rebuild", lambda *a, **k: calls.append(1))
    restarted = LexicalIndexes(tmp_path / "bot").fresh(collection)
    assert calls == []
    monkeypatch.undo()
    assert _rankings(restarted) == _rankings(_fresh_rebuild(collection, tmp_path, "full"))


def test_a_crash_between_the_chroma_write_and_the_commit_is_repaired_by_the_next_query(
    collection: Collection, tmp_path: Path
) -> None:
    lines = _code_lines()
    for doc, texts in _docs(lines, 5, 20).items():
        _write(collection, _chunks(doc, texts))
    before = LexicalIndexes(tmp_path / "before")  # built before the crashed write
    before.fresh(collection)

    changed = _chunks("mod1.py", ["def refund_payment(payment_id): return gateway.refund(payment_id)"] * 20)
    ids = [chunk_id("code", "mod1.py", i) for i in range(20)]
    record_change(collection, ids, kind="intent")
    during = LexicalIndexes(tmp_path / "during")  # built while the write was under way
    during.fresh(collection)
    collection.upsert(changed, [_vector(c.text) for c in changed], [{} for _ in changed])
    # ... and the process dies here: no commit entry, the generation stays the intent's.

    for indexes in (before, during, LexicalIndexes(tmp_path / "after")):
        top = indexes.fresh(collection).search("refund the payment", 3)
        assert top and top[0][0] in ids
    assert _rankings(during.get(collection.name)) == _rankings(_fresh_rebuild(collection, tmp_path, "full"))


def test_an_unlogged_change_or_a_truncated_log_falls_back_to_a_rebuild(
    collection: Collection, tmp_path: Path
) -> None:
    lines = _code_lines()
    for doc, texts in _docs(lines, 5, 20).items():
        _write(collection, _chunks(doc, texts))
    now = [1000.0]
    bot = LexicalIndexes(tmp_path / "bot", clock=lambda: now[0])
    bot.fresh(collection)
    # An older writer that changed records without the log: the count gives it away, at the
    # first query once COUNT_CHECK_SECONDS have passed (a count scans the collection, so a
    # query does not pay for one while the generation stays the same).
    extra = _chunks("unlogged.py", ["def unlogged_helper_function(): pass"])
    collection.upsert(extra, [_vector(c.text) for c in extra], [{}])
    now[0] += COUNT_CHECK_SECONDS / 2
    assert bot.get(collection.name).ensure_fresh(collection) is False
    now[0] += COUNT_CHECK_SECONDS
    assert bot.get(collection.name).ensure_fresh(collection) is True
    assert bot.get(collection.name).search("unlogged helper function", 1)[0][0] == chunk_id(
        "code", "unlogged.py", 0
    )
    # A change too large for the log is logged as "anything": readers rebuild.
    many = [f"code:x:{i}" for i in range(MAX_LOG_IDS + 1)]
    record_change(collection, many)
    assert read_log(collection)[-1].ids is None
    assert bot.get(collection.name).ensure_fresh(collection) is True
    assert len(bot.get(collection.name)) == collection.count()


def test_a_filtered_search_returns_k_hits_from_the_named_sources_only(
    collection: Collection, tmp_path: Path
) -> None:
    text = "def connect_database(url): return engine.connect(url)"
    _write(collection, _chunks("a.py", [text] * 8, source_name="backend"))
    _write(collection, _chunks("b.py", [text + " pool"] * 8, source_name="frontend"))
    legacy = _chunks("c.py", [text] * 2)  # no source_name: its `source` kind stands in
    _write(collection, legacy)
    index = LexicalIndexes(tmp_path / "bot").fresh(collection)
    assert len(index.search("connect database", 20)) == 18
    backend = index.search("connect database", 5, source_names={"backend"})
    assert len(backend) == 5
    assert all(rid.startswith(chunk_id("code", "a.py", 0)[:-1]) for rid, _ in backend)
    assert len(index.search("connect database", 20, source_names=["code"])) == 2
    assert index.search("connect database", 5, source_names=[]) == []
