"""`canary` as a user runs it: `serve` in front of the simulators, real client traffic on alias
`current`, the CLI in its own process. The share asked for is the share served (counted from
the clients' `x-qg-canary` headers, within a binomial tolerance), a candidate failing a
quarter of its calls behind the gateway's retries and failover is rolled back, a healthy one
is promoted with its aliases moved, a canary right after another gets its share too, and a
canary that cannot reach its sample says so before it starts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from scipy import stats as sps
from tests.conftest import Workspace, run_cli
from tests.test_e2e_serve import serve, simulators

from quality_gates.simulator.control import put_faults
from quality_gates.store import settings
from quality_gates.store.registry import get_alias

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

CANDIDATE, BASELINE = "gemini-1-5-flash", "claude-3-5-haiku"
RATE = 20.0  # requests/s, as in the issue
DURATION = "20s"
SHARE = 30.0
APPLY_S = 1.0  # the share holds from 1 s after the command set it (gateways apply it by then)
TOLERANCE = 0.001  # a served share this unlikely under the set one fails the test
# Every model with the same latency, so a healthy candidate is no slower than the baseline.
SAME_LATENCY = {
    "reset": True,
    "latency_p50_ms": 20,
    "latency_p95_ms": 40,
    "ttft_p50_ms": 10,
    "ttft_p95_ms": 20,
    "token_delay_ms": 0,
    "answer_tokens_p50": 12,
    "answer_tokens_p95": 20,
}
GATEWAY = """
gateway:
  control_poll: 0.1
  heartbeat: 0.5s
  telemetry: {flush_interval: 100ms}
