"""Every sentence the bot says to people, in one place (wording, tone and translations live here)."""

from __future__ import annotations

WORKING_REACTION = "hourglass_flowing_sand"
PLACEHOLDER = "_:hourglass_flowing_sand: Looking through the docs and the code…_"
STREAMING_SUFFIX = " :writing_hand:"

SOURCES_HEADER = "*Sources*"
#: Above the nearest passages of an answer whose question the index does not cover.
CLOSEST_MATCHES_HEADER = "*Closest matches* (they do not answer the question)"
NO_SOURCES = "_No indexed source matched this question._"
FEEDBACK_PROMPT = "Was this helpful?"
FEEDBACK_UP = "👍 Helpful"
FEEDBACK_DOWN = "👎 Not helpful"
FEEDBACK_UP_LABEL = "Mark this answer as helpful"
FEEDBACK_DOWN_LABEL = "Mark this answer as not helpful"
FEEDBACK_THANKS = "Thanks for the feedback — it is recorded with the question and the sources."

EMPTY_QUESTION = "Hi! Ask me a question about the docs or the code, e.g. _where is the ingest lock taken?_"
QUESTION_CUT = "_Your question was long, so I used only its first {limit:,} characters._"
LLM_FALLBACK_NOTE = (
    ":warning: The language model could not answer ({reason}), so these are the best passages."
)
RATE_LIMITED = (
    "You're asking faster than I can look things up :sweat_smile: — please try again in about {seconds} s."
)
OVERLOADED = "I'm answering a lot of questions right now — please ask again in a minute."
INDEX_UNAVAILABLE = (
    "The index is unavailable right now (its store cannot be reached), so I can't look anything up. "
    "Please try again in a few minutes."
)
ERROR = "Sorry, something went wrong while answering. (error id `{error_id}` — the logs have the details)"

INGEST_USAGE = (
    "Usage: `/ragingest [TARGET ...|status]` — a target is a source name, a kind (`code`, "
    "`confluence`) or `all` (the default: every configured source); `status` shows the index "
    "size and the last runs. Configured sources: {names}."
)
INGEST_ACK = "Got it: `/ragingest {arg}` — working on it…"
INGEST_STATUS_ACK = "Fetching the index status…"
INGEST_REFUSED = (
    "Sorry, only the users listed in RAGINGEST_ALLOWED_USERS (or, when that is unset, workspace "
    "admins and owners) may start an ingest. `/ragingest status` is open to everyone."
)
INGEST_BUSY = "Not started: {reason}. I'll leave it to finish; try `/ragingest status` later."
INGEST_STARTED = "Ingest of {targets} started; I'll report back here when it is done."
INGEST_FAILED = "The ingest could not run: {reason}"
INGEST_ERROR = "Sorry, the ingest failed unexpectedly. (error id `{error_id}` — the logs have the details)"
INGEST_DONE = "Ingest finished{took}:\n{lines}"
INGEST_REMOVED_LINE = (
    "• *{source_name}*: removed — no longer configured; {documents_deleted} documents deleted"
)
INGEST_REPORT_LINE = (
    "• *{source_name}*: {status} — {documents_seen} seen, {documents_added} added, {documents_updated} "
    "updated, {documents_deleted} deleted, {documents_unchanged} unchanged; {chunks_embedded} chunks "
    "embedded in {seconds:.1f} s{errors}"
)

EXTERNAL_USER = "Sorry, I only answer people in our own organisation."
SHARED_CHANNEL = (
    "This channel is shared with another organisation, so I don't answer from the docs and code "
    "here. Ask me in a direct message instead."
)
CHANNEL_NOT_ALLOWED = "I'm not enabled in this channel. Ask me in a direct message instead."
STATUS_WRITING = "writing…"

# ----- private answers, sharing, escalation (bot/private.py, bot/escalation.py) ---------------
SHARE_BUTTON = "Share in thread"
ESCALATE_BUTTON = "Ask an expert"
SHARED_BY = "_Shared by <@{user}>_"
PRIVATE_NOTE = "_Only you can see this answer. *Share in thread* posts it for everyone here._"
PRIVATE_WORKING = (
    "_:hourglass_flowing_sand: Looking through the docs and the code (only you will see the answer)…_"
)
SHARE_GONE = "That answer is too old to share (answers are kept for RAGBOT_RETENTION_DAYS)."
SHARE_DONE_ALREADY = "That answer has already been shared."
SHARE_NOT_YOURS = "Only the person who asked can share this answer."
SHARE_REFUSED_SOURCES = (
    "I can't share this answer here: it cites {names}, which this channel may not see. "
    "Keep it to yourself, or ask again here to get an answer from what this channel may see."
)
SHARE_REFUSED_READERS = (
    "I can't share this answer here: it cites Confluence pages that not everyone here may read. "
    "Keep it to yourself, or ask again here to get an answer from what everyone here may read."
)
SHARE_REFUSED_CHANNEL = "I can't share answers in this channel ({reason})."
SHARE_NOT_IN_CHANNEL = (
    "I'm not a member of this channel, so I can't share the answer here. Invite me with `/invite @ragbot`."
)
RAGBOT_USAGE = (
    "Usage: `/ragbot QUESTION` — I answer privately (only you see it), with a button to share the answer."
)
ESCALATED = "{asker} would like an expert's eyes on this: {people}{why}"
ESCALATE_NOBODY = (
    "I don't know who owns what this answer cites (no CODEOWNERS entry, page editor or configured "
    "`experts` I can reach in Slack). Ask in the team's channel, or an admin can add `experts` to the source."
)
ESCALATE_DONE_ALREADY = "An expert has already been asked on this question."
NOT_FOUND_PRIVATE_OFFER = (
    "I couldn't find this in the indexed docs and code, so I stayed quiet in the channel. "
    "Want a person to look at it?"
)

# ----- Slack's agent surface (bot/handlers.py) -----------------------------------------------
PROMPTS_TITLE = "Ask about our docs and code, for example:"
SEARCHED = "Searched {names}"

# ----- App Home (bot/home.py) ----------------------------------------------------------------
HOME_TITLE = "ragbot: answers from our docs and code"
HOME_EXTERNAL = (
    "I only answer people in our own organisation, so there is nothing to show here. "
    "Ask someone from the team that invited you."
)
HOME_HOW_TO_ASK = (
    "*How to ask*\n"
    "• Mention me in a channel — `@ragbot where is the deploy script?` — I answer in the thread, "
    "and follow-ups in that thread need no mention.\n"
    "• Send me a direct message, or use the assistant panel.\n"
    "• `/ragbot QUESTION` answers privately; *Share in thread* posts the answer for everyone.\n"
    "• Every answer cites its sources; *Ask an expert* brings in the people who own them."
)
HOME_SOURCES = "What I know"
HOME_NO_SOURCES = "_No source is configured yet._"
HOME_MORE_SOURCES = "…and {count} more."
HOME_RECENT = "Your recent questions"
HOME_NO_QUESTIONS = "_You haven't asked me anything yet._"
HOME_INGEST_BUTTON = "Update the index now"
