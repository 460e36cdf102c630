"""The core's services wired together once per process and handed to the CLI, Slack and HTTP API.

The Slack layer (bot/) imports only this module and the foundation (config, models, errors,
logs): RagService, plus the few helpers it shares with the core, re-exported here by name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

# What bot/ uses besides RagService (import-linter keeps bot/ out of the rooms below).
from rag.answering.access import AccessControl, AccessScope
from rag.answering.agent import AnsweringLoop, StepSink
from rag.answering.citations import cited
from rag.answering.generation import Answerer, TokenSink
from rag.answering.grounding import Evidence, judge
from rag.answering.memory import fit_budget
from rag.answering.reranking import reranker_for
from rag.answering.retrieval import Retriever
from rag.answering.tools import Toolbox
from rag.config import KINDS, Settings
from rag.errors import RagError
from rag.indexing.embedders import embedder_factory
from rag.indexing.embedding import EmbedderPool
from rag.indexing.ingest import Ingestor, Progress
from rag.indexing.lexical import LexicalIndexes
from rag.indexing.permissions import PermissionStore
from rag.indexing.store import VectorStore
from rag.models import Answer, Hit, IngestReport, Reader, Turn
from rag.ops.liveness import heartbeat_path
from rag.ops.metrics import Metrics, answer_found
from rag.ops.scheduler import SchedulerHandle, scheduler_status
from rag.sources.ownership import Owner, Ownership
from rag.sources.registry import SourceRegistry
from rag.sources.specs import ConfluenceSpec, SourceSpec

__all__ = ["Metrics", "RagService", "answer_found", "cited", "fit_budget", "heartbeat_path"]

log = logging.getLogger(__name__)

#: Hears what retrieval found and whether the index covers the question, before any text is written.
RetrievedSink = Callable[[list[Hit], bool], None]


class RagService:
    def __init__(
        self,
        settings: Settings,
        *,
        embedders: EmbedderPool | None = None,
        registry: SourceRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(enabled=False)
        #: The configured sources; building it validates the sources file (ConfigError, exit 2).
        self.registry = registry if registry is not None else SourceRegistry.from_settings(settings)
        self.store = VectorStore(settings)
        self.embedders = embedders or EmbedderPool(embedder_factory(settings))
        self.lexical = LexicalIndexes(settings.ragbot_data_dir / "lexical")
        #: Synced Confluence permissions (`permissions = "sync"`), shared through the store.
        self.permissions = PermissionStore(self.store)
        self.access = AccessControl(settings, self.registry, self.permissions)
        self.ingestor = Ingestor(
            settings,
            store=self.store,
            embedders=self.embedders,
            lexical=self.lexical,
            registry=self.registry,
            permissions=self.permissions,
        )
        self.retriever = Retriever(
            settings,
            store=self.store,
            embedders=self.embedders,
            lexical=self.lexical,
            registry=self.registry,
            reranker=reranker_for(settings, on_failure=lambda kind: self.metrics.rerank_failed(kind)),
        )
        self.answerer = Answerer(settings)
        #: Set by rag.ops.scheduler.start_scheduler when this process runs the periodic ingest.
        self.scheduler: SchedulerHandle | None = None

    def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        source: str | None = None,
        allowed: Sequence[str] | None = None,
        history: Sequence[Turn] = (),
        on_token: TokenSink | None = None,
        on_step: StepSink | None = None,
        on_retrieved: RetrievedSink | None = None,
        require_found: bool = False,
        reader: Reader | None = None,
    ) -> Answer:
        """Answer from the sources of target `source` (None: all), within `allowed` names if given.

        `on_retrieved(hits, found)` hears what retrieval found and the grounding judgement before
        any text is written. With `require_found`, a question the index does not cover gets an
        empty not-found answer at once (no model call): for callers that stay silent then.

        With a model that takes tools (and RAGBOT_AGENT=auto), a question the index covers is
        answered by the answering loop, which may read further through tools limited to the same
        names, reporting each step to `on_step` while it runs; when the loop gives up, and
        otherwise, by the single-shot answer over the retrieved hits.

        `reader`: who will see the answer. Confluence pages whose permissions are synced are
        searched (by retrieval and by every tool) only where the reader may read them; None reads
        public pages only."""
        names = self.search_scope(source, allowed)
        access = self.access.scope(reader)
        query = self.answerer.search_query(question, history)
        evidence = Evidence()
        started = time.perf_counter()
        hits = self.retriever.search(query, top_k=top_k, sources=names, evidence=evidence, access=access)
        retrieved = time.perf_counter()
        judgement = judge(evidence)
        log.debug("grounding: found=%s p=%.3f %s", judgement.found, judgement.probability, judgement.features)
        if on_retrieved is not None:
            on_retrieved(hits, judgement.found and bool(hits))
        if require_found and not (judgement.found and hits):
            silent = Answer("", "extractive", list(hits), found=False, note="not found")
            self.metrics.asked(retrieval_seconds=retrieved - started, llm_seconds=None, answer=silent)
            return silent
        answer = None
        # A question the index does not cover keeps its plain "not covered" answer: no turns spent.
        if judgement.found and hits and self.answering_loop.enabled:
            answer = self.answering_loop.answer(
                question,
                hits,
                toolbox=self.toolbox(names, top_k=top_k, access=access),
                history=history,
                on_token=on_token,
                on_step=on_step,
            )
        if answer is None:
            answer = self.answerer.answer(
                question, hits, history=history, on_token=on_token, found=judgement.found, searched=names
            )
        llm_seconds = time.perf_counter() - retrieved if self.answerer.configured else None
        self.metrics.asked(retrieval_seconds=retrieved - started, llm_seconds=llm_seconds, answer=answer)
        return answer

    def owners(self, hits: Sequence[Hit], *, limit: int = 3) -> list[Owner]:
        """Who owns what `hits` cite: CODEOWNERS at the indexed commit, page editors, `experts`."""
        return self.ownership.owners(hits, limit=limit)

    @cached_property
    def ownership(self) -> Ownership:
        return Ownership(self.settings, self.registry)

    @cached_property
    def answering_loop(self) -> AnsweringLoop:
        """The tool-using answering loop, one per process (it remembers an endpoint's refusal of tools)."""
        return AnsweringLoop(self.settings)

    def toolbox(self, names: Sequence[str], *, top_k: int = 5, access: AccessScope | None = None) -> Toolbox:
        """The answering loop's tools for one question, limited to the source names `names` (and
        to what `access`'s reader may see)."""
        return Toolbox(
            self.settings,
            store=self.store,
            embedders=self.embedders,
            registry=self.registry,
            retriever=self.retriever,
            names=names,
            top_k=top_k,
            access=access,
        )

    # ----- who may see what (synced Confluence permissions) -----------------------------------

    @property
    def permissions_synced(self) -> bool:
        """Whether any Confluence site syncs its permissions (else readers need not be known)."""
        return bool(self.access.synced_sources())

    def visible(self, reader: Reader | None, sources: Sequence[dict[str, Any]]) -> bool:
        """May `reader` see every one of these recorded sources (a share, a Home list, a thread's
        memory)? Each: `source_name` and, for a synced page, `metadata.access`."""
        scope = self.access.scope(reader)
        return all(
            scope.admits(
                {"source_name": s.get("source_name") or s.get("source"), **(s.get("metadata") or {})}
            )
            for s in sources
        )

    def sync_permissions(self, targets: Sequence[str] | None = None) -> list[IngestReport]:
        """Re-read the permissions of every `permissions = "sync"` site (or of `targets`) and
        re-tag their chunks, under the ingest lock (IngestBusyError while an ingest runs: it syncs)."""
        specs = [
            s
            for s in (self.registry.resolve(targets) if targets else self.registry.specs)
            if isinstance(s, ConfluenceSpec) and s.permissions == "sync"
        ]
        with self.ingestor.lock("permissions"):
            return [self.ingestor.sync_permissions(spec) for spec in specs]

    def explain_permissions(self, page_id: str, readers: Sequence[tuple[str, Reader]]) -> dict[str, Any]:
        """Who may see a page and why (`ragbot permissions explain`): its rules, then per reader
        whether the bot would show it to them."""
        lines: list[str] = []
        data: dict[str, Any] = {"page_id": page_id, "source": None, "rules": [], "readers": []}
        for name in self.access.synced_sources():
            snapshot, why = self.access.site(name)
            try:
                stored = self.permissions.load(name, fresh=True)
            except RagError:
                stored = None
            if stored is None or page_id not in stored.pages:
                continue
            rule = stored.pages[page_id]
            data.update(source=name, key=rule.key, rules=stored.explain(page_id), usable=snapshot is not None)
            lines.append(f"page {page_id} in {name}: " + ("public" if rule.key == "public" else "restricted"))
            lines += [f"  {r}" for r in data["rules"]]
            if snapshot is None and rule.key != "public":
                lines.append(f"  the bot shows it to nobody now: {why} (public pages only)")
            tag = f"{name}:{rule.key}"
            for who, reader in readers:
                may = tag in self.access.scope(reader).allowed
                detail = "" if may or rule.key == "public" else _failing(stored, rule.key, reader)
                data["readers"].append({"reader": who.strip(), "may_see": may, "why": detail or None})
                lines.append(
                    f"{who}: {'may see it' if may else 'may not see it'}" + (f" ({detail})" if detail else "")
                )
            break
        else:
            lines.append(
                f"page {page_id} is in no Confluence site whose permissions are synced"
                if self.access.synced_sources()
                else 'no Confluence site has permissions = "sync": indexed pages are shown to anyone who asks'
            )
        data["lines"] = lines
        return data

    def permission_status(self, name: str) -> dict[str, Any] | None:
        """`ragbot status`'s permission block for a Confluence site (None: not a site)."""
        spec = self.registry.get(name)
        if not isinstance(spec, ConfluenceSpec):
            return None
        info: dict[str, Any] = {"mode": spec.permissions}
        if spec.permissions != "sync":
            info["restricted_pages"] = "skipped" if not spec.include_restricted else "shown to everyone"
            return info
        try:
            snapshot = self.permissions.load(name, fresh=True)
        except RagError as e:
            snapshot, info["error"] = None, str(e)
        usable, why = self.access.site(name)
        info["restricted_pages"] = snapshot.restricted_pages if snapshot is not None else None
        info["pages"] = len(snapshot.pages) if snapshot is not None else None
        info["last_sync"] = _iso(snapshot.synced_at) if snapshot is not None and snapshot.synced_at else None
        info["last_successful_sync"] = (
            _iso(snapshot.last_success) if snapshot is not None and snapshot.last_success else None
        )
        info["error"] = info.get("error") or (snapshot.error if snapshot is not None else None)
        info["enforced"] = "per reader" if usable is not None else f"public pages only ({why})"
        return info

    def search_scope(self, target: str | None, allowed: Sequence[str] | None = None) -> list[str]:
        """The source names a question may search. Unknown target → ConfigError with the names."""
        names = [s.name for s in self.registry.resolve([target])] if target else self.registry.names()
        if allowed is not None:
            names = [n for n in names if n in set(allowed)]
        return names

    def ingest(
        self,
        targets: Sequence[str | SourceSpec],
        *,
        full: bool = False,
        trigger: str = "cli",
        progress: Progress | None = None,
        prune_removed: bool | None = None,
    ) -> list[IngestReport]:
        """Ingest targets (names, kinds, `all`, or resolved specs). `all` also prunes the sources
        that are no longer configured, unless `prune_removed` says otherwise."""
        words = [t for t in targets if isinstance(t, str)]
        chosen = {s.name for s in self.registry.resolve(words)} if words else set()
        chosen.update(t.name for t in targets if not isinstance(t, str))
        specs = [s for s in self.registry.specs if s.name in chosen]
        specs += [t for t in targets if not isinstance(t, str) and t.name not in self.registry.names()]
        prune = ("all" in words) if prune_removed is None else prune_removed
        reports = self.ingestor.run(specs, full=full, trigger=trigger, progress=progress, prune_removed=prune)
        for report in reports:
            self.metrics.ingested(report)
        if reports:
            self.refresh_index_metrics()
        return reports

    def refresh_index_metrics(self) -> None:
        """Set the per-source index size gauges (after an ingest, and once at start)."""
        if not self.metrics.enabled:
            return
        try:
            sources = self.status()["sources"]
        except Exception as e:  # a gauge is not worth failing anything over (e.g. the store is down)
            log.warning("cannot read the index size for the metrics: %s", e)
            return
        for name, info in sources.items():
            self.metrics.index_size(name, documents=info["documents"], chunks=info["chunks"])

    def status(self) -> dict[str, Any]:
        """Every source (configured, or still indexed) with kind, location, size and last run."""
        s = self.settings
        sources: dict[str, Any] = {}
        names = set(self.store.collection_names())
        for kind in KINDS:
            embedder = self.embedders.get(s.embedding_model_for(kind))
            model_error = None
            try:
                key = embedder.key  # a hosted model's key needs its dimension: one probe request
            except RagError as e:
                key, model_error = None, str(e)
            collection_name = self.store.collection_name(kind, key) if key is not None else None
            collection = (
                self.store.collection(kind, key, create=False)
                if key is not None and collection_name in names
                else None
            )
            indexed = collection.source_names() if collection is not None else []
            specs = {spec.name: spec for spec in self.registry.of_kind(kind)}
            for name in [*specs, *(n for n in indexed if n not in specs)]:
                spec = specs.get(name)
                info: dict[str, Any] = {
                    "kind": kind,
                    "configured": spec is not None,
                    "location": spec.location() if spec is not None else None,
                    "embedding_model": embedder.name,
                    "collection": collection_name,
                    "documents": 0,
                    "chunks": 0,
                }
                if model_error is not None:
                    info["model_error"] = model_error  # the sizes are unknown until it answers
                if collection is not None and name in indexed:
                    states = collection.document_states(name)
                    info["documents"] = len(states)
                    info["chunks"] = sum(st.present_chunks for st in states.values())
                runs = self.ingestor.state.last_runs(limit=20, source=name)
                info["last_run"] = _run_summary(runs[0]) if runs else None
                good = next((r for r in runs if r["ok"]), None)
                info["last_success"] = _run_summary(good)["finished_at"] if good else None
                permissions = self.permission_status(name) if kind == "confluence" else None
                if permissions is not None:
                    info["permissions"] = permissions
                sources[name] = info
        holder = self.ingestor.lock("status").current_holder()
        scheduler = scheduler_status(s, self.scheduler)
        return {
            "store": self.store.describe(),
            "configured_sources": self.registry.names(),
            "sources": sources,
            "ingest_running": holder or None,
            "recent_runs": [_run_summary(r) for r in self.ingestor.state.last_runs(limit=10)],
            "scheduler": scheduler,
            "next_scheduled_run": scheduler["next_run"],
        }


def _failing(snapshot: Any, key: str, reader: Reader) -> str:
    """Which of a page's rules a reader does not pass (for `permissions explain`)."""
    if reader.public_only or not reader.emails:
        return "not identified: public pages only"
    grant = snapshot.grants.get(key)
    if grant is None:
        return "unknown rule"
    missing = []
    for email in reader.emails:
        held = snapshot.principals(email)
        if not held:
            missing.append(
                f"{email} has no Confluence account the sync knows (or Confluence hides its e-mail)"
            )
            continue
        for clause in grant.clauses:
            if not clause & held:
                names = ", ".join(sorted(snapshot.describe_principal(p) for p in clause)) or "nobody"
                missing.append(f"{email} is not among: {names}")
    return "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    return {
        "source": report.get("source", run["source"]),
        "source_name": run["source"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run["finished_at"])),
        "ok": run["ok"],
        "trigger": run["trigger"],
        "seconds": report.get("seconds"),
        "documents_seen": report.get("documents_seen"),
        "documents_added": report.get("documents_added"),
        "documents_updated": report.get("documents_updated"),
        "documents_deleted": report.get("documents_deleted"),
        "chunks_embedded": report.get("chunks_embedded"),
        "errors": len(report.get("errors", [])),
        "error": report.get("error"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run["started_at"])),
        "outcome": "failed" if not run["ok"] else ("partial" if report.get("errors") else "ok"),
        "documents_unchanged": report.get("documents_unchanged"),
    }
