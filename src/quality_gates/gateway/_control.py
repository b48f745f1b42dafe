"""The gateway's view of the control plane: it polls the environment's control version (a
primary-key read, every 250 ms by default) and, when it moves, reloads aliases and runtime
settings into a new route table; it reloads API keys when their table changes; and it writes
this process's heartbeat row (`gateway_instances`) with its resource use.

Every store access runs in one dedicated thread with its own connection, so a slow or dead
store never blocks the event loop; the gateway keeps routing on its last table meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from quality_gates.errors import StoreUnavailable
from quality_gates.gateway.keys import ApiKey, active_keys, keys_fingerprint
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import control_version, list_aliases

log = logging.getLogger("quality_gates.gateway")


@dataclass
class ControlSnapshot:
    """What the store says about the environment now."""

    version: int
    aliases: dict[str, str]
    runtime: dict[str, Any]


@dataclass
class Heartbeat:
    """This process's row in gateway_instances."""

    id: str
    environment: str
    host: str
    pid: int
    listen: str
    started_at: float
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    inflight: int = 0
    inflight_limit: int = 0
    queue_depth: int = 0
    queue_limit: int = 0
    dropped_telemetry: int = 0
    buffered_telemetry: int = 0
    control_version: int = 0
    breakers: str = "[]"


UPSERT_HEARTBEAT = (
    "INSERT INTO gateway_instances (id, environment, host, pid, listen, started_at, "
    "heartbeat_at, cpu_percent, rss_bytes, inflight, inflight_limit, queue_depth, queue_limit, "
    "dropped_telemetry, buffered_telemetry, control_version, breakers) VALUES (:id, :environment, "
    ":host, :pid, :listen, :started_at, :heartbeat_at, :cpu_percent, :rss_bytes, :inflight, "
    ":inflight_limit, :queue_depth, :queue_limit, :dropped_telemetry, :buffered_telemetry, "
    ":control_version, :breakers) ON CONFLICT (id) DO UPDATE SET heartbeat_at = "
    "excluded.heartbeat_at, listen = excluded.listen, cpu_percent = excluded.cpu_percent, "
    "rss_bytes = excluded.rss_bytes, inflight = excluded.inflight, inflight_limit = "
    "excluded.inflight_limit, queue_depth = excluded.queue_depth, queue_limit = "
    "excluded.queue_limit, dropped_telemetry = excluded.dropped_telemetry, buffered_telemetry "
    "= excluded.buffered_telemetry, control_version = excluded.control_version, breakers = "
    "excluded.breakers"
)


def writer_id() -> str:
    """This process's id as a telemetry writer and gateway instance: host:pid:random."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(3).hex()}"


def read_snapshot(conn: Connection, environment: str) -> ControlSnapshot:
    """Aliases and runtime settings of `environment`, with the version they belong to."""
    version = control_version(conn, environment)
    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    return ControlSnapshot(version, aliases, runtime_settings.get_all(conn, environment))


class ControlWatcher:
    """Polls the store from one thread; calls back on the event loop when things change."""

    def __init__(
        self,
        environment: str,
        connect: Callable[[], Connection],
        *,
        poll_interval: float,
        heartbeat_interval: float,
        on_snapshot: Callable[[ControlSnapshot], None],
        on_keys: Callable[[dict[str, ApiKey], int], None],
        heartbeat: Callable[[], Heartbeat],
        version: int,
    ) -> None:
        self.environment = environment
        self._connect = connect
        self._conn: Connection | None = None
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.on_snapshot = on_snapshot
        self.on_keys = on_keys
        self.heartbeat = heartbeat
        self.version = version
        self._keys_fp: tuple[int, int, float] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qg-control")
        self._task: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self.store_ok = True
        self.last_error: str | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _poll(
        self, beat: Heartbeat | None
    ) -> tuple[ControlSnapshot | None, tuple[dict[str, ApiKey], int] | None]:
        conn = self._connection()
        snapshot = None
        keys = None
        version = control_version(conn, self.environment)
        if version != self.version:
            snapshot = read_snapshot(conn, self.environment)
        fingerprint = keys_fingerprint(conn)
        if fingerprint != self._keys_fp:
            keys = (active_keys(conn), fingerprint[0])
            self._keys_fp = fingerprint
        if beat is not None:
            row = dict(beat.__dict__)
            row["heartbeat_at"] = time.time()
            with conn.write():
                conn.execute(UPSERT_HEARTBEAT, row)
        return snapshot, keys

    async def poll_once(self) -> None:
        """One poll (and a heartbeat when due); store errors are logged, not raised."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        beat = None
        if now - self._last_beat >= self.heartbeat_interval:
            beat = self.heartbeat()
            self._last_beat = now
        try:
            snapshot, keys = await loop.run_in_executor(self._executor, self._poll, beat)
        except Exception as exc:
            # The store's health logs the outage once (`store lost`, `store back after`);
            # the connection reopens itself, so nothing here but the flag readiness reads.
            if self.store_ok and not isinstance(exc, StoreUnavailable):
                log.warning("control poll failed (%s); serving with the last routes", exc)
            self.store_ok = False
            self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        self.store_ok = True
        if keys is not None:
            self.on_keys(keys[0], keys[1])
        if snapshot is not None:
            self.version = snapshot.version
            self.on_snapshot(snapshot)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def start(self) -> None:
        """Poll in the background until closed."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-control")

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.poll_interval)

    async def close(self, *, remove_heartbeat: bool = True, instance_id: str = "") -> None:
        """Stop polling; remove this process's heartbeat row."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        loop = asyncio.get_running_loop()
        if remove_heartbeat and instance_id:
            try:
                await loop.run_in_executor(self._executor, self._remove, instance_id)
            except Exception as exc:
                log.warning("could not remove the heartbeat row: %s", exc)
        await loop.run_in_executor(self._executor, self._drop_connection)
        self._executor.shutdown(wait=True)

    def _remove(self, instance_id: str) -> None:
        conn = self._connection()
        with conn.write():
            conn.execute("DELETE FROM gateway_instances WHERE id = :id", {"id": instance_id})


def breakers_json(views: list[Any]) -> str:
    """The breakers column of the heartbeat row."""
    return json.dumps(
        [
            {
                "deployment": v.deployment,
                "state": v.state,
                "forced": v.forced,
                "opened_at": v.opened_at,
                "consecutive_failures": v.consecutive_failures,
                "window_errors": v.window_errors,
                "window_size": v.window_size,
            }
            for v in views
        ],
        separators=(",", ":"),
    )
