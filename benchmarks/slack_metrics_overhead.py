"""The cost of metrics on the Slack answer path (the v1 chat.update path, as the fake Slack runs
it by default): how soon a mention is acknowledged, shows ⏳, and gets its answer, metrics on/off.

The real bot (Bolt over Socket Mode) against the test suite's local fake Slack and fake LLM
(a streamed reply of 121 words, 25 ms between words: ~3 s), with a small repository indexed by the
bundled MiniLM into embedded Chroma. One mention at a time; reports medians over --runs.

    python benchmarks/slack_metrics_overhead.py [--runs 10] [--json] [--compare-metrics]

With --compare-metrics the mentions alternate between metrics on (recorded, served on a
local port and scraped every second, far more often than Prometheus would) and off (nothing
recorded, as with RAGBOT_METRICS_PORT unset), and both sides are reported with their ratio.

What it measures is ragbot's own overhead on loopback (no network, no real model), i.e. a
lower bound of what users see: the Slack round trips and the LLM add to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

from bot.app import SlackBot
from rag.config import Settings
from rag.ops.metrics import Metrics, serve_metrics
from rag.service import RagService
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, FakeSlack
from tests.servers import free_port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare-metrics", action="store_true", help="alternate metrics on and off")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    repo = tmp / "repo"
    (repo / "shop").mkdir(parents=True)
    for i in range(20):
        (repo / "shop" / f"module_{i}.py").write_text(
            f'def handler_{i}(request):\n    """Handle request kind {i}: refunds, payments, limits."""\n'
            + "".join(f"    step_{j} = request.get('field_{j}')\n" for j in range(30))
        )
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "x"], cwd=repo, check=True
    )

    slack = FakeSlack().start()
    # Distinct words: litellm now aborts a stream that repeats one chunk over and over.
    reply = " ".join(f"word{i}" for i in range(120)) + " [1]"
    llm = FakeLLM(reply=lambda _m: reply, chunk_delay=0.025).start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        chroma_db_dir=tmp / "chroma",
        ragbot_data_dir=tmp / "data",
        code_repo_path=repo,
        litellm_model="openai/fake",
        litellm_api_base=llm.url,
        litellm_api_key="x",
        slack_bot_token="xoxb-bench",  # noqa: S106 - the fake accepts any token
        slack_app_token="xapp-bench",  # noqa: S106
        slack_api_url=slack.api_url,
        ragbot_metrics_port=free_port(),
    )
    on, off = Metrics(), Metrics(enabled=False)
    service = RagService(settings, metrics=off)
    service.ingest(["code"])
    service.ask("warm up the model and litellm")
    bot = SlackBot(settings, service)
    bot.start()
    server = serve_metrics(settings, on) if args.compare_metrics else None
    stop_scraping = threading.Event()
    if server is not None:
        url = f"http://127.0.0.1:{server.port}/metrics"

        def scrape() -> None:
            while not stop_scraping.wait(1.0):
                if service.metrics is on:  # the "off" side is not scraped: nothing would serve it
                    with urllib.request.urlopen(url, timeout=10) as response:
                        response.read()

        threading.Thread(target=scrape, daemon=True).start()

    sides = ("off", "on") if args.compare_metrics else ("off",)
    keys = ("ack", "reaction", "placeholder", "first_update", "answer")
    by_side: dict[str, dict[str, list[float]]] = {side: {k: [] for k in keys} for side in sides}
    try:
        for i in range(args.runs * len(sides)):
            side = sides[i % len(sides)]
            service.metrics = on if side == "on" else off
            rows = by_side[side]
            # a different asker each time: the per-user rate limit is not what is measured
            msg = slack.user_message(
                "CBENCH", f"<@{BOT_USER}> how are refunds of kind {i} handled?", user=f"UBENCH{i}"
            )
            event = {"type": "app_mention", **{k: v for k, v in msg.items() if k != "type"}}
            before = len(slack.calls)
            t0 = time.monotonic()
            env, _ = slack.send_event(event)

            def first(method: str, pred=lambda c: True, before=before):  # type: ignore[no-untyped-def]
                return slack.wait_for(
                    lambda: next((c for c in slack.calls[before:] if c.method == method and pred(c)), None),
                    what=method,
                )

            rows["ack"].append(slack.wait_for_ack(env) and slack.ack_times[env] - t0)
            rows["reaction"].append(first("reactions.add").at - t0)
            rows["placeholder"].append(first("chat.postMessage").at - t0)
            rows["first_update"].append(first("chat.update", lambda c: "blocks" not in c.args).at - t0)
            rows["answer"].append(first("chat.update", lambda c: "blocks" in c.args).at - t0)
            first("reactions.remove")
    finally:
        stop_scraping.set()
        if server is not None:
            server.close()
        slack.hang_up()
        bot.stop()
        slack.stop()
        llm.stop()

    machine = f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    result: dict[str, object] = {"runs": args.runs, "machine": machine}
    for side, rows in by_side.items():
        prefix = f"metrics_{side}_" if args.compare_metrics else ""
        result[f"{prefix}median_seconds"] = {k: round(statistics.median(v), 3) for k, v in rows.items()}
        result[f"{prefix}max_seconds"] = {k: round(max(v), 3) for k, v in rows.items()}
    if args.compare_metrics:
        result["median_ratio_on_over_off"] = {
            k: round(statistics.median(by_side["on"][k]) / statistics.median(by_side["off"][k]), 3)
            for k in keys
        }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.runs} mentions per side, one at a time ({machine})")
    for side, rows in by_side.items():
        if args.compare_metrics:
            print(f" metrics {side}:")
        for key in keys:
            median, worst = statistics.median(rows[key]), max(rows[key])
            print(f"  {key:13s} median {median:.3f} s   max {worst:.3f} s")
    if args.compare_metrics:
        ratios = result["median_ratio_on_over_off"]
        print(" median on/off: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
