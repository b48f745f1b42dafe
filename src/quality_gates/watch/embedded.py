"""The watch plane inside another process's event loop: `serve` runs it beside the gateway.

    create_app(settings, services=[watch_background])

`watch_background` matches the gateway's background-service factory: it reads the app state's
`database` and `settings.config`, so the watch plane does not import the gateway app.
`sampling_background` becomes the gateway's answer tap (the live sampler, see `signals.sampling`);
`serve` runs it with or without the evaluator. With several gateway processes each runs
both: every process samples its own answers, and the store's lease lets one of them
evaluate, remediate, probe and send.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.signals.sampling import LiveSampler
    from quality_gates.store.db import Database
    from quality_gates.watch._service import ExporterFactory, WatchService


class EmbeddedWatch:
    """Starts `WatchService.run` as a task; `close` stops it and waits for a clean exit."""

    def __init__(
        self,
        database: Database,
        config: QualityGatesConfig,
        *,
        config_dir: Path | None = None,
        config_path: Path | None = None,
        registry: Any = None,
        exporters: ExporterFactory | None = None,
        local_rows: Any = None,
    ) -> None:
        self.database = database
        self.local_rows = local_rows  # the gateway's in-memory roll-ups (see WatchService)
        self.config = config
        self.config_dir = config_dir
        self.config_path = config_path
        self.registry = registry
        self.exporters = exporters
        self.collector: Any = None
        self.service: WatchService | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restarts: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Begin evaluating in the background (and show the watch's state on the gateway's
        /metrics when given its registry)."""
        from quality_gates.watch._service import WatchService

        if self.registry is not None:
            from quality_gates.watch.metrics import WatchCollector

            self.collector = WatchCollector(self.database, local=self._local)
            self.registry.register(self.collector)

        self.service = WatchService(
            self.database,
            self.config,
            config_dir=self.config_dir,
            config_path=self.config_path,
            exporters=self.exporters,
            local_rows=self.local_rows,
        )
        self._task = asyncio.get_running_loop().create_task(
            self.service.run(self._stop), name="qg-watch"
        )

    def _local(self) -> Any:
        service = self.service
        return service.last_local if service is not None and service.store_paused else None

    async def close(self) -> None:
        """Stop after the current cycle; the lease is released for a standby."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.collector is not None:
            self.registry.unregister(self.collector)
            self.collector = None

    def take_config(self, config: QualityGatesConfig) -> None:
        """The config file changed (and validated): restart the evaluator on it, after its
        current cycle, so new rules, channels and remediation policies apply."""
        self._restarts.append(asyncio.get_running_loop().create_task(self._restart(config)))

    async def _restart(self, config: QualityGatesConfig) -> None:
        await self.close()
        self.config = config
        self._stop = asyncio.Event()
        await self.start()


class EmbeddedSampler:
    """The live sampler as the gateway's answer tap, for the app's whole life."""

    def __init__(self, database: Database, config: QualityGatesConfig, services: Any) -> None:
        self.database = database
        self.settings = config.remediation.sampling
        self.services = services
        self.sampler: LiveSampler | None = None

    async def start(self) -> None:
        """Tap the gateway's answers (when sampling is on)."""
        if self.settings.enabled and self.settings.share > 0:
            from quality_gates.signals.sampling import LiveSampler

            self.sampler = LiveSampler(self.database, self.settings)
            self.sampler.start()
            self.services.answer_tap = self.sampler.offer

    async def close(self) -> None:
        """Untap, then score what is still queued."""
        self.services.answer_tap = None
        if self.sampler is not None:
            await self.sampler.close()


def watch_background(
    state: Any,
    config_dir: Path | None = None,
    config_path: Path | None = None,
    exporters: ExporterFactory | None = None,
) -> EmbeddedWatch:
    """A background service for the gateway app (`create_app(services=[watch_background])`);
    with `config_path` the evaluator also runs the routine checks, with `exporters` (say
    `quality_gates.exports.exporters_for`) it publishes to CloudWatch and OpenTelemetry. It
    restarts on the new config when the gateway reloads the file."""

    def local_rows(first_minute: int) -> list[dict[str, Any]]:
        # state.services is replaced when the gateway reloads its config: read it each time
        telemetry = state.services.telemetry
        return telemetry.rows_since(first_minute) if telemetry is not None else []

    watch = EmbeddedWatch(
        state.database,
        state.settings.config,
        config_dir=config_dir,
        config_path=config_path,
        registry=state.services.metrics.registry,
        exporters=exporters,
        local_rows=local_rows,
    )
    listeners = getattr(state, "config_listeners", None)
    if listeners is not None:
        listeners.append(watch.take_config)
    return watch


def sampling_background(state: Any) -> EmbeddedSampler:
    """The live sampler as a background service of the gateway app."""
    return EmbeddedSampler(state.database, state.settings.config, state.services)
