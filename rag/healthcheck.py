"""The container health check: `python -m rag.healthcheck [run|worker|serve]` exits 0 when healthy.

Without an argument the role is read from the container's main command (/proc/1/cmdline):
- `serve`: GET /healthz on the local port answers 200;
- `worker`: the scheduler's heartbeat in RAGBOT_DATA_DIR is fresh (rag/ops/scheduler.py);
- `run` (the Slack bot): its liveness record in RAGBOT_DATA_DIR (rag/ops/liveness.py) is fresh, the
  Socket Mode connection has not been down longer than RAGBOT_LIVENESS_GRACE_SECONDS, and no
  answer has been in progress for longer than WEDGED_FACTOR × LITELLM_TIMEOUT (at least 5 min).
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from rag.api import DEFAULT_PORT
from rag.config import load_settings
from rag.ops.liveness import problem, read_heartbeat
from rag.ops.scheduler import read_record

ROLES = ("serve", "worker", "run")
WEDGED_FACTOR = 5
MIN_WEDGED_SECONDS = 300.0


def container_command(cmdline: Path = Path("/proc/1/cmdline")) -> list[str]:
    try:
        raw = cmdline.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def detect_role(args: list[str]) -> str:
    return next((a for a in args if a in ROLES), "run")


def serve_port(args: list[str]) -> int:
    for i, arg in enumerate(args):
        if arg == "--port" and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return DEFAULT_PORT


def check(role: str, args: list[str]) -> str | None:
    """None when healthy, else the reason."""
    if role == "serve":
        url = f"http://127.0.0.1:{serve_port(args)}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=8) as response:
                return None if response.status == 200 else f"/healthz answered {response.status}"
        except OSError as e:
            return f"/healthz: {e}"
    if role == "worker":
        settings = load_settings()
        if read_record(settings.ragbot_data_dir) is None:
            return "the scheduler's heartbeat is missing or stale"
    if role == "run":
        settings = load_settings()
        return problem(
            read_heartbeat(settings.ragbot_data_dir),
            grace_seconds=settings.ragbot_liveness_grace_seconds,
            wedged_after=max(MIN_WEDGED_SECONDS, WEDGED_FACTOR * settings.llm_timeout_seconds),
        )
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = container_command()
    role = argv[0] if argv else detect_role(command)
    problem = check(role, command)
    if problem:
        print(f"unhealthy ({role}): {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
