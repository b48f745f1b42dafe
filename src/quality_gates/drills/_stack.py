"""The drill's own stack: one simulator per configured provider and a gateway with its
embedded watch, all on free loopback ports, recording into the workspace's store."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.drills._config import DrillConfig, drill_config
from quality_gates.errors import QualityGatesError

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.simulator import RunningSimulator
    from quality_gates.store import StoreURL
    from quality_gates.store.db import Connection
    from quality_gates.watch.embedded import EmbeddedWatch

START_TIMEOUT = 20.0
LEADER_TIMEOUT = 10.0
STOP_TIMEOUT = 30.0


class DrillCannotRun(QualityGatesError):
    """The drill's stack could not start or act (exit 4)."""

    exit_code = 4


@dataclass
class Stack:
    """What a running drill talks to."""

    tuned: DrillConfig
    simulators: dict[str, RunningSimulator]
    gateway_url: str
    watches: list[EmbeddedWatch]

    def watch_leads(self) -> bool:
        """Whether the drill's embedded watch holds the evaluator lease."""
        return any(w.service is not None and w.service.leader for w in self.watches)


def probe_dataset(config: QualityGatesConfig, config_dir: Path) -> Path:
    """The dataset the golden probes read, so the simulators can answer it."""
    from quality_gates.gates.datasets import locate

    path = config.remediation.probes.dataset or config.gates.dataset
    try:
        return locate(path, base=config_dir).path
    except QualityGatesError:
        return locate(None).path


def other_watch(conn: Connection) -> str | None:
    """Who holds the watch lease on this store now (a `serve` or `watch`), if anyone."""
    from quality_gates.store._leader import WATCH_LEASE, current_holder

    return current_holder(conn, WATCH_LEASE, time.time())


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with the gateway's own server (what `serve` runs for one process) on
    a free loopback port; yields its base URL."""
    from quality_gates.gateway._server import StartupFailed, serving

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    running = serving(app, sock, start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT)
    try:
        try:
            await running.__aenter__()
        except (StartupFailed, TimeoutError) as exc:
            raise DrillCannotRun(f"the drill's gateway did not start: {exc}") from None
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(Exception):
                await running.__aexit__(None, None, None)
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def drill_stack(
    config: QualityGatesConfig,
    *,
    environment: str,
    store_url: StoreURL,
    config_dir: Path,
) -> AsyncIterator[Stack]:
    """Simulators, then the gateway with its embedded watch; always stopped on exit."""
    from quality_gates.exports import exporters_for
    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.simulator import run_simulators, spec_from_provider
    from quality_gates.watch.embedded import sampling_background, watch_background

    answer_key = probe_dataset(config, config_dir)
    first = drill_config(config, environment, ports={}, answer_key=answer_key)
    specs = [spec_from_provider(p, first.config.models, port=0) for p in first.config.providers]
    try:
        async with run_simulators(specs) as sims:
            ports = {name: sim.port for name, sim in sims.items()}
            tuned = drill_config(config, environment, ports=ports, answer_key=answer_key)
            settings = AppSettings(
                config=tuned.config, store_url=store_url, environment=environment
            )
            watches: list[EmbeddedWatch] = []

            def watch(state: Any) -> EmbeddedWatch:
                started = watch_background(state, config_dir=config_dir, exporters=exporters_for)
                watches.append(started)
                return started

            # What `serve` runs (cli._serve_app.build), with a handle on the watch.
            app = create_app(settings, services=[sampling_background, watch])
            async with serve_app(app) as url:
                yield Stack(tuned, sims, url, watches)
    except OSError as exc:
        raise DrillCannotRun(f"the drill's stack could not start: {exc}") from None


async def wait_for_leader(
    stack: Stack, timeout: float = LEADER_TIMEOUT, *, holder: Any = None
) -> None:
    """Until the drill's watch holds the lease; DrillCannotRun when another one keeps it
    (`holder()`, if given, names it)."""
    deadline = time.monotonic() + timeout
    while not stack.watch_leads():
        if time.monotonic() > deadline:
            who = holder() if holder is not None else None
            raise DrillCannotRun(
                f"the drill's watch did not get the evaluator lease in {timeout:g} s "
                f"(another `serve` or `watch` on this store holds it{f': {who}' if who else ''}"
                "); run the drill with --scratch-store, or stop that `serve`/`watch` first"
            )
        await asyncio.sleep(0.1)


async def breaker_states(session: Any, base_url: str) -> dict[str, float]:
    """deployment -> breaker state (0 closed, 1 half-open, 2 open) from the gateway's /metrics."""
    out: dict[str, float] = {}
    async with session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if not line.startswith("qg_gateway_breaker_state{"):
            continue
        labels, _, value = line.rpartition(" ")
        marker = 'deployment="'
        start = labels.find(marker)
        if start < 0:
            continue
        start += len(marker)
        deployment = labels[start : labels.index('"', start)]
        out[deployment] = float(value)
    return out
