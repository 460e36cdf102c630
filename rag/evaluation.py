"""`ragbot eval`: retrieval quality on a labelled set in the contextual-embeddings code format.

Pass@k (as that set defines it) = mean over queries of the share of a query's golden chunks
found in the top k, as a percentage; MRR@10 = mean reciprocal rank of the first golden chunk
in the top 10. Retrieval runs through the product's own path: chunks are embedded and stored
in a temporary Chroma collection, BM25-indexed, and searched with `Retriever.search`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answering.ranking import chunk_indexes
from rag.answering.retrieval import DENSE_WEIGHT, LEXICAL_WEIGHT, Retriever
from rag.config import Settings
from rag.errors import ConfigError
from rag.indexing.chunking import code_language_of, enclosing_symbol
from rag.indexing.embedders import embedder_factory
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import VectorStore, chunk_id
from rag.indexing.symbol_ingest import index_symbols
from rag.models import Chunk, Document, Hit, content_hash
from rag.sources.registry import SourceRegistry
from rag.sources.specs import RepositorySpec

log = logging.getLogger(__name__)

DEFAULT_KS = (5, 10, 20)
#: --rechunk: a retrieved chunk "contains" a golden chunk when it covers more than this share of its lines.
COVER_SHARE = 0.5

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvalFile:
    uuid: str
    name: str
    content: str
    chunks: list[tuple[int, str]]  # (original_index, content)


@dataclass(frozen=True)
class EvalQuery:
    query: str
    golden: list[tuple[str, int]]  # (file uuid, original_index)


@dataclass(frozen=True)
class Dataset:
    files: list[EvalFile]
    queries: list[EvalQuery]


def load_dataset(directory: Path) -> Dataset:
    """Read DATASET_DIR/codebase_chunks.json and evaluation_set.jsonl (ConfigError if malformed)."""
    chunks_path = directory / "codebase_chunks.json"
    queries_path = directory / "evaluation_set.jsonl"
    for path in (chunks_path, queries_path):
        if not path.is_file():
            raise ConfigError(f"DATASET_DIR: {path} is missing")
    try:
        raw_files = json.loads(chunks_path.read_text(encoding="utf-8"))
        files = [
            EvalFile(
                uuid=str(f["original_uuid"]),
                name=str(f.get("doc_id") or f["original_uuid"]),
                content=str(f.get("content") or ""),
                chunks=[(int(c["original_index"]), str(c["content"])) for c in f["chunks"]],
            )
            for f in raw_files
        ]
        queries = []
        for line in queries_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            golden = [(str(u), int(i)) for u, i in item["golden_chunk_uuids"]]
            queries.append(EvalQuery(str(item["query"]), golden))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"DATASET_DIR: not in the contextual-code format: {e}") from e
    return Dataset(files, queries)


# ----- metrics ------------------------------------------------------------------------------


def pass_at_k(golden_ranks: Sequence[Sequence[int | None]], k: int) -> float:
    """Mean over queries of the share of golden chunks found at rank <= k (1-based), in percent."""
    shares = []
    for ranks in golden_ranks:
        if not ranks:
            continue
        shares.append(sum(1 for r in ranks if r is not None and r <= k) / len(ranks))
    return 100.0 * sum(shares) / len(shares) if shares else 0.0


def mrr_at_k(first_ranks: Sequence[int | None], k: int = 10) -> float:
    """Mean of 1/rank of the first golden hit within the top k (0 when none)."""
    if not first_ranks:
        return 0.0
    return sum(1.0 / r for r in first_ranks if r is not None and r <= k) / len(first_ranks)


def score(golden_ranks: Sequence[Sequence[int | None]], ks: Sequence[int]) -> dict[str, float]:
    """The contract's metrics from, per query, the rank at which each golden chunk was found."""
    firsts = [min((r for r in ranks if r is not None), default=None) for ranks in golden_ranks]
    out: dict[str, float] = {}
    for k in ks:
        out[f"pass@{k}"] = round(pass_at_k(golden_ranks, k), 2)
    out["mrr@10"] = round(mrr_at_k(firsts, 10), 4)
    return out


