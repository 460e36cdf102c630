"""Ingest speed, end to end: the original backend's code path against `ragbot ingest`.

Both sides run as fresh processes and are timed from process start to exit, so imports, model
loading (or provider calls) and store writes count on both, as the contract's `seconds` does on
ours. Same texts (the chunks ragbot's chunker makes of the corpus; the original side gets them
precomputed, so chunking counts against ragbot only), runs alternated so that noise from other
work on the machine hits both alike; medians, the spread, the ratio.

Default mode (a local model). Same model on both sides, the bundled all-MiniLM-L6-v2.
- ragbot: `ragbot ingest code --full --json` (fresh CHROMA_DB_DIR / RAGBOT_DATA_DIR per run).
- original, as written: the model loaded in float32; each text alone through `tokenizer(text)`
  → `model(**inputs)` under `torch.no_grad()`, mean-pooled over the attention mask (as ragbot's
  model does) and L2-normalised; the vectors added to Chroma in batches of 128.
- `--device cuda` (or mps) runs both on that device: the original's model and inputs moved there
  (`.to(device)`), ragbot with RAGBOT_DEVICE=cuda (float16 and its large batches).

--provider mode (a hosted embedding model). A child process of this script serves
tests/fakes/embedding_server.py's OpenAI-compatible `/v1/embeddings` on 127.0.0.1, behaving like
a real provider: per request 80 ms plus 2 ms per input text, at most 128 inputs per request, and
429 with `Retry-After: 1` past `--rate` requests per second (default 20). It counts, per timed
run, the embedding requests, the 429s it answered and the texts it received; the texts ragbot
sent are checked against the ones the original side gets. Its sockets have TCP_NODELAY (the fake
sets it: headers and body go out separately, which would otherwise add a ~40 ms delayed-ACK stall
to every request on a kept-alive connection, none of a real provider's latency). The chunk texts
are ragbot's, made by its chunker with the embedder built for the provider model (the one probe
request that takes is made before any timed run).
- ragbot: `ragbot ingest code --full --json` with CODE_EMB_MODEL=litellm:openai/fake-embed,
  EMBEDDING_API_BASE=<the server>, EMBEDDING_API_KEY=sk-fake, EMBEDDING_BATCH_SIZE=128 and
  EMBEDDING_CONCURRENCY=each of `--concurrency` (default 1,4,8); EMBEDDING_BATCH_TOKENS,
  EMBEDDING_TIMEOUT and EMBEDDING_MAX_RETRIES at the product's defaults (reported). Fresh
  CHROMA_DB_DIR / RAGBOT_DATA_DIR per run.
- original, the original design's loop pointed at the same server: for each text, one at a time,
  `litellm.embedding(model="openai/fake-embed", input=[text], api_base=<the server>,
  api_key="sk-fake")` with litellm's defaults (a 429 is retried inside the OpenAI SDK); the
  vectors added (ids, embeddings, documents) to a chromadb PersistentClient collection in batches
  of 128.
Every subprocess runs with LITELLM_LOCAL_MODEL_COST_MAP=True (no network fetch at import). Each
run times the original once and ragbot once per concurrency, in alternating order.

    PYTHONPATH=. python benchmarks/ingest_speed.py [--corpus contextual-code|python] [--files N]
        [--runs 3] [--overlap] [--device cpu|cuda|mps]
    PYTHONPATH=. python benchmarks/ingest_speed.py --provider [--concurrency 1,4,8] [--rate 20]
        [--runs 3] [--corpus contextual-code|python] [--files N]

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
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
model = AutoModel.from_pretrained(location).to(device)
model.eval()
client = chromadb.PersistentClient(sys.argv[2])
collection = client.get_or_create_collection("original", embedding_function=None)
ids, vectors, docs = [], [], []
def flush():
    collection.add(ids=ids[:], embeddings=vectors[:], documents=docs[:])
    ids.clear(); vectors.clear(); docs.clear()
for text in texts:
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=256).to(device)
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    vector = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)[0].cpu()
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

#: The provider: tests/fakes/embedding_server.py in this child process, counting what it answers.
#: argv: rate limit (requests/s), the probe text ragbot sends first (left out of the text check).
#: Prints its URL, then one JSON line of counts (and resets them) per line read on stdin.
SERVER = r"""
import hashlib, json, sys
from tests.fakes.embedding_server import FakeEmbeddingServer

class CountingServer(FakeEmbeddingServer):
    def __post_init__(self):
        super().__post_init__()
        self.rate_limited = 0
    def _admit(self):
        failure, limited = super()._admit()
        if limited:
            with self._lock:
                self.rate_limited += 1
        return failure, limited

