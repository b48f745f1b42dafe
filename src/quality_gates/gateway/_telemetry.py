"""Telemetry off the request path: request and attempt rows, per-minute roll-ups.

The request handler only appends a record to a list and adds it to in-memory roll-ups; a
background task pickles batches and hands them to the sink (a child process, see `_sink`)
that inserts `requests` and `attempts` rows and upserts this process's cumulative `rollups`
rows (one per minute x series, keyed
by this writer's id, so readers sum over writers). When the store is slow or down the rows
wait in a bounded buffer; past the bound new rows are dropped and counted (roll-ups, which
are small, are never dropped), and the gateway keeps serving.

Request `status`: `ok` (answered, from a provider or the cache), `error` (the gateway could
not answer: 5xx), `rejected` (refused: over a limit, or the upstream refused the request).

Active probes of providers are rolled up apart, as `probe` series (no alias, no model, no
`requests` or `attempts` row): the watch's provider rules count them as samples, so a
provider that traffic left is still judged, while client figures (requests, attempts,
throughput, SLOs, reports) never include them.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from quality_gates.config import TelemetrySettings
from quality_gates.telemetry import LatencyHistogram

log = logging.getLogger("quality_gates.gateway")
MAX_BACKOFF_S = 5.0
KEEP_MINUTES = 3
SHUTDOWN_FLUSH_S = 10.0


@dataclass(slots=True)
class AttemptRecord:
    """One upstream call."""

    attempt: int
    ts: float
    provider: str
    model_id: str
    deployment: str
    status: str
    error_class: str | None
    http_status: int | None
    latency_ms: float
    ttft_ms: float | None


@dataclass(slots=True)
class RequestRecord:
    """One client request, as answered."""

    id: str
    ts: float
    environment: str
    alias: str
    model_id: str | None = None
    provider: str | None = None
    deployment: str | None = None
    key_name: str | None = None
    status: str = "ok"
    http_status: int = 200
    error_class: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    cache: str = "miss"
    hops: int = 0
    stream: bool = False
    canary: bool = False
    finish_reason: str | None = None
    prompt: str | None = None
    answer: str | None = None
    output_check: str | None = None  # structured output: valid or why not (_output_check)
    attempts: list[AttemptRecord] = field(default_factory=list)


class _Series:
    __slots__ = (
        "cache_hits",
        "cache_misses",
        "cache_stale",
        "canary",
        "cost",
        "count",
        "dirty",
        "errors",
        "errors_by_class",
        "failovers",
        "input_tokens",
        "latency",
        "output_tokens",
        "outputs_checked",
        "outputs_invalid",
        "ttft",
        "version",
    )

    def __init__(self) -> None:
        self.count = self.errors = self.input_tokens = self.output_tokens = 0
        self.cache_hits = self.cache_stale = self.cache_misses = self.failovers = 0
        self.canary = self.outputs_checked = self.outputs_invalid = 0
        self.cost = 0.0
        self.errors_by_class: dict[str, int] = {}
        self.latency = LatencyHistogram()
        self.ttft = LatencyHistogram()
        self.dirty = True
        self.version = 0  # bumped on every change: what an in-memory reader compares


SeriesKey = tuple[int, str, str, str, str]  # minute, alias, model, provider, kind
PROBE_KIND = "probe"  # the roll-up kind of active probes (client series: request, attempt)


class TelemetryWriter:
    """Buffers records and writes them from one background thread."""

    def __init__(
        self,
        settings: TelemetrySettings,
        environment: str,
        writer_id: str,
        sink: Callable[[bytes], Awaitable[None]],
        close_sink: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.environment = environment
        self.writer_id = writer_id
        self._sink = sink
        self._close_sink = close_sink
        self._pending: list[RequestRecord] = []
        self._rows_pending = 0
        self._series: dict[SeriesKey, _Series] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.dropped = 0
        self.written_requests = 0
        self.written_attempts = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._failing_since: float | None = None

    @property
    def buffered(self) -> int:
        """Rows (requests and attempts) waiting to be written."""
        return self._rows_pending

    def record(self, rec: RequestRecord) -> None:
        """Queue a request (and its attempts) and add it to the roll-ups; never blocks.
        A refused key (error class `auth_failed`) is stored but not rolled up."""
        if rec.error_class != "auth_failed":
            self._roll(rec)
        rows = 1 + len(rec.attempts)
        if self._rows_pending + rows > self.settings.buffer:
            self.dropped += rows
            return
        self._pending.append(rec)
        self._rows_pending += rows
        if self._rows_pending >= self.settings.batch:
            self._wake.set()

    def record_probe(
        self, provider: str, healthy: bool, error_class: str | None, latency_ms: float, ts: float
    ) -> None:
        """Roll one active probe of `provider` into its `probe` series (no row of its own)."""
        s = self._series_for((int(ts // 60), "", "", provider, PROBE_KIND))
        s.count += 1
        if not healthy:
            s.errors += 1
            name = error_class or "error"
            s.errors_by_class[name] = s.errors_by_class.get(name, 0) + 1
        s.latency.add(latency_ms)

    def _series_for(self, key: SeriesKey) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.dirty = True
        series.version += 1
        return series

    def _roll(self, rec: RequestRecord) -> None:
        minute = int(rec.ts // 60)
        s = self._series_for((minute, rec.alias, rec.model_id or "", rec.provider or "", "request"))
        s.count += 1
        if rec.status == "error":
            s.errors += 1
        if rec.error_class:
            s.errors_by_class[rec.error_class] = s.errors_by_class.get(rec.error_class, 0) + 1
        s.latency.add(rec.latency_ms)
        if rec.ttft_ms is not None:
            s.ttft.add(rec.ttft_ms)
        s.input_tokens += rec.input_tokens
        s.output_tokens += rec.output_tokens
        s.cost += rec.cost
        if rec.cache == "hit":
            s.cache_hits += 1
        elif rec.cache == "stale":
            s.cache_stale += 1
        elif rec.cache == "miss":
            s.cache_misses += 1
        if rec.hops:
            s.failovers += 1
        if rec.canary:
            s.canary += 1
        if rec.output_check is not None:
            s.outputs_checked += 1
            if rec.output_check != "valid":
                s.outputs_invalid += 1
        for a in rec.attempts:
            t = self._series_for((int(a.ts // 60), rec.alias, a.model_id, a.provider, "attempt"))
            t.count += 1
            if a.status != "ok":
                if a.status == "error":  # a call its client left is no provider error
                    t.errors += 1
                if a.error_class:
                    t.errors_by_class[a.error_class] = t.errors_by_class.get(a.error_class, 0) + 1
            t.latency.add(a.latency_ms)
            if a.ttft_ms is not None:
                t.ttft.add(a.ttft_ms)
            if rec.canary:
                t.canary += 1

    @property
    def failing(self) -> bool:
        """True while writes to the store fail (rows are buffered meanwhile)."""
        return self._failing_since is not None

    def start(self) -> None:
        """Start the background flusher."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-telemetry")

    async def _run(self) -> None:
        delay = self.settings.flush_interval
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            ok = await self.flush()
            delay = self.settings.flush_interval if ok else min(MAX_BACKOFF_S, delay * 2)

    async def flush(self) -> bool:
        """Write what is pending (in batches); False if the store refused."""
        while True:
            batch = self._take()
            rollups = self._rollup_rows()
            if not batch and not rollups:
                return True
            payload = self._payload(batch, rollups)
            try:
                await self._sink(payload)
            except Exception as exc:
                self._requeue(batch)
                for key in rollups:
                    self._series[key].dirty = True
                self.write_errors += 1
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if self._failing_since is None:  # one line per outage, not per retry
                    self._failing_since = time.monotonic()
                    log.warning(
                        "telemetry writes failing (%s); buffering up to %d rows and retrying",
                        self.last_error,
                        self.settings.buffer,
                    )
                return False
            if self._failing_since is not None:
                log.warning(
                    "telemetry writes resumed after %.1f s; %d rows still buffered",
                    time.monotonic() - self._failing_since,
                    self._rows_pending,
                )
                self._failing_since = None
            self.written_requests += len(batch)
            self.written_attempts += sum(len(r.attempts) for r in batch)
            self._forget_old()
            if not self._pending:
                return True

    def _take(self) -> list[RequestRecord]:
        rows = cut = 0
        for rec in self._pending:
            if rows >= self.settings.batch:
                break
            rows += 1 + len(rec.attempts)
            cut += 1
        batch = self._pending[:cut]
        del self._pending[:cut]
        self._rows_pending -= rows
        return batch

    def _requeue(self, batch: list[RequestRecord]) -> None:
        self._pending[:0] = batch
        self._rows_pending += sum(1 + len(r.attempts) for r in batch)
        while self._rows_pending > self.settings.buffer and self._pending:
            dropped = self._pending.pop()
            rows = 1 + len(dropped.attempts)
            self._rows_pending -= rows
            self.dropped += rows

    def rows_since(self, first_minute: int) -> list[dict[str, object]]:
        """This process's roll-up rows from `first_minute` on, as the store would hold them
        once flushed (whether or not the store took them), `updated_at` being each row's
        change count: what the watch reads while the store is unreachable."""
        return [
            self._row(key, s, float(s.version))
            for key, s in list(self._series.items())
            if key[0] >= first_minute
        ]

    def _rollup_rows(self) -> dict[SeriesKey, dict[str, object]]:
        now = time.time()
        rows: dict[SeriesKey, dict[str, object]] = {}
        for key, s in self._series.items():
            if not s.dirty:
                continue
            s.dirty = False
            rows[key] = self._row(key, s, now)
        return rows

    def _row(self, key: SeriesKey, s: _Series, updated_at: float) -> dict[str, object]:
        minute, alias, model_id, provider, kind = key
        return {
            "minute": minute,
            "environment": self.environment,
            "alias": alias,
            "model_id": model_id,
            "provider": provider,
            "kind": kind,
            "writer": self.writer_id,
            "count": s.count,
            "errors": s.errors,
            "errors_by_class": orjson.dumps(
                s.errors_by_class, option=orjson.OPT_SORT_KEYS
            ).decode(),
            "latency_hist": s.latency.to_json(),
            "ttft_hist": s.ttft.to_json(),
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cost": s.cost,
            "cache_hits": s.cache_hits,
            "cache_stale": s.cache_stale,
            "cache_misses": s.cache_misses,
            "failovers": s.failovers,
            "canary": s.canary,
            "outputs_checked": s.outputs_checked,
            "outputs_invalid": s.outputs_invalid,
            "updated_at": updated_at,
        }

    def _forget_old(self) -> None:
        horizon = int(time.time() // 60) - KEEP_MINUTES
        for key in [k for k, s in self._series.items() if k[0] < horizon and not s.dirty]:
            del self._series[key]

    def _payload(
        self, batch: list[RequestRecord], rollups: dict[SeriesKey, dict[str, object]]
    ) -> bytes:
        requests: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        for r in batch:
            requests.append((
                r.id, r.ts, r.environment, r.alias, r.model_id, r.provider, r.deployment,
                r.key_name, r.status, r.http_status, r.error_class, r.latency_ms, r.ttft_ms,
                r.input_tokens, r.output_tokens, r.cost, r.cache, len(r.attempts), r.hops,
                int(r.stream), int(r.canary), r.finish_reason, r.prompt, r.answer, r.output_check,
            ))  # fmt: skip
            for a in r.attempts:
                attempts.append((
                    r.id, a.attempt, a.ts, r.environment, a.provider, a.model_id, a.deployment,
                    a.status, a.error_class, a.http_status, a.latency_ms, a.ttft_ms,
                ))  # fmt: skip
        return pickle.dumps((requests, attempts, list(rollups.values())), protocol=5)

    async def close(self) -> None:
        """Stop the flusher and write what is left (best effort). The flusher is asked to
        stop, not cancelled: a batch already handed to the sink must not be lost."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                while not await self.flush():
                    await asyncio.sleep(0.2)  # the sink restarts; try again
        except TimeoutError:
            log.warning("telemetry: %d rows not flushed at shutdown", self._rows_pending)
        if self._close_sink is not None:
            await self._close_sink()
