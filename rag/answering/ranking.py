"""After fusion: implementation first, then at most two places per file, adjacent chunks merged.

"Where is X implemented?" should land on the code that does X, not on the test that calls it
or the doc that mentions it. A prior multiplies each fused score by a factor that depends on
what the question asks for (the implementation, the tests, the docs) and what the chunk is
(a definition in a source file, a test, a fixture, a doc, an example). Then the ranked list is
made diverse: a file contributes at most `PER_FILE` separate places to the top k, and chunks of
one file that touch each other are merged into one hit with one cited line range.
The factors were tuned on the tune split of the sets in docs/retrieval.md ("Implementation first").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from rag.models import Hit

Intent = Literal["implementation", "tests", "docs"]
Role = Literal["source", "test", "fixture", "doc", "example"]

#: Fused candidates handed to the prior and the diversity pass, per requested hit.
POOL_FACTOR = 3
#: Separate (non-adjacent) places one file may hold in the top k.
PER_FILE = 2
#: Chunks merged into one hit at most (a long run of adjacent chunks stays readable).
MAX_MERGED = 4
#: Score factor for a chunk whose role the question did not ask for.
OFF_ROLE = 0.6
#: Score factor for a chunk that defines something (def/class/fn ...) in a source file,
#: for implementation questions.
DEFINITION = 1.1
#: Score factor for a data-like chunk (a long literal table, a generated map, minified code):
#: code that does something comes first. Tuned on the tune halves (docs/retrieval.md, "Definitions").
DATA_LIKE = 0.5
#: A chunk is data-like when at least this share of its non-blank lines is literals only.
DATA_LINES = 0.7

_TESTS_Q = re.compile(r"\b(tests?|tested|testing|unit ?tests?|fixtures?|conftest|pytest|spec|mocks?)\b", re.I)
_DOCS_Q = re.compile(r"\b(docs?|documentation|documented|readme|guide|tutorial|examples?)\b", re.I)
_DEFINITION = re.compile(
    r"^\s*(?:@\w|(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
    r"(?:def|class|fn|func|function|struct|enum|trait|impl|interface|type|module)\s)",
    re.M,
)
_DOC_SUFFIXES = (".md", ".rst", ".txt", ".adoc", ".markdown")
# A line of a literal table: strings, numbers and constants with separators, maybe a key and
# brackets; no call, no operator, no keyword. Checked in linear time (no nested quantifiers: a
# chunk is untrusted text) by replacing the literals, then matching what is left.
_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_NUMBER_OR_CONSTANT = re.compile(
    r"(?<![\w.])-?\d[\w.]*(?:[eE][+-]\d+)?|\b(?:true|false|null|None|True|False|nil)\b"
)
_KEY = re.compile(r"[A-Za-z_][\w.]*[ \t]*[:=]>?")
_PUNCTUATION = frozenset(" \t[]{}(),;:=>@")
_MINIFIED_CHARS = 400


def intent_of(question: str) -> Intent:
    """What the question wants to see: the tests, the docs, or (by default) the implementation."""
    if _TESTS_Q.search(question):
        return "tests"
    if _DOCS_Q.search(question):
        return "docs"
    return "implementation"


def role_of(hit: Hit) -> Role:
    """What a chunk is, from its source and path."""
    if hit.source == "confluence" or not hit.path:
        return "doc" if hit.source == "confluence" else "source"
    path = hit.path.replace("\\", "/").lower()
    parts = path.split("/")
    name = parts[-1]
    if any(p in ("fixtures", "testdata", "test_data", "__fixtures__") for p in parts[:-1]):
        return "fixture"
    if (
        any(p in ("tests", "test", "spec", "specs", "__tests__") for p in parts[:-1])
        or name.startswith("test_")
        or name == "conftest.py"
        or re.search(r"(_test|\.test|\.spec|_spec)\.\w+$", name)
    ):
        return "test"
    if any(p in ("examples", "example", "samples") for p in parts[:-1]):
        return "example"
    if name.endswith(_DOC_SUFFIXES) or any(p in ("docs", "doc") for p in parts[:-1]):
        return "doc"
    return "source"


def _literal_line(line: str) -> bool:
    if len(line) > _MINIFIED_CHARS:
        return False
    rest = _NUMBER_OR_CONSTANT.sub("@", _STRING.sub("@", line))
    if "@" not in rest:
        return False
    i = 0
    while i < len(rest) and rest[i] in _PUNCTUATION:
        i += 1
    key = _KEY.match(rest, i)
    return all(ch in _PUNCTUATION for ch in rest[key.end() if key else i :])


def data_like(text: str) -> bool:
    """A long literal table, a generated map or minified code: data rather than behaviour."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return False
    if any(len(line) > _MINIFIED_CHARS for line in lines) and len(lines) <= 3:
        return True
    literal = sum(1 for line in lines if _literal_line(line))
    return len(lines) >= 8 and literal >= DATA_LINES * len(lines)


