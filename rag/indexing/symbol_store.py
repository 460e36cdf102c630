"""The symbol index: every document's definitions and references, kept in Chroma beside its chunks.

One collection per kind and model (`ragbot-symbols-<kind>-<model>`), written by the ingest with the
same fingerprints as the chunks (an unchanged document costs nothing), through the same change log
(every process's BM25 index of it follows), pruned with its document. Each definition is a record
whose text is short — its qualified name split into words (with the usual abbreviations spelled
out), its signature and its docstring — much closer to a question asked in a person's words than
a 200-token chunk is; it is searched by those words (BM25), not embedded (see
rag.indexing.symbol_ingest.placeholder_vector for why). Each document also has one `file` record
that holds its references. Every record names the chunk that holds its definition, so a match on
a definition is a vote for that chunk (rag.answering.retrieval).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.indexing.store import Collection, Record, chunk_id
from rag.indexing.symbols import Definition, FileSymbols, Reference
from rag.models import Chunk, Document

#: The abbreviations identifiers use, spelled out in a definition's text (and the reverse), so
#: that "configuration" meets `cfg` and `auth_token` meets "authentication".
ABBREVIATIONS: dict[str, str] = {
    "cfg": "config configuration",
    "conf": "config configuration",
    "config": "configuration",
    "auth": "authentication authorization",
    "authn": "authentication",
    "authz": "authorization",
    "repo": "repository",
    "repos": "repositories",
    "msg": "message",
    "msgs": "messages",
    "req": "request",
    "resp": "response",
    "res": "response result",
    "err": "error",
    "exc": "exception",
    "ctx": "context",
    "env": "environment",
    "db": "database",
    "conn": "connection",
    "dir": "directory",
    "dirs": "directories",
    "init": "initialize",
    "impl": "implementation",
    "tmp": "temporary",
    "temp": "temporary",
    "num": "number",
    "len": "length",
    "idx": "index",
    "pos": "position",
    "str": "string",
    "fmt": "format",
    "opts": "options",
    "opt": "option",
    "args": "arguments",
    "arg": "argument",
    "param": "parameter",
    "params": "parameters",
    "attr": "attribute",
    "attrs": "attributes",
    "src": "source",
    "dst": "destination",
    "dest": "destination",
    "prev": "previous",
    "cur": "current",
    "max": "maximum",
    "min": "minimum",
    "util": "utility",
    "utils": "utilities",
    "mgr": "manager",
    "svc": "service",
    "addr": "address",
    "btn": "button",
    "cb": "callback",
    "fn": "function",
    "func": "function",
    "val": "value",
    "var": "variable",
    "doc": "document",
    "docs": "documents documentation",
    "id": "identifier",
    "ids": "identifiers",
    "ts": "timestamp",
    "sync": "synchronize",
    "async": "asynchronous",
    "gen": "generate generation",
    "calc": "calculate",
    "del": "delete",
    "rm": "remove",
    "mk": "make",
    "cnt": "count",
    "buf": "buffer",
    "pkg": "package",
    "lib": "library",
    "proc": "process",
    "exec": "execute",
    "cmd": "command",
    "sig": "signature signal",
    "tok": "token",
    "http": "web request",
    "url": "link address",
}
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: Characters of a file record's module docstring and of a definition's text kept.
TEXT_CHARS = 400
FILE_KIND = "file"


def words_of(identifier: str) -> list[str]:
    """`getCellLen` → get, cell, len; `chunk_id` → chunk, id; `HTTPServer` → http, server."""
    return [p.lower() for part in re.split(r"[\W_]+", identifier) for p in _PART.findall(part)]


def spelled_out(words: Sequence[str]) -> list[str]:
    """The words with the abbreviations among them spelled out."""
    out: list[str] = []
    for word in words:
        out.append(word)
        if word in ABBREVIATIONS:
            out.extend(ABBREVIATIONS[word].split())
    return out


def definition_text(definition: Definition) -> str:
    """A definition record's document: its name and the name's words, abbreviations spelled out.
    BM25 adds the path, signature and docstring from the metadata (rag.indexing.lexical_text),
    so that nothing is stored twice."""
    words = " ".join(spelled_out(words_of(definition.qualname)))
    return f"{definition.qualname} {words}"[:TEXT_CHARS]


def symbol_id(source_name: str, doc_id: str, n: int) -> str:
    """Stable like a chunk id: the n-th symbol record of a document (0 is its file record)."""
    return "sym:" + chunk_id(source_name, doc_id, n)


@dataclass(frozen=True)
class SymbolRecords:
    """The records one document contributes to the symbol collection."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]


def defining_chunk(definition: Definition, chunks: Sequence[Chunk]) -> Chunk | None:
    """The chunk that holds the definition's first line (its signature)."""
    for chunk in chunks:
        start, end = chunk.start_line, chunk.end_line
        if start is not None and end is not None and start <= definition.start_line <= end:
            return chunk
    return chunks[0] if chunks else None


