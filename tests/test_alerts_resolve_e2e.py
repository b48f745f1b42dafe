"""Alerts end when the problem ends, end to end: a provider outage under steady load, the
watch fails its traffic over, the outage goes on with no client traffic on the provider (its
alerts keep firing on the gateway's probes), then the provider recovers and its alerts
resolve from the probes alone, once each, within the bound the settings give:

    recovery window + evaluation interval + keep_firing_for + telemetry flush

(the shortened windows here; with the production defaults, 20 + 5 + 60 + 0.5 = 85.5 s,
which `test_watch_recovery.py` computes from the default config).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import make_workspace
from tests.gateway_support import serve
from tests.test_watch_e2e import set_faults, steady_load, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 12.0  # without the recovery window, resolving would take longer than this
KEEP = 1.0
EVALUATION = 0.5
PROBE_INTERVAL = 0.5  # the gateway's breaker probes: the samples of a provider with no traffic
MIN_SAMPLES = 10
PROVIDERS = ("bedrock", "google", "meta")
PROVIDER_RULES = ("provider-availability-critical", "provider-server-errors-critical")


def outage_config(ports: dict[str, int]) -> str:
    """The starter on the simulators: provider rules on a short timescale, failover on, and
    a failback that waits longer than the test, so traffic stays away from the provider."""
    from quality_gates.config import render_starter

    data = yaml.safe_load(render_starter("e2e", {f"port_{n}": ports[n] for n in PROVIDERS}))
    short = {
        "window": f"{WINDOW:g}s",
        "for": "0s",
        "keep_firing_for": f"{KEEP:g}s",
        "min_requests": MIN_SAMPLES,
        "severity": "critical",
        "type": "provider",
    }
    data["alerts"] = {
        "evaluation_interval": f"{EVALUATION:g}s",
        "rules": [
            {"name": PROVIDER_RULES[0], "expr": "provider_availability < 95%", **short},
            {"name": PROVIDER_RULES[1], "expr": "server_error_rate > 10%", **short},
        ],
        "slos": [],
    }
    data["remediation"] = {
        "cooldown": "0s",
        "rollback": {"triggers": []},
        "failover": {"triggers": list(PROVIDER_RULES)},
        "failback": {"healthy_for": "10m", "probe_interval": "1s"},
        "probes": {"interval": "1h", "items": 1},
        "sampling": {"share": 0.0},
        "environments": {"development": {"enabled": False}, "staging": {"enabled": False}},
    }
    data["incidents"] = {"auto_resolve_after": "0s"}
    data.pop("routines", None)
    data["gateway"] = {
        "heartbeat": "0.5s",
        "control_poll": 0.1,
        "telemetry": {"flush_interval": "0.2s"},
        "breaker": {"probe_interval": f"{PROBE_INTERVAL:g}s", "open_for": "2s"},
    }
    return yaml.safe_dump(data, sort_keys=False)


def provider_alerts(conn: Any, provider: str) -> dict[str, str]:
    """rule -> state of the provider's alerts."""
    rows = conn.execute(
        "SELECT rule, state, labels FROM alert_states WHERE environment = 'production'"
    )
    return {
        str(r["rule"]): str(r["state"])
        for r in rows
        if f'"provider": "{provider}"' in str(r["labels"])
        or f'"provider":"{provider}"' in str(r["labels"])
    }


def transitions(conn: Any, provider: str) -> list[tuple[str, str]]:
    """(rule, to_state) of the provider's alert events, in order."""
    rows = conn.execute("SELECT rule, to_state, labels FROM alert_events ORDER BY id")
    return [(str(r["rule"]), str(r["to_state"])) for r in rows if provider in str(r["labels"])]


def attempts_on(conn: Any, provider: str, since: float) -> int:
    return int(
        conn.scalar(
            "SELECT COUNT(*) FROM attempts WHERE provider = :p AND ts >= :since",
            {"p": provider, "since": since},
        )
        or 0
    )


