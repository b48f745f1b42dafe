"""Shared fixtures: isolated workspaces, stores on SQLite and PostgreSQL, the CLI in-process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quality_gates.config import load_config, render_starter
from quality_gates.registry import Actor, sync_config
from quality_gates.store import Database, StoreURL, open_store

PG_ENV = "QG_TEST_DATABASE_URL"
REDIS_ENV = "QG_TEST_REDIS_URL"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's config, store or actor."""
    for name in ("QG_CONFIG", "QG_DATABASE_URL", "QG_REDIS_URL", "QG_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    # botocore's credential chain must never reach for the instance metadata service.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def postgres_url() -> str | None:
    """The PostgreSQL test URL, if this run has one."""
    return os.environ.get(PG_ENV) or None


@contextlib.contextmanager
def fresh_schema(base: str, prefix: str = "qg_test") -> Iterator[str]:
    """`base` with a fresh PostgreSQL schema of its own, dropped afterwards."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    base = postgres_url()
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    with fresh_schema(base) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: SQLite in tmp_path, and PostgreSQL when available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@dataclass
class Workspace:
    """A folder with the starter config and a store synced from it."""

    root: Path
    config_path: Path
    db_url: str
    database: Database

    @property
    def conn(self):  # type: ignore[no-untyped-def]
        return self.database.shared()

    def cli_args(self) -> list[str]:
        """Global options that point the CLI at this workspace."""
        return ["--config", str(self.config_path), "--db", self.db_url]


def make_workspace(root: Path, db_url: str, config_text: str | None = None) -> Workspace:
    """Write a config into `root`, open the store and sync the registry."""
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "quality-gates.yaml"
    config_path.write_text(config_text or render_starter("test-project"), encoding="utf-8")
    database = open_store(StoreURL.parse(db_url, base_dir=root))
    sync_config(database.shared(), load_config(config_path), Actor("tester", "config"))
    return Workspace(root, config_path, db_url, database)


@pytest.fixture
def workspace(tmp_path: Path, store_url: str) -> Iterator[Workspace]:
    """The starter workspace on each store dialect."""
    ws = make_workspace(tmp_path / "ws", store_url)
    yield ws
    ws.database.close_shared()


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[Workspace]:
    """The starter workspace on SQLite only."""
    ws = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    yield ws
    ws.database.close_shared()


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A notification receiver (Slack, PagerDuty, webhook paths) on a free port, with the
    PagerDuty routing key the watch tests' channels refer to."""
    from tests.receivers import Receiver
    from tests.watch_setup import PD_KEY, PD_KEY_VARIABLE

    monkeypatch.setenv(PD_KEY_VARIABLE, PD_KEY)
    rx = Receiver()
    await rx.start()
    yield rx
    await rx.stop()


@pytest.fixture
def simulated_workspace(tmp_path: Path) -> Iterator[Workspace]:
    """The starter workspace on SQLite with its three simulated providers running (in this
    process, on free ports): what a move's target check probes."""
    import socket

    from quality_gates.simulator import SimulatorThread, spec_from_provider

    ports = []
    for _ in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    text = render_starter(
        "test-project", {"port_bedrock": ports[0], "port_google": ports[1], "port_meta": ports[2]}
    ).replace(
        "profile: healthy",
        "profile: healthy\n    faults: {latency_p50_ms: 2ms, latency_p95_ms: 5ms}",
    )
    ws = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", text)
    loaded = load_config(ws.config_path)
    specs = [
        spec_from_provider(p, loaded.config.models, base_dir=ws.root)
        for p in loaded.config.providers
    ]
    with SimulatorThread(specs):
        yield ws
    ws.database.close_shared()


@dataclass
class Result:
    """What a CLI run printed and returned."""

    code: int
    out: str
    err: str


@pytest.fixture
def qg(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the CLI in-process: qg("status", "--json", cwd=path) -> Result."""
    from quality_gates.cli.app import run

    def invoke(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `quality-gates` as a user would: a separate process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "quality_gates", *args],
        cwd=cwd,
        env=full_env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the shared Redis keep to one xdist worker (`--dist loadgroup`): gateways
    share breaker state there under a fixed namespace, so two such tests must not overlap."""
    for item in items:
        if item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.xdist_group("redis"))
