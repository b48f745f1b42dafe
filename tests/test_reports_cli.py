"""`quality-gates report` as a user runs it: real traffic through simulators and the gateway,
then the report written by a separate process; bad input and an unreachable store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import Workspace, make_workspace, run_cli
from tests.gateway_support import serve
from tests.simulators import instant

from quality_gates.config import load_config, parse_config_text, render_starter

PROVIDERS = ("bedrock", "google", "meta")
REQUESTS = 60
FEEDBACK = 10
CANARY = "canary-7f3a9c1e5b2d"
SECRETS = {
    "QG_SLACK_OPS_ALERTS_WEBHOOK": f"https://hooks.slack.com/services/T0/B0/{CANARY}",
    "QG_SLACK_AI_TEAM_WEBHOOK": f"https://hooks.slack.com/services/T1/B1/{CANARY}",
    "QG_PAGERDUTY_ROUTING_KEY": f"R0{CANARY}",
}


def gateway_config(ports: dict[str, int]) -> str:
    data = yaml.safe_load(render_starter("reports", {f"port_{n}": ports[n] for n in PROVIDERS}))
    data["environments"]["production"]["traffic"] = {"bedrock": 34, "google": 33, "meta": 33}
    data["gateway"] = {"telemetry": {"flush_interval": "0.1s"}, "heartbeat": "0.5s"}
    return yaml.safe_dump(data, sort_keys=False)


async def traffic(tmp_path: Path) -> tuple[Workspace, int]:
    """REQUESTS chat completions and FEEDBACK ratings through a real gateway; returns the
    workspace and the number of requests answered."""
    import aiohttp

    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.simulator import run_simulators, spec_from_provider
    from quality_gates.store import StoreURL

    starter = parse_config_text(render_starter("reports"), "quality-gates.yaml").config
    specs = [
        dataclasses.replace(
            spec_from_provider(p, starter.models, port=0), profile=None, faults=instant()
        )
        for p in starter.providers
    ]
    async with run_simulators(specs) as sims:
        ws = make_workspace(
            tmp_path / "ws",
            f"sqlite:///{tmp_path / 'ws' / 'state.db'}",
            gateway_config({name: sim.port for name, sim in sims.items()}),
        )
        gateway = create_app(
            AppSettings(
                config=load_config(ws.config_path).config,
                store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
                environment="production",
            )
        )
        answered = 0
        async with serve(gateway) as url, aiohttp.ClientSession() as session:
            for n in range(REQUESTS):
                body = {
                    "model": "current",
                    "messages": [{"role": "user", "content": f"report request {n}"}],
                    "max_tokens": 16,
                }
                async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                    payload = await response.json()
                    assert response.status == 200, payload
                    answered += 1
                if n < FEEDBACK:
                    rating = {"response_id": payload["id"], "score": 5 if n % 2 else 4}
                    async with session.post(f"{url}/v1/feedback", json=rating) as response:
                        assert response.status in (200, 201), await response.text()
            deadline = time.monotonic() + 20
            while ws.conn.scalar("SELECT COUNT(*) FROM requests") < REQUESTS:
                assert time.monotonic() < deadline, "telemetry was not written in 20 s"
                await asyncio.sleep(0.1)
        return ws, answered


@pytest.mark.integration
@pytest.mark.e2e
async def test_a_detailed_report_of_real_traffic_counts_every_request(tmp_path: Path) -> None:
    ws, answered = await traffic(tmp_path)
    try:
        env = dict(SECRETS)
        out = tmp_path / "out"
        html = run_cli(
            *ws.cli_args(),
            "report",
            "--type",
            "detailed",
            "--output",
            str(out / "r.html"),
            cwd=ws.root,
            env=env,
        )
        assert html.returncode == 0, html.stderr
        assert "Detailed report written to" in html.stderr
        md = run_cli(
            *ws.cli_args(),
            "report",
            "--type",
            "detailed",
            "--output",
            str(out / "r.md"),
            cwd=ws.root,
            env=env,
        )
        assert md.returncode == 0, md.stderr
        as_json = run_cli(
            *ws.cli_args(),
            "report",
            "--type",
            "detailed",
            "--period",
            "1h",
            "--json",
            cwd=ws.root,
            env=env,
        )
        assert as_json.returncode == 0, as_json.stderr
        doc = json.loads(as_json.stdout)
        sections = {s["id"]: s for s in doc["sections"]}
        assert sections["overview"]["data"]["requests"] == answered == REQUESTS
        assert sections["overview"]["data"]["failed_requests"] == 0
        metrics = {m["metric"]: m for m in sections["compliance"]["data"]["metrics"]}
        assert metrics["error_rate"]["measured"] == 0.0
        assert metrics["error_rate"]["status"] == "PASS"
        assert metrics["satisfaction"]["measured"] == pytest.approx(4.5)
        assert metrics["satisfaction"]["basis"] == f"{FEEDBACK} feedback ratings"
        attempts = sum(p["attempts"] for p in sections["providers"]["data"]["providers"])
        assert attempts == ws.conn.scalar("SELECT COUNT(*) FROM attempts")
        assert sections["latency"]["data"]["points"]
        written = [
            (out / "r.html").read_text(),
            (out / "r.md").read_text(),
            as_json.stdout,
            html.stderr + md.stderr + as_json.stderr,
        ]
        for text in written:
            assert CANARY not in text
        assert (out / "r_files" / "latency.png").stat().st_size > 0
    finally:
        ws.database.close_shared()


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    workspace = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    yield workspace
    workspace.database.close_shared()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "weekly"], "error: unknown report type 'weekly'"),
        (["--period", "soon"], "error: --period 'soon' is not a duration"),
        (["--output", "report.pdf"], "cannot tell the format from '.pdf'"),
        (["--type", "incident", "--incident", "42"], "there is no incident #42"),
        (["--environment", "prod"], "did you mean 'production'?"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    ws: Workspace, args: list[str], message: str
) -> None:
    result = run_cli(*ws.cli_args(), "report", *args, cwd=ws.root)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.e2e
def test_an_unreachable_store_exits_4(ws: Workspace) -> None:
    result = run_cli(
        "--config",
        str(ws.config_path),
        "--db",
        "postgresql://127.0.0.1:1/none",
        "report",
        cwd=ws.root,
    )
    assert result.returncode == 4, result.stderr
    assert "cannot reach" in result.stderr


@pytest.mark.e2e
def test_markdown_on_stdout_says_the_charts_are_left_out(ws: Workspace) -> None:
    result = run_cli(*ws.cli_args(), "report", "--type", "summary", cwd=ws.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Summary report")
    assert "No data in this period" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "Markdown on stdout leaves the charts out; use --output FILE.md or FILE.html for them."
    ]


@pytest.mark.e2e
def test_schema_flag_prints_the_shipped_schema(ws: Workspace) -> None:
    import jsonschema

    result = run_cli("report", "--schema", cwd=ws.root)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {
        "const": 1,
        "description": schema["properties"]["schema_version"]["description"],
    }


@pytest.mark.e2e
def test_report_output_replaces_a_symlink_instead_of_writing_through_it(
    ws: Workspace, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    link = ws.root / "report.json"
    link.symlink_to(victim)
    result = run_cli(*ws.cli_args(), "report", "--output", str(link), cwd=ws.root)
    assert result.returncode == 0, result.stderr
    assert victim.read_text(encoding="utf-8") == "precious"
    assert not link.is_symlink()
    assert link.read_text(encoding="utf-8").startswith("{")


@pytest.mark.e2e
def test_an_unwritable_output_is_one_clear_line(ws: Workspace) -> None:
    blocker = ws.root / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = run_cli(*ws.cli_args(), "report", "--output", str(blocker / "r.json"), cwd=ws.root)
    assert result.returncode == 2, result.stderr
    assert "cannot write the report to" in result.stderr
    assert "please report it" not in result.stderr
