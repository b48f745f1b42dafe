"""Stored text is redacted: the secrets the review found stored verbatim (an AWS secret key,
`password=...`, a JWT, a PEM private key) and generic high-entropy tokens, through the
project's patterns and detect-secrets' maintained detectors; ordinary prose is left alone."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from tests.gateway_support import (
    FAST_GATEWAY,
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    running_gateway,
    wait_until,
)

from quality_gates.gateway import _redact
from quality_gates.gateway._redact import redact

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PASSWORD = "hunter2hunter"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM_BODY = "MIIEpAIBAAKCAQEA1c7x9z5Pad7OejecsQ0bu3aumQ2v"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nQ2v8a1c7x9\n-----END RSA PRIVATE KEY-----"
TOKEN = "ghp_R2x9bWQ3ZmRkN2Y0MTk2ZmQ0ZDhhNzQ1YzE2Yg"
SECRETS = (AWS_SECRET, PASSWORD, JWT, PEM_BODY, TOKEN)
PROMPT = (
    f"aws_secret_access_key = {AWS_SECRET}\nlogin with password={PASSWORD}\n"
    f"session {JWT}\n{PEM}\nand {TOKEN} is the token"
)


async def test_secrets_in_prompts_and_answers_are_never_stored(tmp_path: Path) -> None:
    extra = FAST_GATEWAY.replace(
        "  telemetry: {flush_interval: 50ms}",
        "  telemetry: {flush_interval: 50ms, store_text: true, max_text_chars: 100000}",
    )
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    providers = fakes()
    providers["bedrock"].text = f"Use {JWT} with password: {PASSWORD}"
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, _, _ = await post_chat(s, url, chat_body(text=PROMPT))
        assert status == 200
        await wait_until(lambda: ws.conn.scalar("SELECT COUNT(*) FROM requests") == 1)
    row = ws.conn.one("SELECT prompt, answer FROM requests")
    for secret in SECRETS:
        assert secret not in row["prompt"]
        assert secret not in row["answer"]
    assert "password=[SECRET]" in row["prompt"]  # the key's name stays, to read the log by
    assert "[SECRET]" in row["answer"]


@pytest.mark.parametrize(
    "prose",
    [
        "The internationalization of telecommunications infrastructure requires planning.",
        "See https://example.com/docs/getting-started/installation for the guide.",
        "What is the capital of France? Answer in one word.",
        "Deployment bedrock/claude-3-5-haiku answered in 412 ms at 2026-12-05T01:02:03Z.",
    ],
)
def test_ordinary_text_is_left_alone(prose: str) -> None:
    assert redact(prose) == prose


def test_detect_secrets_finds_what_the_project_patterns_do_not() -> None:
    pytest.importorskip("detect_secrets")
    # A basic-auth URL: no pattern of ours knows it; detect-secrets' BasicAuthDetector does.
    text = "clone https://deploy:s3cr3tPassw0rd@git.example.com/repo.git"
    assert "s3cr3tPassw0rd" not in redact(text)
    assert "s3cr3tPassw0rd" in _redact.PATTERNS[0][1].sub("", text)
