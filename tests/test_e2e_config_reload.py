"""A running `serve` follows its config file: an edit applies within a second and
`config set` says so; an invalid file is refused (file:line in the log) and the gateway keeps
serving with the config it has."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.test_e2e_serve import NO_PROBES, serve, simulators, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def _post(url: str, text: str) -> tuple[int, dict[str, str]]:
    body = json.dumps(
        {"model": "current", "temperature": 1.0, "messages": [{"role": "user", "content": text}]}
    )
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def test_a_config_edit_applies_live_and_config_set_says_so(tmp_path: Path, qg: Any) -> None:
    with simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", NO_PROBES) as (
        ws,
        _sims,
    ):
        args = ws.cli_args()
        idle = qg(*args, "config", "set", "gates.alpha", "0.04")
        assert "no gateway is running" in idle.out
        with serve(ws) as url:
            wait_for(lambda: ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances") > 0, 10)
            first = [_post(url, "same question")[1]["x-qg-cache"] for _ in range(2)]
            assert first == ["record", "record"]  # the cache serves nothing by default
            edit = qg(*args, "config", "set", "gateway.cache.serve", "always")
            assert edit.code == 0, edit.err
            assert "running gateways: 1 of 1 picked it up" in edit.out
            assert _post(url, "same question")[1]["x-qg-cache"] == "hit"  # no restart
            digest = _health(url)["config_digest"]
            ws.config_path.write_text(
                ws.config_path.read_text().replace("version: 1", "version: one"), "utf-8"
            )
            wait_for(lambda: "config_refused" in _health(url), 10)
            refused = _health(url)
            assert refused["config_digest"] == digest  # the config in force did not change
            assert "quality-gates.yaml:" in refused["config_refused"]
            assert _post(url, "still serving")[0] == 200
            time.sleep(0.1)
        logs = "".join(p.read_text() for p in ws.root.glob("serve-*.log"))
        assert "config reload refused, still serving with the config loaded at" in logs
        assert "config reloaded and applied" in logs


def test_watch_restarts_its_evaluator_on_a_changed_config(tmp_path: Path, qg: Any) -> None:
    from tests.conftest import make_workspace
    from tests.processes import cli_process

    from quality_gates.config import render_starter

    ws = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    log = ws.root / "watch.log"
    args = [*ws.cli_args(), "watch", "--interval", "0.5", "--duration", "1m"]
    with cli_process(args, cwd=ws.root, log=log):
        wait_for(lambda: "cycle" in log.read_text() or log.stat().st_size > 0, 20)
        edit = qg(*ws.cli_args(), "config", "set", "gates.alpha", "0.04")
        assert edit.code == 0, edit.err
        wait_for(lambda: "config reloaded: the evaluator restarts" in log.read_text(), 10)
        ws.config_path.write_text(render_starter("x").replace("version: 1", "version: x"))
        wait_for(lambda: "config reload refused" in log.read_text(), 10)
