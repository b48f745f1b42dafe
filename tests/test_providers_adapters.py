"""Each adapter against the simulator over real HTTP: answers, streams, and every error class."""

from __future__ import annotations

import socket

import pytest
from tests.simulators import PROTOCOLS, adapter, instant, spec

from quality_gates.errors import (
    AuthError,
    BadRequest,
    ConnectionFailed,
    ContentFiltered,
    Overloaded,
    ProviderTimeout,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from quality_gates.providers import ChatRequest, Message, StreamChunk
from quality_gates.simulator import run_simulators

pytestmark = pytest.mark.integration
QUESTION = ChatRequest(
    model="anthropic.claude-3-haiku-20240307-v1:0",
    messages=(
        Message("system", "Answer briefly."),
        Message("user", "What changed in the release?"),
    ),
    max_tokens=40,
)


async def collect(provider, request):  # type: ignore[no-untyped-def]
    """Text and the final chunk of a stream."""
    parts, final = [], None
    async for chunk in provider.stream(request):
        if chunk.is_final:
            final = chunk
        else:
            parts.append(chunk.text)
    return "".join(parts), final


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_complete_and_stream_give_the_same_answer_with_usage(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol)]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        answer = await provider.complete(QUESTION)
        text, final = await collect(provider, QUESTION)
    assert answer.text
    assert text == answer.text
    assert answer.finish_reason == final.finish_reason == "length"  # 40 tokens cut it short
    assert answer.usage.output_tokens == final.usage.output_tokens == 40
    assert answer.usage.input_tokens > 10
    assert not answer.usage.estimated
    assert final.usage == answer.usage
    assert answer.latency_ms > 0
    assert final.ttft_ms is not None
    assert final.latency_ms >= final.ttft_ms


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stop_sequence_ends_the_answer_with_finish_reason_stop(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol)]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        full = await provider.complete(QUESTION)
        word = full.text.split()[3]
        cut = await provider.complete(
            ChatRequest(QUESTION.model, QUESTION.messages, max_tokens=40, stop=(word,))
        )
    assert cut.finish_reason == "stop"
    assert word not in cut.text
    assert full.text.startswith(cut.text)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_cost_comes_from_the_configured_prices(protocol: str) -> None:
    from quality_gates.config import Model

    model = Model(
        id="m",
        provider=protocol,
        name=QUESTION.model,
        price={"input_per_1k": 1.0, "output_per_1k": 2.0},
    )
    async with (
        run_simulators([spec(protocol)]) as sims,
        adapter(protocol, sims[protocol].base_url, models={QUESTION.model: model}) as p,
    ):
        answer = await p.complete(QUESTION)
    expected = (answer.usage.input_tokens * 1.0 + answer.usage.output_tokens * 2.0) / 1000
    assert answer.cost_usd == pytest.approx(expected)


ERROR_CASES = [
    ({"server_error_rate": 1.0}, ServerError),
    ({"overloaded_rate": 1.0}, Overloaded),
    ({"rate_limit_rate": 1.0, "retry_after": "3s"}, RateLimited),
    ({"reset_rate": 1.0}, ConnectionFailed),
    ({"content_filter_rate": 1.0}, ContentFiltered),
    ({"outage": True}, Overloaded),
    ({"outage": True, "outage_mode": "reset"}, ConnectionFailed),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("faults", "expected"), ERROR_CASES)
@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_each_fault_maps_to_its_error_class(
    protocol: str, faults: dict, expected: type, streaming: bool
) -> None:
    async with (
        run_simulators([spec(protocol, faults=instant(**faults))]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        call = collect(provider, QUESTION) if streaming else provider.complete(QUESTION)
        with pytest.raises(expected) as caught:
            await call
    assert caught.value.retryable is expected.retryable
    if expected is RateLimited:
        assert caught.value.retry_after == pytest.approx(3.0)
        assert caught.value.status == 429


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_hung_provider_raises_timeout_within_the_deadline(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol, faults=instant(hang_rate=1.0))]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        request = ChatRequest(QUESTION.model, QUESTION.messages, timeout=0.3)
        with pytest.raises(ProviderTimeout) as caught:
            await provider.complete(request)
    assert caught.value.retryable


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("mode", ["drop", "error"])
async def test_a_stream_cut_after_the_first_token_raises_stream_interrupted(
    protocol: str, mode: str
) -> None:
    faults = instant(stream_cut_rate=1.0, stream_cut_mode=mode)
    async with (
        run_simulators([spec(protocol, faults=faults)]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        received: list[StreamChunk] = []

        async def consume() -> None:
            async for chunk in provider.stream(QUESTION):
                received.append(chunk)

        with pytest.raises(StreamInterrupted) as caught:
            await consume()
    assert received
    assert not any(c.is_final for c in received)
    if mode == "error":
        assert "after the stream started" in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_wrong_key_is_an_auth_error(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol, api_key="right")]) as sims,
        adapter(protocol, sims[protocol].base_url, key="wrong") as provider,
    ):
        with pytest.raises(AuthError) as caught:
            await provider.complete(QUESTION)
        good = adapter(protocol, sims[protocol].base_url, key="right")
        assert (await good.complete(QUESTION)).text
        await good.close()
    assert not caught.value.retryable


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_request_the_provider_rejects_is_a_bad_request(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol)]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        with pytest.raises(BadRequest):
            await provider.complete(ChatRequest(QUESTION.model, messages=()))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_nothing_listening_is_a_connection_failure(protocol: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with adapter(protocol, f"http://127.0.0.1:{port}") as provider:
        with pytest.raises(ConnectionFailed):
            await provider.complete(QUESTION)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_probe_reports_healthy_then_unhealthy_with_the_error_class(protocol: str) -> None:
    async with (
        run_simulators([spec(protocol)]) as sims,
        adapter(protocol, sims[protocol].base_url, probe_model=QUESTION.model) as p,
    ):
        healthy = await p.probe()
        sims[protocol].app.behaviour.update({"outage": True})
        down = await p.probe()
    assert healthy.healthy
    assert healthy.error_class is None
    assert not down.healthy
    assert down.error_class == "overloaded"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_streams_wait_for_the_first_token_then_pace_the_rest(protocol: str) -> None:
    paced = instant(ttft_p50_ms=120, ttft_p95_ms=120, token_delay_ms=15)
    request = ChatRequest(QUESTION.model, QUESTION.messages, max_tokens=8)
    async with (
        run_simulators([spec(protocol, faults=paced)]) as sims,
        adapter(protocol, sims[protocol].base_url) as provider,
    ):
        _text, final = await collect(provider, request)
    # Sleeps are never shorter than asked: lower bounds hold on any machine.
    assert final.ttft_ms >= 115
    assert final.latency_ms >= final.ttft_ms + 7 * 15 - 5
