"""The benchmark corpus: the 90 source files of the public contextual-code set, as a git repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CANDIDATES = [HERE / "data" / "contextual-code", HERE.parent.parent / "shared" / "eval" / "contextual-code"]


def dataset_dir() -> Path:
    for path in CANDIDATES:
        if (path / "codebase_chunks.json").is_file():
            return path
    raise SystemExit("contextual-code data set not found (benchmarks/data/contextual-code)")


def make_repo(root: Path) -> Path:
    """Write each document of the set as a file and commit them."""
    docs = json.loads((dataset_dir() / "codebase_chunks.json").read_text())
    root.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (root / f"{doc['doc_id']}.txt").write_text(doc["content"])
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "corpus"]):
        subprocess.run(["git", *args], cwd=root, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    return root
