"""The telemetry sink: a child process that writes batches into the store.

Writing from a thread of the gateway process would cost the request path far more than the
inserts themselves: SQLite and psycopg release the GIL around every statement, and each
hand-over makes the event loop wait for the lock again (the convoy effect; measured here as
a 40% loss of throughput). The gateway pickles each batch on its loop (about a microsecond a
row) and one I/O thread passes the bytes through a pipe and waits for the answer, holding
the GIL only to copy them; the child does the SQL with its own interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import sys
from typing import IO, Any

from quality_gates.errors import StoreError
from quality_gates.store.db import Connection, Database, StoreURL

REPLY_TIMEOUT_S = 120.0
REQUEST_COLUMNS = (
    "id", "ts", "environment", "alias", "model_id", "provider", "deployment", "key_name",
    "status", "http_status", "error_class", "latency_ms", "ttft_ms", "input_tokens",
    "output_tokens", "cost", "cache", "attempts", "hops", "stream", "canary", "finish_reason",
    "prompt", "answer", "output_check",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "request_id", "attempt", "ts", "environment", "provider", "model_id", "deployment",
    "status", "error_class", "http_status", "latency_ms", "ttft_ms",
)  # fmt: skip
INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES "
    f"({', '.join(':' + c for c in REQUEST_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES "
    f"({', '.join(':' + c for c in ATTEMPT_COLUMNS)})"
)
UPSERT_ROLLUP = (
    "INSERT INTO rollups (minute, environment, alias, model_id, provider, kind, writer, count, "
    "errors, errors_by_class, latency_hist, ttft_hist, input_tokens, output_tokens, cost, "
    "cache_hits, cache_stale, cache_misses, failovers, canary, outputs_checked, outputs_invalid, "
    "updated_at) VALUES (:minute, "
    ":environment, :alias, :model_id, :provider, :kind, :writer, :count, :errors, "
    ":errors_by_class, :latency_hist, :ttft_hist, :input_tokens, :output_tokens, :cost, "
    ":cache_hits, :cache_stale, :cache_misses, :failovers, :canary, :outputs_checked, "
    ":outputs_invalid, :updated_at) "
    "ON CONFLICT (minute, environment, alias, model_id, provider, kind, writer) DO UPDATE SET "
    "count = excluded.count, errors = excluded.errors, errors_by_class = "
    "excluded.errors_by_class, latency_hist = excluded.latency_hist, ttft_hist = "
    "excluded.ttft_hist, input_tokens = excluded.input_tokens, output_tokens = "
    "excluded.output_tokens, cost = excluded.cost, cache_hits = excluded.cache_hits, "
    "cache_stale = excluded.cache_stale, cache_misses = excluded.cache_misses, failovers = "
    "excluded.failovers, canary = excluded.canary, outputs_checked = excluded.outputs_checked, "
    "outputs_invalid = excluded.outputs_invalid, updated_at = excluded.updated_at"
)


def write_batch(
    conn: Connection,
    requests: list[tuple[Any, ...]],
    attempts: list[tuple[Any, ...]],
    rollups: list[dict[str, Any]],
) -> None:
    """Insert request and attempt rows and upsert roll-ups in one transaction."""
    with conn.write():
        if requests:
            conn.executemany(
                INSERT_REQUEST, [dict(zip(REQUEST_COLUMNS, r, strict=True)) for r in requests]
            )
        if attempts:
            conn.executemany(
                INSERT_ATTEMPT, [dict(zip(ATTEMPT_COLUMNS, a, strict=True)) for a in attempts]
            )
        if rollups:
            conn.executemany(UPSERT_ROLLUP, rollups)


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    return data if len(data) == size else None


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child: the first frame is the store URL; then write each batch it receives and
    answer `ok` or the error."""
    first = _read_frame(stdin)
    if first is None:
        return
    database = Database(pickle.loads(first))
    conn: Connection | None = None
    while (payload := _read_frame(stdin)) is not None:
        try:
            if conn is None:
                conn = database.connect()
            write_batch(conn, *pickle.loads(payload))
            _write_frame(stdout, b"ok")
        except Exception as exc:
            if conn is not None:
                conn.close()
                conn = None
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _write_frame(stdout, b"error:" + text.encode("utf-8", "replace"))
    if conn is not None:
        conn.close()


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class ProcessSink:
    """Writes batches through a child process (`python -m quality_gates.gateway._sink`),
    restarted if it dies. The pipes are driven by the event loop (no thread, so no GIL
    hand-over at all); a plain subprocess rather than multiprocessing, whose spawn would
    re-run whatever script started the gateway."""

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quality_gates.gateway._sink",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        if process.stdin is None:
            raise StoreError("the telemetry writer process has no input pipe")
        process.stdin.write(_frame(pickle.dumps(self.url)))
        self._process = process
        return process

    async def write(self, payload: bytes) -> None:
        """Send one pickled batch and wait for the child's answer."""
        async with self._lock:
            process = self._process
            if process is None or process.returncode is not None:
                process = await self._start()
            if process.stdin is None or process.stdout is None:
                raise StoreError("the telemetry writer process has no pipes")
            try:
                process.stdin.write(_frame(payload))
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    await process.stdin.drain()
                    size = int.from_bytes(await process.stdout.readexactly(4), "big")
                    reply = await process.stdout.readexactly(size)
            except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as exc:
                await self._stop()
                raise StoreError(
                    f"the telemetry writer process stopped or hung ({type(exc).__name__}); "
                    "restarting it"
                ) from exc
        if reply != b"ok":
            raise StoreError(reply.decode("utf-8", "replace").removeprefix("error:"))

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        """Stop the child (it finishes the batch it holds first)."""
        async with self._lock:
            await self._stop()


if __name__ == "__main__":
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the gateway then
    # flushes its last batches through this process, which leaves when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from quality_gates.store._health import quiet

    quiet()
    serve(sys.stdin.buffer, sys.stdout.buffer)
