"""What the symbol index costs an ingest: time and storage, with the real model, side by side.

A git repository of real Python files (installed packages), ingested into a fresh embedded store
twice per round, alternating: once as the product does (chunks + symbol index), once with the
symbol index switched off in this script only (`SymbolWriter.write` and `prune` replaced by no-ops:
everything else, extraction included, is the product path). Reports the medians of `--rounds`
rounds, the ratio, and the store's size on disk either way.

    PYTHONPATH=. .venv/bin/python benchmarks/symbol_cost.py [--packages click,starlette] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def corpus(packages: list[str], repo: Path) -> int:
    from tests.conftest import git

    n = 0
    for name in packages:
        module = __import__(name)
        base = Path(module.__file__).resolve().parent
        for path in sorted(base.rglob("*.py")):
            target = repo / name / path.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8", errors="replace"))
            n += 1
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "corpus")
    return n


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


@contextmanager
def symbols_off() -> Any:
    from rag.indexing import symbol_ingest

    saved = symbol_ingest.SymbolWriter.write, symbol_ingest.SymbolWriter.prune
    symbol_ingest.SymbolWriter.write = lambda self, pending: 0  # type: ignore[method-assign]
    symbol_ingest.SymbolWriter.prune = lambda self, listed: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        symbol_ingest.SymbolWriter.write, symbol_ingest.SymbolWriter.prune = saved


def ingest(work: Path, repo: Path, pool: Any) -> dict[str, Any]:
    from rag.config import Settings
    from rag.service import RagService

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, chroma_db_dir=work / "chroma", ragbot_data_dir=work / "data", code_repo_path=repo
    )
    service = RagService(settings, embedders=pool)
    started = time.perf_counter()
    (report,) = service.ingest(["code"])
    seconds = time.perf_counter() - started
    assert report.ok, report
    return {
        "seconds": seconds,
        "chunks": report.chunks_embedded,
        "symbols": report.symbols_indexed,
        "store_mb": size_mb(work / "chroma"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", default="click,starlette")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from rag.config import Settings
    from rag.indexing.embedders import embedder_factory
    from rag.indexing.embedding import EmbedderPool

    pool = EmbedderPool(embedder_factory(Settings(_env_file=None)))  # type: ignore[call-arg]
    pool.get(None).token_limit()  # the model loaded before any timing
    with tempfile.TemporaryDirectory(prefix="ragbot-symcost-") as tmp:
        repo = Path(tmp) / "repo"
        files = corpus(args.packages.split(","), repo)
        print(
            json.dumps(
                {
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "load_average": round(os.getloadavg()[0], 2),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "packages": args.packages,
                    "files": files,
                }
            ),
            flush=True,
        )
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for i in range(args.rounds):  # a fresh directory each run: Chroma caches a store per path
            with symbols_off():
                runs["without"].append(ingest(Path(tmp) / f"off-{i}", repo, pool))
            runs["with"].append(ingest(Path(tmp) / f"on-{i}", repo, pool))
            print(json.dumps({"round": {k: v[-1] for k, v in runs.items()}}), flush=True)
        off = statistics.median(r["seconds"] for r in runs["without"])
        on = statistics.median(r["seconds"] for r in runs["with"])
        print(
            json.dumps(
                {
                    "chunks": runs["with"][0]["chunks"],
                    "symbol_records": runs["with"][0]["symbols"],
                    "ingest_s_without_symbols": round(off, 1),
                    "ingest_s_with_symbols": round(on, 1),
                    "time_ratio": round(on / off, 3),
                    "store_mb_without": round(runs["without"][0]["store_mb"], 1),
                    "store_mb_with": round(runs["with"][0]["store_mb"], 1),
                    "storage_ratio": round(runs["with"][0]["store_mb"] / runs["without"][0]["store_mb"], 3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
