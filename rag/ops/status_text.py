"""`ragbot status` as text: every source with its kind, location, size and last run; the scheduler."""

from __future__ import annotations

from typing import Any


def status_lines(data: dict[str, Any]) -> list[str]:
    """The lines `ragbot status` prints for the `status --json` document `data`."""
    lines = [
        f"store: {data['store']}",
        f"configured sources: {', '.join(data['configured_sources']) or 'none'}",
    ]
    for name, info in data["sources"].items():
        last = info["last_run"]
        when = (
            f"last run {last['finished_at']} ({'ok' if last['ok'] else 'failed: ' + str(last['error'])})"
            if last
            else "never ingested"
        )
        where = info["location"] if info["configured"] else "no longer configured (next ingest all prunes it)"
        lines.append(
            f"{name} ({info['kind']}, {where}): {info['documents']} documents, {info['chunks']} chunks, "
            f"model {info['embedding_model']}; {when}"
        )
    for name, info in data["sources"].items():
        perm = info.get("permissions")
        if not perm:
            continue
        if perm["mode"] != "sync":
            lines.append(f"{name} permissions: skip (restricted pages {perm['restricted_pages']})")
            continue
        restricted = perm["restricted_pages"] if perm["restricted_pages"] is not None else "?"
        lines.append(
            f"{name} permissions: sync, {restricted}"
            f" of {perm['pages'] if perm['pages'] is not None else '?'} pages restricted; last sync "
            f"{perm['last_sync'] or 'never'} (last successful {perm['last_successful_sync'] or 'never'}); "
            f"enforced {perm['enforced']}" + (f"; error: {perm['error']}" if perm.get("error") else "")
        )
    if data["ingest_running"]:
        lines.append(f"an ingest is running: {data['ingest_running']}")
    for name, info in data["sources"].items():
        last = info["last_run"]
        if last:
            lines.append(
                f"{name} last run: {last['outcome']} ({last['trigger']}), started {last['started_at']}, "
                f"{last['seconds'] or 0:.1f}s, {last['documents_added']} added, {last['documents_updated']} "
                f"updated, {last['documents_deleted']} deleted, {last['chunks_embedded']} chunks embedded"
                + (f", {last['errors']} document error(s)" if last["errors"] else "")
                + (f"; error: {last['error']}" if last["error"] else "")
            )
    sched = data.get("scheduler") or {}
    if sched.get("running"):
        next_run = sched["next_run"] or "not planned"
        lines.append(f"scheduler: {sched['schedule']} in {sched['where']}; next run {next_run}")
    else:
        lines.append(f"scheduler: not running here ({sched.get('schedule', 'disabled')})")
    return lines