fake = CountingServer(
    latency_s=0.08, per_text_s=0.002, max_inputs=128, rate_limit=float(sys.argv[1]), retry_after="1"
).start()
probe = sys.argv[2]
print(fake.url, flush=True)
for _ in sys.stdin:
    with fake._lock:
        requests, fake.requests = fake.requests, []
        limited, fake.rate_limited = fake.rate_limited, 0
        served, fake.served = fake.served, 0
    calls = [r["body"].get("input", []) for r in requests if r["path"].rstrip("/").endswith("/embeddings")]
    calls = [[c] if isinstance(c, str) else c for c in calls]
    texts = sorted({t for c in calls for t in c} - {probe})
    print(json.dumps({
        "requests": len(calls),
        "answered_429": limited,
        "answered_200": served,
        "texts_in_requests": sum(len(c) for c in calls),
        "largest_request": max((len(c) for c in calls), default=0),
        "probe_requests": sum(1 for c in calls if c == [probe]),
        "distinct_texts": len(texts),
        "texts_sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest(),
    }), flush=True)
fake.stop()
"""

#: The original design's loop against a provider: one text per request, one request at a time,
#: litellm's defaults; adds in batches of 128. argv: texts.json, the store, the server's URL.
ORIGINAL_PROVIDER = r"""
import json, sys, uuid
texts = json.loads(open(sys.argv[1]).read())
url = sys.argv[3]
import chromadb, litellm
client = chromadb.PersistentClient(sys.argv[2])
collection = client.get_or_create_collection("original", embedding_function=None)
ids, vectors, docs = [], [], []
def flush():
    collection.add(ids=ids[:], embeddings=vectors[:], documents=docs[:])
    ids.clear(); vectors.clear(); docs.clear()
for text in texts:
    response = litellm.embedding(model="openai/fake-embed", input=[text], api_base=url, api_key="sk-fake")
    item = response.data[0]
    vector = item["embedding"] if isinstance(item, dict) else item.embedding
    ids.append(str(uuid.uuid4())); vectors.append(list(vector)); docs.append(text)
    if len(ids) == 128:
        flush()
if ids:
    flush()
print(collection.count())
"""

PROVIDER_MODEL = "openai/fake-embed"


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


def ragbot_texts(repo: Path, work: Path, provider_env: dict[str, str] | None = None) -> list[str]:
    """The texts `ragbot ingest` embeds: its own chunker over the repository, after redaction.

    With `provider_env` (the EMBEDDING_* / CODE_EMB_MODEL variables of a hosted model), the
    chunker is made for the embedder ragbot builds for that model (its token estimate and
    limit), which takes one probe request to the provider."""
    from dataclasses import replace

    from rag.config import Settings
    from rag.indexing.embedders import embedder_factory
    from rag.indexing.embedding import TransformersEmbedder
    from rag.indexing.ingest import make_chunker
    from rag.models import Document
    from rag.secrets import redact
    from rag.sources.repository import RepositorySource

    saved = {name: os.environ.get(name) for name in provider_env or {}}
    os.environ.update(provider_env or {})
    try:
        settings = Settings(_env_file=None, code_repo_path=repo, ragbot_data_dir=work / "texts")  # type: ignore[call-arg]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    source = RepositorySource.from_settings(settings)
    source.prepare()
    if provider_env:
        embedder = embedder_factory(settings)(settings.embedding_model_for("code"))
    else:
        embedder = TransformersEmbedder(quantize=settings.emb_int8)
    chunker = make_chunker(settings, embedder)
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


def make_corpus(args: argparse.Namespace, work: Path) -> Path:
    if args.corpus == "python":
        return python_corpus(work / "repo", args.files)
    from benchmarks._corpus import make_repo

    return make_repo(work / "repo")


class ProviderServer:
    """The fake provider in a child process: `url`, and `counts()` since the last call."""

    def __init__(self, rate: float, probe: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(rate), probe],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin and self.process.stdout
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise SystemExit(f"the fake provider did not start (printed {self.url!r})")

    def counts(self) -> dict[str, int | str]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write("counts\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the fake provider exited")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def product_embedding_defaults() -> dict[str, object]:
    """The EMBEDDING_* settings' defaults, by variable name."""
    from rag.config import Settings

    return {
        str(f.alias): f.default
        for f in Settings.model_fields.values()
        if f.alias and str(f.alias).startswith("EMBEDDING_")
    }


