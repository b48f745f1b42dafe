"""The performance gate: P50/P95/P99, throughput, error rate by class and TTFT against the
environment's thresholds. Development and staging generate load (through the gateway or
straight at the provider); production reads recorded telemetry (per-minute roll-ups) over
the window, never loading production."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError
from quality_gates.gates import loadgen, runs, stats
from quality_gates.gates.progress import ProgressSink
from quality_gates.gates.targets import ProviderFactory, Targets
from quality_gates.gates.verdict import GateVerdict, combine
from quality_gates.providers import ChatRequest, Message
from quality_gates.store import gate_runs as store_runs
from quality_gates.store.db import Connection
from quality_gates.telemetry import LatencyHistogram

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

TELEMETRY_ENVIRONMENTS = ("production",)
# Connections the gateway sender keeps open: enough for thousands of req/s at low latency;
# past it, requests wait for a connection (and that wait counts in their latency).
CONNECTIONS = 256


@dataclass
class PerformanceOptions:
    """What `performance` was asked to do."""

    model_ref: str
    environment: str = "production"
    duration_s: float | None = None
    rps: float | None = None
    concurrency: int | None = None
    target: str | None = None  # gateway | provider
    source: str | None = None  # telemetry | load (default by environment)
    actor: str = "unknown"
    parent_id: str | None = None


@dataclass
class Measured:
    """Figures of one performance run, whatever produced them."""

    source: str
    window_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    latency: LatencyHistogram
    ttft: LatencyHistogram
    offered_rps: float | None = None
    not_sent: int = 0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.window_s if self.window_s else 0.0

    @property
    def error_rate(self) -> float:
        """Errors over requests."""
        return (self.requests - self.ok) / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready figures."""

        def q(hist: LatencyHistogram, p: float) -> float | None:
            value = hist.quantile(p)
            return round(value, 3) if value is not None else None

        return {
            "source": self.source,
            "window_s": round(self.window_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "throughput_rps": round(self.throughput, 3),
            "offered_rps": self.offered_rps,
            "not_sent": self.not_sent,
            "error_rate": round(self.error_rate, 6),
            "errors_by_class": self.errors,
            "latency_ms": {"p50": q(self.latency, 0.5), "p95": q(self.latency, 0.95),
                           "p99": q(self.latency, 0.99), "mean": self.latency.mean},
            "ttft_ms": {"p50": q(self.ttft, 0.5), "p95": q(self.ttft, 0.95)},
        }  # fmt: skip


def from_telemetry(
    conn: Connection, environment: str, model_id: str, window_s: float, now: float
) -> Measured:
    """Sum the request roll-ups of `model_id` over the last `window_s` (whole minutes)."""
    end_minute = int(now // 60) + 1
    start_minute = end_minute - max(1, round(window_s / 60))
    latency, ttft = LatencyHistogram(), LatencyHistogram()
    requests = errors_total = 0
    errors: dict[str, int] = {}
    for row in store_runs.rollup_rows(conn, environment, start_minute, end_minute, model_id):
        requests += int(row["count"])
        errors_total += int(row["errors"])
        for name, count in json.loads(row["errors_by_class"] or "{}").items():
            errors[name] = errors.get(name, 0) + int(count)
        latency.merge(LatencyHistogram.from_json(row["latency_hist"]))
        ttft.merge(LatencyHistogram.from_json(row["ttft_hist"]))
    window = (end_minute - start_minute) * 60.0
    return Measured("telemetry", window, requests, requests - errors_total, errors, latency, ttft)


def _gateway_sender(
    config: QualityGatesConfig, model_id: str, url: str, key: str | None
) -> tuple[loadgen.Send, Any]:
    import aiohttp

    settings = config.gates.performance
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTIONS, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"Authorization": f"Bearer {key}"} if key else {},
    )
    body = json.dumps(
        {
            "model": model_id,
            "messages": [{"role": "user", "content": settings.prompt}],
            "max_tokens": settings.max_tokens,
        }
    ).encode()
    endpoint = url.rstrip("/") + "/v1/chat/completions"
    classes = {429: "rate_limited", 504: "timeout", 503: "overloaded", 401: "auth", 403: "auth"}

    async def send() -> loadgen.Sample:
        try:
            async with session.post(
                endpoint, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                if response.status == 200:
                    return loadgen.Sample(None)
                status = response.status
                return loadgen.Sample(
                    classes.get(status, "server_error" if status >= 500 else "bad_request")
                )
        except TimeoutError:
            return loadgen.Sample("timeout")
        except aiohttp.ClientError:
            return loadgen.Sample("connection")

    return send, session


async def generate(
    config: QualityGatesConfig,
    model_id: str,
    options: PerformanceOptions,
    thresholds: dict[str, Any],
    factory: ProviderFactory | None = None,
    progress: ProgressSink | None = None,
) -> Measured:
    """Load straight at the provider's adapter or through the gateway."""
    from quality_gates.config import resolve_env
    from quality_gates.units import capped_duration

    settings = config.gates.performance
    duration = capped_duration(
        options.duration_s if options.duration_s is not None else settings.duration
    )
    target = options.target or settings.target
    concurrency = options.concurrency or (None if options.rps else settings.concurrency)
    rps = options.rps or settings.rps or 2 * float(thresholds.get("throughput_rps", 20))
    closer: Any = None
    if target == "gateway":
        key = (
            resolve_env(settings.gateway_key, needed_by="gates.performance.gateway_key")
            if (settings.gateway_key)
            else None
        )
        send, closer = _gateway_sender(config, model_id, settings.gateway_url, key)
    else:
        targets = Targets(config, factory)
        handle = targets.target(model_id)
        closer = targets
        request = ChatRequest(
            model=handle.provider_model,
            messages=(Message("user", settings.prompt),),
            max_tokens=settings.max_tokens,
            timeout=handle.timeout_s,
        )

        async def send() -> loadgen.Sample:
            response = await handle.provider.complete(request)
            return loadgen.Sample(None, response.ttft_ms)

    listener = None
    if progress is not None:
        progress.start(
            f"performance {model_id} ({target}, "
            + (f"{concurrency} workers)" if concurrency else f"{rps:g} req/s)"),
            None,
            unit="requests",
            seconds=duration,
        )
        listener = progress.update
    try:
        if concurrency:
            result = await loadgen.closed_loop(send, concurrency, duration, listener)
        else:
            result = await loadgen.open_loop(send, rps, duration, listener)
    finally:
        await closer.close()
    return Measured(
        f"load:{result.mode}:{target}",
        result.elapsed_s,
        result.completed,
        result.ok,
        result.errors,
        result.latency,
        result.ttft,
        offered_rps=result.offered_rps,
        not_sent=result.not_sent,
    )


def judge(
    measured: Measured, thresholds: dict[str, Any], *, policy: str = "evidence"
) -> list[dict[str, Any]]:
    """Checks against the thresholds (runbook: P95 < 1.5 s, > 20 req/s, errors < 2%).

    The error rate is judged like the offline thresholds: on evidence (its 95% Wilson
    interval below the ceiling) unless `policy` is `point`."""
    checks = []
    p95 = measured.latency.quantile(0.95)
    limit = float(thresholds.get("p95_latency_ms", 1500))
    checks.append(
        {
            "name": f"p95 latency < {limit:g} ms",
            "verdict": "APPROVE" if p95 is not None and p95 < limit else "REJECT",
            "critical": True,
            "detail": f"p95 {p95:.1f} ms" if p95 is not None else "no successful request",
        }
    )
    floor = float(thresholds.get("throughput_rps", 20))
    tput = measured.throughput
    verdict = "APPROVE" if tput > floor else "REJECT"
    note = ""
    if tput <= floor and measured.source == "telemetry":
        verdict, note = "CONDITIONAL", " (observed traffic, which says nothing of capacity)"
    elif tput <= floor and measured.offered_rps is not None and measured.offered_rps <= floor:
        verdict, note = "CONDITIONAL", f" (only {measured.offered_rps:g} req/s was offered)"
    checks.append(
        {
            "name": f"throughput > {floor:g} req/s",
            "verdict": verdict,
            "critical": True,
            "detail": f"{tput:.1f} req/s{note}",
        }
    )
    ceiling = float(thresholds.get("error_rate", 0.02))
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(measured.errors.items())) or "none"
    failed = sum(measured.errors.values())
    interval = stats.wilson_interval(failed, measured.requests)
    if policy == "point":
        verdict = "APPROVE" if measured.error_rate < ceiling else "REJECT"
        basis = "point estimate"
    else:
        verdict = (
            "APPROVE"
            if interval.high < ceiling
            else ("REJECT" if interval.low >= ceiling else "CONDITIONAL")
        )
        basis = "95% interval"
    detail = (
        f"{measured.error_rate:.3%} [{interval.low:.3%}, {interval.high:.3%}] of "
        f"{measured.requests} ({by_class}); judged on the {basis}"
    )
    if verdict == "CONDITIONAL":
        needed = stats.wilson_items_to_decide(measured.error_rate, ceiling)
        detail += (
            f"; about {needed:,} requests at this rate would decide"
            if needed
            else "; the observed rate sits on the threshold"
        )
    checks.append(
        {
            "name": f"error rate < {ceiling:.2%}",
            "verdict": verdict,
            "critical": True,
            "detail": detail,
        }
    )
    return checks


