"""Labelled retrieval sets for benchmarks/ranking_quality.py and benchmarks/grounding_tune.py.

Each set is indexed through the product path (product chunker or the set's own chunks → embedded
Chroma collection → BM25 → `Retriever.search`); embeddings are cached on disk by text, so a
second run embeds nothing. Sets:

- `contextual-code` (given chunks) and `contextual-code-rechunk` (files cut by ragbot's chunker):
  benchmarks/data/contextual-code, judged by golden chunk as `ragbot eval` does.
- `click`: the installed click package, benchmarks/data/click-definitions/questions.jsonl.
- `starlette`: the installed starlette package (middleware/ included),
  benchmarks/data/starlette-definitions/questions.jsonl.
- `ragbot`: this repository (rag/, bot/, tests/, docs/), benchmarks/data/ragbot-code/questions.jsonl.
  All three judged at the definition level: a hit passes when its file is the answer's file and its
  line range overlaps the answering function or class (found by `ast` in the current source).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.answering.grounding import Evidence
from rag.answering.ranking import chunk_indexes
from rag.answering.retrieval import Retriever
from rag.config import Settings
from rag.evaluation import _as_document, _CoverMatcher, given_chunks, load_dataset
from rag.indexing.changelog import bump_generation
from rag.indexing.embedders import embedder_factory
from rag.indexing.embedding import Embedder, EmbedderPool
from rag.indexing.ingest import make_chunker
from rag.indexing.store import VectorStore
from rag.indexing.symbol_ingest import index_symbols
from rag.models import Chunk, Document, Hit, content_hash
from rag.sources.registry import SourceRegistry
from rag.sources.repository import language_for
from rag.sources.specs import RepositorySpec

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CACHE = Path(tempfile.gettempdir()) / "ragbot-bench-cache"
#: Fused candidates kept per query, before the prior and diversity pass.
POOL = 30


class CachedEmbedder(Embedder):
    """The real embedder with a disk cache by text: same vectors, embedded once."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.query_prefix = inner.query_prefix
        self.max_tokens = inner.token_limit()
        #: The precision scheme ("int8pc", "fp16", "" for float32) changes the vectors: own cache.
        self.variant = str(getattr(inner, "variant", ""))
        tag = f"{inner.name}:{self.variant or 'float32'}"  # never a pre-scheme cache file's name
        self.path = CACHE / f"vectors-{hashlib.sha256(tag.encode()).hexdigest()[:12]}.pkl"
        self.vectors: dict[str, list[float]] = {}
        if self.path.exists():
            self.vectors = pickle.loads(self.path.read_bytes())  # noqa: S301 (our own cache file)
        self.dirty = False

    def token_limit(self) -> int:
        return self.inner.token_limit()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [content_hash(t) for t in texts]
        todo = [t for t, k in zip(texts, keys, strict=True) if k not in self.vectors]
        if todo:
            for t, v in zip(todo, self.inner.embed_batch(todo), strict=True):
                self.vectors[content_hash(t)] = v
            self.dirty = True
        return [self.vectors[k] for k in keys]

    def save(self) -> None:
        if self.dirty:
            CACHE.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # another benchmark may have added vectors meanwhile
                on_disk = pickle.loads(self.path.read_bytes())  # noqa: S301 (our own cache file)
                self.vectors = {**on_disk, **self.vectors}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(self.vectors))
            tmp.replace(self.path)
            self.dirty = False


@dataclass
class Question:
    query: str
    judge: Callable[[Hit], list[Any]]  # the golden items a hit covers
    golden: list[Any]


@dataclass
class LabelledSet:
    name: str
    chunks: list[Chunk]
    questions: list[Question]
    #: The files the chunks come from: their symbols are indexed beside the chunks, as ingest does.
    documents: list[Document] = field(default_factory=list)


def _symbols(source: str) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + n.name
                out.setdefault(name, []).append((n.lineno, n.end_lineno or n.lineno))
                if isinstance(n, ast.ClassDef):
                    walk(n, name + ".")

    walk(ast.parse(source), "")
    return out


