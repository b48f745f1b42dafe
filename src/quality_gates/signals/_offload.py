"""One scoring process per gateway process, for the live sampler's scorers.

The PII (presidio, imported without torch: ~110 MiB) and profanity (scikit-learn) models
take seconds to load and stay in memory for good; inside the gateway process that load
would stop the event loop, and scoring in a thread would hold the GIL while requests wait.
So `serve` scores its sampled live answers in a spawned process of their own
(`ScoringProcess`), started with its models loaded when the gateway starts.

Golden probes still score in the gateway process: scored through this process (one call per
answer), the quality-regression drill missed its detection window on a loaded 2-core CI
machine, where each call waits on several thread hand-offs; the probes' model-backed
assertions (the built-in set's no_pii and no_profanity items) therefore load those models
into a gateway that runs the watch, in a worker thread (`GoldenProbes._scorer`): on the
event loop the load stopped every request for 3-8 s.

The scoring process ignores SIGINT and SIGTERM: the gateway process, which gets them too
when a terminal or a supervisor signals the whole group, hands over what is queued and then
shuts it down. It exits by itself within a second if the gateway process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger("quality_gates.watch")
T = TypeVar("T")


class ScoringUnavailable(RuntimeError):
    """The scoring process died while it held the call (it is restarted for the next)."""


def _init(parent: int) -> None:
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from quality_gates.store._health import quiet

    quiet()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, name="qg-scoring-parent", daemon=True).start()


_background: set[asyncio.Task[None]] = set()


def _import_scorers(models: bool) -> None:
    import quality_gates.gates.scorers
    import quality_gates.signals.sampling  # noqa: F401  (imported for their cost, now)

    if models:  # load the PII and profanity models now rather than on a later call
        from quality_gates.signals.security import pii_kinds, profanity

        pii_kinds("warm-up: jane.doe@example.com")
        profanity(["warm-up"])


class ScoringProcess:
    """A spawned single-worker process pool, started on first call, replaced if it dies."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, never fork: the gateway process runs an event loop and threads.
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the scoring process (both must pickle)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool(), fn, *args)
        except BrokenProcessPool:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            raise ScoringUnavailable("the scoring process died; the next call starts one") from None

    def warm(self, *, models: bool = False) -> None:
        """Start the process now, in the background, with the scorers imported (`models`:
        and the PII and profanity models loaded, several seconds), so that no later call
        waits behind a spawn or a model load."""
        task = asyncio.get_running_loop().create_task(self._warm(models), name="qg-warm")
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _warm(self, models: bool) -> None:
        try:
            await self.run(_import_scorers, models)
        except Exception as exc:  # a warm-up failure is logged; the real calls report theirs
            log.error("the scoring process did not warm up: %s", exc)

    async def close(self) -> None:
        """Wait for the running call, then stop the process (off the event loop)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