async def run_performance(
    conn: Connection,
    config: QualityGatesConfig,
    options: PerformanceOptions,
    *,
    factory: ProviderFactory | None = None,
    now: float | None = None,
    progress: ProgressSink | None = None,
) -> tuple[GateVerdict, dict[str, Any]]:
    """Measure, judge, store the run; returns the verdict and the summary."""
    from quality_gates.registry import resolve_model

    env = options.environment
    model_id = resolve_model(conn, env, options.model_ref).model_id
    environment = config.environment(env)
    thresholds = environment.thresholds.model_dump() if environment else {}
    source = options.source or ("telemetry" if env in TELEMETRY_ENVIRONMENTS else "load")
    if source not in ("telemetry", "load"):
        raise UsageError(f"unknown source {source!r}; use telemetry or load")
    duration = options.duration_s if options.duration_s is not None else 300.0
    inputs = {
        "model": model_id,
        "environment": env,
        "source": source,
        "duration_s": duration,
        "rps": options.rps,
        "concurrency": options.concurrency,
        "target": options.target,
        "thresholds": thresholds,
    }
    run = runs.start(
        conn,
        run_id=runs.new_run_id("performance"),
        kind="performance",
        environment=env,
        model_id=model_id,
        baseline=None,
        actor=options.actor,
        inputs=inputs,
        parent_id=options.parent_id,
    )
    try:
        if source == "telemetry":
            measured = from_telemetry(conn, env, model_id, duration, now or time.time())
        else:
            measured = await generate(
                config, model_id, options, thresholds, factory, progress=progress
            )
    except BaseException:
        runs.finish(conn, run, status="failed", verdict=None, summary={"reasons": []})
        raise
    if measured.requests == 0:
        checks = [
            {
                "name": "data",
                "verdict": "ERROR",
                "critical": True,
                "detail": f"no requests for {model_id} in {env} over the window"
                if source == "telemetry"
                else "no request completed",
            }
        ]
    else:
        checks = judge(measured, thresholds, policy=config.gates.threshold_policy)
    verdict = combine(GateVerdict(str(c["verdict"])) for c in checks)
    figures = measured.to_json()
    reasons = [f"{c['name']}: {c['verdict']} ({c['detail']})" for c in checks
               if c["verdict"] != "APPROVE"]  # fmt: skip
    summary = {
        "kind": "performance",
        "verdict": verdict.value,
        "headline": (
            f"{verdict.value}: {model_id} in {env} ({measured.source}): "
            + (
                f"p50 {figures['latency_ms']['p50']} ms, p95 {figures['latency_ms']['p95']} ms, "
                f"p99 {figures['latency_ms']['p99']} ms, {figures['throughput_rps']} req/s, "
                f"errors {measured.error_rate:.2%}"
                if measured.requests
                else "no data"
            )
        ),
        "reasons": reasons,
        "model": model_id,
        "environment": env,
        "figures": figures,
        "checks": checks,
        "run_id": run.id,
    }
    runs.finish(conn, run, status="completed", verdict=verdict.value, summary=summary,
                reasons=reasons)  # fmt: skip
    return verdict, summary
