"""kill -9 in the middle of an ingest, restart, ingest again: the index equals a clean full ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git, write_files
from tests.reliability import record

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def module_text(name: str, n_funcs: int, tweak: str = "") -> str:
    return (
        "\n\n".join(
            f"def {name}_step_{i}(payload):\n    '''Handle step {i} of the {name} workflow{tweak}.'''\n"
            f"    value = transform_{name}(payload, stage={i})\n    return persist_{name}(value)"
            for i in range(n_funcs)
        )
        + "\n"
    )


STATE_A = {f"pkg/mod_{k}.py": module_text(f"mod{k}", 6) for k in range(10)}
# B: two files shrink (stale chunks to delete), two grow, four are deleted, two are new.
STATE_B_EDITS = {
    "pkg/mod_0.py": module_text("mod0", 2, " (shrunk)"),
    "pkg/mod_1.py": module_text("mod1", 2, " (shrunk)"),
    "pkg/mod_2.py": module_text("mod2", 9, " (grown)"),
    "pkg/mod_3.py": module_text("mod3", 9, " (grown)"),
    "pkg/new_a.py": module_text("newa", 4),
    "pkg/new_b.py": module_text("newb", 4),
}
STATE_B_DELETES = ["pkg/mod_6.py", "pkg/mod_7.py", "pkg/mod_8.py", "pkg/mod_9.py"]


def make_repo(root: Path, state_b: bool) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    write_files(root, dict(STATE_A))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "A")
    if state_b:
        apply_b(root)


def apply_b(root: Path) -> None:
    write_files(root, dict(STATE_B_EDITS))
    for rel in STATE_B_DELETES:
        (root / rel).unlink()
    git(root, "add", "-A")
    git(root, "commit", "-qm", "B")


def harness(point: str, repo: Path, store: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CODE_REPO_PATH": str(repo),
        "CHROMA_DB_DIR": str(store),
        "RAGBOT_DATA_DIR": str(data),
        "CHUNK_SIZE": "48",
        "CHUNK_OVERLAP": "0",
        "LOG_LEVEL": "WARNING",
    }
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_harness", point],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


Snapshot = tuple[list[tuple[str, int, str, str]], list[tuple[str, str, str]]]


def snapshot(store: Path) -> Snapshot:
    """The chunks (document, index, hash, fingerprint) and the symbol index's records (id,
    document, fingerprint) of the store."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(str(store), settings=ChromaSettings(anonymized_telemetry=False))
    names = sorted(c.name for c in client.list_collections())
    (chunks_name,) = [n for n in names if not n.startswith("ragbot-symbols-")]
    (symbols_name,) = [n for n in names if n.startswith("ragbot-symbols-")]
    got = client.get_collection(chunks_name).get(include=["metadatas"])
    rows = [
        (m["doc_id"], int(m["chunk_index"]), m["chunk_hash"], m["doc_fingerprint"]) for m in got["metadatas"]
    ]
    assert len(got["ids"]) == len(set(got["ids"]))
    symbols = client.get_collection(symbols_name).get(include=["metadatas"])
    pairs = zip(symbols["ids"], symbols["metadatas"], strict=True)
    symbol_rows = [(i, m["doc_id"], m["doc_fingerprint"]) for i, m in pairs]
    return sorted(rows), sorted(symbol_rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A clean full ingest of state B."""
    tmp = tmp_path_factory.mktemp("reference")
    make_repo(tmp / "repo", state_b=True)
    done = harness("none", tmp / "repo", tmp / "store", tmp / "data")
    assert done.returncode == 0, done.stderr
    return snapshot(tmp / "store")


KILL_POINTS = {
    "embedding": "while embedding (two batches stored, the third being embedded)",
    "between_write_and_delete": "between storing a changed document's new chunks and deleting its old ones",
    "pruning": "while pruning deleted documents (two of several pruned)",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_ingest_recovers_to_the_clean_result(point: str, tmp_path: Path, reference) -> None:  # type: ignore[no-untyped-def]
    repo, store, data = tmp_path / "repo", tmp_path / "store", tmp_path / "data"
    make_repo(repo, state_b=False)
    assert harness("none", repo, store, data).returncode == 0
    apply_b(repo)

    killed = harness(point, repo, store, data)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stdout, killed.stderr)
    assert "finished" not in killed.stdout

    started = time.monotonic()
    recovered = harness("none", repo, store, data)  # the lock died with the killed process
    recover_s = time.monotonic() - started
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.startswith("finished True")
    after, symbols = snapshot(store)
    assert (after, symbols) == reference  # the chunks and the symbol index alike
    assert {doc_id for _, doc_id, _ in symbols} == {doc_id for doc_id, _, _, _ in after}
    per_doc: dict[str, list[int]] = {}
    for doc_id, index, _, _ in after:
        per_doc.setdefault(doc_id, []).append(index)
    assert all(sorted(ix) == list(range(len(ix))) for ix in per_doc.values())
    assert set(per_doc) == {f"pkg/mod_{k}.py" for k in range(6)} | {"pkg/new_a.py", "pkg/new_b.py"}
    record(
        f"Crash consistency: kill -9 {KILL_POINTS[point]}",
        "restart and re-ingest: chunks (ids, text, hashes) and symbol records identical to a clean "
        "full ingest; no duplicates; every document's chunk indexes contiguous",
        chunks=len(after),
        symbol_records=len(symbols),
        documents=len(per_doc),
        recovery_ingest_s=round(recover_s, 1),
    )
