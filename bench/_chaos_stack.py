"""The chaos bench's stack: one `quality-gates simulate` process per provider, `quality-gates
serve` (one or two replicas) on SQLite or on PostgreSQL + Redis behind TCP proxies the bench
can cut, a notification receiver, and a bounded load generator that keeps what each answer was.

Everything listens on loopback, every process is started here and stopped here by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import Workspace, fresh_schema, make_workspace  # noqa: E402
from tests.processes import clean_env, ready  # noqa: E402
from tests.receivers import Receiver  # noqa: E402
from tests.tcp_proxy import TcpProxy  # noqa: E402

from quality_gates.config import render_starter  # noqa: E402
from quality_gates.simulator.control import put_faults  # noqa: E402

PROVIDERS = ("bedrock", "google", "meta")
PRIMARY = "bedrock"
START_TIMEOUT = 30.0
# Quick simulators: the faults are what the bench injects, not the healthy latency.
QUICK = {
    "reset": True,
    "latency_p50_ms": 20,
    "latency_p95_ms": 40,
    "ttft_p50_ms": 10,
    "ttft_p95_ms": 20,
    "token_delay_ms": 1,
    "answer_tokens_p50": 40,
    "answer_tokens_p95": 80,
}
# Short breaker cool-down so one fault does not leak into the next; remediation only records
# (dry run) for the same reason: the drills (bench/drills.py) measure it.
CHAOS_CONFIG = """
gateway:
  control_poll: 0.1
  heartbeat: 0.5s
  attempt_timeout: 3s
  deadline: 20s
  breaker: {{open_for: 2s, probe_interval: 1s}}
  telemetry: {{flush_interval: 200ms}}
{cache}"""
REDIS_CACHE = "  cache: {enabled: true, backend: redis}\n"
CHANNEL_VARIABLES = (
    "QG_SLACK_OPS_ALERTS_WEBHOOK",
    "QG_SLACK_AI_TEAM_WEBHOOK",
    "QG_SLACK_INFRA_ALERTS_WEBHOOK",
    "QG_SLACK_SECURITY_ALERTS_WEBHOOK",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _killpg(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen[str], wait: float = 40.0) -> None:
    """SIGTERM, then SIGKILL after `wait` seconds: only this process group."""
    if proc.poll() is None:
        _killpg(proc, signal.SIGTERM)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        _killpg(proc, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Gateway:
    """One `serve` process."""

    proc: subprocess.Popen[str]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Stack:
    """What a fault acts on."""

    backend: str
    ws: Workspace
    env: dict[str, str]
    receiver: Receiver
    sim_ports: dict[str, int]
    simulators: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    gateways: list[Gateway] = field(default_factory=list)
    pg_proxy: TcpProxy | None = None
    redis_proxy: TcpProxy | None = None
    sqlite_path: Path | None = None

    def sim_url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.sim_ports[provider]}"

    def faults(self, provider: str, changes: dict[str, Any]) -> None:
        """Change a simulator's behaviour live (what `quality-gates simulate fault` sends)."""
        put_faults(self.sim_url(provider), changes, provider=provider)

    def heal(self) -> None:
        for name in PROVIDERS:
            if self.simulators[name].poll() is None:
                self.faults(name, QUICK)

    def qg(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "quality_gates", *self.ws.cli_args(), *args],
            cwd=self.ws.root,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    # -- simulators -------------------------------------------------------------------------

    def start_simulator(self, name: str) -> None:
        log = (self.ws.root / f"sim-{name}.log").open("a")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quality_gates",
                "--config",
                str(self.ws.config_path),
                "simulate",
                "--provider",
                name,
            ],
            cwd=self.ws.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.simulators[name] = proc
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.faults(name, QUICK)
                return
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"simulator {name} did not start") from None
                time.sleep(0.1)

    def stop_simulator(self, name: str) -> None:
        stop_process(self.simulators[name], wait=10)

    # -- gateways ---------------------------------------------------------------------------

    def start_gateway(self, port: int = 0) -> Gateway:
        """`serve --port PORT --json` (0: a free port); returns once /readyz answers."""
        log = self.ws.root / f"serve-{len(self.gateways)}-{time.monotonic_ns()}.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "quality_gates",
                    *self.gateway_args(),
                    "serve",
                    "--port",
                    str(port),
                    "--json",
                ],
                cwd=self.ws.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")
        url = json.loads(line)["listen"]
        deadline = time.monotonic() + START_TIMEOUT
        while not ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        gateway = Gateway(proc, url, log)
        self.gateways.append(gateway)
        return gateway

    def gateway_args(self) -> list[str]:
        """The gateway talks to PostgreSQL through the proxy, so a cut reaches it."""
        db = self.pg_proxy.rewrite(self.ws.db_url) if self.pg_proxy else self.ws.db_url
        return ["--config", str(self.ws.config_path), "--db", db]

    def live_gateways(self) -> list[Gateway]:
        return [g for g in self.gateways if g.proc.poll() is None]

    def kill_gateway(self, gateway: Gateway) -> None:
        _killpg(gateway.proc, signal.SIGKILL)
        gateway.proc.wait(10)

    def watch_holder(self) -> str | None:
        from quality_gates.store._leader import WATCH_LEASE, current_holder

        try:
            return current_holder(self.ws.conn, WATCH_LEASE, time.time())
        except Exception:
            return None


@contextlib.asynccontextmanager
async def stack(
    root: Path, backend: str, pg_url: str | None = None, redis_url: str | None = None
) -> Any:
    """Simulators, a receiver and one gateway on `backend` (sqlite | postgres)."""
    receiver = Receiver()
    await receiver.start()
    ports = {name: free_port() for name in PROVIDERS}
    config = render_starter("chaos", {f"port_{n}": p for n, p in ports.items()})
    config = config.replace("  dry_run: false\n", "  dry_run: true\n", 1)
    config += CHAOS_CONFIG.format(cache=REDIS_CACHE if redis_url else "")
    with contextlib.ExitStack() as exits:
        if backend == "postgres":
            assert pg_url is not None
            db_url = exits.enter_context(fresh_schema(pg_url, "qg_chaos"))
            proxy: TcpProxy | None = exits.enter_context(TcpProxy.for_url(db_url, 5432))
        else:
            db_url = f"sqlite:///{root / 'state.db'}"
            proxy = None
        ws = make_workspace(root, db_url, config)
        exits.callback(ws.database.close_shared)
        env = clean_env(QG_ACTOR="chaos-bench", PYTHONUNBUFFERED="1")
        for variable in CHANNEL_VARIABLES:
            env[variable] = f"{receiver.base}/slack/{variable.lower()}"
        redis_proxy = None
        if redis_url:
            redis_proxy = exits.enter_context(TcpProxy.for_url(redis_url, 6379))
            env["QG_REDIS_URL"] = redis_proxy.rewrite(redis_url)
        st = Stack(
            backend,
            ws,
            env,
            receiver,
            ports,
            pg_proxy=proxy,
            redis_proxy=redis_proxy,
            sqlite_path=root / "state.db" if backend == "sqlite" else None,
        )
        try:
            for name in PROVIDERS:
                st.start_simulator(name)
            await asyncio.to_thread(st.start_gateway)
            yield st
        finally:
            for gateway in st.gateways:
                stop_process(gateway.proc)
            for proc in st.simulators.values():
                stop_process(proc, wait=10)
            await receiver.stop()