def _definition_set(
    name: str, root: Path, files: list[str], questions_file: Path, chunker: Any
) -> LabelledSet:
    chunks: list[Chunk] = []
    texts: dict[str, str] = {}
    documents: list[Document] = []
    for rel in files:
        text = (root / rel).read_text(encoding="utf-8")
        texts[rel] = text
        language = language_for(rel)
        doc = Document(
            source="code",
            doc_id=rel,
            title=rel,
            text=text,
            path=rel,
            language=language,
            version=content_hash(text),
        )
        chunks.extend(chunker.chunk(doc))
        documents.append(doc)
    questions = []
    for line in questions_file.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        spans: list[tuple[str, int, int]] = []
        for path, symbol in item["answers"]:
            if symbol == "*":
                spans.append((path, 1, 10**9))
                continue
            for first, last in _symbols(texts[path]).get(symbol, []):
                spans.append((path, first, last))
        if not spans:
            raise SystemExit(f"{questions_file}: no definition found for {item['answers']}")

        def judge(hit: Hit, spans: list[tuple[str, int, int]] = spans) -> list[Any]:
            ok = any(
                hit.path == p
                and hit.start_line is not None
                and hit.end_line is not None
                and hit.start_line <= last
                and first <= hit.end_line
                for p, first, last in spans
            )
            return ["answer"] if ok else []

        questions.append(Question(item["query"], judge, ["answer"]))
    return LabelledSet(name, chunks, questions, documents)


