"""The gateway's /metrics: every answered request counted with its status and error class,
and an exposition `promtool check metrics` accepts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Workspace
from tests.gateway_support import (
    Cut,
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    running_gateway,
)

from quality_gates.errors import ServerError
from quality_gates.gateway import keys as api_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = gateway_workspace(tmp_path / "ws")
    yield workspace
    workspace.database.close_shared()


def samples(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name`, by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name
    }


def total(found: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    """The sum of the samples whose labels include `labels`."""
    return sum(v for k, v in found.items() if set(labels.items()) <= set(k))


async def test_refused_and_invalid_requests_are_counted_with_status_and_error_class(
    ws: Workspace,
) -> None:
    _, secret = api_keys.create_key(ws.conn, name="svc", role="client", actor="tester")
    auth = {"Authorization": f"Bearer {secret}"}
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        assert (await post_chat(s, url, chat_body()))[0] == 401
        assert (await post_chat(s, url, chat_body(), Authorization="Bearer nope"))[0] == 401
        async with s.get(f"{url}/v1/models") as resp:
            assert resp.status == 401
        async with s.get(f"{url}/v1/models", headers=auth) as resp:
            assert resp.status == 200
        async with s.post(f"{url}/v1/chat/completions", data=b"{not json", headers=auth) as r:
            assert r.status == 400
        assert (await post_chat(s, url, {"model": "current"}, **auth))[0] == 400
        assert (await post_chat(s, url, chat_body(temperature=9), **auth))[0] == 400
        async with s.get(f"{url}/v1/chat/completions", headers=auth) as resp:
            assert resp.status == 405
        big = chat_body(text="x" * 5_000_000)
        assert (await post_chat(s, url, big, **auth))[0] == 413
        assert (await post_chat(s, url, chat_body(model="no-such-model"), **auth))[0] == 404
        assert (await post_chat(s, url, chat_body(), **auth))[0] == 200
        async with s.get(f"{url}/no/such/path") as resp:
            assert resp.status == 404
        async with s.post(f"{url}/v1/feedback", json={"score": 3}, headers=auth) as resp:
            assert resp.status == 400
        async with s.get(f"{url}/metrics") as resp:
            exposition = await resp.text()
    chat = samples(exposition, "qg_gateway_requests_total")
    assert total(chat, code="401", error_class="auth_failed") == 2
    assert total(chat, code="400", error_class="bad_request") == 3
    assert total(chat, code="405", error_class="method_not_allowed") == 1
    assert total(chat, code="404", error_class="model_not_found") == 1
    assert total(chat, code="200", error_class="") == 1
    assert sum(chat.values()) == 8  # every chat answer the app gave, once
    others = samples(exposition, "qg_gateway_http_requests_total")
    assert total(others, route="/v1/models", code="401", error_class="auth_failed") == 1
    assert total(others, route="/v1/models", code="200", error_class="") == 1
    assert total(others, route="/v1/feedback", code="400", error_class="bad_request") == 1
    assert total(others, route="other", code="404", error_class="not_found") == 1
    # The body over the limit was refused by the HTTP server, before the app ran.
    assert total(others, route="(server)", code="413", error_class="body_too_large") == 1
    refused = samples(exposition, "qg_gateway_auth_failures_total")
    assert total(refused, reason="missing_api_key") == 2  # chat and /v1/models
    assert total(refused, reason="invalid_api_key") == 1


async def test_upstream_failures_carry_their_error_class(ws: Workspace) -> None:
    providers = fakes()
    for name in ("bedrock", "google", "meta"):
        providers[name].then(*[ServerError("down", provider=name)] * 10)
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, _, _ = await post_chat(s, url, chat_body())
        async with s.get(f"{url}/metrics") as resp:
            exposition = await resp.text()
    chat = samples(exposition, "qg_gateway_requests_total")
    assert total(chat, code=str(status), error_class="server_error") == 1
    assert status >= 500


async def test_promtool_accepts_the_exposition(ws: Workspace, tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    providers = fakes()
    providers["bedrock"].then(None, ServerError("down", provider="bedrock"), Cut(after=1))
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        for i in range(4):
            await post_chat(s, url, chat_body(text=f"q{i}", stream=i % 2 == 1))
        await post_chat(s, url, {"model": "current"})
        async with s.get(f"{url}/v1/models") as resp:
            assert resp.status == 200
        async with s.get(f"{url}/metrics") as resp:
            exposition = await resp.text()
    assert "qg_gateway_request_duration_seconds_bucket" in exposition
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
