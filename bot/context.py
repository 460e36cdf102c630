"""What the Slack features (private answers, escalation, App Home) need from the bot: a
Protocol that `bot.handlers.Handlers` satisfies, so those modules never import the handlers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.access import Access
    from bot.commands import Commands
    from bot.memory import AnswerLog, ThreadMemory
    from bot.questions import Question
    from bot.readers import Readers
    from bot.threads import Threads
    from rag.config import Settings
    from rag.models import Answer, Reader
    from rag.service import RagService


class Escalating(Protocol):
    """bot.escalation.Escalation, as the other features use it."""

    def offered(self, channel: str, answer: Answer, *, dm: bool) -> bool: ...

    def offer_when_unanswered(self, q: Question, answer: Answer) -> None: ...


class Replying(Protocol):
    """bot.private.PrivateAnswers, as the other features use it."""

    def reply(
        self, respond: Any, user: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...


class BotContext(Protocol):
    settings: Settings
    service: RagService
    client: WebClient
    quick: WebClient  # the same client without retries (progress calls)
    bot_user_id: str | None
    memory: ThreadMemory
    answers: AnswerLog
    access: Access | None
    threads: Threads
    intake: ThreadPoolExecutor
    question_limit: int
    top_k: int
    commands: Commands
    readers: Readers

    @property
    def escalation(self) -> Escalating: ...

    @property
    def private(self) -> Replying: ...

    def guard(self, work: Callable[..., None], *args: Any, **kwargs: Any) -> None: ...

    def scope_for(self, question: Question) -> tuple[str, ...] | None: ...

    def reader_for(self, question: Question) -> Reader | None: ...
