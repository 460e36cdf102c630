"""Ingest speed, end to end: the original backend's code path against `ragbot ingest`.

Both sides run as fresh processes and are timed from process start to exit, so imports, model
loading and store writes count on both, as the contract's `seconds` does on ours. Same texts
(the chunks ragbot's chunker makes of the corpus; the original side gets them precomputed, so
chunking counts against ragbot only), same model (the bundled all-MiniLM-L6-v2), runs alternated
so that noise from other work on the machine hits both alike; medians, the spread, the ratio.

The original backend, as written: the model loaded in float32; each text alone through
`tokenizer(text)` → `model(**inputs)` under `torch.no_grad()`, mean-pooled over the attention
mask (as ragbot's model does) and L2-normalised; the vectors added to Chroma in batches of 128.

    PYTHONPATH=. python benchmarks/ingest_speed.py [--corpus contextual-code|python] [--files N]
        [--runs 3] [--overlap]

--corpus python takes N real files of the installed Python libraries (about 10k chunks at
--files 1000). --overlap also times ragbot with the chunking worker thread off, alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RAGBOT = str(Path(sys.executable).parent / "ragbot")

ORIGINAL = r"""
import json, sys, uuid
texts = json.loads(open(sys.argv[1]).read())
import chromadb, torch
from transformers import AutoModel, AutoTokenizer
from rag.indexing.embedding import bundled_model_dir
location = str(bundled_model_dir())
tokenizer = AutoTokenizer.from_pretrained(location)
model = AutoModel.from_pretrained(location)
model.eval()
client = chromadb.PersistentClient(sys.argv[2])
collection = client.get_or_create_collection("original", embedding_function=None)
ids, vectors, docs = [], [], []
def flush():
    collection.add(ids=ids[:], embeddings=vectors[:], documents=docs[:])
    ids.clear(); vectors.clear(); docs.clear()
for text in texts:
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=256)
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    vector = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)[0]
    ids.append(str(uuid.uuid4())); vectors.append(vector.tolist()); docs.append(text)
    if len(ids) == 128:
        flush()
if ids:
    flush()
print(collection.count())
"""

NO_OVERLAP = r"""
import json, sys
from rag.config import load_settings
from rag.service import RagService
service = RagService(load_settings())
service.ingestor.overlap = False
(report,) = service.ingest(["code"], full=True)
print(json.dumps({"sources": [report.to_json()]}))
"""


def python_corpus(root: Path, files: int) -> Path:
    from benchmarks.scale_index import code_files

    root.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(code_files(files)):
        (root / f"m{i:05d}_{path.name}").write_text(path.read_text(errors="replace"))
    env = {"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x"}
    env |= {"GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "corpus"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    return root


def ragbot_texts(repo: Path, work: Path) -> list[str]:
    """The texts `ragbot ingest` embeds: its own chunker over the repository, after redaction."""
    from dataclasses import replace

    from rag.config import Settings
    from rag.indexing.embedding import TransformersEmbedder
    from rag.indexing.ingest import make_chunker
    from rag.models import Document
    from rag.secrets import redact
    from rag.sources.repository import RepositorySource

    settings = Settings(_env_file=None, code_repo_path=repo, ragbot_data_dir=work / "texts")  # type: ignore[call-arg]
    source = RepositorySource.from_settings(settings)
    source.prepare()
    chunker = make_chunker(settings, TransformersEmbedder(quantize=settings.emb_int8))
    texts: list[str] = []
    for doc in source.load(source.scan()):
        if isinstance(doc, Document):
            text, _ = redact(doc.text)
            texts += [c.embed_text for c in chunker.chunk(replace(doc, text=text))]
    return texts


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=["contextual-code", "python"], default="contextual-code")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overlap", action="store_true", help="also time ragbot with overlap off")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragbot-ingest-bench-"))
    if args.corpus == "python":
        repo = python_corpus(work / "repo", args.files)
    else:
        from benchmarks._corpus import make_repo

        repo = make_repo(work / "repo")
    texts = ragbot_texts(repo, work)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "CODE_REPO_PATH": str(repo),
    }

    load_before = os.getloadavg()[0]
    sides: dict[str, list[float]] = {"original": [], "ragbot": []}
    if args.overlap:
        sides["ragbot_no_overlap"] = []
    for run in range(args.runs):
        order = list(sides) if run % 2 == 0 else list(reversed(sides))
        for side in order:
            store = work / f"{side}-{run}"
            env = {**base_env, "CHROMA_DB_DIR": str(store / "chroma"), "RAGBOT_DATA_DIR": str(store / "data")}
            if side == "original":
                seconds, out = timed([sys.executable, "-c", ORIGINAL, str(texts_file), str(store)], env)
                assert int(out.strip().splitlines()[-1]) == len(texts)
            else:
                cmd = (
                    [RAGBOT, "ingest", "code", "--full", "--json"]
                    if side == "ragbot"
                    else [sys.executable, "-c", NO_OVERLAP]
                )
                seconds, out = timed(cmd, env)
                report = json.loads(out.strip().splitlines()[-1])["sources"][0]
                assert report["ok"] and report["chunks_embedded"] == len(texts), (report, len(texts))
            sides[side].append(seconds)
            shutil.rmtree(store, ignore_errors=True)
            print(json.dumps({"run": run, "side": side, "seconds": round(seconds, 1)}), flush=True)

    med = {side: statistics.median(times) for side, times in sides.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "corpus": args.corpus if args.corpus != "python" else f"python ({args.files} files)",
        "chunks": len(texts),
        "runs": args.runs,
        **{f"{side}_seconds_median": round(m, 1) for side, m in med.items()},
        **{f"{side}_seconds_all": [round(x, 1) for x in sides[side]] for side in sides},
        "original_chunks_per_s": round(len(texts) / med["original"], 1),
        "ragbot_chunks_per_s": round(len(texts) / med["ragbot"], 1),
        "speedup_end_to_end": round(med["original"] / med["ragbot"], 2),
    }
    if args.overlap:
        result["overlap_gain"] = round(med["ragbot_no_overlap"] / med["ragbot"], 2)
    print(json.dumps(result), flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
