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

FEEDBACK_UP = "feedback_up"  # the classic 👍/👎 buttons (where Slack refuses feedback_buttons)
FEEDBACK_DOWN = "feedback_down"
FEEDBACK = "ragbot_feedback"  # Slack's native feedback_buttons; values "up:<answer id>" / "down:<answer id>"
SHARE = "ragbot_share"  # a private answer's "Share in thread"
ESCALATE = "ragbot_escalate"  # "Ask an expert"


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


def _button(action_id: str, text: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def feedback_block(answer_id: str) -> dict[str, Any]:
    """Slack's native feedback buttons (a `context_actions` block with `feedback_buttons`)."""
    return {
        "type": "context_actions",
        "block_id": "feedback",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK,
                "positive_button": {
                    "text": {"type": "plain_text", "text": messages.FEEDBACK_UP},
                    "value": f"up:{answer_id}",
                    "accessibility_label": messages.FEEDBACK_UP_LABEL,
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": messages.FEEDBACK_DOWN},
                    "value": f"down:{answer_id}",
                    "accessibility_label": messages.FEEDBACK_DOWN_LABEL,
                },
            }
        ],
    }


def classic_feedback_block(answer_id: str) -> dict[str, Any]:
    """The 👍/👎 as two ordinary buttons, for clients and workspaces without feedback_buttons."""
    return {
        "type": "actions",
        "block_id": "feedback",
        "elements": [
            _button(FEEDBACK_UP, messages.FEEDBACK_UP, answer_id),
            _button(FEEDBACK_DOWN, messages.FEEDBACK_DOWN, answer_id),
        ],
    }


def has_native_feedback(blocks: Any) -> bool:
    return isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "context_actions" for b in blocks
    )


def classic_feedback(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`blocks` with native feedback buttons turned into the classic ones (same answer id)."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") != "context_actions":
            out.append(block)
            continue
        for element in block.get("elements") or []:
            if element.get("type") == "feedback_buttons":
                value = str((element.get("positive_button") or {}).get("value") or "")
                out.append(classic_feedback_block(value.split(":", 1)[-1]))
    return out


def actions_block(answer_id: str, actions: Sequence[str]) -> dict[str, Any]:
    """The answer's buttons: Share in thread (a private answer), Ask an expert."""
    buttons = []
    if "share" in actions:
        buttons.append(_button(SHARE, messages.SHARE_BUTTON, answer_id, style="primary"))
    if "escalate" in actions:
        buttons.append(_button(ESCALATE, messages.ESCALATE_BUTTON, answer_id))
    return {"type": "actions", "block_id": "answer_actions", "elements": buttons}


def note_text(answer: Answer, *, question_cut: bool = False, question_limit: int = 0) -> list[str]:
    notes: list[str] = []
    if question_cut:
        notes.append(messages.QUESTION_CUT.format(limit=question_limit))
    if answer.mode == "extractive" and answer.note and answer.note.startswith(("LLM failed", "empty")):
        notes.append(messages.LLM_FALLBACK_NOTE.format(reason=escape(answer.note)))
    return notes


def answer_blocks(
    answer: Answer,
    *,
    answer_id: str,
    notes: Sequence[str] = (),
    actions: Sequence[str] = (),
    shared_by: str | None = None,
) -> list[dict[str, Any]]:
    """The whole answer as blocks: text sections, notes, sources, the `actions` buttons ("share",
    "escalate"), feedback buttons; `shared_by` (a user id) credits whoever shared a private answer."""
    blocks: list[dict[str, Any]] = [_section(p) for p in split_text(to_mrkdwn(answer.text)) if p.strip()]
    blocks.extend(_context(n) for n in notes)
    blocks.append({"type": "divider"})
    sources = sources_text(answer.hits, answer_text=answer.text, found=answer.found)
    # Not found: the nearest passages are small print under "closest matches", not the answer's sources.
    blocks.extend((_section if answer.found else _context)(p) for p in split_text(sources))
    if shared_by:
        blocks.append(_context(messages.SHARED_BY.format(user=shared_by)))
    if actions:
        blocks.append(actions_block(answer_id, actions))
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


def vote_of(action: dict[str, Any]) -> tuple[str, str] | None:
    """(vote, answer id) of a feedback button: native `up:<answer id>`, or the classic buttons."""
    value = str(action.get("value", ""))
    if action.get("action_id") == FEEDBACK:
        vote, _, answer_id = value.partition(":")
    else:
        vote, answer_id = ("up" if action.get("action_id") == FEEDBACK_UP else "down"), value
    return (vote, answer_id) if vote in ("up", "down") else None
