"""`[n]` citation markers in a generated answer: drop the ones that point at no source, list the cited."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

# Fenced blocks and inline code spans are left alone: `items[3]` is code, not a citation.
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
_MARKER = re.compile(r"\[(\d{1,3})\]")


def _prose_parts(text: str) -> list[tuple[str, bool]]:
    """The text cut into (part, is_code) pieces, in order."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in _CODE.finditer(text):
        parts.append((text[pos : m.start()], False))
        parts.append((m.group(0), True))
        pos = m.end()
    parts.append((text[pos:], False))
    return parts


def clean_citations(text: str, n_sources: int) -> tuple[str, list[int]]:
    """The text without markers outside 1..n_sources (outside code), and the numbers removed."""
    removed: list[int] = []

    def drop(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if 1 <= n <= n_sources:
            return m.group(0)
        removed.append(n)
        return ""

    out = []
    for part, is_code in _prose_parts(text):
        if is_code:
            out.append(part)
            continue
        cleaned = _MARKER.sub(drop, part)
        # A removed marker can leave " ." or a double space behind.
        out.append(
            re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned))
            if cleaned != part
            else part
        )
    if removed:
        log.warning("Removed citation markers that point at no source: %s (%d sources)", removed, n_sources)
    return "".join(out), removed


def cited(text: str, n_sources: int) -> list[int]:
    """Source numbers (1-based) the text cites outside code, in order of first citation."""
    seen: list[int] = []
    for part, is_code in _prose_parts(text):
        if is_code:
            continue
        for m in _MARKER.finditer(part):
            n = int(m.group(1))
            if 1 <= n <= n_sources and n not in seen:
                seen.append(n)
    return seen
