"""`make run` on a fresh clone with nothing configured indexes the checkout itself as a demo source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONTRACT_VARS, write_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_make_run_with_no_source_indexes_the_checkout_and_answers(tmp_path: Path) -> None:
    checkout = tmp_path / "ragbot"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "run.sh", checkout / "scripts" / "run.sh")
    write_files(
        checkout,
        {
            "rag/indexing/store.py": "def chunk_id(source, doc_id, index):\n"
            "    '''Stable chunk ids: the same position of the same document keeps its id.'''\n"
            "    return f'{source}:{doc_id}:{index}'\n",
            "README.md": "# ragbot\n\nAnswers questions about your code.\n",
        },
    )
    work = tmp_path / "work"  # where the user runs it: no .env, no ragbot.toml, no ./src
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env["VENV"] = str(Path(sys.executable).parent.parent)
    done = subprocess.run(
        ["bash", str(checkout / "scripts" / "run.sh")],
        cwd=work,
        env=env,
        input="where are chunk ids computed?\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "demo source" in line]
    assert said == [
        "ragbot: no source configured, so this ragbot checkout is indexed as the demo source 'ragbot'; "
        "to index your own repositories, copy ragbot.example.toml to ragbot.toml (or set CODE_REPO_PATH) "
        "and run make run again."
    ]
    assert "ragbot: ok — 3 seen, 3 added" in done.stderr  # run.sh, rag/indexing/store.py, README.md
    assert "Nothing relevant was found" not in done.stdout
    assert "rag/indexing/store.py:1-3" in done.stdout  # the first question finds the code
    assert (work / ".ragbot" / "demo-sources.toml").read_text().endswith(f'path = "{checkout}"\n')