def load_set(name: str, embedder: Embedder, settings: Settings) -> LabelledSet:
    chunker = make_chunker(settings, embedder)
    if name in ("contextual-code", "contextual-code-rechunk"):
        dataset = load_dataset(DATA / "contextual-code")
        rechunk = name.endswith("rechunk")
        if rechunk:
            chunks = [c for f in dataset.files for c in chunker.chunk(_as_document(f))]
            matcher = _CoverMatcher(dataset)

            def judge(hit: Hit, golden: list[Any]) -> list[Any]:
                return [
                    g
                    for g in golden
                    if matcher.covers(hit.metadata.get("doc_id"), hit.start_line, hit.end_line, g)
                ]
        else:
            chunks, _ = given_chunks(dataset)

            def judge(hit: Hit, golden: list[Any]) -> list[Any]:
                doc = hit.metadata.get("doc_id")
                return [g for g in golden if g[0] == doc and g[1] in chunk_indexes(hit)]

        questions = [
            Question(q.query, lambda h, g=list(q.golden): judge(h, g), list(q.golden))
            for q in dataset.queries
        ]
        return LabelledSet(name, chunks, questions, [_as_document(f) for f in dataset.files])
    if name == "click":
        import click

        root = Path(click.__file__).resolve().parent.parent
        files = sorted(str(p.relative_to(root)) for p in (root / "click").glob("*.py"))
        return _definition_set(name, root, files, DATA / "click-definitions" / "questions.jsonl", chunker)
    if name == "starlette":
        import starlette

        root = Path(starlette.__file__).resolve().parent.parent
        files = sorted(str(p.relative_to(root)) for p in (root / "starlette").rglob("*.py"))
        return _definition_set(name, root, files, DATA / "starlette-definitions" / "questions.jsonl", chunker)
    if name == "ragbot":
        listed = subprocess.run(
            ["git", "ls-files", "rag", "bot", "tests", "docs", "README.md"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
        files = [f for f in listed if f.endswith((".py", ".md"))]
        return _definition_set(name, ROOT, files, DATA / "ragbot-code" / "questions.jsonl", chunker)
    raise SystemExit(f"unknown set {name}")


class Indexed:
    """A set stored in a temporary embedded Chroma collection, searched by the product retriever."""

    def __init__(
        self,
        chunks: list[Chunk],
        embedder: CachedEmbedder,
        tmp: Path,
        documents: Sequence[Document] = (),
        *,
        definition_weight: float | None = None,
        ranking: bool = False,
    ) -> None:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, chroma_db_dir=tmp / "chroma", ragbot_data_dir=tmp / "data"
        )
        pool = EmbedderPool(lambda _model: embedder)
        store = VectorStore(settings)
        collection = store.collection("code", embedder.key)
        assert collection is not None
        vectors = embedder.embed_documents([c.embed_text for c in chunks])
        embedder.save()
        collection.upsert(chunks, vectors, [{} for _ in chunks])
        bump_generation(collection)
        if documents and definition_weight != 0:  # the symbol index beside the chunks, as ingest writes it
            by_doc: dict[str, list[Chunk]] = {}
            for c in chunks:
                by_doc.setdefault(c.doc_id, []).append(c)
            symbols = store.collection("code", embedder.key, symbols=True)
            assert symbols is not None
            index_symbols(symbols, "code", [(d, by_doc.get(d.doc_id, [])) for d in documents])
        # One repository source named "code", as `ragbot eval` registers (rag/evaluation.py).
        registry = SourceRegistry([RepositorySpec(name="code", path=tmp)])
        self.retriever = Retriever(
            settings,
            store=store,
            embedders=pool,
            registry=registry,
            ranking=ranking,
            definition_weight=definition_weight,
        )

    def candidates(self, query: str) -> tuple[list[Hit], Evidence]:
        """The fused pool (no prior, no diversity) and the grounding evidence for one query."""
        evidence = Evidence()
        hits = self.retriever.search(query, top_k=POOL, sources=["code"], evidence=evidence)
        return hits, evidence


class ExactIndex:
    """The retriever's fusion in numpy (exact cosine instead of Chroma's HNSW), for speed on a busy host.

    Same chunks, vectors, BM25 index, depth, weights and `rrf_fuse` as `Retriever.search`; on
    sets of ~1k chunks HNSW returns the exact neighbours, so the pools match the product's.
    """

    def __init__(self, chunks: list[Chunk], embedder: CachedEmbedder) -> None:
        import numpy as np

        from rag.indexing.lexical import LexicalIndex, lexical_text
        from rag.indexing.store import chunk_id

        self.embedder = embedder
        self.chunks = chunks
        self.ids = [chunk_id(c.source, c.doc_id, c.index) for c in chunks]
        self.vectors = np.array(embedder.embed_documents([c.embed_text for c in chunks]), dtype=np.float32)
        embedder.save()
        self.lexical = LexicalIndex(None)
        texts = [lexical_text(c.text, {"path": c.path, "title": c.title, "symbol": c.symbol}) for c in chunks]
        self.lexical.build(self.ids, texts)
        self.by_id = dict(zip(self.ids, chunks, strict=True))

    def candidates(self, query: str) -> tuple[list[Hit], Evidence]:
        import numpy as np

        from rag.answering.retrieval import CANDIDATES, DENSE_WEIGHT, HYBRID_RRF_K, LEXICAL_WEIGHT, rrf_fuse

        evidence = Evidence()
        q = np.array(self.embedder.embed_query(query), dtype=np.float32)
        sims = self.vectors @ q
        top = np.argsort(-sims, kind="stable")[:CANDIDATES]
        evidence.add_dense([(self.ids[i], 1.0 - float(sims[i])) for i in top])
        lexical = self.lexical.search(query, CANDIDATES)
        evidence.add_lexical(self.lexical, query, lexical)
        scores = rrf_fuse(
            [[self.ids[i] for i in top], [rid for rid, _ in lexical]],
            [DENSE_WEIGHT, LEXICAL_WEIGHT],
            k=HYBRID_RRF_K,
        )
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:POOL]
        hits = []
        for rid, score in ranked:
            c = self.by_id[rid]
            meta = {
                "source": c.source,
                "doc_id": c.doc_id,
                "chunk_index": c.index,
                "path": c.path,
                "symbol": c.symbol,
                "start_line": c.start_line,
                "end_line": c.end_line,
            }
            hits.append(
                Hit(c.source, c.title, c.url, c.path, c.start_line, c.end_line, score, c.text, rid, meta)
            )
        return hits, evidence


def base_embedder(int8: bool = True) -> CachedEmbedder:
    settings = Settings(_env_file=None, RAGBOT_EMB_INT8=int8)  # type: ignore[call-arg]
    return CachedEmbedder(EmbedderPool(embedder_factory(settings)).get(None))


def split(items: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Tune = even positions, held-out = odd positions (fixed, so every run splits alike)."""
    return list(items[0::2]), list(items[1::2])