# ----- running ------------------------------------------------------------------------------


def given_chunks(dataset: Dataset, *, headers: bool = True) -> tuple[list[Chunk], dict[str, tuple[str, int]]]:
    """The set's own chunks as ragbot chunks, with ragbot's header (file and enclosing symbol)."""
    chunks: list[Chunk] = []
    owner: dict[str, tuple[str, int]] = {}
    for f in dataset.files:
        language = code_language_of(f.content)
        offset = 0
        for index, text in f.chunks:
            pos = f.content.find(text, offset)
            if pos < 0:
                pos = f.content.find(text)
            start_line = f.content.count("\n", 0, pos) + 1 if pos >= 0 else None
            end_line = start_line + text.rstrip("\n").count("\n") if start_line is not None else None
            if pos >= 0:
                offset = pos + len(text)
            symbol = None
            if headers and language and start_line is not None and end_line is not None:
                symbol = enclosing_symbol(f.content, language, start_line, end_line)
            header = " | ".join(p for p in (f.name, symbol) if p)
            chunks.append(
                Chunk(
                    source="code",
                    doc_id=f.uuid,
                    index=index,
                    text=text,
                    embed_text=f"{header}\n{text}" if headers else text,
                    title=f.name,
                    url=None,
                    path=f.name,
                    start_line=start_line,
                    end_line=end_line,
                    language=language,
                    symbol=symbol,
                )
            )
            owner[chunk_id("code", f.uuid, index)] = (f.uuid, index)
    return chunks, owner


