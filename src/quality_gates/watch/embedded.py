"""The evaluator inside another process's event loop: `serve` runs it beside the gateway.

    create_app(settings, services=[watch_background])

`watch_background` matches the gateway's background-service factory (it receives the app
state and reads only `state.database` and `state.settings.config`), so the watch plane does
not import the gateway. With several gateway processes, each runs one; the store's lease
lets one of them evaluate and send.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.store.db import Database
    from quality_gates.watch._service import WatchService


class EmbeddedWatch:
    """Starts `WatchService.run` as a task; `close` stops it and waits for a clean exit."""

    def __init__(self, database: Database, config: QualityGatesConfig) -> None:
        self.database = database
        self.config = config
        self.service: WatchService | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin evaluating in the background."""
        from quality_gates.watch._service import WatchService

        self.service = WatchService(self.database, self.config)
        self._task = asyncio.get_running_loop().create_task(
            self.service.run(self._stop), name="qg-watch"
        )

    async def close(self) -> None:
        """Stop after the current cycle; the lease is released for a standby."""
        self._stop.set()
        if self._task is not None:
            await self._task


def watch_background(state: Any) -> EmbeddedWatch:
    """A background service for the gateway app (`create_app(services=[watch_background])`)."""
    return EmbeddedWatch(state.database, state.settings.config)
