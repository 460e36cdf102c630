"""The answering loop (issue 20): the model reads the code through tools, bounded, within the scope.

The real litellm talks over a socket to the fake OpenAI-compatible server, which plays scripted
tool calls and records every request; the index is a real git repository ingested into embedded
Chroma (chunks and symbols) with the hash embedder, since the model is not the subject here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import SlackBot
from rag.answering.citations import cited
from rag.answering.generation import REWRITE_PROMPT
from rag.indexing.embedding import EmbedderPool
from rag.models import Turn
from rag.service import RagService
from tests.conftest import git, write_files
from tests.fakes.hash_embedder import HashEmbedder
from tests.fakes.llm_server import FakeLLM, ModelTurn, ToolCall, echo_sources_reply
from tests.fakes.slack_server import BOT_USER, FakeSlack

INVOICE = (
    "def compute_invoice_total(lines):\n"
    '    """Sum of the invoice lines, in cents."""\n'
    "    return sum(line.amount for line in lines)\n"
)
REPORT = (
    "from billing.invoice import compute_invoice_total\n"
    "\n"
    "\n"
    "def monthly_report(invoices):\n"
    '    """The month\'s revenue: every invoice\'s total, summed."""\n'
    "    totals = [compute_invoice_total(i.lines) for i in invoices]\n"
    '    return {"revenue": sum(totals), "count": len(totals)}\n'
)
BACKEND: dict[str, str | bytes] = {
    "billing/invoice.py": INVOICE,
    "billing/report.py": REPORT,
    "README.md": "# Billing\n\nInvoices are computed in billing/invoice.py; reports in billing/report.py.\n",
}
#: Another repository's secret: it must never reach the model when a question is scoped to backend.
OPS: dict[str, str | bytes] = {
    "ops/vault.py": "def rotate_vault():\n"
    '    """Ask ursula-hsm-pin-4711 for the HSM pin, then rotate."""\n'
    "    return compute_invoice_total([])\n",
}
SECRET = "ursula-hsm-pin-4711"
QUESTION = "what uses compute_invoice_total and what does it do with the total?"


def make_service(make_settings: Any, fake_llm: FakeLLM, **overrides: Any) -> RagService:
    settings = make_settings(
        litellm_model="openai/fake-model", litellm_api_base=fake_llm.url, litellm_api_key="k", **overrides
    )
    return RagService(settings, embedders=EmbedderPool(lambda _model: HashEmbedder()))


@pytest.fixture
def backend(make_settings: Any, fake_llm: FakeLLM, git_repo: Any) -> RagService:
    git_repo(BACKEND)
    service = make_service(make_settings, fake_llm)
    assert all(r.ok for r in service.ingest(["code"]))
    return service


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def number_of(place: str) -> Callable[[list[dict[str, Any]]], str]:
    """A final answer that cites the number the last tool result gave `place`, plus a bogus [99]."""

    def reply(messages: list[dict[str, Any]]) -> str:
        found = re.search(rf"^\[(\d+)\] {re.escape(place)}$", messages[-1]["content"], re.M)
        assert found, messages[-1]["content"]
        return f"`monthly_report` sums every invoice's total [{found[1]}] [99]."

    return reply


