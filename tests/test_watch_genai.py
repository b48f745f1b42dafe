"""The gateway's requests in OpenTelemetry's GenAI semantic conventions: an OTLP/HTTP
receiver on port 0 captures the spans and metrics of real gateway requests, and their names,
attributes and units are checked against the conventions (the constants of
opentelemetry-semantic-conventions)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.gateway_support import (
    FAST_GATEWAY,
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    serve,
)

from quality_gates.config import load_config
from quality_gates.errors import ServerError
from quality_gates.gateway import AppSettings, create_app
from quality_gates.store import StoreURL

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm

pytestmark = pytest.mark.integration
SECRET_PROMPT = "my card is 4111 1111 1111 1111 and my name is Zebulon Quartermaine"


class Receiver:
    """An OTLP/HTTP (protobuf) collector on a free loopback port."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.url = ""

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for raw in self.bodies.get("/v1/traces", []):
            request = ExportTraceServiceRequest()
            request.ParseFromString(raw)
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                out.extend((resource, span) for ss in rs.scope_spans for span in ss.spans)
        return out

    def metrics(self) -> dict[str, tuple[dict[str, Any], Any]]:
        """The last received version of each metric, with its resource attributes."""
        out = {}
        for raw in self.bodies.get("/v1/metrics", []):
            request = ExportMetricsServiceRequest()
            request.ParseFromString(raw)
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        out[metric.name] = (resource, metric)
        return out


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict (arrays as lists)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        out[kv.key] = value
    return out


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    from aiohttp import web

    receiver = Receiver()

    async def collect(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        receiver.bodies.setdefault(request.path, []).append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def otel_workspace(root: Path, receiver: Receiver, store_text: bool = False, **otel: Any) -> Any:
    """The starter workspace with the OpenTelemetry export pointed at `receiver`."""
    fields = {"enabled": "true", "endpoint": f'"{receiver.url}"', "sample_ratio": "1.0"}
    fields.update({k: str(v).lower() for k, v in otel.items()})
    gateway = FAST_GATEWAY
    if store_text:
        gateway = gateway.replace(
            "{flush_interval: 50ms}", "{flush_interval: 50ms, store_text: true}"
        )
    section = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return gateway_workspace(
        root, extra=gateway + "observability:\n  opentelemetry: {" + section + "}\n"
    )


async def run_gateway(ws: Any, providers: Any, requests: list[dict[str, Any]]) -> list[int]:
    """Serve the gateway with the GenAI export (as `serve` adds it), send `requests` over
    HTTP, stop it (which flushes the export); returns the statuses."""
    from quality_gates.exports._genai_export import genai_background

    settings = AppSettings(
        config=load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )
    statuses = []
    app = create_app(settings, providers=dict(providers), services=[genai_background])
    try:
        async with serve(app) as url, aiohttp.ClientSession() as s:
            for body in requests:
                statuses.append((await post_chat(s, url, body))[0])
    finally:
        ws.database.close_shared()
    return statuses


async def test_spans_and_metrics_of_real_requests_follow_the_genai_conventions(
    tmp_path: Path,
) -> None:
    providers = fakes()
    providers["bedrock"].then(ServerError("down", provider="bedrock"))
    async with otlp_receiver() as receiver:
        statuses = await run_gateway(
            otel_workspace(tmp_path / "ws", receiver),
            providers,
            [chat_body(text=SECRET_PROMPT), chat_body(text="two", stream=True)],
        )
    assert statuses == [200, 200]
    spans = receiver.spans()
    resource = spans[0][0]
    assert resource["service.name"] == "quality-gates"
    assert resource["deployment.environment.name"] == "production"
    server = [s for _, s in spans if s.kind == s.SPAN_KIND_SERVER]
    client = [s for _, s in spans if s.kind == s.SPAN_KIND_CLIENT]
    assert len(server) == 2
    assert {s.name for s in server} == {"chat current"}
    # The first request was tried again: bedrock's attempt failed, the next one answered.
    first = next(
        s for s in server if s.trace_id in {c.trace_id for c in client if c.status.code == 2}
    )
    attempts = sorted(
        (c for c in client if c.trace_id == first.trace_id), key=lambda c: c.start_time_unix_nano
    )
    assert len(attempts) == 2
    assert all(c.parent_span_id == first.span_id for c in attempts)
    failed, answered = (attributes(c.attributes) for c in attempts)
    assert failed[ga.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert failed["error.type"] == "server_error"
    assert answered[ga.GEN_AI_PROVIDER_NAME] in ("aws.bedrock", "gcp.gemini", "openai")
    assert answered[ga.GEN_AI_OPERATION_NAME] == "chat"
    assert attempts[1].name == f"chat {answered[ga.GEN_AI_REQUEST_MODEL]}"
    assert answered[ga.GEN_AI_RESPONSE_MODEL] == answered[ga.GEN_AI_REQUEST_MODEL]
    top = attributes(first.attributes)
    assert top[ga.GEN_AI_OPERATION_NAME] == "chat"
    assert top[ga.GEN_AI_REQUEST_MODEL] == "current"
    assert top[ga.GEN_AI_RESPONSE_MODEL] == answered[ga.GEN_AI_REQUEST_MODEL]
    assert top[ga.GEN_AI_PROVIDER_NAME] == answered[ga.GEN_AI_PROVIDER_NAME]
    assert top[ga.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert top[ga.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert top[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert first.end_time_unix_nano >= attempts[-1].end_time_unix_nano
    # Prompts and answers never leave unless asked for.
    assert ga.GEN_AI_INPUT_MESSAGES not in top
    raw = b"".join(b for bodies in receiver.bodies.values() for b in bodies)
    assert b"Zebulon" not in raw

    metrics = receiver.metrics()
    units = {name: metric.unit for name, (_, metric) in metrics.items()}
    assert units == {
        gm.GEN_AI_CLIENT_OPERATION_DURATION: "s",
        gm.GEN_AI_CLIENT_TOKEN_USAGE: "{token}",
        gm.GEN_AI_SERVER_REQUEST_DURATION: "s",
        gm.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: "s",
    }
    resource, duration = metrics[gm.GEN_AI_CLIENT_OPERATION_DURATION]
    assert resource["deployment.environment.name"] == "production"
    points = {
        tuple(sorted(attributes(p.attributes).items())): p for p in duration.histogram.data_points
    }
    assert sum(p.count for p in points.values()) == 3  # every attempt, sampled or not
    assert list(next(iter(points.values())).explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    errors = [dict(k) for k in points if "error.type" in dict(k)]
    assert errors == [
        {
            "error.type": "server_error",
            ga.GEN_AI_OPERATION_NAME: "chat",
            ga.GEN_AI_PROVIDER_NAME: "aws.bedrock",
            ga.GEN_AI_REQUEST_MODEL: errors[0][ga.GEN_AI_REQUEST_MODEL],
        }
    ]
    _, tokens = metrics[gm.GEN_AI_CLIENT_TOKEN_USAGE]
    kinds = {attributes(p.attributes)[ga.GEN_AI_TOKEN_TYPE] for p in tokens.histogram.data_points}
    assert kinds == {"input", "output"}
    _, ttft = metrics[gm.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN]
    assert sum(p.count for p in ttft.histogram.data_points) == 1  # the one stream


async def test_sampling_keeps_spans_to_a_share_but_metrics_count_every_request(
    tmp_path: Path,
) -> None:
    async with otlp_receiver() as receiver:
        statuses = await run_gateway(
            otel_workspace(tmp_path / "ws", receiver, sample_ratio=0.0),
            fakes(),
            [chat_body(text=f"q{i}") for i in range(20)],
        )
    assert statuses == [200] * 20
    assert receiver.spans() == []
    _, duration = receiver.metrics()[gm.GEN_AI_SERVER_REQUEST_DURATION]
    assert sum(p.count for p in duration.histogram.data_points) == 20


@pytest.mark.parametrize("store_text", [False, True])
async def test_captured_content_is_the_redacted_text_and_only_when_enabled(
    tmp_path: Path, store_text: bool
) -> None:
    async with otlp_receiver() as receiver:
        ws = otel_workspace(tmp_path / "ws", receiver, store_text, capture_content=True)
        statuses = await run_gateway(ws, fakes(), [chat_body(text=SECRET_PROMPT)])
    assert statuses == [200]
    (span,) = [s for _, s in receiver.spans() if s.kind == s.SPAN_KIND_SERVER]
    found = attributes(span.attributes)
    if not store_text:  # nothing kept, so nothing to send
        assert ga.GEN_AI_INPUT_MESSAGES not in found
        return
    (message,) = json.loads(found[ga.GEN_AI_INPUT_MESSAGES])
    text = message["parts"][0]["content"]
    assert "Zebulon" in text
    assert "4111" not in text
    assert "[CARD]" in text
    assert ga.GEN_AI_OUTPUT_MESSAGES in found


async def test_serve_adds_the_export_when_enabled(tmp_path: Path) -> None:
    from quality_gates.cli._serve_app import build

    async with otlp_receiver() as receiver:
        ws = otel_workspace(tmp_path / "ws", receiver)
        settings = AppSettings(
            config=load_config(ws.config_path).config,
            store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
            environment="production",
        )
        app = build(settings, watch=False)
        try:
            async with app.router.router.lifespan_context(app.router):
                tap = app.state.gateway.services.record_tap
                assert tap is not None
                assert type(tap.__self__).__name__ == "GenAiExporter"
        finally:
            ws.database.close_shared()