def records_for(
    doc: Document, source_name: str, symbols: FileSymbols, chunks: Sequence[Chunk], fingerprint: str
) -> SymbolRecords:
    """The file record (its references) and one record per definition of `doc`."""
    path = doc.path or doc.title
    # Few keys: each is a row and an index entry in Chroma's SQLite (the store's size is budgeted).
    base: dict[str, Any] = {
        "source_name": source_name,
        "doc_id": doc.doc_id,
        "doc_fingerprint": fingerprint,
        "doc_chunks": 1 + len(symbols.definitions),
        **({"path": doc.path} if doc.path else {"title": doc.title}),
    }
    first = chunks[0] if chunks else None
    file_words = " ".join(spelled_out(words_of(path)))
    module_doc = next((d.doc for d in symbols.definitions if d.kind == "page" and d.doc), "")
    ids = [symbol_id(source_name, doc.doc_id, 0)]
    texts = [f"{file_words} {module_doc}".strip()[:TEXT_CHARS]]
    metadatas = [
        {
            **base,
            "name": path.rsplit("/", 1)[-1],
            "qualname": path,
            "def_kind": FILE_KIND,
            "start_line": 1,
            "end_line": max(1, doc.text.count("\n") + 1),
            "chunk_id": chunk_id(source_name, doc.doc_id, first.index) if first else "",
            "references": json.dumps(
                [[r.name, r.kind, r.line] for r in symbols.references], separators=(",", ":")
            ),
        }
    ]
    for n, definition in enumerate(symbols.definitions, start=1):
        holder = defining_chunk(definition, chunks)
        ids.append(symbol_id(source_name, doc.doc_id, n))
        texts.append(definition_text(definition))
        metadatas.append(
            {
                **base,
                "name": definition.name,
                "qualname": definition.qualname,
                "def_kind": definition.kind,
                "start_line": definition.start_line,
                "end_line": definition.end_line,
                **({"signature": definition.signature} if definition.signature else {}),
                **({"docstring": definition.doc} if definition.doc else {}),
                "chunk_id": chunk_id(source_name, doc.doc_id, holder.index) if holder else "",
            }
        )
    return SymbolRecords(ids, texts, metadatas)


# ----- reading the index back --------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A definition (or a file) as stored: where it is and what it is."""

    source_name: str
    path: str | None
    title: str
    name: str
    qualname: str
    kind: str
    start_line: int
    end_line: int
    signature: str
    doc: str
    chunk_id: str
    url: str | None = None

    @classmethod
    def of(cls, record: Record) -> Located:
        m = record.metadata
        return cls(
            source_name=str(m.get("source_name") or m.get("source") or ""),
            path=str(m.get("path") or "") or None,
            title=str(m.get("title") or ""),
            name=str(m.get("name") or ""),
            qualname=str(m.get("qualname") or ""),
            kind=str(m.get("def_kind") or ""),
            start_line=int(m.get("start_line") or 1),
            end_line=int(m.get("end_line") or 1),
            signature=str(m.get("signature") or ""),
            doc=str(m.get("docstring") or ""),
            chunk_id=str(m.get("chunk_id") or ""),
            url=str(m.get("url") or "") or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("chunk_id", "url")}


@dataclass(frozen=True)
class Use:
    """A reference to a name: which file, which line, and how (call, import, attribute)."""

    source_name: str
    path: str | None
    title: str
    name: str
    kind: str
    line: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _in(names: Sequence[str]) -> dict[str, Any]:
    return {"source_name": names[0]} if len(names) == 1 else {"source_name": {"$in": list(names)}}


def find_definitions(
    collection: Collection, name: str, sources: Sequence[str], limit: int = 20
) -> list[Located]:
    """Definitions called `name` (or `Class.name`, or a qualified name), in `sources` only."""
    if not sources:
        return []
    last = name.rsplit(".", 1)[-1].rsplit("::", 1)[-1]
    where = {"$and": [{"name": last}, _in(sources)]}
    found = [Located.of(r) for r in collection.iter_records(where=where)]
    found = [d for d in found if d.kind != FILE_KIND]
    if "." in name:
        exact = [d for d in found if d.qualname == name or d.qualname.endswith("." + name)]
        found = exact or found
    found.sort(key=lambda d: (d.kind not in ("class", "function", "method"), d.path or "", d.start_line))
    return found[:limit]


def find_references(collection: Collection, name: str, sources: Sequence[str], limit: int = 50) -> list[Use]:
    """The places in `sources` that call, import or use `name`."""
    if not sources:
        return []
    last = name.rsplit(".", 1)[-1].rsplit("::", 1)[-1]
    where = {"$and": [{"def_kind": FILE_KIND}, _in(sources)]}
    uses: list[Use] = []
    for record in collection.iter_records(where=where):
        m = record.metadata
        try:
            refs = json.loads(str(m.get("references") or "[]"))
        except ValueError:
            continue
        for ref_name, kind, line in refs:
            if ref_name == last:
                uses.append(
                    Use(
                        source_name=str(m.get("source_name") or ""),
                        path=str(m.get("path") or "") or None,
                        title=str(m.get("title") or ""),
                        name=ref_name,
                        kind=str(kind),
                        line=int(line),
                    )
                )
    uses.sort(key=lambda u: (u.kind != "call", u.path or u.title, u.line))
    return uses[:limit]


def outline_of(collection: Collection, path: str, sources: Sequence[str]) -> list[Located]:
    """The definitions of one file (by path) or page (by title), in `sources` only, in order."""
    if not sources:
        return []
    found: list[Located] = []
    for key in ("path", "title"):
        where = {"$and": [{key: path}, _in(sources)]}
        found = [Located.of(r) for r in collection.iter_records(where=where)]
        if found:
            break
    return sorted((d for d in found if d.kind != FILE_KIND), key=lambda d: (d.start_line, -d.end_line))


__all__ = [
    "ABBREVIATIONS",
    "FILE_KIND",
    "Located",
    "Reference",
    "SymbolRecords",
    "Use",
    "definition_text",
    "find_definitions",
    "find_references",
    "outline_of",
    "records_for",
    "spelled_out",
    "symbol_id",
    "words_of",
]
