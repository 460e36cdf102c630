"""The symbol index: every document's definitions and references, kept in Chroma beside its chunks.

One collection per kind and model (`ragbot-symbols-<kind>-<model>`), written by the ingest with the
same fingerprints as the chunks (an unchanged document costs nothing), through the same change log
(every process's BM25 index of it follows), pruned with its document. A document is one record:
its definitions (name, qualified name, kind, lines, signature, docstring, the chunk that holds it)
and references in one encoded metadata value, and their names as its text, so that Chroma finds
a name's definitions and uses exactly. Every process's BM25 index of the collection has one entry
per definition (`entries_of`), whose text is short — its qualified name split into words (with the
usual abbreviations spelled out), its signature and its docstring — much closer to a question asked
in a person's words than a 200-token chunk is; it is searched by those words, not embedded (see
rag.indexing.symbol_ingest.placeholder_vector for why), and a match is a vote for the chunk that
holds the definition (rag.answering.retrieval).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.indexing.store import COLLECTION_PREFIX, Collection, Record, chunk_id
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
    """A definition's text for BM25: its name and the name's words, abbreviations spelled out.
    BM25 adds the path, signature and docstring beside it (rag.indexing.lexical_text)."""
    return qualname_text(definition.qualname)


def qualname_text(qualname: str) -> str:
    words = " ".join(spelled_out(words_of(qualname)))
    return f"{qualname} {words}"[:TEXT_CHARS]


def symbol_id(source_name: str, doc_id: str) -> str:
    """Stable like a chunk id: a document's one symbol record."""
    return "sym:" + chunk_id(source_name, doc_id, 0)


def is_symbol_collection(name: str) -> bool:
    return name.startswith(f"{COLLECTION_PREFIX}-symbols-")


@dataclass(frozen=True)
class SymbolRecords:
    """The records one document contributes to the symbol collection (one), and how many entries
    (its file entry and its definitions) they hold."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    entries: int


def defining_chunk(definition: Definition, chunks: Sequence[Chunk]) -> Chunk | None:
    """The chunk that holds the definition's first line (its signature)."""
    for chunk in chunks:
        start, end = chunk.start_line, chunk.end_line
        if start is not None and end is not None and start <= definition.start_line <= end:
            return chunk
    return chunks[0] if chunks else None


def encode(value: Any) -> str:
    """Compact JSON, deflated, base64: the one metadata value that holds a document's symbols."""
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode(value: Any) -> Any:
    try:
        return json.loads(zlib.decompress(base64.b64decode(str(value))))
    except (ValueError, zlib.error):
        return None


def names_text(names: Sequence[str], referenced: Sequence[str]) -> str:
    """A record's document: its definitions' names and (after `@`) the names it refers to, one a
    line, so that Chroma's document filter finds the records that define or use a name exactly
    (`\nname\n`, `\n@name\n`) without a metadata row per name."""
    lines = sorted(set(names)) + ["@" + n for n in sorted(set(referenced))]
    return "\n" + "\n".join(lines) + "\n" if lines else ""


def records_for(
    doc: Document, source_name: str, symbols: FileSymbols, chunks: Sequence[Chunk], fingerprint: str
) -> SymbolRecords:
    """`doc`'s one record: its definitions and references in one encoded value (`symbols`), their
    names as its document. Each Chroma metadata key costs a row and an index entry, and each
    document a trigram full-text index, so a record per definition cost a third of the store
    (docs/retrieval.md, "Definitions"); the definitions are searched in memory (`entries_of`)."""
    path = doc.path or doc.title
    file_words = " ".join(spelled_out(words_of(path)))
    module_doc = next((d.doc for d in symbols.definitions if d.kind == "page" and d.doc), "")
    first = chunks[0] if chunks else None
    definitions = []
    for definition in symbols.definitions:
        holder = defining_chunk(definition, chunks)
        definitions.append(
            [
                definition.name,
                definition.qualname,
                definition.kind,
                definition.start_line,
                definition.end_line,
                definition.signature,
                definition.doc,
                holder.index if holder is not None else -1,
            ]
        )
    value = {
        "f": f"{file_words} {module_doc}".strip()[:TEXT_CHARS],
        "n": max(1, doc.text.count("\n") + 1),
        "c": first.index if first is not None else -1,
        "d": definitions,
        "r": [[r.name, r.kind, r.line] for r in symbols.references],
    }
    metadata: dict[str, Any] = {
        "source_name": source_name,
        "doc_id": doc.doc_id,
        "doc_fingerprint": fingerprint,
        "doc_chunks": 1,
        **({"path": doc.path} if doc.path else {"title": doc.title}),
        "symbols": encode(value),
    }
    text = names_text([d.name for d in symbols.definitions], [r.name for r in symbols.references])
    return SymbolRecords(
        [symbol_id(source_name, doc.doc_id)], [text], [metadata], 1 + len(symbols.definitions)
    )


