"""`POST /v1/feedback`, authentication failures counted, and the emergency modes as the
gateway applies them (a controlled stop answers 503 with retry-after; degraded marks answers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import Workspace
from tests.gateway_support import (
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    running_gateway,
    wait_until,
)

from quality_gates.config import load_config
from quality_gates.gateway import emergency
from quality_gates.gateway import keys as api_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = gateway_workspace(tmp_path / "ws")
    yield workspace
    workspace.database.close_shared()


async def post(
    s: aiohttp.ClientSession, url: str, body: object, **headers: str
) -> tuple[int, dict[str, object]]:
    async with s.post(f"{url}/v1/feedback", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_feedback_is_stored_for_a_response_and_bad_bodies_are_named(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        _, _, answer = await post_chat(s, url, chat_body())
        status, body = await post(s, url, {"response_id": answer["id"], "score": 5})
        assert status == 201
        assert body["response_id"] == answer["id"]
        for bad, field in (
            ({"response_id": answer["id"], "score": 6}, "score"),
            ({"response_id": answer["id"], "score": True}, "score"),
            ({"score": 3}, "response_id"),
            ({"response_id": "x" * 65, "score": 3}, "response_id"),
            ({"response_id": "r", "score": 3, "comment": 7}, "comment"),
        ):
            status, body = await post(s, url, bad)
            assert status == 400, bad
            assert body["error"]["param"] == field
        async with s.post(f"{url}/v1/feedback", data=b"{not json") as resp:
            assert resp.status == 400
    rows = ws.conn.execute("SELECT request_id, score FROM feedback")
    assert [(r["request_id"], r["score"]) for r in rows] == [(answer["id"], 5)]


async def test_feedback_needs_a_client_key_once_keys_exist(ws: Workspace) -> None:
    _, secret = api_keys.create_key(ws.conn, name="web", role="client", actor="tester")
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        status, _ = await post(s, url, {"response_id": "r1", "score": 2})
        assert status == 401
        status, _ = await post(
            s, url, {"response_id": "r1", "score": 2}, Authorization=f"Bearer {secret}"
        )
        assert status == 201
        async with s.get(f"{url}/metrics") as resp:
            text = await resp.text()
        assert (
            'qg_gateway_auth_failures_total{environment="production",reason="missing_api_key"}'
            in text
        )
    assert ws.conn.scalar("SELECT key_name FROM feedback") == "web"


async def test_shutdown_answers_503_with_retry_after_and_degraded_marks_answers(
    ws: Workspace,
) -> None:
    config = load_config(ws.config_path).config
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        emergency.switch_on(
            ws.conn,
            config,
            environment="production",
            mode="shutdown",
            reason="security incident",
            actor="alice",
        )

        async def stopped() -> bool:
            return (await post_chat(s, url, chat_body()))[0] == 503

        await wait_until(stopped, timeout=3.0)
        status, headers, body = await post_chat(s, url, chat_body())
        assert status == 503
        assert headers["retry-after"] == "60"
        assert "security incident" in body["error"]["message"]
        emergency.switch_off(ws.conn, environment="production", actor="alice", reason="done")
        emergency.switch_on(
            ws.conn,
            config,
            environment="production",
            mode="degraded",
            reason="every provider is down",
            actor="alice",
        )

        async def degraded() -> bool:
            return (await post_chat(s, url, chat_body()))[1].get("x-qg-degraded") == "1"

        await wait_until(degraded, timeout=3.0)
        emergency.switch_off(ws.conn, environment="production", actor="alice", reason="back")
    shutdowns = ws.conn.scalar(
        "SELECT COUNT(*) FROM requests WHERE error_class = 'shutdown' AND status = 'rejected'"
    )
    assert shutdowns >= 1
    actions = [
        r["action"]
        for r in ws.conn.execute(
            "SELECT action FROM audit_log WHERE action LIKE 'emergency.%' ORDER BY seq"
        )
    ]
    assert actions == ["emergency.shutdown", "emergency.off", "emergency.degraded", "emergency.off"]
    assert emergency.current(ws.conn, "production") is None
