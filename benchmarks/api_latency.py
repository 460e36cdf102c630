"""HTTP API latency: /query (extractive, warm) and /healthz while a full ingest runs.

Starts `ragbot serve` on 127.0.0.1 over the benchmark corpus (90 files), ingests it, then
measures. Reports medians; the point of the /healthz numbers is that a long ingest (run in
the server's threadpool) does not block other requests.

    python benchmarks/api_latency.py [--queries 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._corpus import make_repo

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    "How are HTTP requests retried?",
    "Where is the configuration file parsed?",
    "How does the cache expire entries?",
    "What does the main function do?",
    "How are errors logged?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo = make_repo(base / "repo")
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LITELLM_", "CHROMA_", "RAGBOT_", "CODE_", "CONFLUENCE_", "INGEST_"))
        }
        env.update(
            PYTHONPATH=str(ROOT),
            HF_HUB_OFFLINE="1",
            CODE_REPO_PATH=str(repo),
            CHROMA_DB_DIR=str(base / "chroma"),
            RAGBOT_DATA_DIR=str(base / "data"),
            LOG_LEVEL="WARNING",
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
            cwd=base,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            client = httpx.Client(base_url=url, timeout=600)
            t0 = time.perf_counter()
            first = client.post("/ingest_local_code").json()
            first_ingest = time.perf_counter() - t0

            client.post("/query", json={"query": "warm up"})
            query_ms = []
            for i in range(args.queries):
                t0 = time.perf_counter()
                response = client.post("/query", json={"query": QUESTIONS[i % len(QUESTIONS)], "top_k": 5})
                query_ms.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200

            done = threading.Event()
            full: dict[str, float] = {}

            def full_ingest() -> None:
                t = time.perf_counter()
                httpx.post(f"{url}/ingest_local_code", json={"full": True}, timeout=600)
                full["seconds"] = time.perf_counter() - t
                done.set()

            threading.Thread(target=full_ingest, daemon=True).start()
            time.sleep(0.5)
            health_ms = []
            conflict = None
            while not done.is_set():
                t0 = time.perf_counter()
                client.get("/healthz")
                health_ms.append((time.perf_counter() - t0) * 1000)
                if conflict is None:
                    conflict = client.post("/ingest_local_code").status_code
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(30)

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "documents": first["documents_seen"],
        "chunks": first["chunks_embedded"],
        "first_ingest_seconds_via_api": round(first_ingest, 2),
        "query_ms_median": round(statistics.median(query_ms), 1),
        "query_ms_max": round(max(query_ms), 1),
        "full_ingest_seconds": round(full.get("seconds", 0.0), 2),
        "healthz_during_ingest_ms_median": round(statistics.median(health_ms), 1) if health_ms else None,
        "healthz_during_ingest_samples": len(health_ms),
        "second_ingest_status_during_ingest": conflict,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
