"""Conversation memory for chat sessions: the recent turns within a character budget."""

from __future__ import annotations

from collections import deque

from rag.models import Turn

MAX_TURNS = 10
MAX_CHARS = 8_000  # ≈ 2k tokens of history, leaving the context window to the sources


class ConversationMemory:
    def __init__(self, *, max_turns: int = MAX_TURNS, max_chars: int = MAX_CHARS) -> None:
        self._turns: deque[Turn] = deque(maxlen=max_turns)
        self.max_chars = max_chars

    def add(self, question: str, answer: str) -> None:
        self._turns.append(Turn(question, answer))

    def turns(self) -> list[Turn]:
        """The most recent turns that fit the budget, oldest first."""
        return fit_budget(list(self._turns), self.max_chars)


def fit_budget(turns: list[Turn], max_chars: int) -> list[Turn]:
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        size = len(turn.question) + len(turn.answer)
        if kept and used + size > max_chars:
            break
        kept.insert(0, turn)
        used += size
    return kept