"""


@dataclass
class Reply:
    sent: float
    gateway: int
    status: int
    canary: bool
    model: str | None


@dataclass
class Load:
    """Client traffic on alias `current` at a steady rate, spread over the gateways; some
    prompts repeat (the cache answers them), most do not."""

    urls: list[str]
    rate: float = RATE
    replies: list[Reply] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def _run(self) -> None:
        counter = itertools.count()
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(i: int) -> None:
                text = f"repeat {i // 5 % 4}" if i % 5 == 0 else f"question {i}"
                body = {"model": "current", "max_tokens": 16, "stream": i % 4 == 0,
                        "messages": [{"role": "user", "content": text}]}  # fmt: skip
                sent = time.time()
                gateway = i % len(self.urls)
                try:
                    async with session.post(
                        f"{self.urls[gateway]}/v1/chat/completions", json=body
                    ) as r:
                        await r.read()
                        reply = Reply(sent, gateway, r.status,
                                      r.headers.get("x-qg-canary") == "1",
                                      r.headers.get("x-qg-model"))  # fmt: skip
                except (aiohttp.ClientError, TimeoutError):
                    reply = Reply(sent, gateway, 0, False, None)
                self.replies.append(reply)

            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            while not self.stop.is_set():
                i = next(counter)
                task = asyncio.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                # A fixed schedule: a late tick sends at once instead of lowering the rate.
                await asyncio.sleep(max(0.0, start + (i + 1) / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    def share(self, start: float, end: float, gateway: int) -> tuple[int, int]:
        """(canary, answered) among requests sent to `gateway` in [start, end)."""
        window = [
            r
            for r in self.replies
            if start <= r.sent < end and r.status == 200 and r.gateway == gateway
        ]
        return sum(r.canary for r in window), len(window)


@contextlib.contextmanager
def load(urls: list[str], rate: float = RATE) -> Iterator[Load]:
    traffic = Load(urls, rate)
    thread = threading.Thread(target=asyncio.run, args=(traffic._run(),), daemon=True)
    thread.start()
    try:
        yield traffic
    finally:
        traffic.stop.set()
        thread.join(30)


def canary(ws: Workspace, *args: str) -> tuple[int, dict[str, Any], str]:
    """`quality-gates --json canary ARGS` as a separate process: (exit code, JSON, stderr)."""
    done = run_cli(*ws.cli_args(), "--json", "canary", *args, cwd=ws.root, timeout=120)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def window(ws: Workspace, run_id: str) -> tuple[float, float]:
    """When the canary set its share and when it took it back (from the audit log)."""
    rows = ws.conn.execute(
        "SELECT ts, action FROM audit_log WHERE action LIKE 'canary.%' AND details LIKE :run "
        "ORDER BY ts",
        {"run": f"%{run_id}%"},
    )
    start = next(r["ts"] for r in rows if r["action"] == "canary.start")
    end = next(r["ts"] for r in rows if r["action"] in ("canary.rollback", "canary.clear"))
    return float(start), float(end)


def assert_share_served(traffic: Load, ws: Workspace, summary: dict[str, Any]) -> None:
    """The clients of every gateway saw the set share while the canary ran, within a
    binomial tolerance."""
    start, end = window(ws, summary["run_id"])
    for gateway in range(len(traffic.urls)):
        hits, n = traffic.share(start + APPLY_S, end, gateway)
        assert n >= 100, f"only {n} answers from gateway {gateway} in the canary's window"
        p = sps.binomtest(hits, n, SHARE / 100).pvalue
        assert p > TOLERANCE, f"gateway {gateway}: {hits} of {n} went to the canary, {SHARE}% set"
    assert summary["share"]["off"] is False, summary["share"]["detail"]
    assert summary["share"]["set_percent"] == SHARE


def test_canary_failing_behind_failover_is_rolled_back(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ws' / 'state.db'}"
    with simulators(tmp_path / "ws", db, GATEWAY) as (ws, sims):
        for sim in sims.running.values():
            put_faults(sim.base_url, SAME_LATENCY, provider=sim.name)
        with serve(ws) as url, load([url]) as traffic:
            time.sleep(3)  # the alias's recent rate, which the canary sizes its sample from
            # Too short to reach the sample: said before starting, nothing set.
            code, _, err = canary(ws, "--model-id", CANDIDATE, "--traffic", "5",
                                  "--duration", "2s")  # fmt: skip
            assert code == 3, err
            assert "canary not started" in err
            assert "--duration" in err  # what would reach it
            assert settings.get(ws.conn, "production", "canary") is None

            faulted = run_cli(*ws.cli_args(), "simulate", "fault", "--provider", "google",
                              "--error-rate", "0.25", cwd=ws.root)  # fmt: skip
            assert faulted.returncode == 0, faulted.stderr
            code, summary, err = canary(ws, "--model-id", CANDIDATE, "--traffic", str(SHARE),
                                        "--duration", DURATION)  # fmt: skip
            # A manual share holds from the moment the command returns.
            manual = run_cli(*ws.cli_args(), "canary", "--update-traffic", str(SHARE),
                             cwd=ws.root)  # fmt: skip
            returned = time.time()
            assert manual.returncode == 0, manual.stderr
            assert "in force on the 1 running gateway(s)" in manual.stdout
            time.sleep(8)
            hits, n = traffic.share(returned, returned + 8, 0)
            assert sps.binomtest(hits, n, SHARE / 100).pvalue > TOLERANCE, (hits, n)
            assert run_cli(*ws.cli_args(), "canary", "--rollback", cwd=ws.root).returncode == 0
        assert code == 1, err
        assert summary["verdict"] == "REJECT"
        errors = next(c for c in summary["checks"] if c["name"] == "error_rate")
        assert errors["verdict"] == "REJECT", errors
        candidate = summary["sides"]["canary"]
        # The candidate's own failures, of which the clients saw almost none.
        assert candidate["failure_classes"].get("server_error", 0) > 0, candidate
        assert candidate["failure_rate"] > 0.1
        assert candidate["client"]["error_rate"] < candidate["failure_rate"] / 2
        assert summary["sides"]["baseline"]["failures"] == 0
        assert_share_served(traffic, ws, summary)
        start, end = window(ws, summary["run_id"])
        assert end - start < 20 + 5  # rolled back within its duration
        assert settings.get(ws.conn, "production", "canary")["percent"] == 0.0
        assert get_alias(ws.conn, "production", "current").model_id == BASELINE


def test_healthy_candidates_back_to_back_are_promoted_at_their_share(tmp_path: Path) -> None:
    """Two gateways, each at the issue's rate: each serves the share; the second canary
    starts as the first ends. Shorter canaries: at twice the rate they reach the sample."""
    db = f"sqlite:///{tmp_path / 'ws' / 'state.db'}"
    with simulators(tmp_path / "ws", db, GATEWAY) as (ws, sims):
        for sim in sims.running.values():
            put_faults(sim.base_url, SAME_LATENCY, provider=sim.name)
        with (
            serve(ws) as url_a,
            serve(ws) as url_b,
            load([url_a, url_b], rate=2 * RATE) as traffic,
        ):
            time.sleep(3)
            # Each candidate is cheaper than the model it replaces (cost may not rise).
            first = canary(ws, "--model-id", "claude-3-haiku", "--traffic", str(SHARE),
                           "--duration", "12s")  # fmt: skip
            second = canary(ws, "--model-id", CANDIDATE, "--traffic", str(SHARE),
                            "--duration", "12s")  # fmt: skip
        for code, summary, err in (first, second):
            assert code == 0, (err, summary.get("reasons"))
            assert summary["verdict"] == "APPROVE"
            assert_share_served(traffic, ws, summary)
            assert summary["share"]["gateways"] == 2
            assert summary["sides"]["canary"]["failures"] == 0
        # previous-stable <- current <- candidate, twice.
        assert get_alias(ws.conn, "production", "current").model_id == CANDIDATE
        assert get_alias(ws.conn, "production", "previous-stable").model_id == "claude-3-haiku"
        moves = ws.conn.execute(
            "SELECT alias, from_model, to_model FROM alias_history WHERE environment = "
            "'production' AND source = 'canary'"
        )
        assert sorted((m["alias"], m["from_model"], m["to_model"]) for m in moves) == sorted(
            [
                ("current", BASELINE, "claude-3-haiku"),
                ("previous-stable", "claude-3-haiku", BASELINE),
                ("current", "claude-3-haiku", CANDIDATE),
                ("previous-stable", BASELINE, "claude-3-haiku"),
            ]
        )
        assert settings.get(ws.conn, "production", "canary") is None
