"""Block Kit for answers: Markdown → Slack mrkdwn, a linked sources section, feedback buttons.

The conversion uses slackify-markdown (markdown-it based) with one fix: text inside code
spans and blocks is entity-escaped, because Slack parses `<…>` and `&` even there, and
fenced blocks are kept verbatim (the library drops `#!` lines).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bot import messages
from rag.models import Answer, Hit
from rag.service import cited

SECTION_LIMIT = 3_000  # characters of text in one section block
MAX_BLOCKS = 50  # blocks in one message
FALLBACK_LIMIT = 3_000  # the notification / fallback `text`
STREAM_LIMIT = 3_500  # characters shown while streaming
MAX_SOURCES = 8

FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"


def escape(text: str) -> str:
    """Slack's three control characters as entities (for text that must show literally)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _renderer() -> type:
    from markdown_it.token import Token
    from slackify_markdown.slackify import SlackifyMarkdown

    class Renderer(SlackifyMarkdown):
        def code_inline(self, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
            return f"`{escape(tokens[idx].content)}`"

        def code_block(self, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
            return _fenced(tokens[idx].content)

        def fence(self, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
            return _fenced(tokens[idx].content)

    return Renderer


def _fenced(content: str) -> str:
    content = escape(content)
    if content and not content.endswith("\n"):
        content += "\n"  # an unterminated fence: a streamed answer cut mid-block
    return f"```\n{content}```\n"


_RENDERER: type | None = None


def to_mrkdwn(markdown: str) -> str:
    """GitHub-flavoured Markdown (what models write) as Slack mrkdwn."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = _renderer()
    return str(_RENDERER(markdown).slackify()).rstrip("\n")


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at line ends; a code block cut in two is
    closed at the end of one piece and reopened at the start of the next."""
    pieces: list[str] = []
    current = ""
    in_code = False
    for line in text.split("\n"):
        # A single line longer than a piece is cut hard.
        while len(line) > limit - 8:
            head, line = line[: limit - 8], line[limit - 8 :]
            current, in_code = _push(pieces, current, head, in_code, limit)
        current, in_code = _push(pieces, current, line, in_code, limit)
    if current.strip():
        pieces.append(current)
    return pieces or [""]


def _push(pieces: list[str], current: str, line: str, in_code: bool, limit: int) -> tuple[str, bool]:
    candidate = f"{current}\n{line}" if current else line
    if len(candidate) + (4 if in_code else 0) > limit and current:
        pieces.append(current + ("\n```" if in_code else ""))
        current = ("```\n" if in_code else "") + line
    else:
        current = candidate
    if line.strip().startswith("```"):
        in_code = not in_code
    return current, in_code


def _link_label(text: str) -> str:
    return escape(text).replace("|", "¦")


def source_line(index: int, hit: Hit) -> str:
    """`[1] <url|Title>` for pages, `[2] <url|path:10-42>` (or `path:10-42` in code) for code."""
    if hit.source == "code":
        label = hit.citation()
        ref = f"<{hit.url}|{_link_label(label)}>" if hit.url else f"`{escape(label)}`"
    else:
        title = hit.title or hit.url or "untitled page"
        ref = f"<{hit.url}|{_link_label(title)}>" if hit.url else escape(title)
    kind = "code" if hit.source == "code" else hit.source.capitalize()
    return f"[{index}] {ref} · _{kind}_"


def sources_text(hits: Sequence[Hit], *, answer_text: str = "", found: bool = True) -> str:
    """The numbered source list: the sources the answer cites first, each keeping its number."""
    if not hits:
        return messages.NO_SOURCES
    first = cited(answer_text, len(hits))
    order = first + [n for n in range(1, len(hits) + 1) if n not in first]
    lines = [source_line(n, hits[n - 1]) for n in order[:MAX_SOURCES]]
    header = messages.SOURCES_HEADER if found else messages.CLOSEST_MATCHES_HEADER
    return header + "\n" + "\n".join(lines)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def feedback_block(answer_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "feedback",
        "elements": [
            {
                "type": "button",
                "action_id": FEEDBACK_UP,
                "text": {"type": "plain_text", "text": messages.FEEDBACK_UP, "emoji": True},
                "value": answer_id,
            },
            {
                "type": "button",
                "action_id": FEEDBACK_DOWN,
                "text": {"type": "plain_text", "text": messages.FEEDBACK_DOWN, "emoji": True},
                "value": answer_id,
            },
        ],
    }


def note_text(answer: Answer, *, question_cut: bool = False, question_limit: int = 0) -> list[str]:
    notes: list[str] = []
    if question_cut:
        notes.append(messages.QUESTION_CUT.format(limit=question_limit))
    if answer.mode == "extractive" and answer.note and answer.note.startswith(("LLM failed", "empty")):
        notes.append(messages.LLM_FALLBACK_NOTE.format(reason=escape(answer.note)))
    return notes


def answer_blocks(answer: Answer, *, answer_id: str, notes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The whole answer as blocks: text sections, notes, sources, feedback buttons."""
    blocks: list[dict[str, Any]] = [_section(p) for p in split_text(to_mrkdwn(answer.text)) if p.strip()]
    blocks.extend(_context(n) for n in notes)
    blocks.append({"type": "divider"})
    sources = sources_text(answer.hits, answer_text=answer.text, found=answer.found)
    # Not found: the nearest passages are small print under "closest matches", not the answer's sources.
    blocks.extend((_section if answer.found else _context)(p) for p in split_text(sources))
    blocks.append(feedback_block(answer_id))
    return blocks


def paginate(blocks: list[dict[str, Any]], limit: int = MAX_BLOCKS) -> list[list[dict[str, Any]]]:
    """Blocks grouped into messages of at most `limit` blocks each."""
    return [blocks[i : i + limit] for i in range(0, len(blocks), limit)] or [[]]


def fallback_text(answer: Answer) -> str:
    """The plain `text` that notifications and old clients show."""
    text = to_mrkdwn(answer.text)
    return text if len(text) <= FALLBACK_LIMIT else text[: FALLBACK_LIMIT - 1] + "…"


def streaming_text(partial_markdown: str) -> str:
    text = to_mrkdwn(partial_markdown)
    if len(text) > STREAM_LIMIT:
        text = text[:STREAM_LIMIT] + "…"
    # An unclosed fence would swallow the suffix; close it for display.
    if len(re.findall(r"^```", text, flags=re.MULTILINE)) % 2:
        text += "\n```"
    return text + messages.STREAMING_SUFFIX
