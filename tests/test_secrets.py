"""Secret values never reach an embedding or a stored chunk."""

from __future__ import annotations

import pytest

from rag.secrets import REDACTED, redact

PLANTED = {
    "aws access key": 'aws_key = "AKIAIOSFODNN7EXAMPLE"',
    "aws secret key": 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    "slack bot token": "token: xoxb-123456789012-1234567890123-abcdefghijABCDEFGHIJklmn",
    "github token": "export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "password assignment": 'password = "hunter2secret"',
    "json password": '"password": "correct horse battery"',
    "api key assignment": 'API_KEY="sk-abcdef1234567890abcdef1234567890abcdef1234567890"',
    "url credentials": 'db = "postgres://admin:s3cr3tpassw0rd@db.internal:5432/app"',
}
SECRET_VALUES = [
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "xoxb-123456789012-1234567890123-abcdefghijABCDEFGHIJklmn",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "hunter2secret",
    "correct horse battery",
    "sk-abcdef1234567890abcdef1234567890abcdef1234567890",
    "s3cr3tpassw0rd",
]


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_planted_secret_is_redacted(kind: str) -> None:
    out, count = redact(PLANTED[kind])
    assert count >= 1
    assert REDACTED in out
    assert not any(value in out for value in SECRET_VALUES)


def test_private_key_block_is_removed_whole() -> None:
    text = (
        "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabcdef\n"
        "-----END RSA PRIVATE KEY-----\nafter"
    )
    out, _ = redact(text)
    assert "MIIEpAIBAAKCAQEA" not in out and "abcdef" not in out
    assert out.startswith("before\n") and out.endswith("\nafter")


def test_ordinary_code_is_left_alone() -> None:
    code = (
        "def check_password(password):\n"
        "    token = request.headers.get('Authorization')\n"
        "    digest = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n"
        "    return verify(token, password)\n"
    )
    out, count = redact(code)
    assert out == code
    assert count == 0