def entries_of(record: Record) -> list[tuple[str, str, dict[str, Any], str]]:
    """What BM25 indexes of a symbol record: its file entry (`<id>#0`: the path's words and the
    module docstring) and one entry per definition (`<id>#<n>`: rag.indexing.symbol_store's short
    text, with the signature and docstring beside it), each with the chunk it votes for (none for
    the file entry: a file's first chunk is mostly imports)."""
    m = record.metadata
    where = {"path": m["path"]} if m.get("path") else {"title": str(m.get("title") or "")}
    value = decode(m.get("symbols"))
    if not isinstance(value, dict):  # never written so by ragbot; still one entry per record
        return [(f"{record.id}#0", "", where, "")]
    out = [(f"{record.id}#0", str(value.get("f") or ""), where, "")]
    for n, found in enumerate(definitions_of(record), 1):
        meta = {**where, "signature": found.signature, "docstring": found.doc}
        out.append((f"{record.id}#{n}", qualname_text(found.qualname), meta, found.chunk_id))
    return out


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


def definitions_of(record: Record) -> list[Located]:
    """A symbol record's definitions, in the order they were extracted."""
    value = decode(record.metadata.get("symbols"))
    if not isinstance(value, dict):
        return []
    m = record.metadata
    source, doc_id = str(m.get("source_name") or ""), str(m.get("doc_id") or "")
    found = []
    for name, qualname, kind, start, end, signature, doc, holder in value.get("d") or []:
        found.append(
            Located(
                source_name=source,
                path=str(m.get("path") or "") or None,
                title=str(m.get("title") or ""),
                name=str(name),
                qualname=str(qualname),
                kind=str(kind),
                start_line=int(start),
                end_line=int(end),
                signature=str(signature or ""),
                doc=str(doc or ""),
                chunk_id=chunk_id(source, doc_id, int(holder)) if int(holder) >= 0 else "",
            )
        )
    return found


def uses_of(record: Record) -> list[Use]:
    """A symbol record's references."""
    value = decode(record.metadata.get("symbols"))
    if not isinstance(value, dict):
        return []
    m = record.metadata
    path, title = str(m.get("path") or "") or None, str(m.get("title") or "")
    source = str(m.get("source_name") or "")
    return [Use(source, path, title, str(n), str(k), int(line)) for n, k, line in value.get("r") or []]


def _in(names: Sequence[str]) -> dict[str, Any]:
    return {"source_name": names[0]} if len(names) == 1 else {"source_name": {"$in": list(names)}}


def _named(collection: Collection, line: str, sources: Sequence[str]) -> list[Record]:
    """The records whose document has `line` as one of its lines (see `names_text`)."""
    return list(collection.iter_records(where=_in(sources), where_document={"$contains": f"\n{line}\n"}))


def find_definitions(
    collection: Collection, name: str, sources: Sequence[str], limit: int = 20
) -> list[Located]:
    """Definitions called `name` (or `Class.name`, or a qualified name), in `sources` only."""
    if not sources or not name.strip():
        return []
    last = name.rsplit(".", 1)[-1].rsplit("::", 1)[-1]
    found = [d for r in _named(collection, last, sources) for d in definitions_of(r) if d.name == last]
    if "." in name:
        exact = [d for d in found if d.qualname == name or d.qualname.endswith("." + name)]
        found = exact or found
    found.sort(key=lambda d: (d.kind not in ("class", "function", "method"), d.path or d.title, d.start_line))
    return found[:limit]


def find_references(collection: Collection, name: str, sources: Sequence[str], limit: int = 50) -> list[Use]:
    """The places in `sources` that call, import or use `name`."""
    if not sources or not name.strip():
        return []
    last = name.rsplit(".", 1)[-1].rsplit("::", 1)[-1]
    uses = [u for r in _named(collection, "@" + last, sources) for u in uses_of(r) if u.name == last]
    uses.sort(key=lambda u: (u.kind != "call", u.path or u.title, u.line))
    return uses[:limit]


def outline_of(collection: Collection, path: str, sources: Sequence[str]) -> list[Located]:
    """The definitions of one file (by path) or page (by title), in `sources` only, in order."""
    if not sources:
        return []
    found: list[Located] = []
    for key in ("path", "title"):
        where = {"$and": [{key: path}, _in(sources)]}
        found = [d for r in collection.iter_records(where=where) for d in definitions_of(r)]
        if found:
            break
    return sorted(found, key=lambda d: (d.start_line, -d.end_line))


__all__ = [
    "ABBREVIATIONS",
    "Located",
    "Reference",
    "SymbolRecords",
    "Use",
    "definition_text",
    "definitions_of",
    "entries_of",
    "find_definitions",
    "find_references",
    "is_symbol_collection",
    "outline_of",
    "records_for",
    "spelled_out",
    "symbol_id",
    "uses_of",
    "words_of",
]
