"""`dashboards export --format grafana`: every query reads a metric a running gateway (with
the watch, as `serve` runs it) exports, and is valid PromQL."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from tests.conftest import Workspace
from tests.gateway_support import chat_body, fakes, gateway_workspace, post_chat, serve

from quality_gates.config import load_config
from quality_gates.exports._grafana import dashboard, queries
from quality_gates.gateway import AppSettings, create_app
from quality_gates.store import StoreURL
from quality_gates.watch.embedded import watch_background

pytestmark = pytest.mark.integration
METRIC = re.compile(r"\b(qg_[a-z_]+)\b")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$environment": "production", "$provider": ".*"}


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition can hold, from its TYPE lines."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter":
                names.add(f"{name}_total")
            if kind == "histogram":
                names.update(f"{name}_{part}" for part in ("bucket", "count", "sum"))
    return names


async def test_every_dashboard_query_reads_a_metric_the_gateway_exports(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    settings = AppSettings(
        config=load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )
    app = create_app(
        settings, providers=dict(fakes()), services=[functools.partial(watch_background)]
    )
    try:
        async with serve(app) as url, aiohttp.ClientSession() as s:
            for i in range(3):
                assert (await post_chat(s, url, chat_body(text=f"q{i}", stream=i == 1)))[0] == 200
            async with s.get(f"{url}/metrics") as resp:
                exposition = await resp.text()
    finally:
        ws.database.close_shared()
    exported = exported_names(exposition)
    assert "qg_watch_alerts" in exported  # the watch's families ride on the gateway's /metrics
    model = dashboard()
    used = {name for expr in queries(model) for name in METRIC.findall(expr)}
    assert len(used) >= 25
    assert used - exported == set()
    panels = [p for p in model["panels"] if p["type"] != "row"]
    assert all(p["targets"] and p["gridPos"]["w"] > 0 for p in panels)
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    exprs = [e for e in queries(dashboard()) if not e.startswith("label_values(")]
    for variable, value in GRAFANA_VARIABLES.items():
        exprs = [e.replace(variable, value) for e in exprs]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    target = tmp_path / "queries.yml"
    target.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(target)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboards_export_writes_the_json_model(qg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "dash.json"
    result = qg("dashboards", "export", "--format", "grafana", "-o", str(target))
    assert result.code == 0, result.err
    model = json.loads(target.read_text())
    assert model["uid"] == "quality-gates-gateway"
    assert [v["name"] for v in model["templating"]["list"]] == [
        "datasource",
        "environment",
        "provider",
    ]
    assert "wrote a grafana dashboard with" in result.err


def test_the_watch_families_leave_a_scrape_when_the_store_fails(
    sqlite_workspace: Workspace,
) -> None:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    from quality_gates.watch.metrics import WatchCollector

    registry = CollectorRegistry()
    Counter("qg_gateway_example", "still exported", registry=registry).inc()
    registry.register(WatchCollector(sqlite_workspace.database))
    sqlite_workspace.conn.execute("DROP TABLE alert_states")
    text = generate_latest(registry).decode()
    assert "qg_gateway_example_total 1.0" in text
    assert "qg_watch_alerts" not in text
