"""Faithful int8 vectors, device selection, and the fixed costs of a `ragbot` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ModelError
from rag.indexing.chunking import SyntaxChunker
from rag.indexing.devices import device_profile, resolve_device
from rag.indexing.embedding import TransformersEmbedder
from rag.models import Document

ROOT = Path(__file__).resolve().parent.parent
RAGBOT = str(Path(sys.executable).parent / "ragbot")


def _code_chunks(embedder: TransformersEmbedder, n: int) -> list[str]:
    """Real code chunks: ragbot's own modules through the syntax-aware chunker."""
    chunker = SyntaxChunker(
        count_tokens=embedder.count_tokens, chunk_tokens=256, overlap_tokens=25, max_tokens=256
    )
    texts: list[str] = []
    for path in sorted((ROOT / "rag").glob("*.py")):
        doc = Document(
            source="code", doc_id=path.name, title=path.name, text=path.read_text(), path=path.name, url=None
        )
        texts += [c.embed_text for c in chunker.chunk(doc)]
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def test_default_int8_vectors_stay_within_0_98_mean_cosine_of_float32() -> None:
    default = TransformersEmbedder(device="cpu", quantize=True)  # what Settings builds by default
    exact = TransformersEmbedder(device="cpu", quantize=False)
    texts = _code_chunks(exact, 48)
    assert len(texts) == 48
    a = np.array(default.embed_documents(texts))
    b = np.array(exact.embed_documents(texts))
    cosines = (a * b).sum(axis=1)  # both L2-normalised
    assert float(cosines.mean()) >= 0.98, cosines.mean()
    assert float(cosines.min()) >= 0.9
    assert default.variant == "int8pc" and exact.variant == ""


def test_the_int8_scheme_is_part_of_the_document_fingerprint() -> None:
    def signature(quantize: bool) -> str:
        embedder = TransformersEmbedder(device="cpu", quantize=quantize)
        chunker = SyntaxChunker(
            count_tokens=lambda ts: [len(t.split()) for t in ts],
            chunk_tokens=64,
            overlap_tokens=0,
            max_tokens=64,
            vector_variant=embedder.variant,
        )
        return chunker.signature

    # Per-tensor vectors were stored as "int8": documents embedded that way are re-embedded.
    assert signature(True).endswith(":int8pc")
    assert signature(True) != signature(False)


def test_auto_picks_cuda_only_when_torch_sees_a_gpu() -> None:
    yes, no = (lambda: True), (lambda: False)
    assert resolve_device("auto", cuda_available=yes, mps_available=yes) == "cuda"
    assert resolve_device("auto", cuda_available=no, mps_available=yes) == "cpu"
    assert resolve_device("cpu", cuda_available=yes) == "cpu"
    assert resolve_device(" MPS ", cuda_available=no, mps_available=yes) == "mps"
    with pytest.raises(ModelError, match="RAGBOT_DEVICE=cuda"):
        resolve_device("cuda", cuda_available=no)
    with pytest.raises(ModelError, match="RAGBOT_DEVICE=mps"):
        resolve_device("mps", cuda_available=no, mps_available=no)
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu")


def test_each_device_gets_its_precision_and_batch_size() -> None:
    cpu, cuda = device_profile("cpu", int8=True), device_profile("cuda", int8=True)
    assert (cpu.int8, cpu.float16, cpu.max_batch, cpu.variant) == (True, False, 8, "int8pc")
    assert (cuda.int8, cuda.float16, cuda.variant) == (False, True, "fp16")  # no int8 kernels on GPU
    assert cuda.max_batch > cpu.max_batch and cuda.batch_tokens > cpu.batch_tokens
    assert device_profile("cpu", int8=False).variant == ""


def test_on_this_cpu_machine_auto_runs_the_model_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = TransformersEmbedder()  # RAGBOT_DEVICE's default: auto
    assert embedder.device == "cpu" and embedder.max_batch == 8
    vector = embedder.embed_query("where is the retry loop?")
    assert len(vector) == 384 and abs(float(np.linalg.norm(vector)) - 1) < 1e-4


def _modules_after(args: list[str], env: dict[str, str]) -> set[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['ragbot', *{args!r}]\n"
        "from rag.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_help_and_status_do_not_import_torch(tmp_path: Path) -> None:
    env = {**os.environ, "CHROMA_DB_DIR": str(tmp_path / "c"), "RAGBOT_DATA_DIR": str(tmp_path / "d")}
    for args in (["--help"], ["status"]):
        modules = _modules_after(args, env)
        assert "typer" in modules  # the command ran
        assert not modules & {"torch", "transformers"}, args


@pytest.mark.slow
def test_ask_prints_no_library_warning_or_debug_line(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    repo = git_repo({"pay.py": "def charge_card(amount):\n    return gateway.charge(amount)\n"})
    env = {
        **os.environ,
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(repo),
    }
    env.pop("PYTHONWARNINGS", None)
    for args in (["ingest"], ["ask", "how is a card charged?"]):
        done = subprocess.run(
            [RAGBOT, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, done.stderr
        assert " DEBUG " not in done.stderr and "bm25s" not in done.stderr, done.stderr
