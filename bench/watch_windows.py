"""Window metrics over 10 million telemetry rows on SQLite (target: at most 1 s).

Generates N request rows (default 10,000,000, over 7 days, three providers, 1.5% errors)
inside SQLite with a recursive CTE, rolls them up per minute as the gateway's writer does
(counts in SQL, latency histograms in Python), then times, median of --runs:

- every default alert rule's metric and the SLO burn rates, as one evaluation computes them
  (windows 1 m to 3 d, 24 h baselines), from the roll-ups: the figure with the target;
- a full evaluation cycle (the above plus rule states, incidents and the outbox, written);
- the peer: error rate and P95 for the same windows straight from the raw `requests` rows.

    python bench/watch_windows.py [--rows 10000000] [--runs 5] [--db PATH] [--record]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

TARGET_S = 1.0
DAYS = 7
PROVIDERS = (
    ("bedrock", "claude-3-5-haiku"),
    ("google", "gemini-1-5-flash"),
    ("meta", "llama-3-1-70b"),
)


def generate(path: Path, rows: int, end: float) -> float:
    """Fill the store at `path` with `rows` requests ending at `end`; returns seconds taken."""
    from quality_gates.store import StoreURL, open_store
    from quality_gates.telemetry import LatencyHistogram

    started = time.perf_counter()
    open_store(StoreURL.parse(f"sqlite:///{path}")).close_shared()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=OFF")
    step = DAYS * 86400.0 / rows
    start = end - DAYS * 86400.0
    raw.execute("BEGIN")
    # Deterministic pseudo-random fields from the row number: provider i % 3, 1.5% errors,
    # 64 latency levels 100..1675 ms, 80% cache hits, 20 keys.
    raw.execute(
        f"""
        WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows - 1})
        INSERT INTO requests (id, ts, environment, alias, model_id, provider, deployment,
            key_name, status, http_status, error_class, latency_ms, ttft_ms, input_tokens,
            output_tokens, cost, cache, attempts, hops, stream, canary)
        SELECT printf('r%d', i), {start} + i * {step}, 'production', 'current',
            CASE i % 3 WHEN 0 THEN 'claude-3-5-haiku' WHEN 1 THEN 'gemini-1-5-flash'
                ELSE 'llama-3-1-70b' END,
            CASE i % 3 WHEN 0 THEN 'bedrock' WHEN 1 THEN 'google' ELSE 'meta' END,
            NULL, printf('key-%d', i % 20),
            CASE WHEN (i * 7919) % 1000 < 15 THEN 'error' ELSE 'ok' END,
            CASE WHEN (i * 7919) % 1000 < 15 THEN 502 ELSE 200 END,
            CASE WHEN (i * 7919) % 1000 < 15 THEN 'server_error' ELSE NULL END,
            100 + ((i * 104729) % 64) * 25, NULL, 200 + i % 50, 100 + i % 30,
            ((200 + i % 50) * 0.0008 + (100 + i % 30) * 0.004) / 1000.0,
            CASE WHEN (i * 31) % 10 < 8 THEN 'hit' ELSE 'miss' END, 1, 0, 0, 0
        FROM seq
        """
    )
    raw.execute(
        """
        INSERT INTO rollups (minute, environment, alias, model_id, provider, kind, writer, count,
            errors, errors_by_class, latency_hist, ttft_hist, input_tokens, output_tokens, cost,
            cache_hits, cache_stale, cache_misses, failovers, canary, updated_at)
        SELECT CAST(ts / 60 AS INTEGER), environment, alias, model_id, provider, k.kind, 'bench',
            COUNT(*), SUM(status = 'error'), '{}', '', '', SUM(input_tokens),
            SUM(output_tokens), SUM(cost), SUM(cache = 'hit'), 0, SUM(cache = 'miss'), 0, 0,
            MAX(ts)
        FROM requests, (SELECT 'request' AS kind UNION ALL SELECT 'attempt') AS k
        GROUP BY CAST(ts / 60 AS INTEGER), environment, alias, model_id, provider, k.kind
        """
    )
    hists: dict[tuple[int, str], LatencyHistogram] = defaultdict(LatencyHistogram)
    for minute, provider, latency, n in raw.execute(
        "SELECT CAST(ts / 60 AS INTEGER), provider, latency_ms, COUNT(*) FROM requests "
        "GROUP BY 1, 2, 3"
    ):
        hists[(minute, provider)].add(latency, n)
    raw.executemany(
        "UPDATE rollups SET latency_hist = :h, ttft_hist = :t, errors_by_class = CASE WHEN "
        "errors > 0 THEN json_object('server_error', errors) ELSE '{}' END "
        "WHERE minute = :m AND provider = :p",
        (
            {"h": h.to_json(), "t": LatencyHistogram().to_json(), "m": m, "p": p}
            for (m, p), h in hists.items()
        ),
    )
    raw.execute("COMMIT")
    raw.close()
    return time.perf_counter() - started


def window_metrics(conn, config, now: float) -> int:  # type: ignore[no-untyped-def]
    """Every metric one evaluation computes; returns how many samples."""
    from quality_gates.signals._metrics import MetricEngine
    from quality_gates.watch._evaluate import burn_samples, quotas, rule_specs

    engine = MetricEngine(conn, now, quotas=quotas(config))
    count = 0
    for spec in rule_specs(config):
        if spec.metric == "burn_rate":
            count += len(burn_samples(engine, spec))
        else:
            count += len(
                engine.samples(
                    spec.metric,
                    spec.window,
                    spec.group_by,
                    min_requests=spec.min_requests,
                    baseline=spec.baseline_window,
                )
            )
    return count


def raw_peer(conn, config, now: float) -> None:  # type: ignore[no-untyped-def]
    """Error rate and P95 per provider for the same windows, from raw rows."""
    from quality_gates.watch._evaluate import rule_specs

    windows = sorted(
        {s.window for s in rule_specs(config)}
        | {s.short_window or 0 for s in rule_specs(config)} - {0}
    )
    for seconds in windows:
        rows = conn.execute(
            "SELECT provider, COUNT(*) AS n, SUM(status = 'error') AS errors FROM requests "
            "WHERE environment = 'production' AND ts >= :a AND ts <= :b GROUP BY provider",
            {"a": now - seconds, "b": now},
        )
        assert rows
        latencies = [
            r["latency_ms"]
            for r in conn.execute(
                "SELECT latency_ms FROM requests WHERE environment = 'production' "
                "AND ts >= :a AND ts <= :b",
                {"a": now - seconds, "b": now},
            )
        ]
        latencies.sort()
        assert latencies[int(0.95 * (len(latencies) - 1))] > 0


def timed(func, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="reuse (or create) this SQLite file")
    parser.add_argument("--skip-raw", action="store_true", help="do not time the raw-row peer")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args()

    from quality_gates.config import parse_config_text, render_starter
    from quality_gates.store import StoreURL, open_store
    from quality_gates.watch._evaluate import evaluate

    config = parse_config_text(render_starter("bench"), "quality-gates.yaml").config
    folder = None
    if args.db is None:
        folder = tempfile.TemporaryDirectory(prefix="qg-bench-")
        args.db = Path(folder.name) / "state.db"
    end = time.time()
    generated = None
    if not args.db.exists():
        generated = generate(args.db, args.rows, end)
        print(f"generated {args.rows:,} requests and their roll-ups in {generated:.1f} s")
    database = open_store(StoreURL.parse(f"sqlite:///{args.db}"))
    conn = database.shared()
    rows = conn.scalar("SELECT COUNT(*) FROM requests")
    rollups = conn.scalar("SELECT COUNT(*) FROM rollups")
    now = conn.scalar("SELECT MAX(ts) FROM requests") + 1.0
    size_mb = os.path.getsize(args.db) / 1e6
    samples = 0

    def metrics() -> None:
        nonlocal samples
        samples = window_metrics(conn, config, now)

    cold = timed(metrics, 1)[0]
    warm = timed(metrics, args.runs)
    cycle = timed(lambda: evaluate(conn, config, now), args.runs)
    peer = (
        [] if args.skip_raw else timed(lambda: raw_peer(conn, config, now), max(1, args.runs // 2))
    )
    median = statistics.median(warm)
    pairs = sum(len(s.windows) for s in config.alerts.slos)
    lines = [
        f"{rows:,} request rows ({size_mb:,.0f} MB file), {rollups:,} roll-up rows; "
        f"{len(config.alerts.rules)} default rules and {pairs} "
        f"SLO burn-rate pairs ({samples} metric samples, windows 1 m to 3 d, 24 h baselines).",
        "",
        "| what | median s | min s | max s |",
        "|---|---:|---:|---:|",
        f"| window metrics from roll-ups (first run, cold) | {cold:.3f} | | |",
        f"| window metrics from roll-ups | {median:.3f} | {min(warm):.3f} | {max(warm):.3f} |",
        f"| full evaluation cycle (metrics + states + incidents, written) | "
        f"{statistics.median(cycle):.3f} | {min(cycle):.3f} | {max(cycle):.3f} |",
    ]
    if peer:
        lines.append(
            f"| peer: error rate + P95 for the same windows from raw rows | "
            f"{statistics.median(peer):.3f} | {min(peer):.3f} | {max(peer):.3f} |"
        )
    lines += [
        "",
        f"- window metrics over {rows:,} telemetry rows: {median * 1000:.0f} ms median, target "
        f"<= {TARGET_S * 1000:.0f} ms: {'met' if median <= TARGET_S else 'MISSED'}",
    ]
    if peer:
        lines.append(
            f"- the raw-row peer takes {statistics.median(peer) / median:.0f}x as long for less"
        )
    if generated is not None:
        lines.append(f"- generating the rows and roll-ups took {generated:.0f} s (not timed above)")
    body = "\n".join(lines)
    print(body)
    if args.record:
        record(
            "watch_windows",
            "Watch: window metrics over 10 million telemetry rows (SQLite)",
            f"python bench/watch_windows.py --rows {args.rows} --runs {args.runs}",
            body,
        )
    database.close_shared()
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
