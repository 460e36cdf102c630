"""Does a support channel's message ask something? (`[[slack.channel]] answer = "questions"`)

A message is a question when it carries a question mark in its own words (not inside code, a
quote or a link), opens like a question ("how do I…", "is there…", "does anyone know…"), or
asks for something ("explain…", "help me…", "I'm trying to…", "looking for…"). Greetings,
thanks, acknowledgements and one-word lines are chat, not questions. The rule is cheap and
deliberately cautious: a question it misses can still be asked with a mention; a chat line it
took for a question is answered only when the index has an answer, and silently dropped
otherwise.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import messages

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_QUOTE = re.compile(r"^\s*(>|&gt;).*$", re.MULTILINE)
_LINK = re.compile(r"<[^>\s]+>|https?://\S+")
_EMOJI = re.compile(r":[a-z0-9_+\-']+:")
_WORD = re.compile(r"[A-Za-z0-9_'’\-./]+")

#: First words that open a question ("how", "is", "does anyone know", …).
_OPENERS = frozenset(
    [
        "how",
        "what",
        "when",
        "where",
        "why",
        "which",
        "who",
        "whom",
        "whose",
        "is",
        "are",
        "am",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "shall",
        "would",
        "will",
        "has",
        "have",
        "had",
        "may",
        "might",
        "must",
        "anyone",
        "anybody",
        "someone",
        "somebody",
    ]
)
#: Openings that ask for something without a question mark.
_REQUESTS = re.compile(
    r"^(please\s+)?(explain|describe|show me|tell me|help( me)?|find|point me|walk me through|"
    r"remind me|any (idea|ideas|pointers|docs)|need help|i need( help| to know)?|"
    r"i'?m (trying|looking|not sure)|"
    r"i am (trying|looking|not sure)|looking for|trying to|not sure (how|why|where|what|if|whether)|"
    r"i (wonder|want to know|can'?t (find|figure))|wondering|question:|q:)\b",
    re.IGNORECASE,
)
#: Chat: greetings, thanks, acknowledgements (the whole message, give or take punctuation).
_CHAT = re.compile(
    r"^(hi|hey|hello|yo|morning|good (morning|afternoon|evening)|thanks?( a lot| so much)?( all| everyone)?|"
    r"thank you( all| so much)?|thx|ty|cheers|ok(ay)?|k|cool|nice|great|awesome|lgtm|\+1|done|"
    r"got it|makes sense|sounds good|will do|np|no worries|welcome|bye|see you|brb|lol|haha)\b[\s!.,]*"
    r"(@?\w+)?[\s!.,]*$",
    re.IGNORECASE,
)


def own_words(text: str) -> str:
    """The text without code, quoted lines, links and emoji: what the person wrote themselves."""
    text = _CODE.sub(" ", text)
    text = _QUOTE.sub(" ", text)
    text = _LINK.sub(" ", text)
    return _EMOJI.sub(" ", text)


def is_question(text: str) -> bool:
    """Whether a top-level message asks something the bot could answer."""
    words_text = own_words(text).strip()
    words = _WORD.findall(words_text)
    if len(words) < 2 or _CHAT.match(words_text):
        return False
    if "?" in words_text:
        return True
    first = words[0].lower().strip("'’")
    if first in _OPENERS and len(words) >= 3:
        return True
    return bool(_REQUESTS.match(words_text))


@dataclass
class Question:
    """One question on its way to an answer, and how that answer is to be shown."""

    channel: str
    ts: str
    user: str
    text: str
    reply_thread: str | None
    memory_key: str
    team: str | None
    dm: bool
    #: asked in a support channel (`answer = "questions"`) without addressing the bot: answered
    #: only when the index has the answer, silent otherwise
    unprompted: bool = False
    #: answered with a message only the asker sees (`private = true`, or `/ragbot`)
    private: bool = False
    #: `/ragbot`'s response_url (its replies), None for a message
    respond: Any = None


def suggested_prompts(names: list[str], limit: int = 4) -> list[dict[str, str]]:
    """Prompts for the agent DM, one per configured source (Slack shows up to 4)."""
    return [
        {"title": f"What's in {name}?", "message": f"What is {name} about, and where should I start reading?"}
        for name in names[:limit]
    ]


def set_suggested_prompts(client: WebClient, channel: str, names: list[str]) -> None:
    """The agent DM's Messages tab opened (agent_view): prompts drawn from the sources, pinned
    at the top of the tab (assistant.threads.setSuggestedPrompts without thread_ts)."""
    prompts = suggested_prompts(names)
    if not channel or not prompts:
        return
    try:
        client.assistant_threads_setSuggestedPrompts(
            channel_id=channel, title=messages.PROMPTS_TITLE, prompts=prompts
        )
    except Exception as e:  # a courtesy: the conversation works without them
        log.info("could not set suggested prompts in %s: %s", channel, e)