def prior(intent: Intent, hit: Hit) -> float:
    """The factor applied to a hit's fused score for a question of this intent."""
    role = role_of(hit)
    if intent == "tests":
        return 1.0 if role in ("test", "fixture") else OFF_ROLE
    if intent == "docs":
        return 1.0 if role in ("doc", "example") else OFF_ROLE
    if role != "source":
        return OFF_ROLE
    if data_like(hit.text):
        return DATA_LIKE
    return DEFINITION if _DEFINITION.search(hit.text) else 1.0


def rerank(question: str, hits: Sequence[Hit], *, top_k: int) -> list[Hit]:
    """The prior, then diversity with merging: the top k of a fused candidate list."""
    intent = intent_of(question)
    scored = [replace(h, score=h.score * prior(intent, h)) for h in hits]
    scored.sort(key=lambda h: h.score, reverse=True)
    return diversify(scored, top_k=top_k)


def _file_key(hit: Hit) -> str:
    return f"{hit.source_name or hit.source}\0{hit.metadata.get('doc_id') or hit.path or hit.title}"


def _adjacent(a: Hit, b: Hit) -> bool:
    ia, ib = chunk_indexes(a), chunk_indexes(b)
    if any(abs(x - y) <= 1 for x in ia for y in ib):
        return True
    if None in (a.start_line, a.end_line, b.start_line, b.end_line):
        return False
    assert a.start_line is not None and a.end_line is not None
    assert b.start_line is not None and b.end_line is not None
    return a.start_line <= b.end_line + 1 and b.start_line <= a.end_line + 1


def chunk_indexes(hit: Hit) -> list[int]:
    """The chunk indexes a hit covers (several once adjacent chunks were merged)."""
    merged = hit.metadata.get("chunk_indexes")
    if isinstance(merged, list):
        return merged
    index = hit.metadata.get("chunk_index")
    return [int(index)] if isinstance(index, (int, float)) else []


def merge(first: Hit, second: Hit) -> Hit:
    """One hit covering two adjacent chunks of a file: text in line order, overlap dropped once."""
    a, b = sorted((first, second), key=lambda h: (h.start_line or 0, chunk_indexes(h)))
    text_b = b.text
    if a.end_line is not None and b.start_line is not None and b.start_line <= a.end_line:
        overlap = a.end_line - b.start_line + 1
        text_b = "\n".join(b.text.split("\n")[overlap:])
    joiner = "" if a.text.endswith("\n") or not text_b else "\n"
    ids = [str(x) for h in (a, b) for x in (h.metadata.get("chunk_ids") or [h.chunk_id])]
    metadata = {
        **first.metadata,
        "chunk_ids": ids,
        "chunk_indexes": sorted(set(chunk_indexes(a) + chunk_indexes(b))),
    }
    ends = [e for e in (a.end_line, b.end_line) if e is not None]
    return replace(
        first,
        text=a.text + joiner + text_b if text_b else a.text,
        start_line=a.start_line,
        end_line=max(ends) if ends else None,
        score=max(a.score, b.score),
        metadata=metadata,
    )


def _chunk_count(hit: Hit) -> int:
    return len(hit.metadata.get("chunk_ids") or [hit.chunk_id])


def diversify(hits: Sequence[Hit], *, top_k: int, per_file: int | None = None) -> list[Hit]:
    """Best first, at most `per_file` separate places per file; adjacent chunks merged into one."""
    per_file = PER_FILE if per_file is None else per_file
    kept: list[Hit] = []
    skipped: list[Hit] = []
    for hit in hits:
        if len(kept) >= top_k:
            break
        key = _file_key(hit)
        same = [i for i, k in enumerate(kept) if _file_key(k) == key]
        touching = next(
            (i for i in same if _adjacent(kept[i], hit) and _chunk_count(kept[i]) < MAX_MERGED), None
        )
        if touching is not None:
            kept[touching] = merge(kept[touching], hit)
            continue
        # A chunk next to a full merged range counts as a place of its own.
        if len(same) < per_file:
            kept.append(hit)
        else:
            skipped.append(hit)
    # The cap is a preference: when the candidates run out, capped hits fill the remaining slots.
    for hit in skipped:
        if len(kept) >= top_k:
            break
        kept.append(hit)
    return kept