def evaluate(
    settings: Settings,
    dataset_dir: Path,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    rechunk: bool = False,
    embedders: EmbedderPool | None = None,
    dense_weight: float | None = None,
    lexical_weight: float | None = None,
    definition_weight: float | None = None,
    headers: bool = True,
    ranking: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Index the set in a temporary store, run every query through the retriever, score it."""
    t0 = time.monotonic()
    dataset = load_dataset(dataset_dir)
    embedders = embedders or EmbedderPool(embedder_factory(settings))
    top = max(ks)
    with tempfile.TemporaryDirectory(prefix="ragbot-eval-") as tmp:
        tmp_settings = settings.model_copy(
            update={
                "chroma_db_dir": Path(tmp) / "chroma",
                "ragbot_data_dir": Path(tmp) / "data",
                "chroma_host": None,
            }
        )
        store = VectorStore(tmp_settings)
        embedder = embedders.get(tmp_settings.embedding_model_for("code"))
        collection = store.collection("code", embedder.key)
        assert collection is not None
        if rechunk:
            from rag.indexing.ingest import make_chunker

            chunker = make_chunker(tmp_settings, embedder)
            chunks = [c for f in dataset.files for c in chunker.chunk(_as_document(f))]
        else:
            chunks, _ = given_chunks(dataset, headers=headers)
        if progress:
            progress(f"embedding {len(chunks)} chunks with {embedder.name}")
        vectors = embedder.embed_documents([c.embed_text for c in chunks])
        collection.upsert(chunks, vectors, [{} for _ in chunks])
        collection.register_source("code")
        if definition_weight != 0:  # the symbol index, as an ingest builds it beside the chunks
            symbols = store.collection("code", embedder.key, symbols=True)
            assert symbols is not None
            by_doc: dict[str, list[Chunk]] = {}
            for c in chunks:
                by_doc.setdefault(c.doc_id, []).append(c)
            documents = [(_as_document(f), by_doc.get(f.uuid, [])) for f in dataset.files]
            if progress:
                progress(f"indexing the definitions of {len(documents)} files")
            index_symbols(symbols, "code", documents)
        retriever = Retriever(
            tmp_settings,
            store=store,
            embedders=embedders,
            registry=SourceRegistry([RepositorySpec(name="code", path=Path(tmp))]),
            dense_weight=DENSE_WEIGHT if dense_weight is None else dense_weight,
            lexical_weight=LEXICAL_WEIGHT if lexical_weight is None else lexical_weight,
            definition_weight=definition_weight,
            ranking=ranking,
        )
        if progress:
            progress(f"running {len(dataset.queries)} queries")
        match = _CoverMatcher(dataset) if rechunk else None
        golden_ranks: list[list[int | None]] = []
        per_k: dict[int, list[list[int | None]]] = {k: [] for k in ks}
        for q in dataset.queries:
            hits = retriever.search(q.query, top_k=top, sources=["code"])
            golden_ranks.append(_golden_ranks(q, hits, match))
            if ranking:
                # Diversity and merging depend on top_k: score Pass@k from a search with top_k=k,
                # as `ask --top-k k` would return it.
                for k in ks:
                    k_hits = hits if k == top else retriever.search(q.query, top_k=k, sources=["code"])
                    per_k[k].append(_golden_ranks(q, k_hits, match))
    result: dict[str, Any] = {"queries": len(dataset.queries), **score(golden_ranks, ks)}
    if ranking:
        for k in ks:
            result[f"pass@{k}"] = round(pass_at_k(per_k[k], k), 2)
        if 10 in ks:
            result["mrr@10"] = score(per_k[10], [10])["mrr@10"]
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def _golden_ranks(q: EvalQuery, hits: Sequence[Hit], match: _CoverMatcher | None) -> list[int | None]:
    """The rank at which each of the query's golden chunks was found (None: not found)."""
    ranks: list[int | None] = []
    for gold in q.golden:
        rank = None
        for r, hit in enumerate(hits, start=1):
            if match is not None:
                ok = match.covers(hit.metadata.get("doc_id"), hit.start_line, hit.end_line, gold)
            else:
                # A hit merged from adjacent chunks (rag.answering.ranking) contains each of them.
                ok = hit.metadata.get("doc_id") == gold[0] and gold[1] in chunk_indexes(hit)
            if ok:
                rank = r
                break
        ranks.append(rank)
    return ranks


_EXTENSIONS = {
    "python": ".py",
    "javascript": ".js",
    "typescript": ".ts",
    "java": ".java",
    "c": ".c",
    "cpp": ".cpp",
    "go": ".go",
    "rust": ".rs",
}


def _as_document(f: EvalFile) -> Document:
    language = code_language_of(f.content)
    path = f.name + _EXTENSIONS.get(language or "", ".txt")
    return Document(
        source="code",
        doc_id=f.uuid,
        title=path,
        text=f.content,
        path=path,
        language=language,
        version=content_hash(f.content),
    )


class _CoverMatcher:
    """--rechunk: does a retrieved line range cover most of a golden chunk's lines?"""

    def __init__(self, dataset: Dataset) -> None:
        self.spans: dict[tuple[str, int], tuple[int, int, set[int]]] = {}
        for f in dataset.files:
            offset = 0
            lines = f.content.split("\n")
            for index, text in f.chunks:
                pos = f.content.find(text, offset)
                if pos < 0:
                    continue
                offset = pos + len(text)
                first = f.content.count("\n", 0, pos) + 1
                last = first + text.rstrip("\n").count("\n")
                # Blank lines carry no content: only lines with text count towards "most of".
                useful = {n for n in range(first, last + 1) if lines[n - 1].strip()}
                self.spans[(f.uuid, index)] = (first, last, useful)

    def covers(self, doc_id: Any, start: int | None, end: int | None, gold: tuple[str, int]) -> bool:
        span = self.spans.get(gold)
        if span is None or doc_id != gold[0] or start is None or end is None:
            return False
        useful = span[2]
        if not useful:
            return False
        inside = sum(1 for n in useful if start <= n <= end)
        return inside / len(useful) > COVER_SHARE
