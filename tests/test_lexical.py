"""BM25 with the code-aware tokenizer, weighted RRF fusion, and the index's life beside Chroma."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rag.answering.retrieval import rrf_fuse
from rag.indexing.changelog import bump_generation, collection_stamp
from rag.indexing.lexical import LexicalIndex, LexicalIndexes, tokenize
from rag.indexing.store import VectorStore, chunk_id
from rag.models import Chunk


def test_tokenizer_splits_camel_and_snake_case_and_keeps_the_whole_identifier() -> None:
    assert tokenize("parseHTTPResponse_v2(x)") == ["parsehttpresponse_v2", "pars", "http", "respons", "v2"]
    assert tokenize("max_batch_size") == ["max_batch_s", "max", "batch", "size"]
    assert tokenize("DiffExecutor") == ["diffexecutor", "diff", "executor"]
    # Stopwords and one-letter words carry nothing; plain words stay whole, then stemmed.
    assert tokenize("What is the purpose of a retry loop?") == ["purpos", "retri", "loop"]


def test_stems_let_plural_and_tense_meet_the_identifier() -> None:
    # "where are chunk IDs computed?" must match `def compute_chunk_id`.
    query, code = set(tokenize("where are chunk IDs computed?")), set(tokenize("def compute_chunk_id(x)"))
    assert {"chunk", "id", "comput"} <= query & code


def test_rrf_fusion_orders_by_weighted_reciprocal_rank() -> None:
    dense = ["a", "b", "c"]
    lexical = ["c", "d", "a"]
    equal = rrf_fuse([dense, lexical], [1.0, 1.0], k=10)
    # a: 1/11 + 1/13, c: 1/13 + 1/11 -> tie; b and d only once.
    assert equal["a"] == equal["c"] > equal["b"] == equal["d"]
    favour_lexical = rrf_fuse([dense, lexical], [1.0, 2.0], k=10)
    order = sorted(favour_lexical, key=lambda rid: favour_lexical[rid], reverse=True)
    assert order == ["c", "a", "d", "b"]
    favour_dense = rrf_fuse([dense, lexical], [3.0, 1.0], k=10)
    assert max(favour_dense, key=lambda rid: favour_dense[rid]) == "a"


def test_bm25_ranks_the_chunk_with_the_split_identifier_first() -> None:
    index = LexicalIndex(None)
    index.build(
        ["1", "2", "3"],
        [
            "def open_connection(host): return socket.create_connection(host)",
            "class RetryPolicy: max_attempts = 3",
            "def render_template(name): return env.get_template(name).render()",
        ],
    )
    assert index.search("how many attempts does the retry policy allow", 3)[0][0] == "2"
    assert index.search("template rendering", 3)[0][0] == "3"
    assert index.search("zzz unknown", 3) == []


def _chunk(doc: str, i: int, text: str) -> Chunk:
    return Chunk(
        source="code",
        doc_id=doc,
        index=i,
        text=text,
        embed_text=text,
        title=doc,
        url=None,
        path=doc,
        start_line=1,
        end_line=1,
    )


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 + 0.01 for b in digest[:8]]


def _add(collection, chunks: list[Chunk]) -> None:  # type: ignore[no-untyped-def]
    collection.upsert(chunks, [_vector(c.text) for c in chunks], [{} for _ in chunks])


def test_index_is_rebuilt_from_the_chroma_collection_only_when_it_changed(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings()
    store = VectorStore(settings)
    collection = store.collection("code", "fake-model")
    assert collection is not None
    _add(
        collection,
        [
            _chunk("pay.py", 0, "def charge_card(amount): ..."),
            _chunk("mail.py", 0, "def send_email(to): ..."),
        ],
    )
    bump_generation(collection)

    worker = LexicalIndexes(tmp_path / "worker")
    bot = LexicalIndexes(tmp_path / "bot")  # another host: its own data dir, same Chroma
    assert worker.get(collection.name).ensure_fresh(collection) is True
    assert worker.get(collection.name).ensure_fresh(collection) is False  # unchanged: no rebuild
    assert bot.fresh(collection).search("charge the card", 1)[0][0] == chunk_id("code", "pay.py", 0)

    # The ingest adds a chunk and bumps the generation: the bot sees it on its next query.
    _add(collection, [_chunk("refund.py", 0, "def refund_payment(payment_id): ...")])
    bump_generation(collection)
    assert bot.get(collection.name).ensure_fresh(collection) is True
    assert bot.get(collection.name).search("refund a payment", 1)[0][0] == chunk_id("code", "refund.py", 0)

    # A new process (nothing in memory) loads the persisted index instead of rebuilding.
    again = LexicalIndexes(tmp_path / "bot")
    assert again.get(collection.name).ensure_fresh(collection) is False
    assert again.get(collection.name).stamp == collection_stamp(collection)
    assert len(again.get(collection.name)) == 3

    # Deleting records changes the count, which is enough to notice even without a new generation.
    collection.delete_ids([chunk_id("code", "mail.py", 0)])
    assert again.get(collection.name).ensure_fresh(collection) is True
    assert len(again.get(collection.name)) == 2
