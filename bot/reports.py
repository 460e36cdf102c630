"""The texts of `/ragingest`: an ingest's per-source counts, and the index status."""

from __future__ import annotations

from typing import Any

from bot import messages
from rag.models import IngestReport


def ingest_summary(reports: list[IngestReport]) -> str:
    lines = []
    for r in reports:
        errors = f"; {len(r.errors)} document(s) failed" if r.errors else ""
        data = r.to_json()
        if r.removed:
            lines.append(messages.INGEST_REMOVED_LINE.format(**data))
            continue
        status = "ok" if r.ok else f"FAILED ({r.error})"
        lines.append(messages.INGEST_REPORT_LINE.format(**{**data, "status": status, "errors": errors}))
    took = f" in {sum(r.seconds for r in reports):.1f} s" if reports else ""
    return messages.INGEST_DONE.format(took=took, lines="\n".join(lines))


def status_text(status: dict[str, Any]) -> str:
    """`/ragingest status`: per-source size and last run, a running ingest, recent runs."""
    lines = ["*Index status*"]
    for name, info in status.get("sources", {}).items():
        state = (
            f"{info.get('kind')}, {info.get('location')}"
            if info.get("configured")
            else f"{info.get('kind')}, no longer configured"
        )
        last = info.get("last_run")
        when = (
            f"last run {last['finished_at']} by {last['trigger']}: "
            + ("ok" if last["ok"] else f"failed ({last.get('error')})")
            if last
            else "never ingested"
        )
        lines.append(
            f"• *{name}* ({state}): {info.get('documents', 0)} documents, "
            f"{info.get('chunks', 0)} chunks; {when}"
        )
    running = status.get("ingest_running")
    if running:
        lines.append(f"An ingest is running now (by {running.get('by', '?')}).")
    recent = status.get("recent_runs") or []
    if recent:
        lines.append("*Recent runs*")
        for run in recent[:5]:
            outcome = "ok" if run["ok"] else f"failed: {run.get('error')}"
            lines.append(
                f"• {run['finished_at']} {run.get('source_name') or run['source']} ({run['trigger']}): "
                f"{outcome}, "
                f"{run.get('documents_added') or 0} added, {run.get('documents_updated') or 0} updated, "
                f"{run.get('documents_deleted') or 0} deleted"
            )
    return "\n".join(lines)
