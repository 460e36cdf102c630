"""The `found` judgement: its inputs from real retrieval, and its verdicts on a fixed labelled mini-set."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answering import grounding
from rag.answering.grounding import Evidence, judge
from rag.indexing.embedding import EmbedderPool
from rag.indexing.lexical import LexicalIndex
from rag.service import RagService

TEXTS = {
    "a": "def compute_invoice_total(lines): return sum(line.amount for line in lines)",
    "b": "INVOICE_CURRENCY = 'EUR'  # currency of every invoice",
    "c": "def send_reminder(customer): mail(customer.email, 'your invoice is due')",
}


def lexical() -> LexicalIndex:
    index = LexicalIndex(None)
    index.build(list(TEXTS), list(TEXTS.values()))
    return index


def test_document_frequencies_count_chunks_per_term() -> None:
    index = lexical()
    n, counts = index.document_frequencies(["invoic", "currenc", "kubernet"])
    assert n == 3 and counts == [3, 1, 0]


def test_features_from_dense_and_lexical_evidence() -> None:
    index = lexical()
    evidence = Evidence()
    query = "invoice currency kubernetes"
    evidence.add_dense([("b", 0.2), ("a", 0.5), ("c", 0.6)])
    evidence.add_lexical(index, query, index.search(query, 10))
    dense_top, dense_mean3, bm25_share, agreement, unknown = evidence.features()
    assert dense_top == pytest.approx(0.8)
    assert dense_mean3 == pytest.approx((0.8 + 0.5 + 0.4) / 3)
    # One of the three query terms occurs nowhere in the index.
    assert unknown == pytest.approx(1 / 3)
    # All three chunks are in both top-5 lists.
    assert agreement == pytest.approx(3 / grounding.AGREEMENT_DEPTH)
    # The best BM25 hit matches some, not all, of the query's own weight.
    assert 0 < bm25_share < 1


def test_a_query_of_unknown_terms_has_no_lexical_support() -> None:
    index = lexical()
    evidence = Evidence()
    evidence.add_lexical(index, "kubernetes helm chart", index.search("kubernetes helm chart", 10))
    evidence.add_dense([("a", 0.9)])
    features = evidence.features()
    assert features[2] == 0.0 and features[4] == 1.0


def test_no_evidence_at_all_is_not_found() -> None:
    verdict = judge(Evidence())
    assert verdict.found is False and verdict.probability == 0.0


# A fixed mini-set over a real index of six of ragbot's own modules with the bundled MiniLM,
# scored with the shipped coefficients (fitted in benchmarks/grounding_tune.py, not on these).
ANSWERABLE = [
    "where are chunk ids computed?",
    "how does the BM25 tokenizer split camelCase identifiers?",
    "how is the prompt for the language model built from the numbered sources?",
    "how does the scheduler parse the cron expression for periodic ingest?",
    "where does the retriever fuse the dense and BM25 rankings?",
    "how are chunks upserted into the Chroma collection?",
]
OFF_TOPIC = [
    "What is the vacation policy for new employees?",
    "How are Stripe webhooks verified in the billing service?",
    "Where is the Kubernetes Helm chart for the payments service?",
    "How does the Flutter app authenticate with Firebase?",
    "Who won the football match yesterday?",
    "How do I book a meeting room in the Berlin office?",
]


def test_fixed_mini_set_answerable_found_off_topic_not(  # type: ignore[no-untyped-def]
    make_settings, embedders: EmbedderPool, git_repo
) -> None:
    package = Path(__file__).resolve().parent.parent / "rag"
    names = (
        "indexing/store.py",
        "indexing/lexical.py",
        "indexing/changelog.py",
        "answering/generation.py",
        "ops/scheduler.py",
        "answering/retrieval.py",
        "config.py",
    )
    git_repo({f"rag/{n}": (package / n).read_text(encoding="utf-8") for n in names})
    service = RagService(make_settings(), embedders=embedders)
    (report,) = service.ingest(["code"])
    assert report.ok

    def verdict(q: str) -> bool:
        evidence = Evidence()
        service.retriever.search(q, top_k=5, evidence=evidence)
        return judge(evidence).found

    found = [verdict(q) for q in ANSWERABLE]
    not_found = [not verdict(q) for q in OFF_TOPIC]
    assert sum(found) >= 5, list(zip(ANSWERABLE, found, strict=True))
    assert sum(not_found) >= 5, list(zip(OFF_TOPIC, not_found, strict=True))
    # And through the service: the JSON says so, the first sentence names the source.
    answer = service.ask(OFF_TOPIC[0] if not_found[0] else OFF_TOPIC[1])
    assert answer.to_json()["found"] is False
    assert answer.text.startswith("The indexed sources (code) don't cover")


def test_an_index_too_small_to_judge_counts_as_found() -> None:
    index = lexical()
    evidence = Evidence()
    evidence.add_lexical(index, "kubernetes helm chart", index.search("kubernetes helm chart", 10))
    evidence.add_dense([("a", 0.9)])
    assert evidence.indexed_chunks == 3 < grounding.MIN_INDEXED_CHUNKS
    assert judge(evidence).found is True
