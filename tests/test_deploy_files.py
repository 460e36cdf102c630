"""The Docker files agree with the contract: no engine runs here, so their text is checked."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rag.healthcheck import detect_role, serve_port
from rag.ops.scheduler import RECORD_FILE
from tests.conftest import CONTRACT_VARS

ROOT = Path(__file__).resolve().parents[1]


def contract_variables() -> set[str]:
    """Every variable named in the first column of the configuration table of docs/interface.md."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "interface.md").read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_the_contract_table_is_parsed() -> None:
    assert contract_variables() == set(CONTRACT_VARS)


def test_every_variable_the_compose_file_uses_is_in_the_contract() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    set_in_services: set[str] = set()
    for name, service in compose()["services"].items():
        if name == "chroma":
            continue  # the Chroma image has its own settings
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        set_in_services.update(environment)
    used = interpolated | set_in_services
    assert used, "the compose file sets no ragbot variable at all?"
    assert used <= contract_variables(), used - contract_variables()


def test_compose_has_the_documented_roles() -> None:
    services = compose()["services"]
    assert {"bot", "worker", "chroma", "api"} <= set(services)
    assert services["bot"]["command"] == ["run"]
    assert services["bot"]["environment"]["RAGBOT_SCHEDULER"] == "off"
    assert services["worker"]["command"] == ["worker"]
    assert services["chroma"]["image"].startswith("chromadb/chroma:")
    assert services["api"]["command"][0] == "serve" and services["api"]["profiles"] == ["api"]
    for role in ("bot", "worker", "api"):
        service = services[role]
        assert service["environment"]["CHROMA_HOST"] == "chroma"
        assert [f["path"] for f in service["env_file"]] == [".env"]
        # One data volume shared by every role: the locks and run history live there.
        assert "ragbot-data:/data" in service["volumes"]


def test_chroma_image_matches_the_client_version() -> None:
    from importlib.metadata import version

    image = compose()["services"]["chroma"]["image"]
    assert image.split(":", 1)[1] == version("chromadb")


def test_dockerfile_installs_with_the_setup_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    runs = [line for line in text.splitlines() if line.startswith("RUN ") and "setup.sh" in line]
    assert len(runs) == 2 and all("bash scripts/setup.sh" in r for r in runs)
    assert all("DEV=0" in r and "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in r for r in runs)
    assert "install -y --no-install-recommends git" in text
    assert re.search(r"^USER ragbot$", text, re.M)
    assert "HEALTHCHECK" in text and "rag.healthcheck" in text
    assert "HF_HOME=" in text and "VOLUME" in text
    # The Makefile (the README's path) uses the same script.
    assert "scripts/setup.sh" in (ROOT / "Makefile").read_text()


def test_dockerfile_sets_only_contract_or_runtime_variables() -> None:
    text = (ROOT / "Dockerfile").read_text()
    env_blocks = re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)
    names = {m for block in env_blocks for m in re.findall(r"([A-Z_][A-Z0-9_]*)=", block)}
    runtime = {
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PIP_NO_CACHE_DIR",
        "VENV",
        "HF_HOME",
        "ANONYMIZED_TELEMETRY",
        "TOKENIZERS_PARALLELISM",
    }
    assert names - runtime <= contract_variables(), names - runtime - contract_variables()


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".venv", "chroma_db", ".ragbot", ".git"):
        assert entry in lines


def test_health_check_role_detection() -> None:
    assert detect_role(["/sbin/docker-init", "--", "/opt/venv/bin/ragbot", "worker"]) == "worker"
    assert detect_role(["ragbot", "serve", "--host", "0.0.0.0", "--port", "9000"]) == "serve"
    assert detect_role(["/bin/sh"]) == "run"
    assert serve_port(["ragbot", "serve", "--port", "9000"]) == 9000
    assert serve_port(["ragbot", "serve", "--port=9001"]) == 9001
    assert serve_port(["ragbot", "serve"]) == 8000


@pytest.mark.parametrize(("age", "healthy"), [(1.0, True), (3600.0, False), (None, False)])
def test_worker_health_follows_the_scheduler_heartbeat(
    tmp_path: Path, age: float | None, healthy: bool
) -> None:
    import json
    import os

    data = tmp_path / "data"
    data.mkdir()
    if age is not None:
        (data / RECORD_FILE).write_text(json.dumps({"heartbeat": time.time() - age, "pid": 1}))
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    env.update(PYTHONPATH=str(ROOT), RAGBOT_DATA_DIR=str(data))
    result = subprocess.run(
        [sys.executable, "-m", "rag.healthcheck", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode == 0) is healthy, result.stderr
