"""What synced Confluence permissions cost: the sync's duration, and retrieval with the filter.

1. **Sync duration for 5,000 pages** against the test suite's fake Confluence (over HTTP on
   127.0.0.1), as Cloud and as Data Center: `ConfluenceSource.scan()` with `permissions = "sync"`
   (the listing with restrictions + space permissions + group members + e-mails) beside the same
   listing with `permissions = "skip"`, alternating, medians over --runs. The site: two spaces
   (one open to anonymous users, one to a group), 10% of the pages restricted to one of 20 groups
   (with their subtrees), 2,000 users in the groups. Data Center tells e-mails one user at a time
   (the mobile profile): that is most of its requests.
2. **Retrieval p50 with the filter at 10k chunks**: the 5,000 pages ingested (2 chunks each) with a
   384-dimension hashing embedder (MiniLM's width, no model time, so the search itself is what is
   timed) into embedded Chroma; `Retriever.search` for --queries questions, each run three ways in
   turn: no filter, one person (member of 3 groups), a channel of 50 people. Medians and the
   filtered/unfiltered ratios, measured side by side in one process.

    python benchmarks/permission_cost.py [--runs 3] [--queries 60] [--json]

Loopback and a fake server: the real Confluence's latency multiplies the request counts shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

from rag.answering.access import AccessScope
from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.models import Reader
from rag.service import RagService
from rag.sources.confluence import ConfluenceSource
from tests.fakes.confluence_server import PASSWORD, USERNAME, FakeConfluence
from tests.fakes.hash_embedder import HashEmbedder

PAGES = 5_000
GROUPS = 20
USERS = 2_000
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "vo", "ze") for b in range(60)]


def build_site(mode: str, rng: random.Random) -> FakeConfluence:
    fake = FakeConfluence(mode=mode, list_limit=100).start()
    fake.add_space("ENG", "Engineering")
    fake.add_space("TEAM", "Team only")
    for u in range(USERS):
        fake.add_user(f"u{u}", f"User {u}", f"user{u}@example.com")
    for g in range(GROUPS):
        fake.add_group(f"group{g}", [f"u{u}" for u in range(g * 100, g * 100 + 100)])
    fake.set_space_permissions("ENG", [("anonymous", ""), ("group", "confluence-users")])
    fake.set_space_permissions("TEAM", [("group", "group0"), ("group", "group1")])
    ids: list[str] = []
    for p in range(PAGES):
        space = "TEAM" if p % 5 == 0 else "ENG"
        words = " ".join(rng.choice(WORDS) for _ in range(70))
        restricted = [f"group{rng.randrange(GROUPS)}"] if p % 10 == 3 else None
        parent = ids[p - 3] if p % 10 == 6 and p >= 3 else None  # under a restricted page, often
        if parent is not None and fake.pages[parent].space != space:
            parent = None
        ids.append(
            fake.add_page(space, f"Page {p}", f"<p>{words}</p>", restricted_groups=restricted, parent=parent)
        )
    return fake


def source(fake: FakeConfluence, permissions: str) -> ConfluenceSource:
    return ConfluenceSource(
        url=fake.url,
        spaces=["ENG", "TEAM"],
        username=USERNAME,
        password=PASSWORD,
        permissions=permissions,
        list_limit=100,
    )


def time_sync(fake: FakeConfluence, runs: int) -> dict[str, Any]:
    """The listing alone, a first (cold) sync, and a sync that reuses the e-mails the last one
    read (what every sync after the first does), alternating, medians over `runs`."""
    seconds: dict[str, list[float]] = {"skip": [], "cold": [], "warm": []}
    requests: dict[str, int] = {}
    previous = None
    for _ in range(runs):
        for mode in ("skip", "cold", "warm"):
            src = source(fake, "skip" if mode == "skip" else "sync")
            src.previous_permissions = previous if mode == "warm" else None
            src.prepare()
            before = len(fake.requests)
            started = time.perf_counter()
            refs = src.scan()
            seconds[mode].append(time.perf_counter() - started)
            requests[mode] = len(fake.requests) - before
            if mode != "skip":
                snapshot = src.permission_snapshot
                assert snapshot is not None and len(snapshot.pages) == len(refs) == PAGES
                previous = snapshot
    assert previous is not None
    return {
        "pages": PAGES,
        "listing_only_s": round(statistics.median(seconds["skip"]), 2),
        "first_sync_s": round(statistics.median(seconds["cold"]), 2),
        "later_sync_s": round(statistics.median(seconds["warm"]), 2),
        "requests": requests,
        "restricted_pages": previous.restricted_pages,
        "users_with_email": len(previous.emails),
        "rules": len(previous.grants),
    }


def time_retrieval(fake: FakeConfluence, queries: int, rng: random.Random) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            chroma_db_dir=Path(tmp) / "chroma",
            ragbot_data_dir=Path(tmp) / "data",
            confluence_url=fake.url,
            confluence_space=["ENG", "TEAM"],
            confluence_username=USERNAME,
            confluence_password=PASSWORD,
            confluence_permissions="sync",
            chunk_size=64,
            chunk_overlap=0,
        )
        service = RagService(settings, embedders=EmbedderPool(lambda _m: HashEmbedder(384)))
        started = time.perf_counter()
        [report] = service.ingest(["confluence"])
        assert report.ok, report.error
        ingest_seconds = time.perf_counter() - started
        chunks = service.status()["sources"]["confluence"]["chunks"]
        person = service.access.scope(Reader.person("user150@example.com"))  # group1 (TEAM space)
        channel = service.access.scope(Reader.people([f"user{u}@example.com" for u in range(0, 2000, 40)]))
        scopes = {"none": None, "person": person, "channel_50": channel}
        timings: dict[str, list[float]] = {k: [] for k in scopes}
        questions = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(queries)]
        for q in questions[:5]:  # warm up: BM25 loaded, HNSW in memory
            service.retriever.search(q, top_k=5, access=person)
        for i, q in enumerate(questions):
            order = list(scopes.items())
            order = order[i % 3 :] + order[: i % 3]  # rotate who goes first
            for name, scope in order:
                t0 = time.perf_counter()
                # Unfiltered: the same search with nothing gated (as for permissions = "skip").
                service.retriever.search(q, top_k=5, access=scope if scope is not None else AccessScope())
                timings[name].append(time.perf_counter() - t0)
        p50 = {k: statistics.median(v) * 1000 for k, v in timings.items()}
        # Where the time goes: Chroma's dense query alone, unfiltered, with the person's filter, and
        # with a filter on the source name that admits every chunk (what a `[[slack.channel]]
        # sources` scope costs when the collection holds several sources).
        embedder = service.embedders.get(settings.embedding_model_for("confluence"))
        collection = service.store.collection("confluence", embedder.key, create=False)
        assert collection is not None
        wheres = {
            "none": None,
            "person": person.where(["confluence"]),
            "source_name": {"source_name": "confluence"},
        }
        dense: dict[str, list[float]] = {k: [] for k in wheres}
        for q in questions:
            vector = embedder.embed_query(q)
            for name, where in wheres.items():
                t0 = time.perf_counter()
                collection.query(vector, 50, where=where)
                dense[name].append(time.perf_counter() - t0)
        return {
            "chroma_query_p50_ms": {k: round(statistics.median(v) * 1000, 2) for k, v in dense.items()},
            "chunks": chunks,
            "ingest_seconds": round(ingest_seconds, 1),
            "queries": queries,
            "p50_ms": {k: round(v, 2) for k, v in p50.items()},
            "ratio_person": round(p50["person"] / p50["none"], 3),
            "ratio_channel_50": round(p50["channel_50"] / p50["none"], 3),
            "allowed_keys": {"person": len(person.allowed), "channel_50": len(channel.allowed)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(23)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    for mode in ("cloud", "datacenter"):
        fake = build_site(mode, rng)
        try:
            result[f"sync_{mode}"] = time_sync(fake, args.runs)
            if mode == "cloud":
                result["retrieval"] = time_retrieval(fake, args.queries, rng)
        finally:
            fake.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