def test_definition_then_references_then_read_answers_citing_only_what_was_read(
    backend: RagService, fake_llm: FakeLLM, git_repo: Any
) -> None:
    # The working tree changes after the ingest: `read` must return the indexed text.
    write_files(Path(backend.settings.code_repo_path), {"billing/report.py": "# rewritten, not indexed\n"})
    fake_llm.script(
        ToolCall("definition", {"name": "compute_invoice_total"}),
        ToolCall("references", {"name": "compute_invoice_total"}),
        ToolCall("read", {"path": "billing/report.py", "start": 4, "end": 7}),
        number_of("billing/report.py:4-7"),
    )
    reported: list[str] = []
    answer = backend.ask(QUESTION, on_step=reported.append)

    steps = [
        "Finding the definition of compute_invoice_total",
        "Finding references to compute_invoice_total",
        "Reading billing/report.py:4-7",
    ]
    assert answer.mode == "llm" and answer.steps == steps and reported == steps
    assert answer.to_json()["steps"] == steps
    n = cited(answer.text, len(answer.hits))
    assert len(n) == 1 and "[99]" not in answer.text
    read = answer.hits[n[0] - 1]
    assert (read.path, read.start_line, read.end_line) == ("billing/report.py", 4, 7)
    assert read.text == "\n".join(REPORT.split("\n")[3:7])
    assert answer.text == f"`monthly_report` sums every invoice's total [{n[0]}]."
    places = {(h.path, h.start_line, h.end_line) for h in answer.hits}
    assert ("billing/invoice.py", 1, 3) in places  # the definition
    assert {("billing/report.py", 1, 1), ("billing/report.py", 6, 6)} <= places  # the import and the call

    bodies = fake_llm.bodies(with_tools=True)
    assert len(bodies) == 4 and all(b["tools"] for b in bodies)
    assert {t["function"]["name"] for t in bodies[0]["tools"]} == {
        "search",
        "definition",
        "references",
        "outline",
        "read",
    }
    assert bodies[0]["messages"][-1]["content"].endswith(f"Question: {QUESTION}")
    (definition,) = tool_messages(bodies[1])
    assert "billing/invoice.py:1-3 function compute_invoice_total" in definition
    assert "Sum of the invoice lines, in cents." in definition
    references = tool_messages(bodies[2])[1]
    assert (
        "billing/report.py:6 call: totals = [compute_invoice_total(i.lines) for i in invoices]" in references
    )
    assert "billing/report.py:1 import: from billing.invoice import compute_invoice_total" in references
    read_result = tool_messages(bodies[3])[2]
    assert "    6      totals = [compute_invoice_total(i.lines) for i in invoices]" in read_result
    assert "rewritten, not indexed" not in json.dumps(fake_llm.requests)
    assert not fake_llm.bodies(with_tools=False)  # the loop answered: no single-shot call


