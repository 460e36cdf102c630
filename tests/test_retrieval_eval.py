"""Pass@k/MRR as the contextual-code set defines them, `ragbot eval`, and hybrid search in the product."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rag.evaluation import evaluate, score
from rag.service import RagService


def test_pass_at_k_is_the_mean_share_of_golden_chunks_in_the_top_k() -> None:
    # query 1: two golden chunks found at ranks 1 and 7; query 2: one golden chunk never found;
    # query 3: one golden chunk at rank 3.
    ranks = [[1, 7], [None], [3]]
    metrics = score(ranks, [1, 5, 10])
    assert metrics["pass@1"] == pytest.approx(100 * (0.5 + 0 + 0) / 3, abs=0.01)
    assert metrics["pass@5"] == pytest.approx(100 * (0.5 + 0 + 1) / 3, abs=0.01)
    assert metrics["pass@10"] == pytest.approx(100 * (1 + 0 + 1) / 3, abs=0.01)
    assert metrics["mrr@10"] == pytest.approx((1 + 0 + 1 / 3) / 3, abs=1e-4)


FILES = {
    "payments": [
        "def charge_card(card_number, amount_cents):\n    gateway = PaymentGateway()\n"
        "    return gateway.charge(card_number, amount_cents)\n",
        "def refund_payment(payment_id):\n    return PaymentGateway().refund(payment_id)\n",
    ],
    "mail": [
        "class EmailSender:\n    def send_welcome_email(self, user):\n"
        "        self.smtp.send(user.email, 'Welcome!')\n",
        "def render_newsletter(template_name, articles):\n"
        "    return jinja_env.get_template(template_name).render(articles=articles)\n",
    ],
    "geometry": [
        "def polygon_area(points):\n    # shoelace formula\n"
        "    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs(points))) / 2\n",
    ],
}
QUERIES = [
    ("How is a credit card charged?", [("payments", 0)]),
    ("Which function sends the welcome email to new users?", [("mail", 0)]),
    ("How is the area of a polygon computed?", [("geometry", 0)]),
    ("How are refunds and newsletters handled?", [("payments", 1), ("mail", 1)]),
]


def write_dataset(directory: Path) -> Path:
    directory.mkdir()
    files = [
        {
            "doc_id": name,
            "original_uuid": f"uuid-{name}",
            "content": "\n".join(chunks),
            "chunks": [
                {"chunk_id": f"{name}_{i}", "original_index": i, "content": text}
                for i, text in enumerate(chunks)
            ],
        }
        for name, chunks in FILES.items()
    ]
    (directory / "codebase_chunks.json").write_text(json.dumps(files))
    lines = [
        json.dumps({"query": q, "golden_chunk_uuids": [[f"uuid-{n}", i] for n, i in golden]})
        for q, golden in QUERIES
    ]
    (directory / "evaluation_set.jsonl").write_text("\n".join(lines) + "\n")
    return directory


@pytest.mark.slow
def test_eval_over_given_chunks_and_rechunked_files(make_settings, embedders, tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "set")
    given = evaluate(make_settings(), dataset, ks=[1, 2, 5], embedders=embedders)
    assert given["queries"] == 4
    assert set(given) == {"queries", "pass@1", "pass@2", "pass@5", "mrr@10", "seconds"}
    # Five chunks in all: at k=5 every golden chunk is necessarily found.
    assert given["pass@5"] == 100.0
    assert given["pass@1"] >= 50.0  # the three single-answer questions name their chunk plainly
    assert given["pass@1"] <= given["pass@2"] <= given["pass@5"]
    rechunked = evaluate(make_settings(), dataset, ks=[5], rechunk=True, embedders=embedders)
    assert rechunked["queries"] == 4
    assert rechunked["pass@5"] >= 75.0


@pytest.mark.slow
def test_hybrid_ingest_then_ask_and_reingest_embeds_nothing(make_settings, embedders, git_repo) -> None:
    repo = git_repo(
        {
            "shop/cart.py": "class ShoppingCart:\n    def add_item(self, sku, quantity):\n"
            "        self.items[sku] = quantity\n",
            "shop/tax.go": "package shop\n\nfunc ComputeVatRate(country string) float64 {\n\treturn 0.2\n}\n",
            "README.md": "# Shop\n\nA demo shop.\n",
        }
    )
    settings = make_settings(code_repo_path=repo)
    service = RagService(settings, embedders=embedders)
    first = service.ingest(["code"])[0]
    assert first.ok and first.chunks_embedded >= 3
    assert (settings.ragbot_data_dir / "lexical").is_dir()

    hits = service.retriever.search("ComputeVatRate", top_k=3, sources=["code"])
    assert hits[0].path == "shop/tax.go"
    assert (hits[0].start_line, hits[0].end_line) == (1, 5)
    assert "ComputeVatRate" in hits[0].text
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    again = RagService(settings, embedders=embedders).ingest(["code"])[0]
    assert again.ok
    assert again.chunks_embedded == 0
    assert again.documents_unchanged == first.documents_seen


def test_eval_cli_reports_bad_usage_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    runner = CliRunner()
    # The command configures logging onto CliRunner's stream, which closes after the call:
    # put the root logger back so later tests do not log into a closed file.
    root = logging.getLogger()
    saved = (root.handlers[:], root.filters[:], root.level)
    try:
        missing = runner.invoke(app, ["eval", str(tmp_path / "nowhere"), "--json"])
    finally:
        root.handlers[:], root.filters[:], root.level = saved[0], saved[1], saved[2]
    assert missing.exit_code == 2
    assert "codebase_chunks.json" in missing.output
    dataset = write_dataset(tmp_path / "set")
    bad_k = runner.invoke(app, ["eval", str(dataset), "--k", "0,x"])
    assert bad_k.exit_code == 2
    assert "--k" in bad_k.output
