"""Live config: a running gateway reloads quality-gates.yaml when the file changes.

The file is checked once a second (size, mtime and inode; a rename over it counts). A new
file is validated first: an invalid one is refused with its file:line problems in one log
line, and the gateway keeps serving with the config it has. A valid one is applied at once
for what the request path reads per request (routes, failover chains, routing strategy,
provider weights, thresholds, cache serving, retries, deadlines, lenient fields); what was
built at start (the listening socket, the store, Redis, the telemetry writer, existing
breakers' thresholds, the process count) needs a restart, and the log line says which of
those changed. `/healthz` reports the digest of the config in force, so `config set` can say
whether every running gateway picked an edit up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quality_gates.config import LoadedConfig, QualityGatesConfig, load_config
from quality_gates.errors import ConfigError

log = logging.getLogger("quality_gates.gateway")
POLL_S = 1.0
# Gateway settings read once at start: a change to them is applied at the next restart.
RESTART_KEYS = ("server", "workers", "max_body_bytes", "telemetry", "breaker", "limits")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def needs_restart(old: QualityGatesConfig, new: QualityGatesConfig) -> list[str]:
    """The gateway settings that changed but are only read at start."""
    before = old.gateway.model_dump(mode="json")
    after = new.gateway.model_dump(mode="json")
    changed = [f"gateway.{k}" for k in RESTART_KEYS if before.get(k) != after.get(k)]
    if old.store.model_dump(mode="json") != new.store.model_dump(mode="json"):
        changed.append("store")
    if [p.model_dump(mode="json") for p in old.providers] != [
        p.model_dump(mode="json") for p in new.providers
    ]:
        changed.append("providers")
    return changed


class ConfigReloader:
    """Watches the config file; `apply` receives each new valid config."""

    def __init__(
        self,
        path: Path,
        digest: str | None,
        apply: Callable[[LoadedConfig], None],
        *,
        interval: float = POLL_S,
    ) -> None:
        self.path = path
        self.apply = apply
        self.interval = interval
        self.digest = digest
        self.loaded_at = time.time()
        self.refused: str | None = None  # the problems of the last file refused
        self._signature = _signature(path)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin watching."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-config")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # the reloader must outlive any surprise
                log.exception("config reload failed unexpectedly; the config in force is kept")

    async def check(self) -> bool:
        """Reload if the file changed; True when a new config was applied."""
        signature = _signature(self.path)
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            loaded = await asyncio.to_thread(load_config, self.path)
        except ConfigError as exc:
            problems = "; ".join(exc.problems or [str(exc)])
            if problems != self.refused:
                log.error(
                    "config reload refused, still serving with the config loaded at %s: %s",
                    time.strftime("%H:%M:%S", time.localtime(self.loaded_at)),
                    problems,
                )
            self.refused = problems
            return False
        if loaded.digest == self.digest:
            return False
        self.apply(loaded)
        self.digest, self.loaded_at, self.refused = loaded.digest, time.time(), None
        return True


def reload_summary(old: QualityGatesConfig, new: QualityGatesConfig) -> str:
    """One line for the log: what applies now and what waits for a restart."""
    later = needs_restart(old, new)
    return "config reloaded and applied" + (
        f"; {', '.join(later)} changed too and take effect at the next restart" if later else ""
    )


def describe(state: Any) -> dict[str, Any]:
    """What /healthz says of the config in force."""
    reloader: ConfigReloader | None = getattr(state, "reloader", None)
    if reloader is None:
        return {}
    return {
        "config_digest": reloader.digest,
        "config_loaded_at": reloader.loaded_at,
        **({"config_refused": reloader.refused} if reloader.refused else {}),
    }
