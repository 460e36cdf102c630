"""Slack responsiveness: how soon a mention is acknowledged, shows it is working, and gets its answer.

The real bot (Bolt over Socket Mode) against the test suite's local fake Slack and fake LLM
(a streamed reply of 121 words, 25 ms between words: ~3 s), with a small repository indexed by the
bundled MiniLM into embedded Chroma. One mention at a time, alternating between the two ways
of showing an answer in one process: `native` (chat.startStream/appendStream/stopStream and
the thread status) and `update` (the v1 placeholder + chat.update + ⏳ reaction path, as it is
when Slack refuses streaming). Reports medians over --runs per mode.

    python benchmarks/slack_latency.py [--runs 10] [--json]

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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

from bot.app import SlackBot
from rag.config import Settings
from rag.service import RagService
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import BOT_USER, FakeSlack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
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
    # Distinct words: litellm aborts a stream that repeats one chunk 100 times ("The model is
    # repeating the same chunk"), which turned the old 120 x "word" reply into an LLM failure.
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
    )
    service = RagService(settings)
    service.ingest(["code"])
    service.ask("warm up the model and litellm")
    bot = SlackBot(settings, service)
    bot.start()

    handlers = bot._handlers  # switching the path per question is what is compared
    assert handlers is not None
    modes = ("native", "update")
    keys = ("ack", "working", "first_text", "answer", "progress_calls")
    rows: dict[str, dict[str, list[float]]] = {m: {k: [] for k in keys} for m in modes}
    try:
        for i in range(args.runs * 2):
            mode = modes[i % 2]  # alternate, so load on this shared machine hits both alike
            native = mode == "native"
            slack.streaming = slack.status = native
            handlers.caps.streaming = handlers.caps.status = native
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

            row = rows[mode]
            row["ack"].append(slack.wait_for_ack(env) and slack.ack_times[env] - t0)
            if native:
                row["working"].append(first("assistant.threads.setStatus").at - t0)
                row["first_text"].append(first("chat.startStream").at - t0)
                row["answer"].append(first("chat.stopStream").at - t0)
                first("assistant.threads.setStatus", lambda c: c.args.get("status") == "")
                progress = ("chat.startStream", "chat.appendStream")
            else:
                row["working"].append(first("reactions.add").at - t0)
                row["first_text"].append(first("chat.update", lambda c: "blocks" not in c.args).at - t0)
                row["answer"].append(first("chat.update", lambda c: "blocks" in c.args).at - t0)
                first("reactions.remove")
                progress = ("chat.update",)
            calls = [c for c in slack.calls[before:] if c.method in progress and "blocks" not in c.args]
            row["progress_calls"].append(len(calls))
    finally:
        slack.hang_up()
        bot.stop()
        slack.stop()
        llm.stop()

    result = {
        "runs_per_mode": args.runs,
        "median": {m: {k: round(statistics.median(v), 3) for k, v in rows[m].items()} for m in modes},
        "max": {m: {k: round(max(v), 3) for k, v in rows[m].items()} for m in modes},
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.runs} mentions per mode, alternating, one at a time ({result['machine']})")
        for key in keys:
            cells = "   ".join(
                f"{m} median {result['median'][m][key]:.3f} max {result['max'][m][key]:.3f}" for m in modes
            )
            print(f"  {key:14s} {cells}")


if __name__ == "__main__":
    main()
