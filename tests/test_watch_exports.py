"""Exports: CloudWatch metrics and logs (against moto's server, read back with the AWS CLI
as the runbook does) and structured JSON logs."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import Workspace
from tests.telemetry_rows import put_traffic
from tests.watch_setup import Clock, service, watch_config

from quality_gates._jsonlog import configure_logging, log_event
from quality_gates.config import LogSettings
from quality_gates.exports import exporters_for

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server on a free loopback port: a local CloudWatch and CloudWatch Logs."""
    moto_server = pytest.importorskip("moto.server")
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws(endpoint: str, *args: str) -> dict:  # type: ignore[type-arg]
    """Run the AWS CLI as the runbook does, against the local endpoint."""
    cli = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if cli is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    proc = subprocess.run(
        [cli, *args, "--endpoint-url", endpoint, "--region", "us-east-1", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**AWS_ENV, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def test_runbook_get_metric_statistics_finds_the_published_metrics(
    sqlite_workspace: Workspace, cloudwatch: str
) -> None:
    now = time.time()
    put_traffic(sqlite_workspace.conn, ts=now - 10, error_rate=0.1, latency_ms=800.0)
    config = watch_config(
        sqlite_workspace,
        "http://127.0.0.1:9",
        observability={
            "cloudwatch": {
                "enabled": True,
                "endpoint": cloudwatch,
                "interval": "1s",
                "log_group": "/aws/lambda/ai-orchestrator",
            }
        },
    )
    svc = service(sqlite_workspace, config, Clock(now), exporters=exporters_for)
    try:
        await svc.run_once()
        log_event(
            logging.getLogger("quality_gates.watch"),
            logging.WARNING,
            "SECURITY",
            "unusual key usage",
            key="ci",
        )
    finally:
        await svc.close()  # flushes the logs
    window = ["--start-time", iso(now - 3600), "--end-time", iso(now + 60), "--period", "300"]
    stats = aws(
        cloudwatch,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AI/Performance",
        "--metric-name",
        "P95Latency",
        *window,
        # The runbook writes `Average,Maximum`; the AWS CLI sends that as one (invalid)
        # statistic name, so the list is given as the CLI parses it.
        "--statistics",
        "Average",
        "Maximum",
    )
    (point,) = stats["Datapoints"]
    assert point["Average"] == pytest.approx(800.0, rel=0.02)
    assert point["Maximum"] == pytest.approx(800.0, rel=0.02)
    assert point["Unit"] == "Milliseconds"
    availability = aws(
        cloudwatch,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AI/Performance",
        "--metric-name",
        "ProviderAvailability",
        "--dimensions",
        "Name=Environment,Value=production",
        "Name=Provider,Value=google",
        *window,
        "--statistics",
        "Average",
    )
    assert availability["Datapoints"][0]["Average"] == pytest.approx(90.0)
    names = {
        m["MetricName"]
        for m in aws(cloudwatch, "cloudwatch", "list-metrics", "--namespace", "AI/Performance")[
            "Metrics"
        ]
    }
    assert names == {
        "P95Latency",
        "ErrorRate",
        "Throughput",
        "ProviderAvailability",
        "CacheHitRate",
    }
    found = aws(
        cloudwatch,
        "logs",
        "filter-log-events",
        "--log-group-name",
        "/aws/lambda/ai-orchestrator",
        "--filter-pattern",
        "SECURITY",
    )
    messages = [json.loads(e["message"]) for e in found["events"]]
    assert [m["message"] for m in messages] == ["unusual key usage"]
    assert messages[0]["category"] == "SECURITY"
    assert messages[0]["key"] == "ci"


def test_json_logs_carry_level_and_category_and_errors_are_findable_as_error() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(format="json"), stream=stream)
    logger = logging.getLogger("quality_gates.watch")
    log_event(logger, logging.ERROR, "NOTIFICATION", "pagerduty refused", status=400)
    log_event(logger, logging.WARNING, "SECURITY", "prompt injection attempt", key="k1")
    logger.error("plain failure")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["level"], x["category"]) for x in lines] == [
        ("ERROR", "NOTIFICATION"),
        ("WARNING", "SECURITY"),
        ("ERROR", "ERROR"),
    ]
    assert lines[0]["status"] == 400
    assert lines[1]["key"] == "k1"
    assert all("ERROR" in raw for raw in stream.getvalue().splitlines() if '"level":"ERROR"' in raw)
    configure_logging(LogSettings(format="text"), stream=stream)
    logger.warning("switched")
    assert stream.getvalue().splitlines()[-1].endswith("WARNING [SYSTEM] switched")


async def test_opentelemetry_gauges_and_cycle_spans(sqlite_workspace: Workspace) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from quality_gates.config import OpenTelemetrySettings
    from quality_gates.exports._genai import provider_names
    from quality_gates.exports._otel import OtelExporter

    now = time.time()
    put_traffic(sqlite_workspace.conn, ts=now - 10, error_rate=0.1, latency_ms=500.0)
    config = watch_config(sqlite_workspace, "http://127.0.0.1:9")
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    exporter = OtelExporter(
        OpenTelemetrySettings(enabled=True),
        metric_reader=reader,
        span_exporter=spans,
        provider_names=provider_names(config),
    )
    svc = service(sqlite_workspace, config, Clock(now), exporters=lambda _config: [exporter])
    try:
        await svc.run_once()
        data = reader.get_metrics_data()
    finally:
        await svc.close()
    gauges = {
        m.name: [(dict(p.attributes), p.value) for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    # Base units and the conventions' names: seconds, deployment.environment.name,
    # gen_ai.provider.name (the config's provider name kept as qg.provider).
    assert ({"deployment.environment.name": "production"}, pytest.approx(0.5, rel=0.02)) in gauges[
        "qg.watch.p95_latency"
    ]
    google = {
        "deployment.environment.name": "production",
        "gen_ai.provider.name": "gcp.gemini",
        "qg.provider": "google",
    }
    assert (google, pytest.approx(0.9)) in gauges["qg.watch.provider_availability"]
    units = {
        m.name: m.unit
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert units["qg.watch.p95_latency"] == "s"
    (span,) = spans.get_finished_spans()
    assert span.name == "watch.evaluate"
    assert span.attributes["qg.alerts.firing"] >= 1
    assert any(e.name == "alert firing" for e in span.events)


async def test_opentelemetry_exports_over_otlp_http_to_a_local_collector(
    sqlite_workspace: Workspace,
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from aiohttp import web
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    received: dict[str, list[bytes]] = {}

    async def collect(request: web.Request) -> web.Response:
        received.setdefault(request.path, []).append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        now = time.time()
        put_traffic(sqlite_workspace.conn, ts=now - 10, error_rate=0.0)
        config = watch_config(
            sqlite_workspace,
            "http://127.0.0.1:9",
            observability={
                "opentelemetry": {"enabled": True, "endpoint": f"http://127.0.0.1:{port}"}
            },
        )
        svc = service(sqlite_workspace, config, Clock(now), exporters=exporters_for)
        try:
            await svc.run_once()
        finally:
            await svc.close()  # shuts the providers down, which flushes them
    finally:
        await runner.cleanup()
    assert received.get("/v1/traces")
    request = ExportMetricsServiceRequest()
    request.ParseFromString(received["/v1/metrics"][0])
    names = {
        m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert "qg.watch.throughput" in names
