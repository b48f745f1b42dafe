"""The public status page over 90 days of telemetry on SQLite.

Fills a store with one roll-up row per minute, per provider and kind (request, attempt) for
--days days (90: 777,600 rows; three providers, 1% errors, a few minutes of client mistakes),
then times, median of --runs, uncached:

- `public_status`: component statuses from the live window, 90 daily uptime bars per
  component, incidents: what one uncached /status.json costs;
- `dashboard_view`: everything the operator dashboard shows (windows of 1 m, 5 m and 1 h);
- the peer: a full scan that sums every roll-up row of the span (`SELECT SUM(count), ...`),
  the floor for anything that reads all of them.

    python bench/web_status.py [--days 90] [--runs 5] [--record]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

PROVIDERS = (
    ("bedrock", "claude-3-5-haiku"),
    ("google", "gemini-1-5-flash"),
    ("meta", "llama-3-1-70b"),
)


def generate(path: Path, days: int, end: float) -> int:
    """Roll-up rows for `days` days up to `end`; returns how many."""
    from quality_gates.store import StoreURL, open_store
    from quality_gates.telemetry import LatencyHistogram

    open_store(StoreURL.parse(f"sqlite:///{path}")).close_shared()
    hist = LatencyHistogram.of([120.0, 180.0, 240.0, 400.0, 900.0]).to_json()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous=OFF")
    last = int(end // 60)
    first = last - days * 1440 + 1
    raw.execute("BEGIN")
    for provider, model in PROVIDERS:
        for kind in ("request", "attempt"):
            raw.execute(
                f"""
                WITH RECURSIVE m(minute) AS (SELECT {first} UNION ALL SELECT minute + 1 FROM m
                    WHERE minute < {last})
                INSERT INTO rollups (minute, environment, alias, model_id, provider, kind,
                    writer, count, errors, errors_by_class, latency_hist, ttft_hist,
                    input_tokens, output_tokens, cost, cache_hits, cache_stale, cache_misses,
                    failovers, canary, updated_at)
                SELECT minute, 'production', 'current', '{model}', '{provider}', '{kind}', 'w',
                    100, CASE WHEN minute % 100 = 0 THEN 1 ELSE 0 END,
                    CASE WHEN minute % 100 = 0 THEN (CASE WHEN minute % 700 = 0
                        THEN '{{"bad_request": 1}}' ELSE '{{"server_error": 1}}' END)
                        ELSE '{{}}' END,
                    '{hist}', '{hist}', 20000, 10000, 0.05, 80, 0, 20, 0, 0, minute * 60.0
                FROM m
                """
            )
    raw.execute("COMMIT")
    count = int(raw.execute("SELECT COUNT(*) FROM rollups").fetchone()[0])
    raw.close()
    return count


def median_time(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args()

    from quality_gates.config import parse_config_text, render_starter
    from quality_gates.registry import Actor, sync_config
    from quality_gates.store import Database, StoreURL
    from quality_gates.web.operator import dashboard_view
    from quality_gates.web.public import public_status
    from quality_gates.web.uptime import UptimeHistory

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.db"
        config_path = Path(folder) / "quality-gates.yaml"
        config_path.write_text(render_starter("bench"))
        now = time.time()
        started = time.perf_counter()
        rows = generate(path, args.days, now)
        filled = time.perf_counter() - started
        database = Database(StoreURL.parse(f"sqlite:///{path}"))
        conn = database.connect()
        from quality_gates.config import load_config

        loaded = load_config(config_path)
        sync_config(conn, loaded, Actor("bench", "config"))
        config = parse_config_text(config_path.read_text(), str(config_path)).config
        public = public_status(conn, config, "production", now=now)
        bars = len(public["components"][0]["uptime"]["days"])
        public_s = median_time(
            lambda: public_status(conn, config, "production", now=now), args.runs
        )
        history = UptimeHistory()
        public_status(conn, config, "production", now=now, history=history)
        warm_s = median_time(
            lambda: public_status(conn, config, "production", now=now, history=history),
            args.runs,
        )
        dashboard_s = median_time(
            lambda: dashboard_view(conn, config, "production", now=now), args.runs
        )
        scan_s = median_time(
            lambda: conn.execute(
                "SELECT provider, kind, SUM(count), SUM(errors) FROM rollups "
                "GROUP BY provider, kind"
            ),
            args.runs,
        )
        conn.close()
    body = (
        f"| what (median of {args.runs}) | seconds |\n|---|---:|\n"
        f"| `public_status` uncached (/status.json: statuses, {bars} uptime bars x 4 "
        "components) "
        f"| {public_s:.3f} |\n"
        f"| the same with the finished days' bars kept (what the app does; re-read every "
        f"10 min) | {warm_s:.3f} |\n"
        f"| `dashboard_view` (the operator dashboard's data) | {dashboard_s:.3f} |\n"
        f"| peer: one full scan summing every roll-up row | {scan_s:.3f} |\n\n"
        f"{rows:,} roll-up rows ({args.days} days x 1,440 minutes x 3 providers x 2 kinds), "
        f"filled in {filled:.1f} s. The status page reuses one answer for "
        "`web.status_page.cache` (5 s), so a crowd of readers costs one computation per 5 s."
    )
    print(body)
    if args.record:
        record(
            "web_status",
            "Status page over 90 days of roll-ups (bench/web_status.py)",
            f"python bench/web_status.py --days {args.days} --runs {args.runs} --record",
            body,
        )


if __name__ == "__main__":
    main()
