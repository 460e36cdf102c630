"""The layout holds: the import-linter contracts pass on the tree and fail on an import that crosses a
layer; an index built before the rooms were named is read as it is, with nothing re-embedded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.service import RagService
from tests.fakes.hash_embedder import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Built by main at 8e7187a (before rag/ was regrouped into rooms): see tests/data/README.md.
PRE_LAYOUT = Path(__file__).parent / "data" / "pre-layout-index.tar.gz"
COLLECTION = "ragbot-code-hash-256-016b65cb"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in ("rag", "bot"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency")
def test_the_layer_contracts_hold_and_name_an_import_that_crosses_a_layer(tree_copy: Path) -> None:
    kept = lint_imports(tree_copy)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout

    with (tree_copy / "rag" / "sources" / "base.py").open("a") as f:
        f.write("\nfrom rag.answering.ranking import rerank  # noqa: E402,F401\n")
    with (tree_copy / "rag" / "indexing" / "store.py").open("a") as f:
        f.write("\nimport bot.messages  # noqa: E402,F401\n")
    broken = lint_imports(tree_copy)
    assert broken.returncode != 0
    assert "rag.sources is not allowed to import rag.answering" in broken.stdout
    assert "rag.sources.base -> rag.answering.ranking" in broken.stdout
    assert "rag.indexing.store -> bot.messages" in broken.stdout


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for package in ("rag", "bot")
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}


def test_an_index_built_before_the_layout_is_read_and_reingested_without_embedding(tmp_path: Path) -> None:
    with tarfile.open(PRE_LAYOUT) as tar:
        tar.extractall(tmp_path, filter="data")
    embedder = HashEmbedder()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        chroma_db_dir=tmp_path / "chroma",
        ragbot_data_dir=tmp_path / "data",
        code_repo_path=tmp_path / "repo",
    )
    service = RagService(settings, embedders=EmbedderPool(lambda _model: embedder))
    assert service.store.collection_names() == [COLLECTION]

    hits = service.retriever.search("how do I roll back billing", top_k=3)
    assert [h.path for h in hits][:1] == ["app/deploy.py"]
    (report,) = service.ingest(["all"])
    assert report.ok and report.chunks_embedded == 0
    assert report.documents_unchanged == 2 and report.documents_deleted == 0
    assert report.symbols_indexed > 0  # the symbol index is built beside the old chunks
    assert embedder.calls == 1  # the question above, never a chunk (nor a symbol)
    assert service.status()["sources"]["code"]["last_run"]["source_name"] == "code"
