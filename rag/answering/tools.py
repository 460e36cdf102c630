"""The answering loop's tools over the index: search, definition, references, outline and read.

Every tool sees only the source names the question may search (`RagService.search_scope`): its
queries filter on them inside Chroma, so a path or a name that only another source holds is "not
found", in the same words as one that exists nowhere. `read` returns the indexed text (the chunks
stored for the document, put back together), never the working tree. Every place a tool returns
is numbered once, in the order first seen (`Sources`): the model cites those numbers, and those
places are the answer's hits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rag.answering.access import AccessScope, public_scope
from rag.answering.retrieval import Retriever
from rag.config import Settings
from rag.indexing.embedding import EmbedderPool
from rag.indexing.store import Collection, Record, VectorStore
from rag.indexing.symbol_store import Located, find_definitions, find_references, outline_of
from rag.models import Hit
from rag.sources.registry import SourceRegistry
from rag.sources.weblinks import line_anchor

log = logging.getLogger(__name__)

#: Lines one `read` returns at most.
MAX_READ_LINES = 200
#: Characters of each search hit the model is shown.
EXCERPT_CHARS = 1_500
MAX_DEFINITIONS = 8
MAX_REFERENCES = 20
MAX_OUTLINE = 120
#: Characters of a step as shown to the asker.
STEP_CHARS = 120
#: Lines compared when page chunks (no line numbers) overlap.
MAX_OVERLAP_LINES = 60

NAMES = ("search", "definition", "references", "outline", "read")
_RANGE = re.compile(r"^(?P<path>.+?):(?P<start>\d+)(?:-(?P<end>\d+))?$")


class ToolCallError(ValueError):
    """The model called a tool wrongly: an unknown tool, or arguments missing or of the wrong type."""


@dataclass(frozen=True)
class ToolResult:
    """What the model reads, and the places it was shown (already numbered in `Sources`)."""

    text: str
    hits: list[Hit]


class Sources:
    """The numbered places of one answer, in the order first seen; the same place keeps its number."""

    def __init__(self, hits: Iterable[Hit] = ()) -> None:
        self.hits: list[Hit] = []
        self._numbers: dict[tuple[str, str, int | None, int | None], int] = {}
        for hit in hits:
            self.add(hit)

    def add(self, hit: Hit) -> int:
        key = (hit.source_name, hit.path or hit.title, hit.start_line, hit.end_line)
        if key not in self._numbers:
            self.hits.append(hit)
            self._numbers[key] = len(self.hits)
        return self._numbers[key]


@dataclass(frozen=True)
class IndexedDocument:
    """A document as the index holds it: its chunks put back together, as lines."""

    kind: str
    source_name: str
    path: str | None
    title: str
    url: str | None  # without a line anchor
    lines: list[str]


class Toolbox:
    """The five tools for one question, limited to the source names `names`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore,
        embedders: EmbedderPool,
        registry: SourceRegistry,
        retriever: Retriever,
        names: Sequence[str],
        top_k: int = 5,
        access: AccessScope | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedders = embedders
        self.registry = registry
        self.retriever = retriever
        self.names = list(names)
        self.top_k = top_k
        #: Who will read the answer: every tool reads only what they may see.
        self.access = access if access is not None else public_scope(registry)
        self.sources = Sources()
        self._by_kind: dict[str, list[str]] = {}
        for name in self.names:
            spec = registry.get(name)
            if spec is not None:
                self._by_kind.setdefault(spec.kind, []).append(name)
        # The symbol index carries no access tags: sources with synced permissions stay out of it.
        self._symbol_kinds = {
            kind: ungated
            for kind, names in self._by_kind.items()
            if (ungated := [n for n in names if n not in self.access.synced])
        }
        self._collections: dict[tuple[str, bool], Collection | None] = {}
        self._documents: dict[tuple[str, str], IndexedDocument | None] = {}

    # ----- the calls -------------------------------------------------------------------------

    def describe(self, tool: str, args: dict[str, Any]) -> str:
        """The step as the asker sees it while it runs ("Reading app/db.py:10-40")."""
        if tool == "search":
            text = f"Searching: {args.get('query', '')}"
        elif tool == "definition":
            text = f"Finding the definition of {args.get('name', '')}"
        elif tool == "references":
            text = f"Finding references to {args.get('name', '')}"
        elif tool == "outline":
            text = f"Outlining {args.get('path', '')}"
        else:
            start, end = args.get("start"), args.get("end")
            span = f":{start}-{end}" if start is not None and end is not None else ""
            text = f"Reading {args.get('path', '')}{span}"
        text = " ".join(str(text).split())
        return text if len(text) <= STEP_CHARS else text[: STEP_CHARS - 1] + "…"

    def call(self, tool: str, args: dict[str, Any]) -> ToolResult:
        """Run one tool; ToolCallError when the call itself is malformed."""
        if tool == "search":
            return self.search(_text(args, "query"), _name_list(args, "sources"))
        if tool == "definition":
            return self.definition(_text(args, "name"))
        if tool == "references":
            return self.references(_text(args, "name"))
        if tool == "outline":
            return self.outline(_text(args, "path"), source=_optional_text(args, "source"))
        if tool == "read":
            return self.read(
                _text(args, "path"),
                _number(args, "start"),
                _number(args, "end"),
                source=_optional_text(args, "source"),
            )
        raise ToolCallError(f"unknown tool {tool!r}")

    def search(self, query: str, sources: Sequence[str] | None = None) -> ToolResult:
        """Hybrid search (the retriever's), within the scope (and `sources`, when given)."""
        names = self.names if sources is None else [n for n in self.names if n in set(sources)]
        hits = (
            self.retriever.search(query, top_k=self.top_k, sources=names, access=self.access) if names else []
        )
        if not hits:
            return ToolResult(f"No indexed passage matches {query!r}.", [])
        parts = []
        for hit in hits:
            excerpt = hit.text if len(hit.text) <= EXCERPT_CHARS else hit.text[:EXCERPT_CHARS] + "\n…"
            parts.append(f"[{self.sources.add(hit)}] {_label(hit)}\n{excerpt}")
        return ToolResult("\n\n".join(parts), hits)

    def definition(self, name: str) -> ToolResult:
        """Where `name` (function, class, `Class.method`, constant, page heading) is defined."""
        found = []
        for kind, names in self._symbol_kinds.items():
            collection = self._collection(kind, symbols=True)
            if collection is not None:
                found += [(kind, d) for d in find_definitions(collection, name, names)]
        if not found:
            return ToolResult(f"Not found: no definition of {name!r} in the indexed sources.", [])
        hits, lines = [], []
        for kind, d in found[:MAX_DEFINITIONS]:
            doc = f"\n    {d.doc}" if d.doc else ""
            text = (d.signature or d.qualname) + doc
            hit = self._hit(kind, d.source_name, d.path, d.title, d.url, d.start_line, d.end_line, text)
            hits.append(hit)
            lines.append(f"[{self.sources.add(hit)}] {_label(hit)} {d.kind} {d.qualname}\n    {text}")
        more = f"\n({len(found) - MAX_DEFINITIONS} more not shown)" if len(found) > MAX_DEFINITIONS else ""
        return ToolResult("\n".join(lines) + more, hits)

    def references(self, name: str) -> ToolResult:
        """The lines that call, import or use `name`."""
        uses = []
        for kind, names in self._symbol_kinds.items():
            collection = self._collection(kind, symbols=True)
            if collection is not None:
                uses += [(kind, u) for u in find_references(collection, name, names)]
        if not uses:
            return ToolResult(f"Not found: no references to {name!r} in the indexed sources.", [])
        hits, lines = [], []
        for kind, use in uses[:MAX_REFERENCES]:
            doc = self._document(kind, use.source_name, use.path or use.title)
            text = doc.lines[use.line - 1] if doc is not None and 0 < use.line <= len(doc.lines) else ""
            url = doc.url if doc is not None else None
            hit = self._hit(kind, use.source_name, use.path, use.title, url, use.line, use.line, text)
            hits.append(hit)
            lines.append(f"[{self.sources.add(hit)}] {_label(hit)} {use.kind}: {text.strip()}")
        more = f"\n({len(uses) - MAX_REFERENCES} more not shown)" if len(uses) > MAX_REFERENCES else ""
        return ToolResult("\n".join(lines) + more, hits)

    def outline(self, path: str, *, source: str | None = None) -> ToolResult:
        """The definitions of a file (or of a page, by title), in order, with lines and signatures."""
        path, source = _split_source(path, source)
        ranged = _RANGE.match(path)  # `app/db.py:10-40`, as citations name a place
        for candidate in [path, ranged["path"]] if ranged else [path]:
            for kind, names in self._kinds(source):
                collection = self._collection(kind, symbols=True)
                if collection is None:
                    continue
                for name in names:  # scope order: the first source that holds it
                    if name in self.access.synced:
                        continue  # no access tags in the symbol index
                    found = outline_of(collection, candidate, [name])
                    if found:
                        return self._outline(kind, name, found)
        return self._not_found(path)

    def _outline(self, kind: str, source_name: str, found: Sequence[Located]) -> ToolResult:
        listing = [
            f"  {d.start_line}-{d.end_line} {d.kind} {d.qualname}"
            + (f": {d.signature}" if d.signature else "")
            for d in found[:MAX_OUTLINE]
        ]
        if len(found) > MAX_OUTLINE:
            listing.append(f"  ({len(found) - MAX_OUTLINE} more not shown)")
        first, end = found[0], max(d.end_line for d in found)
        text = "\n".join(listing)
        hit = self._hit(kind, source_name, first.path, first.title, first.url, 1, end, text)
        return ToolResult(f"[{self.sources.add(hit)}] {_label(hit)} outline:\n{text}", [hit])

    def read(
        self, path: str, start: int | None = None, end: int | None = None, *, source: str | None = None
    ) -> ToolResult:
        """Lines start..end (at most MAX_READ_LINES) of an indexed file or page, as indexed."""
        path, source = _split_source(path, source)
        ranged = _RANGE.match(path)
        if ranged and start is None and self._find(ranged["path"], source) is not None:
            path, start = ranged["path"], int(ranged["start"])
            end = int(ranged["end"]) if ranged["end"] else None
        doc = self._find(path, source)
        if doc is None:
            return self._not_found(path)
        first = max(1, start or 1)
        last = min(len(doc.lines), end if end is not None else first + MAX_READ_LINES - 1)
        last = min(last, first + MAX_READ_LINES - 1)
        if first > len(doc.lines) or last < first:
            return ToolResult(f"{path} has {len(doc.lines)} lines: nothing at {first}-{end}.", [])
        body = doc.lines[first - 1 : last]
        hit = self._hit(doc.kind, doc.source_name, doc.path, doc.title, doc.url, first, last, "\n".join(body))
        numbered = "\n".join(f"{n:>5}  {line}" for n, line in enumerate(body, start=first))
        tail = f"\n(the file goes on to line {len(doc.lines)})" if last < len(doc.lines) else ""
        return ToolResult(f"[{self.sources.add(hit)}] {_label(hit)}\n{numbered}{tail}", [hit])

    # ----- the index -------------------------------------------------------------------------

    def _kinds(self, source: str | None) -> list[tuple[str, list[str]]]:
        """(kind, names) of the scope, narrowed to `source` when given (an unknown one: nothing)."""
        if source is None:
            return list(self._by_kind.items())
        return [(k, [source]) for k, names in self._by_kind.items() if source in names]

    def _collection(self, kind: str, *, symbols: bool = False) -> Collection | None:
        if (kind, symbols) not in self._collections:
            key = self.embedders.get(self.settings.embedding_model_for(kind)).key
            self._collections[(kind, symbols)] = self.store.collection(
                kind, key, create=False, symbols=symbols
            )
        return self._collections[(kind, symbols)]

    def _find(self, path: str, source: str | None) -> IndexedDocument | None:
        for kind, names in self._kinds(source):
            for name in names:
                doc = self._document(kind, name, path)
                if doc is not None:
                    return doc
        return None

    def _document(self, kind: str, source_name: str, path: str) -> IndexedDocument | None:
        """The document at `path` (or the page titled so) of one source in scope, from its chunks."""
        if source_name not in self._by_kind.get(kind, ()):
            return None  # never outside the scope, whoever asks
        if (source_name, path) in self._documents:
            return self._documents[(source_name, path)]
        collection = self._collection(kind)
        doc = None
        if collection is not None:
            for key in ("path", "title"):
                where = {"$and": [{key: path}, {"source_name": source_name}]}
                if source_name in self.access.synced:  # only a page this reader may see
                    visible = self.access.where([source_name])
                    if visible is None:
                        break
                    where["$and"].append(visible)
                records = [
                    r
                    for r in collection.iter_records(include_documents=True, where=where)
                    if self.access.admits(r.metadata)
                ]
                if records:
                    doc = _assemble(kind, source_name, records)
                    break
        self._documents[(source_name, path)] = doc
        return doc

    def _hit(
        self,
        kind: str,
        source_name: str,
        path: str | None,
        title: str,
        url: str | None,
        start: int,
        end: int,
        text: str,
    ) -> Hit:
        anchored = line_anchor(url, start, end) if url and path else url
        return Hit(
            source=kind,
            title=title or path or "",
            url=anchored or None,
            path=path,
            start_line=start,
            end_line=end,
            score=1.0,
            text=text,
            source_name=source_name,
            show_source=self.registry.several_repositories,
        )

    @staticmethod
    def _not_found(path: str) -> ToolResult:
        # The same words whether the path exists nowhere or only outside the scope.
        return ToolResult(f"Not found: {path!r} is not an indexed file or page.", [])


