"""The symbol index (issue 20): what tree-sitter finds, how the ingest keeps it, and what it finds.

Extraction on real grammars; the index through the real ingest into embedded Chroma over a real
git repository (hash embedder where the model is not the subject); the definition channel with
the bundled MiniLM on a checkout of this repository's own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.indexing.embedding import EmbedderPool
from rag.indexing.lexical import LexicalIndexes, lexical_text
from rag.indexing.store import Collection, Record
from rag.indexing.symbol_store import (
    definition_text,
    entries_of,
    find_definitions,
    find_references,
    outline_of,
    records_for,
    spelled_out,
    words_of,
)
from rag.indexing.symbols import extract
from rag.models import Document
from rag.service import RagService
from tests.conftest import git
from tests.fakes.hash_embedder import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent

BILLING = '''"""Billing jobs."""

import subprocess
from app.db import connect

RETRY_LIMIT = 3


def roll_back(release: str) -> None:
    """Roll billing back to an earlier release when a deploy fails its health check."""
    subprocess.run(["kubectl", "rollout", "undo"], check=True)


class Deployer:
    # Ships one region at a time.
    def deploy(self, version: str) -> None:
        """Ship `version` to production."""
        conn = connect()
        conn.cursor().execute("select 1")
        roll_back(version)
'''
DB = '''def connect(cfg_path: str = "db.toml"):
    """Open the database connection from the configuration file."""
    return object()
'''
RUNBOOK = "# Billing runbook\n\n## Rolling back\n\nRun the job.\n\n### Steps\n\nOne.\n\n## Refunds\n\nFinance.\n"


def test_python_definitions_have_qualified_names_docstrings_and_lines() -> None:
    symbols = extract(text=BILLING, language="python")
    found = {d.qualname: d for d in symbols.definitions}
    assert set(found) == {"RETRY_LIMIT", "roll_back", "Deployer", "Deployer.deploy"}
    assert (found["roll_back"].kind, found["roll_back"].start_line, found["roll_back"].end_line) == (
        "function",
        9,
        11,
    )
    assert found["roll_back"].doc.startswith("Roll billing back to an earlier release")
    assert found["roll_back"].signature == "def roll_back(release: str) -> None:"
    assert found["Deployer"].kind == "class" and found["Deployer.deploy"].kind == "method"
    assert found["Deployer.deploy"].doc == "Ship `version` to production."
    assert found["RETRY_LIMIT"].kind == "constant"
    refs = {(r.name, r.kind) for r in symbols.references}
    assert {("subprocess", "import"), ("connect", "import"), ("connect", "call"), ("roll_back", "call")} <= refs
    assert ("execute", "call") in refs and ("cursor", "call") in refs


def test_other_grammars_and_pages() -> None:
    js = "// Adds two numbers.\nfunction add(a, b) { return a + b; }\nclass Cart { total() { return sum(this.items); } }\n"
    found = {d.qualname: d for d in extract(text=js, language="javascript").definitions}
    assert found["add"].doc == "Adds two numbers." and found["Cart.total"].kind == "method"
    go = "package m\n\n// Sum adds the values.\nfunc Sum(values []int) int { return 0 }\n"
    (sum_,) = extract(text=go, language="go").definitions
    assert (sum_.name, sum_.doc) == ("Sum", "Sum adds the values.")
    page = extract(text=RUNBOOK, language=None, title="Billing runbook", is_page=True)
    assert [d.qualname for d in page.definitions] == [
        "Billing runbook",
        "Billing runbook",
        "Billing runbook > Rolling back",
        "Billing runbook > Rolling back > Steps",
        "Billing runbook > Refunds",
    ]
    rolling = page.definitions[2]
    assert (rolling.start_line, rolling.end_line) == (3, 10)


def test_identifiers_meet_a_persons_words() -> None:
    assert words_of("getCellLen") == ["get", "cell", "len"]
    assert words_of("chunk_id") == ["chunk", "id"]
    assert words_of("HTTPServer") == ["http", "server"]
    assert "configuration" in spelled_out(["cfg"]) and "repository" in spelled_out(["repo"])
    (connect,) = extract(text=DB, language="python").definitions
    assert definition_text(connect) == "connect connect"
    doc = Document("code", "app/db.py", "app/db.py", DB, path="app/db.py", language="python")
    records = records_for(doc, "code", extract(text=DB, language="python"), [], "fp")
    (record,) = [Record(i, t, m) for i, t, m in zip(records.ids, records.texts, records.metadatas, strict=True)]
    assert records.entries == 2 and record.text == "\nconnect\n@object\n"  # names defined, @used
    file_entry, (entry_id, text, metadata, _holder) = entries_of(record)
    assert file_entry[0] == f"{record.id}#0" and entry_id == f"{record.id}#1"
    searched = lexical_text(text, metadata)  # what BM25 sees
    assert "connect" in searched and "Open the database connection" in searched and "app/db.py" in searched
    assert "def connect(cfg_path" in searched


@pytest.fixture
def indexed(git_repo: Any, make_settings: Any) -> tuple[RagService, HashEmbedder, Path]:
    root = git_repo({"app/billing.py": BILLING, "app/db.py": DB, "docs/runbook.md": RUNBOOK})
    embedder = HashEmbedder()
    service = RagService(make_settings(), embedders=EmbedderPool(lambda _model: embedder))
    (report,) = service.ingest(["code"])
    assert report.ok and report.documents_added == 3
    return service, embedder, root


def symbol_collection(service: RagService, embedder: HashEmbedder) -> Collection:
    collection = service.store.collection("code", embedder.key, create=False, symbols=True)
    assert collection is not None
    return collection


def test_the_ingest_builds_the_index_and_the_queries_answer(indexed: Any) -> None:
    service, embedder, _ = indexed
    symbols = symbol_collection(service, embedder)
    # one record per document, holding its definitions (4 + 1 + page and 4 headings)
    assert symbols.count() == 3
    assert sum(len(entries_of(r)) for r in symbols.iter_records()) == 3 + 4 + 1 + 5
    (roll_back,) = find_definitions(symbols, "roll_back", ["code"])
    assert (roll_back.path, roll_back.start_line, roll_back.end_line) == ("app/billing.py", 9, 11)
    assert find_definitions(symbols, "Deployer.deploy", ["code"])[0].qualname == "Deployer.deploy"
    assert find_definitions(symbols, "roll", ["code"]) == []  # names match whole, not in part
    assert find_references(symbols, "conn", ["code"]) == []
    uses = find_references(symbols, "connect", ["code"])
    assert {(u.path, u.kind) for u in uses} == {("app/billing.py", "import"), ("app/billing.py", "call")}
    assert [d.qualname for d in outline_of(symbols, "app/billing.py", ["code"])] == [
        "RETRY_LIMIT",
        "roll_back",
        "Deployer",
        "Deployer.deploy",
    ]
    # Every definition names the chunk that holds it, and that chunk exists.
    chunks = service.store.collection("code", embedder.key, create=False)
    assert chunks is not None
    holder = roll_back.chunk_id
    (record,) = chunks.get([holder])
    assert "def roll_back" in record.text
    # Scope: another source's name finds nothing.
    assert find_definitions(symbols, "roll_back", ["other"]) == []
    assert outline_of(symbols, "app/billing.py", ["other"]) == []


def test_unchanged_costs_nothing_changed_rewrites_its_own_deleted_prunes(indexed: Any) -> None:
    service, embedder, root = indexed
    symbols = symbol_collection(service, embedder)
    before = {r.id: r.metadata for r in symbols.iter_records()}
    calls = embedder.calls
    (again,) = service.ingest(["code"])
    assert again.documents_unchanged == 3 and again.symbols_indexed == 0 and embedder.calls == calls

    (root / "app/db.py").write_text(DB + '\n\ndef close(conn):\n    """Close it."""\n')
    git(root, "commit", "-qam", "close")
    (changed,) = service.ingest(["code"])
    assert changed.documents_updated == 1 and changed.symbols_indexed == 3  # file + connect + close
    assert [d.qualname for d in outline_of(symbols, "app/db.py", ["code"])] == ["connect", "close"]
    after = {r.id: r.metadata for r in symbols.iter_records()}
    untouched = [i for i in before if before[i]["path"] != "app/db.py"]
    assert all(after[i] == before[i] for i in untouched)

    # The in-memory BM25 of the definitions followed the change log: the new definition is an
    # entry, and the incrementally kept index holds what a full rebuild holds.
    followed = service.lexical.fresh(symbols, expand=entries_of)
    ((top, _),) = followed.search("close", 1)
    (db_record,) = [r for r in symbols.iter_records() if r.metadata["path"] == "app/db.py"]
    assert top == f"{db_record.id}#2" and followed.tags([top]) == [find_definitions(symbols, "close", ["code"])[0].chunk_id]

    git(root, "rm", "-q", "app/billing.py")
    git(root, "commit", "-qm", "drop billing")
    (pruned,) = service.ingest(["code"])
    assert pruned.documents_deleted == 1
    assert find_definitions(symbols, "roll_back", ["code"]) == []
    assert not [r for r in symbols.iter_records() if r.metadata["path"] == "app/billing.py"]
    followed = service.lexical.fresh(symbols, expand=entries_of)
    rebuilt = LexicalIndexes(None).fresh(symbols, expand=entries_of)
    assert len(followed) == len(rebuilt) == 1 + 2 + 1 + 5  # db.py: file + 2; runbook: file + page + 4
    assert followed.search("roll back release", 5) == rebuilt.search("roll back release", 5)


def test_a_crash_between_symbols_and_chunks_is_repaired_by_the_next_run(
    indexed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, embedder, root = indexed
    (root / "app/db.py").write_text(DB.replace("Open the database", "Open the replica"))
    git(root, "commit", "-qam", "replica")
    calls: list[int] = []

    def crash(self: Collection, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise OSError("disk full")

    monkeypatch.setattr(Collection, "upsert", crash)  # chunks fail; symbols go first and succeed
    (failed,) = service.ingest(["code"])
    assert not failed.ok and calls
    monkeypatch.undo()
    (repaired,) = service.ingest(["code"])
    assert repaired.ok and repaired.documents_updated == 1
    symbols = symbol_collection(service, embedder)
    (connect,) = find_definitions(symbols, "connect", ["code"])
    assert connect.doc == "Open the replica connection from the configuration file."
    states = symbols.document_states("code")
    assert all(state.complete for state in states.values())


def test_a_removed_source_takes_its_symbols_along(indexed: Any, make_settings: Any, tmp_path: Path) -> None:
    _, embedder, _ = indexed
    sources = tmp_path / "ragbot.toml"
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    (other / "x.py").write_text("def x():\n    return 1\n")
    git(other, "add", "-A")
    git(other, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    sources.write_text(f'[[repository]]\nname = "other"\npath = "{other}"\n')
    moved = RagService(
        make_settings(ragbot_sources_file=sources), embedders=EmbedderPool(lambda _model: embedder)
    )
    reports = moved.ingest(["all"])
    assert any(r.removed and r.source_name == "code" for r in reports)
    symbols = symbol_collection(moved, embedder)
    assert {r.metadata["source_name"] for r in symbols.iter_records()} == {"other"}
    assert symbols.source_names() == ["other"]


@pytest.mark.slow
def test_where_is_the_chunk_id_computed_lands_on_its_definition(
    git_repo: Any, make_settings: Any, embedders: EmbedderPool
) -> None:
    """The issue's chat question, asked in a person's words, on a checkout of the files it named."""
    files = [
        "rag/indexing/store.py",
        "rag/indexing/lexical.py",
        "rag/indexing/changelog.py",
        "tests/test_ranking.py",
        "tests/test_lexical.py",
        "docs/retrieval.md",
        "docs/interface.md",
    ]
    git_repo({f: (ROOT / f).read_text(encoding="utf-8") for f in files})
    service = RagService(make_settings(), embedders=embedders)
    (report,) = service.ingest(["code"])
    assert report.ok and report.symbols_indexed > 0
    question = "where is the chunk id computed?"
    # The definition channel on its own: the question's words meet `chunk_id`'s parts, and the
    # chunk that defines it is among its first votes (the tokenizer's `_stem`, whose docstring
    # says "IDs" and "computed", may come before it).
    embedder = embedders.get(None)
    votes = service.retriever._definitions("code", embedder.key, question, ["code"], 10)
    chunks = service.store.collection("code", embedder.key, create=False)
    assert chunks is not None
    assert any("def chunk_id(" in r.text for r in chunks.get(votes[:3]))
    hits = service.retriever.search(question, top_k=5)
    first = hits[0]
    assert first.path == "rag/indexing/store.py"
    assert first.start_line is not None and first.end_line is not None
    assert "def chunk_id(" in first.text



def test_confluence_pages_have_their_title_headings_and_breadcrumb_as_definitions(
    make_settings: Any, fake: Any, space: Any
) -> None:
    from tests.fakes.confluence_server import PASSWORD, USERNAME

    embedder = HashEmbedder()
    settings = make_settings(
        confluence_url=fake.url, confluence_space=["ENG"], confluence_username=USERNAME, confluence_password=PASSWORD
    )
    service = RagService(settings, embedders=EmbedderPool(lambda _model: embedder))
    (report,) = service.ingest(["confluence"])
    assert report.ok and report.symbols_indexed > 0
    symbols = service.store.collection("confluence", embedder.key, create=False, symbols=True)
    assert symbols is not None
    outline = outline_of(symbols, "Deploying the API", ["confluence"])
    assert outline[0].kind == "page" and outline[0].name == "Deploying the API"
    assert outline[0].doc == "Engineering > Engineering home > Deploying the API"  # the breadcrumb
    headings = [d for d in outline if d.kind == "heading"]
    assert headings and all(d.qualname.startswith(headings[0].qualname.split(" > ")[0]) for d in headings)
    assert find_definitions(symbols, "Deploying the API", ["confluence"])[0].kind == "page"
    # A restricted page has no symbols either.
    assert outline_of(symbols, "Salary bands", ["confluence"]) == []
