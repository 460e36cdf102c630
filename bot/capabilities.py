"""What Slack refused, and why: a feature this app lacks for good, or a failure for this once.

An error that means "this app or workspace does not have the feature" (missing_scope,
not_allowed_token_type, feature_not_enabled, method_deprecated, …) switches native streaming or
the status line off for the process, through `Capabilities`, logged once; anything else (a 429
after retries, a network blip, not_in_channel) costs only the answer at hand.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

#: Slack errors meaning "this feature is not available to this app or workspace" (its scopes, its
#: token type, its plan, a method Slack has retired): the only ones remembered for the process.
UNAVAILABLE_ERRORS = frozenset(
    {
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "method_deprecated",
        "deprecated_endpoint",
        "feature_not_enabled",
        "not_enabled",
        "unknown_method",
        "team_not_allowed",
        "team_access_not_granted",
        "access_denied",
        "accesslimited",
        "not_allowed",
        "ekm_access_denied",
    }
)


def slack_error(error: BaseException) -> str | None:
    """The `error` string of a Slack API error response (None for a network failure)."""
    response = getattr(error, "response", None)
    try:
        return str(response["error"]) if response is not None and response.get("error") else None
    except (TypeError, AttributeError, KeyError):
        return None


def unavailable(error: BaseException) -> bool:
    """Whether an error says the feature is not available to this app (not "not now")."""
    return slack_error(error) in UNAVAILABLE_ERRORS


def retry_after(error: BaseException) -> float | None:
    """Seconds Slack asks to wait (a 429's Retry-After), or None when the error is not a rate limit."""
    response = getattr(error, "response", None)
    limited = response is not None and getattr(response, "status_code", None) == 429
    if not limited and slack_error(error) != "ratelimited":
        return None
    headers = getattr(response, "headers", None) or {}
    for key, value in dict(headers).items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value if not isinstance(value, list) else value[0]))
            except (TypeError, ValueError):
                break
    return 1.0


def without_retries(client: WebClient) -> WebClient:
    """The same client (class, token, base URL) without retry handlers: for progress calls that
    must never sleep (a 429 there skips one update instead of stalling the model's tokens)."""
    return type(client)(
        token=client.token, base_url=client.base_url, timeout=client.timeout, retry_handlers=[]
    )


class Capabilities:
    """What this workspace refused for good, remembered for the process (one Handlers per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.streaming = True
        self.status = True

    def refuse(self, what: str, error: BaseException) -> bool:
        """Switch `what` off when `error` says the feature is unavailable; True when it is off."""
        if not unavailable(error):
            log.warning("Slack could not %s this time (%s); will try again next time", _DOING[what], error)
            return False
        with self._lock:
            if not getattr(self, what):
                return True
            setattr(self, what, False)
        fallback = "chat.update streaming" if what == "streaming" else "the ⏳ reaction"
        log.warning("Slack refused %s (%s); using %s from now on", what, error, fallback)
        return True


_DOING = {"streaming": "start a native stream", "status": "set the thread status"}