def _assemble(kind: str, source_name: str, records: list[Record]) -> IndexedDocument:
    """A document's text from its chunks: by line number for files, by overlap for pages."""
    first_doc = min(str(r.metadata.get("doc_id", "")) for r in records)
    records = sorted(
        (r for r in records if str(r.metadata.get("doc_id", "")) == first_doc),
        key=lambda r: int(r.metadata.get("chunk_index") or 0),
    )
    meta = records[0].metadata
    path = str(meta.get("path") or "") or None
    url = str(meta.get("url") or "") or None
    if url and path:
        url = url.split("#", 1)[0]  # the chunk's own line anchor
    numbered = all(isinstance(r.metadata.get("start_line"), int) for r in records)
    return IndexedDocument(
        kind=kind,
        source_name=source_name,
        path=path,
        title=str(meta.get("title") or path or ""),
        url=url,
        lines=_by_line_numbers(records) if numbered and path else _by_overlap(records),
    )


def _by_line_numbers(records: Sequence[Record]) -> list[str]:
    lines: dict[int, str] = {}
    single: dict[int, list[str]] = {}  # one-line chunks: a long line is cut into several
    for r in records:
        start = int(r.metadata["start_line"])
        body = r.text.split("\n")
        if len(body) == 1:
            single.setdefault(start, []).append(body[0])
            continue
        for k, line in enumerate(body):
            lines.setdefault(start + k, line)
    for n, pieces in single.items():
        if n not in lines:
            lines[n] = pieces[0] if len(set(pieces)) == 1 else "".join(pieces)
    return [lines.get(n, "") for n in range(1, max(lines, default=0) + 1)]


