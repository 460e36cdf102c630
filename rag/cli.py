"""The `ragbot` command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from rag.errors import ConfigError, IngestBusyError, ModelError, RagError, StoreError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.service import RagService

app = typer.Typer(
    name="ragbot",
    help="Answers questions about your Confluence space and code repository, with cited sources.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ragbot: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def edge() -> Iterator[None]:
    """Turn core errors into one line and the contract's exit code (2: configuration)."""
    try:
        yield
    except typer.Exit:
        raise
    except (ConfigError, ModelError, StoreError) as e:
        fail(str(e), 2)
    except IngestBusyError as e:
        fail(str(e), 1)
    except RagError as e:
        fail(str(e), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def settings_and_service(*, metrics: bool = False) -> tuple[Settings, RagService]:
    from rag.config import load_settings
    from rag.logs import configure_logging
    from rag.ops.metrics import metrics_for
    from rag.service import RagService

    settings = load_settings()
    configure_logging(settings)
    return settings, RagService(settings, metrics=metrics_for(settings) if metrics else None)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# ----- ingest ----------------------------------------------------------------------------


@app.command()
def ingest(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Source names, kinds (code, confluence) or all (the default).", show_default=False
        ),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-embed everything, not only what changed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Ingest now (incremental unless --full); `all` also prunes sources no longer configured."""
    from rag.ingest_display import ingest_display

    wanted = targets or ["all"]
    with edge():
        settings, service = settings_and_service()
        specs = service.registry.resolve(wanted)
        service.ingestor.preflight(specs)
        with ingest_display(settings) as progress:
            reports = service.ingest(
                specs, full=full, trigger="cli", progress=progress, prune_removed="all" in wanted
            )
    if as_json:
        emit_json({"sources": [r.to_json() for r in reports]})
    else:
        for r in reports:
            name = r.source_name
            if not r.ok:
                typer.echo(f"ragbot: {name}: {r.error}", err=True)
                continue
            if r.removed:
                typer.echo(
                    f"{name}: removed — no longer configured; {r.documents_deleted} documents deleted",
                    err=True,
                )
                continue
            typer.echo(
                f"{name}: ok — {r.documents_seen} seen, {r.documents_added} added, "
                f"{r.documents_updated} updated, {r.documents_deleted} deleted, "
                f"{r.documents_unchanged} unchanged; {r.chunks_embedded} chunks embedded in {r.seconds:.1f}s",
                err=True,
            )
            for w in r.warnings:
                typer.echo(f"{name}: warning: {w}", err=True)
            for err in r.errors:
                typer.echo(f"{name}: {err['document']}: {err['error']}", err=True)
    config_failures = [r for r in reports if r.config_error]
    if config_failures:
        if as_json:  # the report went to stdout; the reason still gets its one line
            for r in config_failures:
                typer.echo(f"ragbot: {r.error}", err=True)
        raise typer.Exit(2)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# ----- ask / chat --------------------------------------------------------------------------


def render_answer(answer: Any) -> str:
    lines = [answer.text, ""]
    if answer.hits:
        lines.append("Sources:" if answer.found else "Closest matches (they do not answer the question):")
        for i, hit in enumerate(answer.hits, start=1):
            link = f" <{hit.url}>" if hit.url else ""
            lines.append(f"  [{i}] {hit.citation()}{link}")
    return "\n".join(lines)


def show_step(step: str) -> None:
    """A step of the answering loop, as a progress line on stderr (stdout keeps the answer)."""
    typer.echo(f"· {step}", err=True)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50, help="How many sources to retrieve.")] = 5,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="Search only this target: a source name, a kind (code, confluence) or all."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON on stdout.")] = False,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as-user",
            help="Answer as this person (an e-mail) may read: Confluence pages with synced permissions. "
            "Without it, public pages only.",
        ),
    ] = None,
) -> None:
    """Answer one question."""
    from rag.models import Reader

    if not question.strip():
        fail("the question is empty", 2)
    reader = Reader.person(as_user) if as_user else Reader.public()
    with edge():
        _, service = settings_and_service()
        answer = service.ask(question, top_k=top_k, source=source, on_step=show_step, reader=reader)
    if as_json:
        emit_json(answer.to_json())
    else:
        typer.echo(render_answer(answer))


@app.command()
def chat(
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50)] = 5,
) -> None:
    """Interactive console chat with thread memory (the Slack experience without Slack)."""
    from rag.answering.memory import ConversationMemory

    with edge():
        _, service = settings_and_service()
        memory = ConversationMemory()
        interactive = sys.stdin.isatty()
        typer.echo("ragbot chat — ask about your code and docs; 'exit' or Ctrl-D to leave.", err=True)
        while True:
            try:
                question = input("you> " if interactive else "")
            except EOFError:
                break
            question = question.strip()
            if not question:
                continue
            if question.lower() in {"exit", "quit", ":q"}:
                break
            streamed: list[str] = []

            def on_token(token: str, _streamed: list[str] = streamed) -> None:
                if not _streamed:
                    sys.stdout.write("ragbot> ")
                _streamed.append(token)
                sys.stdout.write(token)
                sys.stdout.flush()

            try:
                answer = service.ask(
                    question, top_k=top_k, history=memory.turns(), on_token=on_token, on_step=show_step
                )
            except RagError as e:
                typer.echo(f"ragbot> sorry, I could not answer that: {e}")
                continue
            if streamed and answer.mode == "llm":
                sys.stdout.write("\n")
                typer.echo(render_answer(answer).split("\n", 1)[1] if "\n" in render_answer(answer) else "")
            else:
                if streamed:
                    sys.stdout.write("\n")
                typer.echo("ragbot> " + render_answer(answer))
            memory.add(question, answer.text)


# ----- status --------------------------------------------------------------------------------


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON on stdout.")] = False,
) -> None:
    """Every source: kind, location, documents, chunks, last run; the scheduler."""
    from rag.ops.status_text import status_lines

    with edge():
        _, service = settings_and_service()
        data = service.status()
    if as_json:
        emit_json(data)
        return
    for line in status_lines(data):
        typer.echo(line)


# ----- permissions -----------------------------------------------------------------------------

permissions_app = typer.Typer(
    help="Synced Confluence permissions: who may see a page, and a sync now.", no_args_is_help=True
)
app.add_typer(permissions_app, name="permissions")


@permissions_app.command("explain")
def permissions_explain(
    page_id: Annotated[str, typer.Argument(help="The Confluence page id.")],
    user: Annotated[str | None, typer.Option("--user", help="An e-mail: may this person see it?")] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="A Slack channel id: may its answers cite it?")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON on stdout.")] = False,
) -> None:
    """Who may see a page through the bot, and why (which restriction or space permission decided)."""
    from rag.models import Reader

    if not user and not channel:
        fail("name a reader: --user EMAIL or --channel ID", 2)
    with edge():
        settings, service = settings_and_service()
        readers: list[tuple[str, Reader]] = []
        if user:
            readers.append((user, Reader.person(user)))
        if channel:
            from bot.readers import channel_readers

            readers += channel_readers(settings, channel)
        data = service.explain_permissions(page_id, readers)
    if as_json:
        emit_json(data)
        return
    for line in data["lines"]:
        typer.echo(line)


@permissions_app.command("sync")
def permissions_sync(
    targets: Annotated[
        list[str] | None, typer.Argument(help="Confluence sources (default: every synced one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON on stdout.")] = False,
) -> None:
    """Re-read who may read each page now and re-tag the index (nothing is re-embedded)."""
    with edge():
        _, service = settings_and_service()
        reports = service.sync_permissions(targets or None)
    if as_json:
        emit_json([r.to_json() for r in reports])
    else:
        if not reports:
            typer.echo('no Confluence source syncs its permissions (permissions = "sync")')
        for r in reports:
            outcome = "ok" if r.ok else f"failed: {r.error}"
            typer.echo(
                f"{r.source_name}: {outcome}; {r.documents_seen} pages, "
                f"{r.documents_retagged} re-tagged ({r.seconds:.1f}s)"
            )
    if any(not r.ok for r in reports):
        raise typer.Exit(1)


# ----- worker / serve ---------------------------------------------------------------------------


@app.command()
def worker() -> None:
    """The periodic re-ingestion scheduler alone (one per deployment when bots are replicated)."""
    from bot.feedback import purge_slack_data
    from rag.ops.operations import operations
    from rag.ops.scheduler import run_worker

    with edge():
        settings, service = settings_and_service(metrics=True)
        with operations(settings, service, [purge_slack_data]):
            run_worker(settings, service)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """The HTTP API (POST /ingest_confluence, /ingest_local_code, /query; GET /healthz; docs at /docs)."""
    from rag.api import serve as serve_api
    from rag.config import load_settings
    from rag.logs import configure_logging

    with edge():
        settings = load_settings()
        configure_logging(settings)
        serve_api(settings, host=host, port=port)


# ----- run (the Slack bot) ---------------------------------------------------------------------


@app.command()
def run() -> None:
    """The Slack bot in Socket Mode, with the periodic re-ingestion scheduler."""
    from bot.app import SlackBot, validate_slack_settings
    from bot.feedback import purge_slack_data
    from rag.config import load_settings
    from rag.logs import configure_logging
    from rag.ops.metrics import metrics_for
    from rag.ops.operations import operations
    from rag.ops.scheduler import start_for_bot
    from rag.service import RagService

    with edge():
        settings = load_settings()
        validate_slack_settings(settings)  # one line, exit 2, before loading any model
        configure_logging(settings)
        service = RagService(settings, metrics=metrics_for(settings))
        bot = SlackBot(settings, service)
        with operations(settings, service, [purge_slack_data]):
            # The periodic ingest shares `service`, so it takes the same single-flight lock as
            # /ragingest; with RAGBOT_SCHEDULER=off (extra replicas) the handle stays idle.
            scheduler = start_for_bot(settings, service)
            try:
                bot.run_forever()
            finally:
                scheduler.shutdown()


# ----- feedback ------------------------------------------------------------------------------


@app.command()
def feedback(
    since: Annotated[str, typer.Option("--since", help="Only votes this recent: 7d, 12h, 30m, 2w.")] = "7d",
    down: Annotated[bool, typer.Option("--down", help="List only the 👎 votes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the votes as JSON on stdout.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the votes as CSV on stdout.")] = False,
) -> None:
    """The 👍/👎 votes given in Slack, newest first, with a summary line."""
    import time

    from bot.feedback import (
        escalations_text,
        feedback_path,
        parse_duration,
        read_escalations,
        read_votes,
        summary,
        summary_line,
        to_csv,
        to_text,
    )
    from rag.config import load_settings

    if as_json and as_csv:
        fail("--json and --csv: choose one", 2)
    try:
        window = parse_duration(since)
    except ValueError as e:
        fail(f"--since: {e}", 2)
    with edge():
        settings = load_settings()
        path = feedback_path(settings.ragbot_data_dir)
        votes = read_votes(path, since=time.time() - window)
        escalations = read_escalations(path, since=time.time() - window)
    listed = [v for v in votes if v.vote == "down"] if down else votes
    if as_json:
        counts = summary(votes)
        emit_json(
            {
                "up": counts["up"],
                "down": counts["down"],
                "votes": [v.to_json() for v in listed],
                "escalated": len(escalations),
                "escalations": [e.to_json() for e in escalations],
            }
        )
    else:
        sys.stdout.write(to_csv(listed) if as_csv else to_text(listed) + escalations_text(escalations))
    typer.echo(f"last {since}: {summary_line(votes)}; {len(escalations)} escalation(s)", err=True)


# ----- eval ----------------------------------------------------------------------------------


def parse_ks(value: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        fail(f"--k: expected positive integers separated by commas, got {value!r}", 2)
    return ks


@app.command("eval")
def eval_command(
    dataset_dir: Annotated[
        Path, typer.Argument(help="Directory with codebase_chunks.json and evaluation_set.jsonl.")
    ],
    k: Annotated[str, typer.Option("--k", help="Cut-offs for Pass@k, comma-separated.")] = "5,10,20",
    rechunk: Annotated[
        bool,
        typer.Option(
            "--rechunk",
            help="Re-chunk the whole files with ragbot's chunker; a hit covers most of a golden chunk.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Retrieval quality (Pass@k, MRR@10) on a labelled set in the contextual-code format."""
    from rag.config import load_settings
    from rag.evaluation import evaluate
    from rag.logs import configure_logging

    ks = parse_ks(k)
    with edge():
        settings = load_settings()
        configure_logging(settings)
        result = evaluate(
            settings,
            dataset_dir,
            ks=ks,
            rechunk=rechunk,
            progress=lambda message: typer.echo(f"eval: {message}", err=True),
        )
    if as_json:
        emit_json(result)
        return
    metrics = "  ".join(
        f"{name} {value}" for name, value in result.items() if name not in ("queries", "seconds")
    )
    typer.echo(f"{result['queries']} queries: {metrics}  ({result['seconds']}s)")


def main() -> None:
    # Environment defaults that keep the process offline-friendly; set here, not at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    app()


if __name__ == "__main__":
    main()
