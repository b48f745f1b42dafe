"""Unusable structured output as a quality failure, end to end: `quality-gates simulate fault`
makes the candidate's tool-call arguments malformed; behind `serve`, with every call still
answered 200, the canary rejects the candidate on `invalid_output_rate`, the watch's
default warning rule fires on that model, and /metrics counts the verdicts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import run_cli
from tests.test_canary_e2e import BASELINE, CANDIDATE, GATEWAY, SAME_LATENCY, canary
from tests.test_e2e_serve import serve, simulators

from quality_gates.simulator.control import put_faults
from quality_gates.store.registry import get_alias

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

RATE = 20.0  # requests/s, bounded by the test's length
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
# The default rule's evaluation runs every 5 s in the starter; faster here.
WATCH = "  evaluation_interval: 1s\n"


@contextlib.contextmanager
def tool_traffic(url: str) -> Iterator[dict[int, int]]:
    """Tool-calling requests on alias `current` at RATE until the block ends (a quarter
    streamed); yields the HTTP status counts."""
    statuses: dict[int, int] = {}
    stop = threading.Event()

    async def run() -> None:
        counter = itertools.count()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:

            async def one(i: int) -> None:
                body = {"model": "current", "max_tokens": 64, "stream": i % 4 == 0,
                        "tools": [WEATHER],
                        "messages": [{"role": "user", "content": f"weather {i}?"}]}  # fmt: skip
                try:
                    async with session.post(f"{url}/v1/chat/completions", json=body) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] = statuses.get(0, 0) + 1

            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            while not stop.is_set():
                i = next(counter)
                task = asyncio.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))
            await asyncio.gather(*tasks)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(30)


def test_malformed_tool_arguments_reject_the_canary_and_fire_the_watch_rule(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'ws' / 'state.db'}"
    with simulators(tmp_path / "ws", db, GATEWAY) as (ws, sims):
        text = ws.config_path.read_text()
        ws.config_path.write_text(text.replace("alerts:\n  evaluation_interval: 5s\n",
                                               "alerts:\n" + WATCH))  # fmt: skip
        for sim in sims.running.values():
            put_faults(sim.base_url, SAME_LATENCY, provider=sim.name)
        faulted = run_cli(*ws.cli_args(), "simulate", "fault", "--provider", "google",
                          "--set", "malformed_tool_args_rate=1", cwd=ws.root)  # fmt: skip
        assert faulted.returncode == 0, faulted.stderr
        with serve(ws) as url, tool_traffic(url) as statuses:
            time.sleep(3)  # the alias's recent rate, which the canary sizes its sample from
            code, summary, err = canary(ws, "--model-id", CANDIDATE, "--traffic", "30",
                                        "--duration", "20s")  # fmt: skip
            deadline = time.monotonic() + 15
            fired: list[dict[str, object]] = []
            while not fired and time.monotonic() < deadline:
                fired = ws.conn.execute(
                    "SELECT labels FROM alert_events WHERE rule = 'invalid-output-rate-warning' "
                    "AND to_state = 'firing'"
                )
                time.sleep(0.5)
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                exposition = response.read().decode()
        assert set(statuses) == {200}, statuses  # every call answered: only the output is bad
        assert code == 1, err
        assert summary["verdict"] == "REJECT"
        check = next(c for c in summary["checks"] if c["name"] == "invalid_output_rate")
        assert check["verdict"] == "REJECT", check
        assert summary["sides"]["canary"]["outputs_invalid"] > 0
        assert summary["sides"]["baseline"]["outputs_invalid"] == 0
        assert summary["sides"]["baseline"]["outputs_checked"] > 0
        assert get_alias(ws.conn, "production", "current").model_id == BASELINE
        assert fired, "invalid-output-rate-warning did not fire"
        assert all(CANDIDATE in str(row["labels"]) for row in fired), fired
        assert 'verdict="tool_arguments_schema"' in exposition
        assert f'model="{CANDIDATE}"' in exposition
        # The request rows say why each answer was unusable.
        reasons = ws.conn.execute(
            "SELECT model_id, output_check, COUNT(*) AS n FROM requests "
            "WHERE output_check IS NOT NULL GROUP BY model_id, output_check"
        )
        by = {(r["model_id"], r["output_check"]): r["n"] for r in reasons}
        assert by.get((CANDIDATE, "tool_arguments_schema"), 0) > 0, by
        assert by.get((BASELINE, "valid"), 0) > 0, by
        assert not any(m == BASELINE and v != "valid" for m, v in by), by
        streamed = ws.conn.scalar(
            "SELECT COUNT(*) FROM requests WHERE stream = 1 AND output_check = "
            "'tool_arguments_schema'"
        )
        assert streamed > 0  # streamed tool calls are put together and checked too
