"""Synthetic telemetry for watch tests: roll-up rows as the gateway's writer would store them."""

from __future__ import annotations

import json
from collections.abc import Iterable

from quality_gates.store import Connection
from quality_gates.telemetry import LatencyHistogram

MODEL_OF = {"bedrock": "claude-3-5-haiku", "google": "gemini-1-5-flash", "meta": "llama-3-1-70b"}


def put_rollup(
    conn: Connection,
    *,
    ts: float,
    provider: str = "bedrock",
    kind: str = "request",
    environment: str = "production",
    alias: str = "current",
    model_id: str | None = None,
    writer: str = "w1",
    count: int = 100,
    errors: int = 0,
    errors_by_class: dict[str, int] | None = None,
    latencies: Iterable[float] = (),
    ttfts: Iterable[float] = (),
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: float = 0.0,
    cache_hits: int = 0,
    cache_stale: int = 0,
    cache_misses: int = 0,
    outputs_checked: int = 0,
    outputs_invalid: int = 0,
) -> None:
    """Store (replace) the roll-up row of the minute containing `ts`."""
    latency = LatencyHistogram.of(latencies)
    ttft = LatencyHistogram.of(ttfts)
    classes = (
        errors_by_class
        if errors_by_class is not None
        else ({"server_error": errors} if errors else {})
    )
    with conn.write():
        conn.execute(
            "DELETE FROM rollups WHERE minute = :minute AND environment = :env AND alias = :alias "
            "AND model_id = :model AND provider = :provider AND kind = :kind AND writer = :writer",
            {
                "minute": int(ts // 60),
                "env": environment,
                "alias": alias,
                "model": MODEL_OF.get(provider, provider) if model_id is None else model_id,
                "provider": provider,
                "kind": kind,
                "writer": writer,
            },
        )
        conn.execute(
            "INSERT INTO rollups (minute, environment, alias, model_id, provider, kind, writer, "
            "count, errors, errors_by_class, latency_hist, ttft_hist, input_tokens, output_tokens, "
            "cost, cache_hits, cache_stale, cache_misses, failovers, canary, outputs_checked, "
            "outputs_invalid, updated_at) VALUES "
            "(:minute, :env, :alias, :model, :provider, :kind, :writer, :count, :errors, :classes, "
            ":latency, :ttft, :input, :output, :cost, :hits, :stale, :misses, 0, 0, :checked, "
            ":invalid, :ts)",
            {
                "minute": int(ts // 60),
                "env": environment,
                "alias": alias,
                "model": MODEL_OF.get(provider, provider) if model_id is None else model_id,
                "provider": provider,
                "kind": kind,
                "writer": writer,
                "count": count,
                "errors": errors,
                "classes": json.dumps(classes),
                "latency": latency.to_json(),
                "ttft": ttft.to_json(),
                "input": input_tokens,
                "output": output_tokens,
                "cost": cost,
                "hits": cache_hits,
                "stale": cache_stale,
                "misses": cache_misses,
                "checked": outputs_checked,
                "invalid": outputs_invalid,
                "ts": ts,
            },
        )


def put_probes(
    conn: Connection,
    *,
    ts: float,
    provider: str = "bedrock",
    count: int = 12,
    failed: int = 0,
    environment: str = "production",
    writer: str = "w1",
) -> None:
    """The gateway's active probes of `provider` in the minute of `ts`, as it rolls them up
    (a `probe` series, no alias or model; failures as server errors)."""
    put_rollup(
        conn,
        ts=ts,
        provider=provider,
        kind="probe",
        environment=environment,
        alias="",
        model_id="",
        writer=writer,
        count=count,
        errors=failed,
        latencies=[150.0] * count,
    )


def put_traffic(
    conn: Connection,
    *,
    ts: float,
    error_rate: float = 0.0,
    providers: Iterable[str] = ("bedrock", "google", "meta"),
    count: int = 100,
    latency_ms: float = 200.0,
    environment: str = "production",
) -> None:
    """One minute of requests and attempts on every provider at `error_rate`."""
    for provider in providers:
        errors = round(count * error_rate)
        for kind in ("request", "attempt"):
            put_rollup(
                conn,
                ts=ts,
                provider=provider,
                kind=kind,
                environment=environment,
                count=count,
                errors=errors,
                latencies=[latency_ms] * count,
                cache_hits=round(count * 0.8) if kind == "request" else 0,
                cache_misses=count - round(count * 0.8) if kind == "request" else 0,
            )