def _by_overlap(records: Sequence[Record]) -> list[str]:
    out: list[str] = []
    for r in records:
        body = r.text.split("\n")
        overlap = next(
            (
                k
                for k in range(min(len(out), len(body), MAX_OVERLAP_LINES), 0, -1)
                if out[-k:] == body[:k] and any(line.strip() for line in body[:k])
            ),
            0,
        )
        if out and not overlap:
            out.append("")
        out.extend(body[overlap:])
    return out


def _label(hit: Hit) -> str:
    if hit.source == "confluence" and not hit.path:
        span = f" (lines {hit.start_line}-{hit.end_line})" if hit.start_line is not None else ""
        return f'Confluence page "{hit.title}"{span}'
    if hit.path and hit.start_line is not None and hit.start_line == hit.end_line:
        return hit.citation().rsplit("-", 1)[0]  # one line: `path:12`
    return hit.citation()


def _split_source(path: str, source: str | None) -> tuple[str, str | None]:
    """`backend · app/db.py` (as citations name a file when several repositories are configured)."""
    if " · " in path and source is None:
        name, rest = path.split(" · ", 1)
        return rest.strip(), name.strip()
    return path.strip(), source


# ----- arguments -----------------------------------------------------------------------------


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolCallError(f"{key!r} must be a non-empty string")
    return value.strip()


def _optional_text(args: dict[str, Any], key: str) -> str | None:
    return None if args.get(key) in (None, "") else _text(args, key)


def _number(args: dict[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ToolCallError(f"{key!r} must be a line number")
    return int(value)


def _name_list(args: dict[str, Any], key: str) -> list[str] | None:
    value = args.get(key)
    if value is None or value == []:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ToolCallError(f"{key!r} must be a list of source names")


__all__ = ["NAMES", "Sources", "ToolCallError", "ToolResult", "Toolbox"]
