"""The dependency floors in pyproject.toml admit only versions that have what the code calls.

Each feature the Slack layer relies on is listed with the first slack-sdk release that has it
(read from slackapi/python-slack-sdk's tags); the floor must be at least the newest of them, and
the installed version must really have each one. On the v2 floor (slack-sdk>=3.30) every
threaded answer failed: chat.startStream did not exist before 3.37, its `chunks` before 3.40.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _params(method: Callable[..., object]) -> set[str]:
    return set(inspect.signature(method).parameters)


def _web_client() -> type:
    from slack_sdk import WebClient

    return WebClient


#: (first slack-sdk release with it, what the code uses, check on the installed package)
SLACK_SDK_FEATURES: list[tuple[str, str, Callable[[], bool]]] = [
    (
        "3.33.0",
        "assistant.threads.setSuggestedPrompts",
        lambda: hasattr(_web_client(), "assistant_threads_setSuggestedPrompts"),
    ),
    (
        "3.37.0",
        "chat.startStream / appendStream / stopStream",
        lambda: hasattr(_web_client(), "chat_startStream"),
    ),
    (
        "3.37.0",
        "assistant.threads.setStatus loading_messages",
        lambda: "loading_messages" in _params(_web_client().assistant_threads_setStatus),
    ),
    (
        "3.40.0",
        "chunks (task_update, markdown_text) on the stream methods",
        lambda: "chunks" in _params(_web_client().chat_appendStream),
    ),
    (
        "3.40.0",
        "task_display_mode on chat.startStream",
        lambda: "task_display_mode" in _params(_web_client().chat_startStream),
    ),
    (
        "3.43.0",
        "ChatStream.ts (public)",
        lambda: hasattr(__import__("slack_sdk.web.chat_stream", fromlist=["ChatStream"]).ChatStream, "ts"),
    ),
]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _floor(package: str) -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(rf"{re.escape(package)}\s*>=\s*([0-9.]+)\S*", dep.strip())
        if match:
            return _version(match.group(1))
    raise AssertionError(f"{package} has no >= floor in pyproject.toml")


def test_the_slack_sdk_floor_has_every_feature_the_code_calls() -> None:
    newest = max(SLACK_SDK_FEATURES, key=lambda f: _version(f[0]))
    assert _floor("slack-sdk") >= _version(newest[0]), f"slack-sdk's floor predates {newest[1]} ({newest[0]})"


@pytest.mark.parametrize(
    ("since", "feature", "check"), SLACK_SDK_FEATURES, ids=[f[1] for f in SLACK_SDK_FEATURES]
)
def test_the_installed_slack_sdk_has_it(since: str, feature: str, check: Callable[[], bool]) -> None:
    assert check(), f"the installed slack-sdk lacks {feature} (expected since {since})"


def test_the_code_calls_no_stream_feature_missing_from_the_list() -> None:
    """A new keyword on the stream or status calls must be added to the list above (with its release)."""
    code = "\n".join(p.read_text() for p in (ROOT / "bot").glob("*.py"))
    used = set(re.findall(r"\b(chunks|task_display_mode|loading_messages)=", code))
    listed = " ".join(f[1] for f in SLACK_SDK_FEATURES)
    assert used <= {w for w in ("chunks", "task_display_mode", "loading_messages") if w in listed}
