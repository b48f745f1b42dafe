"""The gateway over real HTTP (its own server on a loopback port) with in-test providers: failover,
retries, streams, cache, limits, control-plane changes, telemetry, auth, breakers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import Workspace
from tests.gateway_support import (
    FAST_GATEWAY,
    Cut,
    Hang,
    Stall,
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    running_gateway,
    wait_until,
)

from quality_gates.errors import (
    AuthError,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
)
from quality_gates.gateway import keys as api_keys
from quality_gates.gateway import runtime
from quality_gates.registry import Actor, rollback

RETRYABLE_OR_DEPLOYMENT_FAULTS = [
    ProviderTimeout("bedrock timed out", provider="bedrock"),
    RateLimited("bedrock throttled", provider="bedrock", retry_after=30.0),
    ServerError("bedrock 500", provider="bedrock", status=500),
    Overloaded("bedrock 529", provider="bedrock", status=529),
    ConnectionFailed("bedrock reset", provider="bedrock"),
    AuthError("bedrock 403", provider="bedrock", status=403),
]


@pytest.fixture
def ws(tmp_path: Path, store_url: str) -> Workspace:
    return gateway_workspace(tmp_path / "ws", store_url)


def count(ws: Workspace, sql: str) -> int:
    return int(ws.conn.scalar(sql) or 0)


@pytest.mark.parametrize("error", RETRYABLE_OR_DEPLOYMENT_FAULTS, ids=lambda e: e.error_class)
async def test_each_deployment_fault_fails_over_to_the_next_in_the_chain(
    tmp_path: Path, error: ProviderError
) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(error, error)  # the first try and its retry
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, headers, body = await post_chat(s, url, chat_body())
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "answer from google"
    assert headers["x-qg-provider"] == "google"
    assert headers["x-qg-failover-hops"] == "1"
    expected_tries = 2 if error.retryable and error.error_class != "rate_limited" else 1
    assert len(providers["bedrock"].calls) == expected_tries


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("bad", provider="bedrock", status=400),
        ContentFiltered("blocked", provider="bedrock", status=400),
    ],
    ids=lambda e: e.error_class,
)
async def test_client_faults_are_returned_without_failover(
    tmp_path: Path, error: ProviderError
) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(error)
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, _, body = await post_chat(s, url, chat_body())
    assert status == 400
    assert body["error"]["code"] == error.error_class
    assert providers["google"].calls == []


async def test_a_short_retry_after_is_honoured_on_the_same_deployment(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(RateLimited("slow down", provider="bedrock", retry_after=0.3))
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        started = time.monotonic()
        status, headers, _ = await post_chat(s, url, chat_body())
        waited = time.monotonic() - started
    assert status == 200
    assert headers["x-qg-provider"] == "bedrock"
    assert len(providers["bedrock"].calls) == 2
    assert waited >= 0.3


async def test_one_deadline_covers_every_try(tmp_path: Path) -> None:
    extra = FAST_GATEWAY + "  deadline: 600ms\n  attempt_timeout: 250ms\n"
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    providers = fakes()
    for p in providers.values():
        p.then(Hang(), Hang(), Hang(), Hang())
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        started = time.monotonic()
        status, _, body = await post_chat(s, url, chat_body())
        elapsed = time.monotonic() - started
    assert status == 504, body
    assert body["error"]["code"] == "timeout"
    assert elapsed < 2.0
    assert sum(len(p.calls) for p in providers.values()) <= 3


async def test_stream_fails_over_before_the_first_byte(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(
        ServerError("down", provider="bedrock"), ServerError("down", provider="bedrock")
    )
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, headers, events = await post_chat(s, url, chat_body(stream=True))
    assert status == 200
    assert headers["x-qg-provider"] == "google"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    assert text.strip() == "answer from google"
    assert events[-1] == "[DONE]"


async def test_cut_stream_ends_with_sse_error_not_a_clean_finish(ws: Workspace) -> None:
    providers = fakes()
    providers["bedrock"].then(Cut(after=1))
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, _, events = await post_chat(s, url, chat_body(stream=True))
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 1)
    assert status == 200
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert not any(e["choices"] and e["choices"][0]["finish_reason"] for e in events[:-1])
    row = ws.conn.one("SELECT status, error_class, http_status FROM requests")
    assert row == {"status": "error", "error_class": "stream_interrupted", "http_status": 502}
    attempt = ws.conn.one("SELECT status, error_class FROM attempts")
    assert attempt == {"status": "error", "error_class": "stream_interrupted"}


async def test_a_stream_that_stalls_past_the_deadline_ends_with_a_timeout_event(
    tmp_path: Path,
) -> None:
    ws = gateway_workspace(tmp_path / "ws", extra=FAST_GATEWAY + "  deadline: 1s\n")
    providers = fakes()
    providers["bedrock"].chunks = 4
    providers["bedrock"].text = "one two three four"
    providers["bedrock"].then(Stall(after=1))
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        async with asyncio.timeout(30):  # the stall lasts an hour: only the deadline ends it
            status, _, events = await post_chat(s, url, chat_body(stream=True))
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 1)
        # The next stream on the same gateway is not hurt by the cut one.
        again = await post_chat(s, url, chat_body(stream=True))
    assert status == 200
    assert events[1]["choices"][0]["delta"]["content"] == "one "
    assert events[-1]["error"]["code"] == "timeout"
    assert "ran out mid-stream" in events[-1]["error"]["message"]
    row = ws.conn.one("SELECT status, error_class, http_status FROM requests")
    assert row == {"status": "error", "error_class": "timeout", "http_status": 502}
    assert again[0] == 200
    assert again[2][-1] == "[DONE]"


async def test_cache_answers_only_when_asked_or_configured(tmp_path: Path) -> None:
    """A client asking for a sample at temperature 1 gets a fresh one unless it asks for a
    cached answer; `serve: deterministic` serves hits at temperature 0 only."""
    ws = gateway_workspace(tmp_path / "ws", extra=FAST_GATEWAY)
    providers = fakes()
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        first = await post_chat(s, url, chat_body(text="same", temperature=1.0))
        second = await post_chat(s, url, chat_body(text="same", temperature=1.0))
        asked = await post_chat(
            s, url, chat_body(text="same", temperature=1.0), **{"x-qg-cache": "allow"}
        )
    assert (first[1]["x-qg-cache"], second[1]["x-qg-cache"]) == ("record", "record")
    assert asked[1]["x-qg-cache"] == "hit"
    assert len(providers["bedrock"].calls) == 2
    ws2 = gateway_workspace(
        tmp_path / "ws2", extra=FAST_GATEWAY + "  cache: {serve: deterministic}\n"
    )
    providers = fakes()
    async with running_gateway(ws2, providers) as (url, _), aiohttp.ClientSession() as s:
        cold = [await post_chat(s, url, chat_body(text="t", temperature=t)) for t in (0, 0, 1, 1)]
    assert [c[1]["x-qg-cache"] for c in cold] == ["miss", "hit", "record", "record"]
    assert len(providers["bedrock"].calls) == 3


async def test_cache_hit_miss_and_stale_in_emergency_mode(tmp_path: Path) -> None:
    extra = FAST_GATEWAY + "  cache: {ttl: 300ms, serve: always}\n"
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    providers = fakes()
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        _, first, _ = await post_chat(s, url, chat_body(text="cache me"))
        _, second, body = await post_chat(s, url, chat_body(text="cache me"))
        _, streamed, events = await post_chat(s, url, chat_body(text="cache me", stream=True))
        assert (first["x-qg-cache"], second["x-qg-cache"], streamed["x-qg-cache"]) == (
            "miss",
            "hit",
            "hit",
        )
        assert body["choices"][0]["message"]["content"] == "answer from bedrock"
        assert events[-1] == "[DONE]"
        assert len(providers["bedrock"].calls) == 1
        await asyncio.sleep(0.35)  # now stale
        down = [ServerError("down", provider="x")] * 4
        for p in providers.values():
            p.then(*down)
        status, _, _ = await post_chat(s, url, chat_body(text="cache me"))
        assert status == 502  # normal mode never serves stale
        runtime.set_cache_mode(
            ws.conn, environment="production", mode="emergency", serve_stale=True, actor="tester"
        )
        for p in providers.values():
            p.then(*down)
        await asyncio.sleep(0.3)
        status, headers, body = await post_chat(s, url, chat_body(text="cache me"))
        assert status == 200
        assert headers["x-qg-cache"] == "stale"
        assert body["choices"][0]["message"]["content"] == "answer from bedrock"
        async with s.get(f"{url}/metrics") as resp:
            exposition = await resp.text()
    assert 'qg_gateway_stale_served_total{environment="production"} 1.0' in exposition


async def test_errors_are_never_cached(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    for p in providers.values():
        p.then(*[ServerError("down", provider=p.name)] * 4)  # both passes of the route
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        status, _, _ = await post_chat(s, url, chat_body(text="q"))
        assert status == 502
        status, headers, _ = await post_chat(s, url, chat_body(text="q"))
    assert status == 200
    assert headers["x-qg-cache"] == "record"


async def test_a_route_whose_every_deployment_failed_is_tried_once_more(tmp_path: Path) -> None:
    # A blip on every provider at once: the route is tried again after route_retry_after
    # (within the deadline and the retry budget) instead of failing the request.
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    for p in providers.values():
        p.then(*[ServerError("blip", provider=p.name)] * 2)
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        started = time.monotonic()
        status, _, body = await post_chat(s, url, chat_body(text="blip"))
        waited = time.monotonic() - started
        metrics = await (await s.get(f"{url}/metrics")).text()
    assert status == 200, body
    assert waited >= 0.5  # jittered between half of route_retry_after (1 s) and all of it
    assert sum(len(p.calls) for p in providers.values()) == 7  # 3 x 2 failed, then 1 answer
    assert 'qg_gateway_retries_total{environment="production",provider="(route)"} 1.0' in metrics


async def test_key_over_its_rpm_gets_429_with_retry_after(tmp_path: Path) -> None:
    extra = FAST_GATEWAY + "  limits: {per_key: {rpm: 2}}\n"
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    _, secret = api_keys.create_key(ws.conn, name="app", role="client", actor="tester")
    auth = {"Authorization": f"Bearer {secret}"}
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        codes = [(await post_chat(s, url, chat_body(text=str(i)), **auth))[0] for i in range(2)]
        status, headers, body = await post_chat(s, url, chat_body(text="3"), **auth)
    assert codes == [200, 200]
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert body["error"]["type"] == "rate_limit_error"


async def test_provider_quota_reroutes_then_refuses_with_429(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    text = ws.config_path.read_text().replace("rpm: 6000", "rpm: 1")
    ws.config_path.write_text(text)
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        served = [
            (await post_chat(s, url, chat_body(text=str(i))))[1].get("x-qg-provider")
            for i in range(3)
        ]
        status, headers, body = await post_chat(s, url, chat_body(text="4"))
    assert served == ["bedrock", "google", "meta"]
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert "quota" in body["error"]["message"]


async def test_rollback_reaches_a_running_gateway_within_one_second(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        _, headers, _ = await post_chat(s, url, chat_body(text="a"))
        assert headers["x-qg-model"] == "claude-3-5-haiku"
        rollback(
            ws.conn,
            environment="production",
            model_ref="current-model",
            previous_ref="previous-stable",
            reason="test",
            actor=Actor("tester"),
        )
        changed = time.monotonic()

        async def switched() -> bool:
            _, h, _ = await post_chat(s, url, chat_body(text=str(time.monotonic())))
            return h["x-qg-model"] == "claude-3-haiku"

        await wait_until(switched, timeout=3.0, interval=0.01)
        assert time.monotonic() - changed < 1.0


async def test_traffic_change_and_forced_breaker_are_live(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        runtime.set_traffic(
            ws.conn,
            environment="production",
            weights={"meta": 100},
            current={"bedrock": 100},
            actor="tester",
        )

        async def provider_is(name: str) -> bool:
            _, h, _ = await post_chat(s, url, chat_body(text=str(time.monotonic())))
            return h["x-qg-provider"] == name

        assert await wait_until(lambda: provider_is("meta"), timeout=1.0) < 1.0
        runtime.force_breaker(
            ws.conn,
            environment="production",
            deployment="meta/llama-3-1-70b",
            state="open",
            reason="t",
            actor="tester",
        )
        assert await wait_until(lambda: provider_is("bedrock"), timeout=1.0) < 1.0


async def test_store_down_still_serving_and_rows_arrive_afterwards(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, app), aiohttp.ClientSession() as s:
        with ws.conn.write():
            ws.conn.execute("ALTER TABLE requests RENAME TO requests_away")
            ws.conn.execute("ALTER TABLE control_state RENAME TO control_state_away")
        state = app.state.gateway
        await wait_until(lambda: not state.control.store_ok, timeout=3.0)
        codes = [(await post_chat(s, url, chat_body(text=str(i))))[0] for i in range(20)]
        assert codes == [200] * 20
        await wait_until(lambda: state.services.telemetry.write_errors > 0, timeout=3.0)
        assert state.services.telemetry.buffered >= 20
        async with s.get(f"{url}/readyz") as resp:
            # It serves, so it is ready; the body says what is wrong, and nothing of where
            # the store is (no key is needed to read it).
            assert resp.status == 200
            ready = await resp.json()
        assert (ready["store"], ready["telemetry"]) == ("unreachable", "failing")
        assert "state.db" not in json.dumps(ready)
        with ws.conn.write():
            ws.conn.execute("ALTER TABLE requests_away RENAME TO requests")
            ws.conn.execute("ALTER TABLE control_state_away RENAME TO control_state")
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 20, timeout=15)
        assert state.services.telemetry.dropped == 0


async def test_telemetry_rows_and_rollups_match_requests(ws: Workspace) -> None:
    providers = fakes()
    providers["bedrock"].then(
        ServerError("x", provider="bedrock"), ServerError("x", provider="bedrock")
    )
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        for i in range(10):
            await post_chat(s, url, chat_body(text=f"t{i}", stream=i % 2 == 0))
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 10)
        await wait_until(
            lambda: count(ws, "SELECT SUM(count) FROM rollups WHERE kind = 'request'") == 10
        )
    assert count(ws, "SELECT COUNT(*) FROM attempts") == 12
    assert count(ws, "SELECT SUM(hops) FROM requests") == 1
    assert count(ws, "SELECT SUM(failovers) FROM rollups WHERE kind = 'request'") == 1
    assert count(ws, "SELECT SUM(errors) FROM rollups WHERE kind = 'attempt'") == 2
    row = ws.conn.one("SELECT * FROM requests WHERE hops = 1")
    assert row["provider"] == "google"
    assert row["attempts"] == 3
    assert row["cost"] > 0
    assert row["prompt"] is None  # text is stored only when enabled


async def test_api_keys_authenticate_and_revocation_is_live(ws: Workspace) -> None:
    _, secret = api_keys.create_key(ws.conn, name="svc", role="client", actor="tester")
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        assert (await post_chat(s, url, chat_body()))[0] == 401
        assert (await post_chat(s, url, chat_body(), Authorization="Bearer nope"))[0] == 401
        assert (await post_chat(s, url, chat_body(), Authorization=f"Bearer {secret}"))[0] == 200
        api_keys.revoke_key(ws.conn, name="svc", actor="tester")

        async def refused() -> bool:
            return (await post_chat(s, url, chat_body(), Authorization=f"Bearer {secret}"))[
                0
            ] == 401

        assert await wait_until(refused, timeout=1.0) < 1.0
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") >= 4)
    assert ws.conn.scalar("SELECT key_name FROM requests WHERE status = 'ok'") == "svc"
    refusals = ws.conn.execute(
        "SELECT key_name, http_status, error_class FROM requests WHERE status = 'rejected' "
        "ORDER BY ts"
    )
    assert [(r["http_status"], r["error_class"]) for r in refusals][:2] == [
        (401, "auth_failed"),
        (401, "auth_failed"),
    ]
    assert refusals[0]["key_name"] is None  # no key at all
    assert refusals[1]["key_name"].startswith("invalid:")  # a hash, never the token
    assert "nope" not in refusals[1]["key_name"]
    # Refused keys stay out of the roll-ups: client metrics count the answered requests only.
    answered = count(ws, "SELECT COUNT(*) FROM requests WHERE status = 'ok'")
    assert count(ws, "SELECT SUM(count) FROM rollups WHERE kind = 'request'") == answered


async def test_probes_open_and_close_a_breaker_without_traffic(tmp_path: Path) -> None:
    extra = FAST_GATEWAY.replace(
        "probe_interval: 0, open_for: 60s",
        "probe_interval: 100ms, open_for: 300ms, consecutive_failures: 2",
    )
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    providers = fakes()
    providers["google"].probe_ok = False
    async with running_gateway(ws, providers) as (url, app), aiohttp.ClientSession() as s:
        board = app.state.gateway.services.breakers
        await wait_until(lambda: board.is_open("google/gemini-1-5-flash", time.time()), 3.0)
        async with s.get(f"{url}/metrics") as resp:
            text = await resp.text()
        assert (
            'qg_gateway_breaker_state{deployment="google/gemini-1-5-flash",'
            'environment="production",forced="",provider="google"} 2.0'
        ) in text
        providers["google"].probe_ok = True
        await wait_until(
            lambda: board.get("google/gemini-1-5-flash").current(time.time()) == "closed", 3.0
        )


async def test_live_traffic_opens_a_breaker_and_later_requests_skip_it(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(*[ServerError("down", provider="bedrock")] * 20)
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        for i in range(6):
            await post_chat(s, url, chat_body(text=f"b{i}"))
        calls = len(providers["bedrock"].calls)
        for i in range(5):
            status, headers, _ = await post_chat(s, url, chat_body(text=f"c{i}"))
            assert status == 200
            assert headers["x-qg-provider"] == "google"
    assert len(providers["bedrock"].calls) == calls  # the open breaker kept traffic away


async def test_queue_holds_requests_over_the_concurrency_limit(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws", extra=FAST_GATEWAY + "  limits: {max_inflight: 1}\n")
    providers = fakes()
    providers["bedrock"].latency = 0.3
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        results = await asyncio.gather(
            *(post_chat(s, url, chat_body(text=f"q{i}")) for i in range(2))
        )
        assert sorted(r[0] for r in results) == [200, 503]
        runtime.set_queue(
            ws.conn, environment="production", enabled=True, size=4, timeout=5.0, actor="tester"
        )
        await asyncio.sleep(0.3)
        results = await asyncio.gather(
            *(post_chat(s, url, chat_body(text=f"r{i}")) for i in range(3))
        )
    assert [r[0] for r in results] == [200, 200, 200]


async def test_heartbeat_row_reports_the_process(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        await post_chat(s, url, chat_body())
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM gateway_instances") == 1)
        row = ws.conn.one("SELECT * FROM gateway_instances")
    assert row["environment"] == "production"
    assert row["rss_bytes"] > 0
    assert row["inflight_limit"] == 1024
    assert row["control_version"] >= 1
    assert count(ws, "SELECT COUNT(*) FROM gateway_instances") == 0  # removed at shutdown


async def test_models_healthz_and_readyz(ws: Workspace) -> None:
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        async with s.get(f"{url}/v1/models") as resp:
            models = await resp.json()
        async with s.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        async with s.get(f"{url}/readyz") as resp:
            ready = await resp.json()
            assert resp.status == 200
    ids = [m["id"] for m in models["data"]]
    assert "current" in ids
    assert "llama-3-1-70b" in ids
    assert ready["store"] == "ok"
    assert ready["usable_deployments"]


async def test_a_client_leaving_mid_stream_frees_its_slot_and_is_recorded(
    tmp_path: Path,
) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].text = " ".join(f"w{i}" for i in range(50))
    providers["bedrock"].chunks = 50
    providers["bedrock"].latency = 0.05
    async with running_gateway(ws, providers) as (url, app), aiohttp.ClientSession() as s:
        async with s.post(f"{url}/v1/chat/completions", json=chat_body(stream=True)) as resp:
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")  # the first event, then hang up
        admission = app.state.gateway.services.admission
        await wait_until(lambda: admission.inflight == 0, timeout=5.0)
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 1)
    row = ws.conn.one("SELECT status, http_status, error_class FROM requests")
    assert row == {"status": "cancelled", "http_status": 499, "error_class": "client_disconnected"}


async def test_unknown_model_names_never_reach_telemetry_verbatim(ws: Workspace) -> None:
    name = "x" * 300  # longer than the alias column: it must not poison a batch on PostgreSQL
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        status, _, body = await post_chat(s, url, chat_body(model=name))
        assert status == 404
        assert body["error"]["code"] == "model_not_found"
        assert (await post_chat(s, url, chat_body()))[0] == 200
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 2)
    aliases = {r["alias"] for r in ws.conn.execute("SELECT alias FROM requests")}
    assert aliases == {"(unknown)", "current"}


async def test_canary_share_is_routed_to_the_candidate_and_marked(ws: Workspace) -> None:
    from quality_gates.store import settings

    with ws.conn.write():
        settings.put(
            ws.conn,
            "production",
            "canary",
            {"model": "llama-3-1-70b", "percent": 100.0, "baseline": None, "run_id": "r-1"},
            actor="gates",
        )
    async with running_gateway(ws, fakes()) as (url, _), aiohttp.ClientSession() as s:
        status, headers, _ = await post_chat(s, url, chat_body(text="canary"))
        backup = await post_chat(s, url, chat_body(model="backup", text="not canary"))
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 2)
    assert status == 200
    assert headers["x-qg-canary"] == "1"
    assert headers["x-qg-model"] == "llama-3-1-70b"
    assert "x-qg-canary" not in backup[1]
    rows = ws.conn.execute("SELECT alias, model_id, canary FROM requests ORDER BY ts")
    assert [(r["alias"], r["model_id"], r["canary"]) for r in rows] == [
        ("current", "llama-3-1-70b", 1),
        ("backup", "gemini-1-5-flash", 0),
    ]


async def test_prompt_and_answer_text_are_stored_redacted_only_when_enabled(
    tmp_path: Path,
) -> None:
    extra = FAST_GATEWAY.replace(
        "  telemetry: {flush_interval: 50ms}",
        "  telemetry: {flush_interval: 50ms, store_text: true}",
    )
    ws = gateway_workspace(tmp_path / "ws", extra=extra)
    providers = fakes()
    providers["bedrock"].text = "Write to ops@example.com or call +1 415 555 0100"
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        await post_chat(
            s,
            url,
            chat_body(text="my key is sk-abcdefghijklmnop1234 and my card 4111 1111 1111 1111"),
        )
        await wait_until(lambda: count(ws, "SELECT COUNT(*) FROM requests") == 1)
    row = ws.conn.one("SELECT prompt, answer FROM requests")
    assert "sk-abcdefghijklmnop1234" not in row["prompt"]
    assert "[SECRET]" in row["prompt"]
    assert "4111" not in row["prompt"]
    assert "[CARD]" in row["prompt"]
    assert "ops@example.com" not in row["answer"]
    assert "[EMAIL]" in row["answer"]
    assert "[PHONE]" in row["answer"]


async def test_a_long_retry_after_of_any_class_fails_over_instead_of_waiting(
    tmp_path: Path,
) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(Overloaded("busy", provider="bedrock", retry_after=30.0))
    async with running_gateway(ws, providers) as (url, _), aiohttp.ClientSession() as s:
        started = time.monotonic()
        status, headers, _ = await post_chat(s, url, chat_body())
    assert status == 200
    assert headers["x-qg-provider"] == "google"
    assert len(providers["bedrock"].calls) == 1
    assert time.monotonic() - started < 5.0
