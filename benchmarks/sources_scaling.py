"""Does a question cost more with many sources? 1 vs 12 vs 50 repositories at equal total chunks.

The same real Python files (from packages installed in the venv) are spread round-robin over S
repositories (S = 1, 12, 50), each indexed through the real pipeline (`RagService.ingest`:
listing, chunking, embedded Chroma, BM25) with the test hash embedder — the model is not the
subject here, and its cost would be identical on every side. Then the same questions run against
each index, interleaved (question i on S=1, then S=12, then S=50), several rounds:

- `all`: a question over every source (no filter: the common case),
- `one`: narrowed to one source (Chroma `where` + BM25 mask),
- `half`: narrowed to half of the sources (a `$in` filter).

Prints one JSON line per S with ingest seconds and p50/p95 milliseconds, and the ratios to S=1.

    PYTHONPATH=. .venv/bin/python benchmarks/sources_scaling.py [--files 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.evaluation import load_dataset
from rag.indexing.embedding import EmbedderPool
from rag.service import RagService
from rag.sources.registry import SourceRegistry
from rag.sources.specs import RepositorySpec
from tests.fakes.hash_embedder import HashEmbedder

PACKAGES = ("httpx", "click", "pydantic", "starlette", "fastapi", "rich", "typer", "anyio", "apscheduler")
DATA = Path(__file__).parent / "data" / "contextual-code"


def corpus_files(limit: int) -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    files: list[Path] = []
    for package in PACKAGES:
        files.extend(sorted((site / package).rglob("*.py")))
    files = [f for f in files if 200 < f.stat().st_size < 60_000]
    return files[:limit]


def build(root: Path, files: list[Path], n_sources: int) -> tuple[RagService, list[str], float]:
    names = [f"repo-{i:02d}" for i in range(n_sources)]
    site = Path(sysconfig.get_paths()["purelib"])
    for i, f in enumerate(files):
        target = root / "repos" / names[i % n_sources] / f.relative_to(site)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    registry = SourceRegistry([RepositorySpec(name=n, path=root / "repos" / n) for n in names])
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, chroma_db_dir=root / "chroma", ragbot_data_dir=root / "data"
    )
    service = RagService(settings, embedders=EmbedderPool(lambda _m: HashEmbedder(384)), registry=registry)
    t0 = time.perf_counter()
    reports = service.ingest(registry.specs)
    seconds = time.perf_counter() - t0
    assert all(r.ok for r in reports), [r.error for r in reports if not r.ok]
    return service, names, seconds


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values), q)) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sources", default="1,12,50")
    args = parser.parse_args()
    counts = [int(x) for x in args.sources.split(",")]
    files = corpus_files(args.files)
    questions = [q.query for q in load_dataset(DATA).queries][:40]
    with tempfile.TemporaryDirectory(prefix="ragbot-sources-") as tmp:
        built = {}
        for n in counts:
            service, names, seconds = build(Path(tmp) / f"s{n}", files, n)
            chunks = sum(info["chunks"] for info in service.status()["sources"].values())
            built[n] = (service, names, seconds, chunks)
            for mode_names in (None, names[:1]):  # warm: BM25 loaded, Chroma files cached
                service.retriever.search(questions[0], top_k=5, sources=mode_names)
        timings: dict[int, dict[str, list[float]]] = {n: {"all": [], "one": [], "half": []} for n in counts}
        for _ in range(args.rounds):
            for q_index, question in enumerate(questions):
                for n in counts:
                    service, names, _, _ = built[n]
                    scopes = {
                        "all": None,
                        "one": [names[q_index % len(names)]],
                        "half": names[: max(1, len(names) // 2)],
                    }
                    for mode, scope in scopes.items():
                        t0 = time.perf_counter()
                        service.retriever.search(question, top_k=5, sources=scope)
                        timings[n][mode].append(time.perf_counter() - t0)
        base = {mode: statistics.median(v) for mode, v in timings[counts[0]].items()}
        for n in counts:
            _, _, seconds, chunks = built[n]
            row: dict[str, object] = {
                "sources": n,
                "files": len(files),
                "chunks": chunks,
                "ingest_s": round(seconds, 1),
            }
            for mode, values in timings[n].items():
                row[f"{mode}_p50_ms"] = pct(values, 50)
                row[f"{mode}_p95_ms"] = pct(values, 95)
                row[f"{mode}_p50_ratio"] = round(statistics.median(values) / base[mode], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