async def test_provider_alerts_resolve_from_probes_after_traffic_moved_away(
    tmp_path: Path,
) -> None:
    from quality_gates.config import load_config, parse_config_text, render_starter
    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.simulator import run_simulators, spec_from_provider
    from quality_gates.store import StoreURL
    from quality_gates.watch._evaluate import rule_specs
    from quality_gates.watch._service import WatchService

    starter = parse_config_text(render_starter("e2e"), "quality-gates.yaml").config
    specs = [spec_from_provider(p, starter.models, port=0) for p in starter.providers]
    async with run_simulators(specs) as sims:
        ports = {name: sim.port for name, sim in sims.items()}
        ws = make_workspace(
            tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", outage_config(ports)
        )
        config = load_config(ws.config_path).config
        app = create_app(
            AppSettings(
                config=config,
                store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
                environment="production",
            )
        )
        (spec,) = [s for s in rule_specs(config) if s.name == PROVIDER_RULES[0]]
        assert spec.recovery_window is not None
        bound = spec.recovery_window + EVALUATION + KEEP + 0.2  # 0.2: the telemetry flush
        assert bound < WINDOW
        watch = WatchService(ws.database, config)
        stop_watch, stop_load = asyncio.Event(), asyncio.Event()
        outcomes: dict[int, int] = {}
        async with serve(app) as gateway:
            load = asyncio.create_task(steady_load(gateway, stop_load, outcomes))
            watching = asyncio.create_task(watch.run(stop_watch))
            try:
                await asyncio.sleep(3.0)
                await set_faults(sims["bedrock"].base_url, outage=True)
                await wait_for(
                    lambda: provider_alerts(ws.conn, "bedrock").get(PROVIDER_RULES[0]) == "firing",
                    30,
                    "bedrock's availability alert",
                )
                await wait_for(
                    lambda: ws.conn.scalar(
                        "SELECT COUNT(*) FROM remediations WHERE action = 'failover' "
                        "AND state = 'active'"
                    ),
                    30,
                    "the watch's failover",
                )
                moved = time.time()
                # The outage goes on with no client traffic on bedrock: its alerts say so.
                await asyncio.sleep(WINDOW + 2.0)
                assert provider_alerts(ws.conn, "bedrock") == dict.fromkeys(
                    PROVIDER_RULES, "firing"
                )
                assert attempts_on(ws.conn, "bedrock", moved + 1.0) == 0
                cleared = time.time()
                await set_faults(sims["bedrock"].base_url, outage=False)
                await wait_for(
                    lambda: all(
                        s == "resolved" for s in provider_alerts(ws.conn, "bedrock").values()
                    ),
                    60,
                    "bedrock's alerts to resolve",
                )
                took = time.time() - cleared
                # The design bound, plus one evaluation and one probe round of scheduling
                # slack on a loaded machine; the bound for drill windows is 10 s.
                assert took <= min(bound + 2.0, 10.0), (took, bound)
                # The window still holds the outage's failures: they must not fire it again.
                await asyncio.sleep(WINDOW + 1.0)
                assert provider_alerts(ws.conn, "bedrock") == dict.fromkeys(
                    PROVIDER_RULES, "resolved"
                )
                assert attempts_on(ws.conn, "bedrock", moved + 1.0) == 0
            finally:
                stop_load.set()
                stop_watch.set()
                await asyncio.wait_for(asyncio.gather(load, watching), 30)
    for rule in PROVIDER_RULES:
        states = [to for r, to in transitions(ws.conn, "bedrock") if r == rule]
        assert states == ["firing", "resolved"], (rule, states)
    # Probes are no client traffic: no request or attempt row, every request a client's.
    requests = ws.conn.scalar("SELECT COUNT(*) FROM requests")
    assert requests == sum(outcomes.values())
    assert ws.conn.scalar("SELECT COUNT(*) FROM rollups WHERE kind = 'probe'")
    ws.database.close_shared()
