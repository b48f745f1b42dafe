"""Starting simulators: in the running event loop, in a background thread, or as the
`quality-gates simulate` process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quality_gates.simulator._app import SimulatorApp, SimulatorSpec
from quality_gates.simulator._server import HttpServer

if TYPE_CHECKING:
    from quality_gates.config import Model, Provider


def spec_from_provider(
    provider: Provider,
    models: Iterable[Model] = (),
    *,
    base_dir: Path | None = None,
    port: int | None = None,
) -> SimulatorSpec:
    """The simulator a `kind: simulator` provider of the config describes."""
    if provider.protocol is None:
        raise ValueError(
            f"simulator {provider.name!r} needs protocol: bedrock|gemini|openai|anthropic"
        )
    api_key = provider.credential("api_key")
    return SimulatorSpec(
        name=provider.name,
        protocol=provider.protocol,
        host=provider.host,
        port=(provider.port or 0) if port is None else port,
        profile=provider.profile,
        seed=provider.seed,
        faults=provider.faults,
        api_key=api_key,
        models=[m.provider_model for m in models if m.provider == provider.name],
        base_dir=base_dir,
    )


@dataclass
class RunningSimulator:
    """A simulator listening on a real port."""

    spec: SimulatorSpec
    app: SimulatorApp
    server: HttpServer
    port: int

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.spec.name

    @property
    def base_url(self) -> str:
        """`http://host:port`, what an adapter or an SDK connects to."""
        return f"http://{self.spec.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        await self.server.close()


async def start_simulator(spec: SimulatorSpec) -> RunningSimulator:
    """Listen on `spec.host:spec.port` (0 picks a free port) in the running loop."""
    app = SimulatorApp(spec)
    server = HttpServer(app)
    port = await server.start(spec.host, spec.port)
    return RunningSimulator(spec, app, server, port)


@contextlib.asynccontextmanager
async def run_simulators(
    specs: Iterable[SimulatorSpec],
) -> AsyncIterator[dict[str, RunningSimulator]]:
    """Start every spec; yields them by name; always stops them."""
    running: dict[str, RunningSimulator] = {}
    try:
        for spec in specs:
            running[spec.name] = await start_simulator(spec)
        yield running
    finally:
        for simulator in running.values():
            await simulator.close()


class SimulatorThread:
    """Simulators on their own event loop in a daemon thread, for synchronous callers
    (official SDK tests, scripts). Use as a context manager."""

    def __init__(self, specs: Iterable[SimulatorSpec]) -> None:
        self._specs = list(specs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: dict[str, RunningSimulator] = {}

    def __enter__(self) -> SimulatorThread:
        self._thread.start()

        async def start() -> dict[str, RunningSimulator]:
            return {s.name: await start_simulator(s) for s in self._specs}

        self.running = asyncio.run_coroutine_threadsafe(start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for simulator in self.running.values():
                await simulator.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def base_url(self, name: str) -> str:
        """Where simulator `name` listens."""
        return self.running[name].base_url

    def __getitem__(self, name: str) -> RunningSimulator:
        return self.running[name]


def serve_forever(
    specs: list[SimulatorSpec], on_ready: Callable[[list[RunningSimulator]], None]
) -> None:
    """Run simulators until SIGINT or SIGTERM (uvloop when installed); `on_ready` gets
    them once every one listens."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        async with run_simulators(specs) as running:
            on_ready(list(running.values()))
            await stop.wait()

    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
