"""Settings: the contract's variables, `.env`, blanks, and one-line errors naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.config import Settings, load_settings
from rag.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def contract_variables() -> set[str]:
    text = (ROOT / "docs" / "interface.md").read_text()
    table = text.split("## Configuration", 1)[1].split("## Command line", 1)[0]
    return {
        name
        for row in table.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])
    }


def test_the_contract_keeps_everything_the_v2_baseline_lists() -> None:
    """docs/interface.md grows with each issue; nothing the v2 baseline (shared/spec) lists may go:
    its variables, commands, routes and JSON keys all still stand in it."""
    shared = ROOT.parent / "shared" / "spec" / "interface.md"
    if not shared.is_file():
        pytest.skip("shared/spec is not beside this checkout")
    baseline, ours = shared.read_text(), (ROOT / "docs" / "interface.md").read_text()
    items = {
        "variable": set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", baseline)),
        "command": set(re.findall(r"`(ragbot [a-z]+)", baseline)),
        "route": set(re.findall(r"`((?:GET|POST) /[\w/]*)", baseline)),
        "json key": set(re.findall(r'"([a-z_]+)":', baseline)),
    }
    assert all(items.values()), items
    missing = {kind: sorted(n for n in names if n not in ours) for kind, names in items.items()}
    assert missing == {kind: [] for kind in items}


def test_every_contract_variable_is_a_setting_and_in_env_example() -> None:
    names = contract_variables()
    assert len(names) >= 30
    aliases = {f.alias for f in Settings.model_fields.values()}
    assert names <= aliases
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert names <= example


def test_env_file_blank_values_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "CONFLUENCE_SPACE=ENG, OPS\nCHROMA_HOST=\nCHUNK_SIZE=\nRAGBOT_SCHEDULER=OFF\nLOG_LEVEL=debug\n"
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.confluence_space == ["ENG", "OPS"]
    assert s.chroma_host is None and s.chunk_size is None
    assert s.ragbot_scheduler == "off" and s.log_level == "DEBUG"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMA_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"^CHROMA_PORT: "):
        load_settings()


def test_secrets_are_hidden_from_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("CONFLUENCE_PASSWORD", "hunter2")
    text = repr(load_settings())
    assert "xoxb-very-secret" not in text and "hunter2" not in text