def provider_main(args: argparse.Namespace) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # the chunker's probe imports litellm here
    try:
        from rag.indexing.embedding_provider import PROBE_TEXT as probe
    except ImportError:
        probe = "ragbot embedding probe"

    work = Path(tempfile.mkdtemp(prefix="ragbot-ingest-bench-"))
    repo = make_corpus(args, work)
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "CODE_REPO_PATH": str(repo),
    }
    server = ProviderServer(args.rate, probe, base_env)
    try:
        provider_env = {
            "CODE_EMB_MODEL": f"litellm:{PROVIDER_MODEL}",
            "EMBEDDING_API_BASE": server.url,
            "EMBEDDING_API_KEY": "sk-fake",
            "EMBEDDING_BATCH_SIZE": "128",
        }
        texts = ragbot_texts(repo, work, provider_env)
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts))
        import hashlib

        texts_sha256 = hashlib.sha256(json.dumps(sorted(set(texts))).encode()).hexdigest()
        setup = server.counts()  # the chunker's probe
        defaults = product_embedding_defaults()

        load_before = os.getloadavg()
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        sides = ["original", *(f"ragbot_c{c}" for c in concurrencies)]
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        counts: dict[str, list[dict[str, int | str]]] = {side: [] for side in sides}
        for run in range(args.runs):
            order = sides if run % 2 == 0 else list(reversed(sides))
            for side in order:
                store = work / f"{side}-{run}"
                env = {
                    **base_env,
                    "CHROMA_DB_DIR": str(store / "chroma"),
                    "RAGBOT_DATA_DIR": str(store / "data"),
                }
                line: dict[str, object] = {"run": run, "side": side}
                if side == "original":
                    cmd = [sys.executable, "-c", ORIGINAL_PROVIDER, str(texts_file), str(store), server.url]
                    took, out = timed(cmd, env)
                    assert int(out.strip().splitlines()[-1]) == len(texts)
                else:
                    concurrency = int(side.removeprefix("ragbot_c"))
                    env |= provider_env | {"EMBEDDING_CONCURRENCY": str(concurrency)}
                    took, out = timed([RAGBOT, "ingest", "code", "--full", "--json"], env)
                    report = json.loads(out.strip().splitlines()[-1])["sources"][0]
                    assert report["ok"] and report["chunks_embedded"] == len(texts), (report, len(texts))
                    line["report_seconds"] = report["seconds"]
                served = server.counts()
                if served["texts_sha256"] != texts_sha256:
                    raise SystemExit(f"{side} sent other texts than the chunk texts: {served}")
                seconds[side].append(took)
                counts[side].append(served)
                shutil.rmtree(store, ignore_errors=True)
                line |= {"seconds": round(took, 1)}
                line |= {k: served[k] for k in ("requests", "answered_429", "largest_request")}
                print(json.dumps(line), flush=True)
        load_after = os.getloadavg()
    finally:
        server.close()

    med = {side: statistics.median(times) for side, times in seconds.items()}
    default_concurrency = defaults.get("EMBEDDING_CONCURRENCY")
    by_concurrency = {}
    for c in concurrencies:
        side = f"ragbot_c{c}"
        by_concurrency[str(c)] = {
            "ragbot_seconds_median": round(med[side], 2),
            "ragbot_seconds_all": [round(x, 2) for x in seconds[side]],
            "ragbot_chunks_per_s": round(len(texts) / med[side], 1),
            "speedup_end_to_end": round(med["original"] / med[side], 2),
            "requests_per_run": [n["requests"] for n in counts[side]],
            "answered_429_per_run": [n["answered_429"] for n in counts[side]],
        }
    result = {
        "mode": "provider",
        "date": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before_after": [[round(x, 2) for x in load_before], [round(x, 2) for x in load_after]],
        "corpus": args.corpus if args.corpus != "python" else f"python ({args.files} files)",
        "chunks": len(texts),
        "chunk_chars_median": statistics.median(len(t) for t in texts) if texts else 0,
        "runs": args.runs,
        "server": {
            "latency_s": 0.08,
            "per_text_s": 0.002,
            "max_inputs": 128,
            "rate_limit_per_s": args.rate,
            "retry_after": "1",
        },
        "ragbot_settings": {
            "CODE_EMB_MODEL": f"litellm:{PROVIDER_MODEL}",
            "EMBEDDING_BATCH_SIZE": 128,
            **{k: v for k, v in defaults.items() if k not in provider_env and k != "EMBEDDING_CONCURRENCY"},
            "EMBEDDING_CONCURRENCY_default": default_concurrency,
        },
        "setup_probe_requests": setup["requests"],
        "original_seconds_median": round(med["original"], 2),
        "original_seconds_all": [round(x, 2) for x in seconds["original"]],
        "original_chunks_per_s": round(len(texts) / med["original"], 1),
        "original_requests_per_run": [n["requests"] for n in counts["original"]],
        "original_answered_429_per_run": [n["answered_429"] for n in counts["original"]],
        "by_concurrency": by_concurrency,
    }
    if str(default_concurrency) in by_concurrency:
        speedup = by_concurrency[str(default_concurrency)]["speedup_end_to_end"]
        result["target_10x_at_default_concurrency"] = bool(speedup >= 10)  # type: ignore[operator]
    print(json.dumps(result), flush=True)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=["contextual-code", "python"], default="contextual-code")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overlap", action="store_true", help="also time ragbot with overlap off")
    parser.add_argument(
        "--device", default="cpu", help="local mode: where both sides run the model (cpu, cuda, mps)"
    )
    parser.add_argument("--provider", action="store_true", help="a hosted embedding model (fake server)")
    parser.add_argument("--concurrency", default="1,4,8", help="--provider: EMBEDDING_CONCURRENCY values")
    parser.add_argument("--rate", type=float, default=20.0, help="--provider: requests/s before 429")
    args = parser.parse_args()
    if args.provider:
        provider_main(args)
        return

    work = Path(tempfile.mkdtemp(prefix="ragbot-ingest-bench-"))
    repo = make_corpus(args, work)
    texts = ragbot_texts(repo, work)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "CODE_REPO_PATH": str(repo),
        "RAGBOT_DEVICE": args.device,
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
                original = [sys.executable, "-c", ORIGINAL, str(texts_file), str(store), args.device]
                seconds, out = timed(original, env)
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
        "device": args.device,
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
