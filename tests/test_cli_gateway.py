"""The gateway's commands as a user runs them: keys, config set runtime flags, failover,
breaker."""

from __future__ import annotations

import json

from tests.conftest import Workspace


def test_keys_create_shows_the_secret_once_and_stores_only_its_hash(
    qg, sqlite_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    created = qg(*args, "keys", "create", "--name", "web", "--role", "operator", "--json")
    assert created.code == 0, created.err
    secret = json.loads(created.out)["key"]
    assert secret.startswith("qg-")
    stored = sqlite_workspace.conn.one("SELECT * FROM api_keys")
    assert secret not in json.dumps(stored)
    listed = json.loads(qg(*args, "keys", "list", "--json").out)
    assert listed == [{**listed[0], "name": "web", "role": "operator", "active": True}]
    assert "key" not in listed[0]
    assert qg(*args, "keys", "create", "--name", "web").code == 1  # duplicate name
    assert qg(*args, "keys", "create", "--name", "x", "--role", "root").code == 2
    assert qg(*args, "keys", "revoke", "--name", "web").code == 0
    assert qg(*args, "keys", "revoke", "--name", "nope").code == 1
    actions = [
        r["action"]
        for r in sqlite_workspace.conn.execute(
            "SELECT action FROM audit_log WHERE action LIKE 'key.%' ORDER BY seq"
        )
    ]
    assert actions == ["key.create", "key.revoke"]


def test_config_set_runtime_flags_go_to_the_store_not_the_file(
    qg, sqlite_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    _no_provider_listens(sqlite_workspace)
    args = sqlite_workspace.cli_args()
    before = sqlite_workspace.config_path.read_text()
    result = qg(
        *args,
        "config",
        "set",
        "--traffic-distribution",
        "bedrock:50,google:30,meta:20",
        "--transition-duration",
        "300",
        "--force",  # no simulator runs here: every target check fails
    )
    assert result.code == 0, result.err
    assert "over 300 s" in result.out
    assert "FORCED past: 3 of 3 live probes failed" in result.out
    result = qg(
        *args, "config", "set", "--cache-mode", "emergency", "--serve-stale", "true", "--json"
    )
    assert json.loads(result.out)["cache"] == {"mode": "emergency", "serve_stale": True}
    result = qg(
        *args,
        "config",
        "set",
        "--request-queuing",
        "enabled",
        "--queue-size",
        "50",
        "--queue-timeout",
        "5",
    )
    assert result.code == 0, result.err
    assert sqlite_workspace.config_path.read_text() == before
    rows = {
        r["key"]: json.loads(r["value"])
        for r in sqlite_workspace.conn.execute(
            "SELECT key, value FROM runtime_settings WHERE environment = 'production'"
        )
    }
    assert rows["traffic"]["weights"] == {"bedrock": 50.0, "google": 30.0, "meta": 20.0}
    assert rows["traffic"]["duration"] == 300.0
    assert rows["cache"] == {"mode": "emergency", "serve_stale": True}
    assert rows["queue"] == {"enabled": True, "size": 50, "timeout": 5.0}
    actions = {r["action"] for r in sqlite_workspace.conn.execute("SELECT action FROM audit_log")}
    assert {"traffic.set", "cache.mode", "queue.set"} <= actions


def _no_provider_listens(ws: Workspace) -> None:
    """Point the simulated providers at ports nothing listens on (whatever runs here)."""
    import socket

    text = ws.config_path.read_text()
    for default in (9101, 9102, 9103):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            text = text.replace(f"port: {default}", f"port: {sock.getsockname()[1]}")
    ws.config_path.write_text(text)


def test_traffic_changes_check_their_targets_add_up_to_100_and_reset(
    qg, sqlite_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    _no_provider_listens(sqlite_workspace)
    args = sqlite_workspace.cli_args()
    partial = qg(*args, "config", "set", "--traffic-distribution", "bedrock:70,google:20")
    assert partial.code == 2
    assert "the weights add up to 90, not 100" in partial.err
    unhealthy = qg(*args, "config", "set", "--traffic-distribution", "google:70,meta:30")
    assert unhealthy.code == 1
    assert "this traffic change refused: the target is not healthy: google: 3 of 3 live" in (
        unhealthy.err.replace("\n", " ")
    )
    assert sqlite_workspace.conn.scalar("SELECT COUNT(*) FROM runtime_settings") == 0
    forced = qg(*args, "config", "set", "--traffic-distribution", "google:70,meta:30", "--force")
    assert forced.code == 0, forced.err
    reason = sqlite_workspace.conn.scalar(
        "SELECT reason FROM traffic_history ORDER BY id DESC LIMIT 1"
    )
    assert "forced past a failed target check" in reason
    reset = qg(*args, "config", "set", "--traffic-distribution", "reset", "--json")
    assert reset.code == 0, reset.err
    changed = json.loads(reset.out)["traffic"]
    assert changed["reset"] is True
    assert changed["from"] == {"google": 70.0, "meta": 30.0}
    # the starter config has none: every provider keeps all of its own models' requests
    assert changed["to"] == {"bedrock": 100.0, "google": 100.0, "meta": 100.0}
    assert sqlite_workspace.conn.scalar("SELECT COUNT(*) FROM runtime_settings") == 0


def test_config_set_runtime_flags_refuse_bad_values_with_exit_2(
    qg, sqlite_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    for bad in (
        ["--traffic-distribution", "bedrock=50"],
        ["--traffic-distribution", "azure:100"],
        ["--transition-duration", "5m"],
        ["--queue-timeout", "soon", "--request-queuing", "enabled"],
        ["--serve-stale", "true"],
    ):
        result = qg(*args, "config", "set", *bad)
        assert result.code == 2, (bad, result.out, result.err)
        assert "Traceback" not in result.err
    assert sqlite_workspace.conn.scalar("SELECT COUNT(*) FROM runtime_settings") == 0


def test_failover_immediate_and_breaker_from_the_cli(qg, sqlite_workspace: Workspace) -> None:  # type: ignore[no-untyped-def]
    _no_provider_listens(sqlite_workspace)
    args = sqlite_workspace.cli_args()
    move = ("failover", "--from", "bedrock", "--to", "google", "--reason", "Provider outage")
    refused = qg(*args, *move)
    assert refused.code == 1  # nothing answers at google's address: a move into a hole
    assert "failover to google refused" in refused.err
    assert "3 of 3 live probes failed (connection" in refused.err
    assert sqlite_workspace.conn.scalar("SELECT COUNT(*) FROM traffic_history") == 0
    result = qg(*args, *move, "--force", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["completed"]
    assert data["final"] == {"bedrock": 0.0, "google": 200.0, "meta": 100.0}
    result = qg(
        *args,
        "breaker",
        "--deployment",
        "google/gemini-1-5-flash",
        "--state",
        "open",
        "--reason",
        "drill",
    )
    assert result.code == 0, result.err
    assert qg(*args, "breaker", "--deployment", "google/nope", "--state", "open").code == 2
    from quality_gates.gateway.status import gateway_status

    status = gateway_status(sqlite_workspace.conn, "production")["production"]
    assert status["runtime"]["forced_breakers"]["google/gemini-1-5-flash"]["state"] == "open"
    assert status["traffic_moves"][0]["mode"] == "failover:immediate"


def test_failover_dry_run_prints_the_routes_and_changes_nothing(
    qg, sqlite_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    _no_provider_listens(sqlite_workspace)  # a dry run probes nothing
    args = sqlite_workspace.cli_args()
    move = ("failover", "--from", "bedrock", "--to", "meta", "--reason", "x", "--dry-run")
    result = qg(*args, *move)
    assert result.code == 0, result.err
    text = " ".join(result.out.split())
    assert "bedrock:100, google:100, meta:100 -> bedrock:0, google:100, meta:200" in text
    assert "nothing changed" in text
    assert "route: current -> claude-3-5-haiku: meta/llama-3-1-70b 100%" in text
    assert "route: backup -> gemini-1-5-flash: google 100%" in text
    assert sqlite_workspace.conn.scalar("SELECT COUNT(*) FROM traffic_history") == 0
    data = json.loads(qg(*args, *move, "--json").out)
    assert data["dry_run"] is True
    assert data["after"] == {"bedrock": 0.0, "google": 100.0, "meta": 200.0}