def test_a_tool_call_outside_the_scope_finds_nothing_and_reveals_nothing(
    make_settings: Any, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    roots = {}
    for name, files in (("backend", BACKEND), ("ops", OPS)):
        root = tmp_path / name
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        write_files(root, files)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
        roots[name] = root
    sources = tmp_path / "ragbot.toml"
    sources.write_text("".join(f'[[repository]]\nname = "{n}"\npath = "{r}"\n' for n, r in roots.items()))
    service = make_service(make_settings, fake_llm, ragbot_sources_file=sources)
    assert all(r.ok for r in service.ingest(["all"]))
    ops = service.toolbox(["ops"])  # it is all indexed, in the other repository
    assert (
        ops.read("ops/vault.py").hits
        and ops.definition("rotate_vault").hits
        and ops.outline("ops/vault.py").hits
    )

    fake_llm.script(
        [
            ToolCall("read", {"path": "ops/vault.py"}),
            ToolCall("read", {"path": "ops/vault.py", "source": "ops"}),
            ToolCall("read", {"path": "ops · ops/vault.py"}),
            ToolCall("read", {"path": "nowhere/missing.py"}),
            ToolCall("outline", {"path": "ops/vault.py"}),
            ToolCall("definition", {"name": "rotate_vault"}),
            ToolCall("search", {"query": "rotate the vault HSM pin", "sources": ["ops"]}),
        ],
        "Only the backend is indexed here [1].",
    )
    reported: list[str] = []
    answer = service.ask("how is the vault rotated?", allowed=["backend"], on_step=reported.append)

    first, final = fake_llm.bodies(with_tools=True)
    results = tool_messages(final)
    assert (
        results[0] == results[1] == results[2] == "Not found: 'ops/vault.py' is not an indexed file or page."
    )
    assert results[3] == "Not found: 'nowhere/missing.py' is not an indexed file or page."
    assert results[4] == results[0]
    assert results[5] == "Not found: no definition of 'rotate_vault' in the indexed sources."
    assert results[6].startswith("No indexed passage matches")
    everything = json.dumps(fake_llm.requests)
    assert SECRET not in everything and "def rotate_vault" not in everything
    assert "ops" not in first["messages"][0]["content"].rsplit("The sources you can search:", 1)[1]
    assert answer.hits and {h.source_name for h in answer.hits} == {"backend"}
    assert answer.steps == reported and not any("not found" in s.lower() for s in reported)
    assert SECRET not in answer.text


def test_when_the_model_keeps_calling_tools_the_budget_ends_in_the_single_shot_answer(
    make_settings: Any, fake_llm: FakeLLM, git_repo: Any
) -> None:
    git_repo(BACKEND)
    service = make_service(make_settings, fake_llm, agent_max_steps=2)
    assert all(r.ok for r in service.ingest(["code"]))
    fake_llm.script(*[ToolCall("search", {"query": f"invoice {i}"}) for i in range(5)])
    reported: list[str] = []
    answer = service.ask(QUESTION, on_step=reported.append)
    assert len(fake_llm.bodies(with_tools=True)) == 2
    (single_shot,) = fake_llm.bodies(with_tools=False)
    assert single_shot["messages"][-1]["content"].endswith(f"Question: {QUESTION}")
    assert answer.mode == "llm" and answer.text == f"Answer to: {QUESTION} [1]"
    assert answer.steps == [] and answer.to_json()["steps"] == []
    assert reported == ["Searching: invoice 0"]  # shown while it ran; the second turn still asked for tools
    last_turn = fake_llm.bodies(with_tools=True)[-1]["messages"][-1]["content"]
    assert last_turn.endswith("your next reply must be the answer.)")


def test_when_the_time_runs_out_the_single_shot_answer_is_given(
    make_settings: Any, fake_llm: FakeLLM, git_repo: Any
) -> None:
    git_repo(BACKEND)
    service = make_service(make_settings, fake_llm, agent_seconds=0.5)
    assert all(r.ok for r in service.ingest(["code"]))
    fake_llm.delay = 1.0
    fake_llm.script(ToolCall("search", {"query": "invoice"}))
    answer = service.ask(QUESTION)
    assert answer.mode == "llm" and answer.steps == [] and answer.text == f"Answer to: {QUESTION} [1]"
    assert len(fake_llm.bodies(with_tools=True)) == 1


def test_when_the_model_is_down_the_sources_are_given_at_once_without_a_second_call(
    backend: RagService, fake_llm: FakeLLM
) -> None:
    fake_llm.status = 503
    answer = backend.ask(QUESTION)
    assert answer.mode == "extractive" and answer.note and answer.note.startswith("LLM failed")
    assert "The language model is unavailable right now" in answer.text
    assert answer.hits and "billing/" in (answer.hits[0].path or "")
    # The loop's call failed: the single-shot call would fail the same way and double the wait.
    assert fake_llm.bodies(with_tools=True) and not fake_llm.bodies(with_tools=False)


@pytest.mark.parametrize(
    "call",
    [
        ToolCall("read", "{not json"),
        ToolCall("read", "[1, 2]"),
        ToolCall("delete_repository", {"path": "billing"}),
        ToolCall("read", {"path": 42}),
        ToolCall("read", {"path": "billing/report.py", "start": "the top"}),
    ],
    ids=["not-json", "not-an-object", "unknown-tool", "wrong-type", "bad-line"],
)
def test_a_malformed_tool_call_falls_back_to_the_single_shot_answer(
    backend: RagService, fake_llm: FakeLLM, call: ToolCall
) -> None:
    fake_llm.script(call, "never sent")
    answer = backend.ask(QUESTION)
    assert answer.mode == "llm" and answer.text == f"Answer to: {QUESTION} [1]" and answer.steps == []
    assert len(fake_llm.bodies(with_tools=True)) == 1
    assert len(fake_llm.bodies(with_tools=False)) == 1


def test_with_the_loop_off_no_request_offers_tools(
    make_settings: Any, fake_llm: FakeLLM, git_repo: Any
) -> None:
    git_repo(BACKEND)
    service = make_service(make_settings, fake_llm, ragbot_agent="off")
    assert all(r.ok for r in service.ingest(["code"]))
    fake_llm.script(ToolCall("search", {"query": "invoice"}))
    answer = service.ask(QUESTION, history=[Turn("what is an invoice?", "A bill [1].")])
    assert answer.mode == "llm" and answer.steps == []
    assert fake_llm.requests and fake_llm.bodies(with_tools=True) == []


def test_a_follow_up_carries_the_earlier_turns_into_every_turn_of_the_loop(
    backend: RagService, fake_llm: FakeLLM
) -> None:
    def rewriting(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"] == REWRITE_PROMPT:
            return "who calls compute_invoice_total"
        return echo_sources_reply(messages)

    fake_llm.reply = rewriting
    fake_llm.script(ToolCall("references", {"name": "compute_invoice_total"}), "`monthly_report` does [1].")
    history = [Turn("how is the invoice total computed?", "By `compute_invoice_total` [1].")]
    answer = backend.ask("and who calls it?", history=history)
    assert answer.steps == ["Finding references to compute_invoice_total"]
    (rewrite,) = fake_llm.bodies(with_tools=False)
    assert rewrite["messages"][0]["content"] == REWRITE_PROMPT
    for body in fake_llm.bodies(with_tools=True):
        roles = [(m["role"], m.get("content")) for m in body["messages"][1:3]]
        assert roles == [("user", history[0].question), ("assistant", history[0].answer)]
        assert body["messages"][3]["content"].endswith("Question: and who calls it?")


def test_an_endpoint_that_refuses_tools_gets_single_shot_requests_from_then_on(
    backend: RagService, fake_llm: FakeLLM
) -> None:
    fake_llm.tools_supported = False
    first = backend.ask(QUESTION)
    second = backend.ask(QUESTION)
    assert first.mode == second.mode == "llm" and first.text == f"Answer to: {QUESTION} [1]"
    assert len(fake_llm.bodies(with_tools=True)) == 1  # the first question's try, refused with a 400
    assert len(fake_llm.bodies(with_tools=False)) == 2


def test_streamed_turns_show_only_the_answer_not_the_thinking_before_a_tool_call(
    backend: RagService, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        ModelTurn(
            "Let me look at the callers first.", (ToolCall("references", {"name": "compute_invoice_total"}),)
        ),
        "It is summed by `monthly_report` [1].",
    )
    tokens: list[str] = []
    answer = backend.ask(QUESTION, on_token=tokens.append)
    assert "".join(tokens) == answer.text == "It is summed by `monthly_report` [1]."
    bodies = fake_llm.bodies(with_tools=True)
    assert all(b["stream"] for b in bodies)
    assistant = bodies[1]["messages"][-2]
    assert assistant["content"] == "Let me look at the callers first."
    assert assistant["tool_calls"][0]["function"]["name"] == "references"


def test_the_read_tool_caps_a_call_and_reads_pages_and_markdown_by_path(backend: RagService) -> None:
    tools = backend.toolbox(backend.search_scope(None))
    whole = tools.read("billing/report.py")
    (hit,) = whole.hits
    assert (hit.start_line, hit.end_line) == (1, 7) and hit.text == REPORT.rstrip("\n")
    ranged = tools.read("billing/report.py:6")
    assert ranged.hits[0].start_line == 6 and ranged.hits[0].end_line == 7
    assert tools.read("billing/report.py", 50, 60).hits == []
    assert "Billing" in tools.read("README.md").text
    outline = tools.outline("billing/report.py")
    assert "4-7 function monthly_report: def monthly_report(invoices):" in outline.text
    assert tools.sources.hits == [hit, ranged.hits[0], *tools.sources.hits[2:]]


# ----- the faces: the CLI's progress lines and `--json`, Slack's status line -------------------


@pytest.mark.slow
def test_ask_prints_the_steps_on_stderr_and_in_json_only_when_the_loop_ran(
    tmp_path: Path, git_repo: Any, fake_llm: FakeLLM
) -> None:
    git_repo(BACKEND)
    env = {
        **os.environ,
        "CHROMA_DB_DIR": str(tmp_path / "chroma"),
        "RAGBOT_DATA_DIR": str(tmp_path / "data"),
        "CODE_REPO_PATH": str(tmp_path / "repo"),
        "LITELLM_MODEL": "openai/fake",
        "LITELLM_API_BASE": fake_llm.url,
        "LITELLM_API_KEY": "k",
    }

    def ragbot(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "rag.cli", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert ragbot("ingest").returncode == 0
    fake_llm.script(ToolCall("outline", {"path": "billing/report.py"}), "It defines `monthly_report` [1].")
    looped = ragbot("ask", QUESTION, "--json")
    assert looped.returncode == 0, looped.stderr
    data = json.loads(looped.stdout)
    assert data["steps"] == ["Outlining billing/report.py"] and data["mode"] == "llm"
    assert "· Outlining billing/report.py" in looped.stderr.splitlines()
    single = ragbot("ask", QUESTION, "--json")
    assert json.loads(single.stdout)["steps"] == []
    assert not [line for line in single.stderr.splitlines() if line.startswith("· ")]


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [True, False], ids=["native-stream", "streaming-refused"])
def test_slack_shows_each_step_while_it_runs(
    git_repo: Any, hash_bot: Callable[..., SlackBot], slack: FakeSlack, fake_llm: FakeLLM, streaming: bool
) -> None:
    """With Slack's native streaming, each step is a task in the answer's timeline (task_update
    chunks: in progress, then complete); where streaming is refused, the thread's status line."""
    slack.streaming, slack.status = streaming, True
    hash_bot(code_repo_path=git_repo(BACKEND))
    fake_llm.script(
        ToolCall("search", {"query": "monthly revenue"}),
        ToolCall("outline", {"path": "billing/report.py"}),
        "The report sums the totals [1].",
    )
    msg = slack.user_message("CGENERAL", f"<@{BOT_USER}> {QUESTION}")
    event = {k: v for k, v in msg.items() if k != "type"}
    slack.wait_for_ack(slack.send_event({"type": "app_mention", **event})[0])

    def statuses() -> list[str]:
        return [s for c, t, s in slack.statuses if (c, t) == ("CGENERAL", msg["ts"])]

    slack.wait_for(lambda: "" in statuses(), what="the status cleared after the answer")
    steps = ["Searching: monthly revenue", "Outlining billing/report.py"]
    answers = [m for m in slack.thread_messages("CGENERAL", msg["ts"])[1:] if m.get("user") == BOT_USER]
    (answer,) = answers
    if streaming:
        assert statuses() == ["searching code…", "writing…", ""]
        assert [(t["id"], t["title"], t["status"]) for t in answer["tasks"]] == [
            ("search", "Searched code", "complete"),  # retrieval, with its sources as links
            ("step-1", steps[0], "in_progress"),
            ("step-1", steps[0], "complete"),
            ("step-2", steps[1], "in_progress"),
            ("step-2", steps[1], "complete"),  # with the answer's first text
        ]
        assert answer["text"].startswith("The report sums the totals")
    else:
        assert statuses() == ["searching code…", *(f"{s}…" for s in steps), "writing…", ""]
        assert "tasks" not in answer
