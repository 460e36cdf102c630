"""Secret redaction before anything is embedded or stored, built on detect-secrets' detectors."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# detect-secrets' token detectors whose patterns are specific enough to run over whole texts.
# (The high-entropy and Twilio/Artifactory/Mailchimp ones flag hashes and ids in ordinary code.)
TOKEN_DETECTORS = (
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "JwtTokenDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
)

PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Patterns detect-secrets lacks, in the same spirit (provider-prefixed, hard to hit by chance).
EXTRA_TOKENS = (
    re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google API key
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}\b"),  # OpenAI / Anthropic style keys
    re.compile(r"\bxapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+\b", re.IGNORECASE),  # Slack app-level token
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
)
# A cheap prefilter: only lines that mention one of these go through the keyword detector.
KEYWORD_HINT = re.compile(r"pass|pwd|secret|token|api.?key|auth|cred|private", re.IGNORECASE)


@lru_cache(maxsize=1)
def _token_patterns() -> tuple[re.Pattern[str], ...]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    patterns: list[re.Pattern[str]] = []
    detectors: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
    for detector in detectors.values():
        if detector.__name__ in TOKEN_DETECTORS:
            patterns.extend(detector().denylist)
    return tuple(patterns)


@lru_cache(maxsize=1)
def _keyword_detector() -> Any:
    from detect_secrets.plugins.keyword import KeywordDetector

    return KeywordDetector()


def _redact_match(match: re.Match[str]) -> str:
    whole = match.group(0)
    # Where the pattern captures the secret itself (basic-auth password, AWS secret key),
    # replace only that part so the surrounding text stays readable.
    if match.re.groups >= 1:
        secret = match.group(1)
        if secret and len(secret) >= 8:
            return whole.replace(secret, REDACTED)
    return REDACTED


def redact(text: str) -> tuple[str, int]:
    """The text with secret values replaced by [REDACTED], and how many were replaced."""
    count = 0

    def sub(pattern: re.Pattern[str], value: str) -> str:
        nonlocal count
        new, n = pattern.subn(_redact_match, value)
        count += n
        return new

    text = sub(PRIVATE_KEY_BLOCK, text)
    for pattern in _token_patterns():
        text = sub(pattern, text)
    for pattern in EXTRA_TOKENS:
        text = sub(pattern, text)

    if KEYWORD_HINT.search(text):
        detector = _keyword_detector()
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if not KEYWORD_HINT.search(line) or len(line) > 2000:
                continue
            for secret in detector.analyze_line(filename="x.py", line=line, line_number=i + 1):
                value = secret.secret_value
                if value and value != REDACTED and len(value) >= 4 and value in line:
                    line = line.replace(value, REDACTED)
                    count += 1
            lines[i] = line
        text = "\n".join(lines)
    return text, count
