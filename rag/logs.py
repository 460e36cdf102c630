"""Logging set-up for every entry point: level and format from Settings, to stderr, secrets redacted."""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from rag.config import Settings
from rag.secrets import REDACTED, redact

#: Settings whose values are secrets: never logged, whatever message they end up in.
SECRET_SETTINGS = (
    "confluence_password",
    "confluence_token",
    "litellm_api_key",
    "slack_bot_token",
    "slack_app_token",
    "ragbot_api_token",
)

# Patterns for what a log line may carry even when no setting holds it (a header echoed in an
# error, a token pasted into a URL). rag/secrets.py adds the provider-specific token patterns.
LOG_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+"), REDACTED),  # Slack bot/user/... tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),  # Slack app-level token
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=\-]{4,}", re.IGNORECASE), rf"\1{REDACTED}"),
    (
        re.compile(r"\b(Authorization[\"']?\s*[:=]\s*[\"']?\w+\s+)[^\s\"',}]+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
)


class RedactingFilter(logging.Filter):
    """Rewrites each record so secret values never reach a handler's output.

    The message is rendered (msg % args) and redacted; the traceback, when there is one, is
    rendered and redacted too, so formatters print the cleaned text.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._busy = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedactingFilter:
        values: list[str | None] = [getattr(settings, name) for name in SECRET_SETTINGS]
        return cls(values)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in LOG_PATTERNS:
            text = pattern.sub(replacement, text)
        if getattr(self._busy, "active", False):
            return text  # a log call from inside the detectors: the fixed patterns above suffice
        self._busy.active = True
        try:
            return redact(text)[0]
        finally:
            self._busy.active = False

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, cleaned
            message = f"{record.msg} {record.args}"
        record.msg = self.clean(message)
        record.args = None
        if record.exc_info:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False)


_AST_LOCK = threading.RLock()


def _ast_parse_is_racy(version: tuple[int, int, int]) -> bool:
    # gh-106905: fixed in 3.11.8 and 3.12.2.
    return version < (3, 11, 8) or (3, 12) <= version < (3, 12, 2)


def serialize_ast_parse() -> None:
    """Make `ast.parse` one thread at a time on the Pythons that need it.

    CPython 3.11.0–3.11.7 and 3.12.0–3.12.1 keep the AST constructor's recursion depth in
    interpreter-wide state (gh-106905). Two threads parsing at once can fail with "SystemError: AST
    constructor recursion depth mismatch". Formatting a traceback parses source on 3.11 (for its
    ^^^ markers). So two threads that log an exception together can lose both lines, and in
    pytest they can kill the run. Calling this again does nothing.
    """
    if not _ast_parse_is_racy(sys.version_info[:3]) or getattr(ast.parse, "_ragbot_serialized", False):
        return
    parse: Any = ast.parse

    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return parse(*args, **kwargs)

    serialized._ragbot_serialized = True  # type: ignore[attr-defined]
    ast.parse = serialized


def configure_logging(settings: Settings) -> None:
    serialize_ast_parse()
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # On the handler, not a logger: handler filters see every propagated record, whichever
    # library logged it.
    handler.addFilter(RedactingFilter.from_settings(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Third-party chatter that drowns the useful lines at INFO.
    for noisy in ("httpx", "httpx2", "openai", "chromadb", "litellm"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for noisy in ("urllib3", "transformers", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # litellm prints a failed call at ERROR through its own handler ("LiteLLM:ERROR: main.py:567 -
    # Error in rerank: ..."); ragbot reports every such failure in its own words (the answer's
    # note, the reranker's warning, the ingest report), so litellm's lines show at DEBUG only.
    logging.getLogger("LiteLLM").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)
