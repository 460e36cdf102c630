"""Tokens and passwords never appear in log output, whatever logger or format carries them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from rag.logs import configure_logging

BOT_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
APP_TOKEN = "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef0123456789"
API_TOKEN = "plain-api-token-with-no-known-shape-42"
CONFLUENCE_PASSWORD = "Tr0ub4dor&3-confluence"
LITELLM_KEY = "local-llm-key-0987654321"

SECRETS = [BOT_TOKEN, APP_TOKEN, API_TOKEN, CONFLUENCE_PASSWORD, LITELLM_KEY]


@pytest.fixture
def configured(make_settings: Any) -> Iterator[Any]:
    def setup(log_format: str = "text") -> None:
        configure_logging(
            make_settings(
                slack_bot_token=BOT_TOKEN,
                slack_app_token=APP_TOKEN,
                ragbot_api_token=API_TOKEN,
                confluence_password=CONFLUENCE_PASSWORD,
                litellm_api_key=LITELLM_KEY,
                log_format=log_format,
                log_level="DEBUG",
            )
        )

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield setup
    root.handlers[:], root.level = saved


def emit_everything() -> None:
    log = logging.getLogger("some.library")
    log.info("connecting with token %s", BOT_TOKEN)
    log.info("socket mode app token: " + APP_TOKEN)  # noqa: G003 — callers do this; it must be caught too
    log.warning("request headers: {'Authorization': 'Bearer %s'}", API_TOKEN)
    log.warning("Authorization: Bearer sometokenthatisnotconfigured123")
    log.error("login failed for user bob with password %s", CONFLUENCE_PASSWORD)
    log.info("calling https://bob:%s@confluence.example.com/wiki", "urlpass-secret-99")
    log.info("litellm kwargs %s", {"api_key": LITELLM_KEY, "model": "gpt"})
    log.info("found a key in a page: AKIAIOSFODNN7EXAMPLE")
    log.info("unconfigured slack token xoxp-2222222222-3333333333-abcdefabcdef")
    try:
        raise RuntimeError(f"upstream rejected {BOT_TOKEN}")
    except RuntimeError:
        log.exception("call failed")


UNSEEN = [
    *SECRETS,
    "sometokenthatisnotconfigured123",
    "urlpass-secret-99",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxp-2222222222-3333333333-abcdefabcdef",
]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_reach_the_log_output(
    configured: Any, capfd: pytest.CaptureFixture[str], log_format: str
) -> None:
    configured(log_format)
    emit_everything()
    err = capfd.readouterr().err
    assert err.count("\n") >= 10  # every record was written
    for secret in UNSEEN:
        assert secret not in err, secret
    assert "[REDACTED]" in err
    # The useful part of each line survives.
    assert "connecting with token" in err
    assert "confluence.example.com/wiki" in err
    assert "RuntimeError: upstream rejected" in err  # the traceback is kept, cleaned
    if log_format == "json":
        records = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert any("exception" in r for r in records)


def test_ordinary_messages_are_left_alone(configured: Any, capfd: pytest.CaptureFixture[str]) -> None:
    configured()
    message = "ingested 12 documents (token limit 256) in 3.2s from local repository /srv/repo"
    logging.getLogger("rag.indexing.ingest").info(message)
    assert message in capfd.readouterr().err


def test_log_level_applies(make_settings: Any, capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(make_settings(log_level="WARNING"))
        logging.getLogger("rag.x").info("quiet info line")
        logging.getLogger("rag.x").warning("loud warning line")
    finally:
        root.handlers[:], root.level = saved
    err = capfd.readouterr().err
    assert "loud warning line" in err
    assert "quiet info line" not in err
