"""The core's services wired together once per process and handed to the CLI, Slack and HTTP API."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rag.config import SOURCES, Settings, SourceName
from rag.embedding import EmbedderPool, embedder_factory
from rag.generation import Answerer, TokenSink
from rag.grounding import Evidence, judge
from rag.ingest import Ingestor, Progress
from rag.lexical import LexicalIndexes
from rag.models import Answer, IngestReport, Turn
from rag.retrieval import Retriever
from rag.store import VectorStore

if TYPE_CHECKING:
    from rag.scheduler import SchedulerHandle

log = logging.getLogger(__name__)


class RagService:
    def __init__(self, settings: Settings, *, embedders: EmbedderPool | None = None) -> None:
        self.settings = settings
        self.store = VectorStore(settings)
        self.embedders = embedders or EmbedderPool(embedder_factory(settings))
        self.lexical = LexicalIndexes(settings.ragbot_data_dir / "lexical")
        self.ingestor = Ingestor(settings, store=self.store, embedders=self.embedders, lexical=self.lexical)
        self.retriever = Retriever(settings, store=self.store, embedders=self.embedders, lexical=self.lexical)
        self.answerer = Answerer(settings)
        #: Set by rag.scheduler.start_scheduler when this process runs the periodic ingest.
        self.scheduler: SchedulerHandle | None = None

    def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        source: SourceName | None = None,
        history: Sequence[Turn] = (),
        on_token: TokenSink | None = None,
    ) -> Answer:
        query = self.answerer.search_query(question, history)
        evidence = Evidence()
        hits = self.retriever.search(query, top_k=top_k, source=source, evidence=evidence)
        judgement = judge(evidence)
        log.debug("grounding: found=%s p=%.3f %s", judgement.found, judgement.probability, judgement.features)
        searched = [source] if source else self.settings.configured_sources()
        return self.answerer.answer(
            question, hits, history=history, on_token=on_token, found=judgement.found, searched=searched
        )

    def ingest(
        self,
        targets: Sequence[SourceName],
        *,
        full: bool = False,
        trigger: str = "cli",
        progress: Progress | None = None,
    ) -> list[IngestReport]:
        return self.ingestor.run(targets, full=full, trigger=trigger, progress=progress)

    def status(self) -> dict[str, Any]:
        """Index size per source, last runs, configured sources, model and store."""
        s = self.settings
        sources: dict[str, Any] = {}
        names = set(self.store.collection_names())
        for name in SOURCES:
            model = s.embedding_model_for(name)
            embedder = self.embedders.get(model)
            info: dict[str, Any] = {
                "configured": name in s.configured_sources(),
                "embedding_model": embedder.name,
                "collection": self.store.collection_name(name, embedder.key),
                "documents": 0,
                "chunks": 0,
            }
            if info["collection"] in names:
                collection = self.store.collection(name, embedder.key, create=False)
                if collection is not None:
                    states = collection.document_states()
                    info["documents"] = len(states)
                    info["chunks"] = sum(st.present_chunks for st in states.values())
            runs = self.ingestor.state.last_runs(limit=1, source=name)
            info["last_run"] = _run_summary(runs[0]) if runs else None
            sources[name] = info
        holder = self.ingestor.lock("status").current_holder()
        from rag.scheduler import scheduler_status

        scheduler = scheduler_status(s, self.scheduler)
        return {
            "store": self.store.describe(),
            "configured_sources": s.configured_sources(),
            "sources": sources,
            "ingest_running": holder or None,
            "recent_runs": [_run_summary(r) for r in self.ingestor.state.last_runs(limit=10)],
            "scheduler": scheduler,
            "next_scheduled_run": scheduler["next_run"],
        }


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    return {
        "source": run["source"],
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
