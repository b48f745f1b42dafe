"""The watch plane inside another process's event loop: `serve` runs it beside the gateway.

    create_app(settings, services=[watch_background])

`watch_background` matches the gateway's background-service factory: it reads the app state's
`database` and `settings.config`, and becomes the gateway's answer tap (the live sampler,
see `sampling`), so the watch plane does not import the gateway app. With several gateway
processes each runs one: every process samples its own answers, and the store's lease lets
one of them evaluate, remediate, probe and send.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.store.db import Database
    from quality_gates.watch._service import WatchService
    from quality_gates.watch.sampling import LiveSampler


class EmbeddedWatch:
    """Starts `WatchService.run` as a task; `close` stops it and waits for a clean exit."""

    def __init__(
        self,
        database: Database,
        config: QualityGatesConfig,
        *,
        services: Any = None,
        config_dir: Path | None = None,
    ) -> None:
        self.database = database
        self.config = config
        self.services = services
        self.config_dir = config_dir
        self.service: WatchService | None = None
        self.sampler: LiveSampler | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin evaluating (and sampling answers) in the background."""
        from quality_gates.watch._service import WatchService

        sampling = self.config.remediation.sampling
        if self.services is not None and sampling.enabled and sampling.share > 0:
            from quality_gates.watch.sampling import LiveSampler

            self.sampler = LiveSampler(self.database, sampling)
            self.sampler.start()
            self.services.answer_tap = self.sampler.offer
        self.service = WatchService(self.database, self.config, config_dir=self.config_dir)
        self._task = asyncio.get_running_loop().create_task(
            self.service.run(self._stop), name="qg-watch"
        )

    async def close(self) -> None:
        """Stop after the current cycle; the lease is released for a standby."""
        self._stop.set()
        if self.services is not None:
            self.services.answer_tap = None
        if self._task is not None:
            await self._task
        if self.sampler is not None:
            await self.sampler.close()


def watch_background(state: Any, config_dir: Path | None = None) -> EmbeddedWatch:
    """A background service for the gateway app (`create_app(services=[watch_background])`)."""
    return EmbeddedWatch(
        state.database,
        state.settings.config,
        services=getattr(state, "services", None),
        config_dir=config_dir,
    )
