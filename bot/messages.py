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
