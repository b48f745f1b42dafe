"""The evaluator loop: `quality-gates watch`, and embeddable in `serve` via `WatchService.run`.

Store work runs on one dedicated thread with its own connection, so the event loop (the
gateway's, when embedded) never blocks on SQL; HTTP to the notification channels is async.
Only the lease holder evaluates and sends; the others keep trying for the lease, so a
standby takes over within one lease period when the leader dies.

While the store is unreachable nothing can be stored, opened or sent, but a watch inside a
gateway (`serve`, given `local_rows`) still judges the rules it can on that gateway's
in-memory roll-ups (`evaluate_local`): one log line when a rule starts or stops breaking its
threshold, `qg_watch_store_down_breaches` on /metrics, and on the store's return the normal
evaluation judges the same figures, flushed by then, and opens what they call for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from quality_gates._jsonlog import log_event
from quality_gates.notify._outbox import DeliveryReport, deliver
from quality_gates.remediation._remediator import ActionReport, Remediator
from quality_gates.routines._schedule import LATE_AFTER
from quality_gates.routines._scheduler import Claim, RoutineScheduler, store_url_for_children
from quality_gates.signals._live import LiveTail
from quality_gates.signals.probes import AdapterPool, GoldenProbes, probed_models, write_samples
from quality_gates.store import _leader
from quality_gates.store.db import Connection, Database
from quality_gates.store.retention import prune_if_due
from quality_gates.watch._evaluate import (
    EvaluationReport,
    LocalEvaluation,
    describe_transition,
    evaluate,
    evaluate_local,
    rule_specs,
)

if TYPE_CHECKING:
    import aiohttp

    from quality_gates.config import QualityGatesConfig

T = TypeVar("T")
logger = logging.getLogger("quality_gates.watch")
LEASE_PERIODS = 3  # a lease lasts this many evaluation intervals (at least MIN_LEASE_SECONDS)
MIN_LEASE_SECONDS = 15.0
MAX_DELIVERY_ROUNDS = 10
# While the store is unreachable the loop tries again this often (each try is cheap: the
# store's backoff makes it fail fast), so it resumes within about this plus the backoff.
STORE_RETRY_S = 1.0


class Exporter(Protocol):
    """A publisher the loop calls each cycle. The watch never imports one: whoever builds the
    service passes `exporters` (the CLI passes `quality_gates.exports.exporters_for`)."""

    async def maybe_export(self, service: Any, now: float) -> None:
        """Publish if the interval has passed."""

    def on_cycle(self, report: Any) -> None:
        """Called after every evaluation cycle."""

    async def close(self) -> None:
        """Flush and release."""


ExporterFactory = Callable[["QualityGatesConfig"], Sequence[Exporter]]


@dataclass
class CycleReport:
    """One pass of the loop."""

    at: float
    leader: bool
    evaluation: EvaluationReport | None = None
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    remediation: list[ActionReport] = field(default_factory=list)
    routines: list[Claim] = field(default_factory=list)
    error: str | None = None
    store_down: bool = False
    # while the store is down: the rules judged on this gateway's in-memory figures
    local: LocalEvaluation | None = None


class WatchService:
    """Evaluate rules, run incidents and deliver notifications until stopped.

    `run(stop_event)` is the async entry point for `serve`'s lifespan; `run_once()` does one
    bounded pass (tests, `watch --once`). The leader also remediates after each evaluation
    (`remediation`; `auto_rollback=False` leaves rollbacks out), starts the routine checks
    that are due (given `config_path`, the file their runs read) and, in `run`, sends the
    golden probes (`config_dir` resolves a relative probe dataset). `exporters` builds the
    publishers (CloudWatch, OpenTelemetry) from the config on the first cycle.
    """

    def __init__(
        self,
        database: Database,
        config: QualityGatesConfig,
        *,
        interval: float | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        on_cycle: Callable[[CycleReport], None] | None = None,
        config_dir: Path | None = None,
        auto_rollback: bool = True,
        config_path: Path | None = None,
        exporters: ExporterFactory | None = None,
        local_rows: Callable[[int], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.database = database
        self.config = config
        self.interval = interval if interval is not None else config.alerts.evaluation_interval
        self.holder = holder or _leader.holder_id()
        self.clock = clock
        self.on_cycle = on_cycle
        self.lease_ttl = max(MIN_LEASE_SECONDS, self.interval * LEASE_PERIODS)
        self.specs = rule_specs(config)
        self.live = LiveTail()
        # The roll-ups of the gateway this watch runs in, read from its memory every cycle
        # (`local_rows(first_minute)`), so that its windows are covered when the store goes.
        self.local_rows = local_rows
        self.local = LiveTail()
        self._local_seen: set[str] = set()  # rules that held during this store outage
        self.last_local: LocalEvaluation | None = None
        self.leader = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qg-watch-store")
        self._conn: Connection | None = None
        self._paused_at: float | None = None
        self._session: aiohttp.ClientSession | None = None
        self._exporter_factory = exporters
        self._exporters: list[Exporter] = []
        self._exporters_started = False
        self.pool = AdapterPool(config)
        self.probes = GoldenProbes(config, self.pool, config_dir=config_dir)
        self.remediator = Remediator(config, self.probes, rollback_enabled=auto_rollback)
        self.routines: RoutineScheduler | None = None
        if config_path is not None and any(j.enabled for j in config.routines.jobs):
            self.routines = RoutineScheduler(
                config,
                config_path=config_path,
                store_url=store_url_for_children(database.url),
                holder=self.holder,
                late_after=max(LATE_AFTER, self.interval * LEASE_PERIODS),
            )

    async def _db(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, func, args)

    def _call(self, func: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = self.database.connect()
        return func(self._conn, *args)

    async def _open(self) -> None:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()

    def _start_exporters(self) -> None:
        # Only the evaluating loop publishes; a command that just sends what it enqueued
        # (`deliver_now`) opens no CloudWatch or OpenTelemetry clients.
        if not self._exporters_started:
            if self._exporter_factory is not None:
                self._exporters = list(self._exporter_factory(self.config))
            self._exporters_started = True

    async def run_once(self) -> CycleReport:
        """Take or renew the lease; if held, evaluate once and deliver what is due."""
        await self._open()
        self._start_exporters()
        now = self.clock()
        report = CycleReport(at=now, leader=False)
        self._observe_local(now)
        try:
            self.leader = await self._db(
                _leader.acquire, _leader.WATCH_LEASE, self.holder, self.lease_ttl, now
            )
            report.leader = self.leader
            if not self.leader:
                return report
            report.evaluation = await self._db(self._evaluate, now)
            report.remediation = await self.remediator.react(self._db, self.clock())
            if self.routines is not None:
                report.routines = await self.routines.tick(self._db, self.clock())
            await self._db(prune_if_due, self.config.store.retention, self.clock())
            for transition in report.evaluation.transitions:
                log_event(
                    logger,
                    logging.WARNING if transition.to_state == "firing" else logging.INFO,
                    "ALERT",
                    describe_transition(transition),
                    rule=transition.alert.rule,
                    labels=transition.alert.labels,
                    state=transition.to_state,
                    severity=transition.alert.severity,
                    incident=transition.alert.incident_id,
                )
            report.delivery = await self.deliver()
            for exporter in self._exporters:
                await exporter.maybe_export(self, now)
        except Exception as exc:
            from quality_gates.errors import QualityGatesError, StoreUnavailable

            if not isinstance(exc, QualityGatesError | OSError):
                raise
            report.error = str(exc)
            report.store_down = isinstance(exc, StoreUnavailable)
            if report.store_down:
                if self.local_rows is not None:
                    report.local = evaluate_local(self.local, self.specs, now)
                self._store_paused(now, report.local)
                if report.local is not None:
                    self._log_local(report.local)
            else:
                log_event(logger, logging.ERROR, "ERROR", f"watch cycle failed: {exc}")
        else:
            self._store_resumed()
        for exporter in self._exporters:
            exporter.on_cycle(report)
        if self.on_cycle is not None:
            self.on_cycle(report)
        return report

    def _observe_local(self, now: float) -> None:
        if self.local_rows is None:
            return
        from quality_gates.signals._windows import minute_of

        self.local.observe_rows(self.local_rows(minute_of(now) - 1), now)

    def _log_local(self, evaluation: LocalEvaluation) -> None:
        # One line when a rule starts breaking its threshold on this gateway's figures and
        # one when it stops: the store's outage must not hide an outage of a provider.
        before = {b.key: b for b in self.last_local.breaches} if self.last_local else {}
        self.last_local = evaluation
        current = {breach.key: breach for breach in evaluation.breaches}
        for key, breach in current.items():
            if key not in before:
                log_event(
                    logger,
                    logging.ERROR if breach.severity == "critical" else logging.WARNING,
                    "ALERT",
                    f"store down: {breach.rule} holds on this gateway's own figures: "
                    f"{breach.sentence} (no incident or notification until the store is back)",
                    rule=breach.rule,
                    labels=breach.labels,
                    severity=breach.severity,
                    value=breach.value,
                )
        for key, breach in before.items():
            if key not in current:
                log_event(
                    logger,
                    logging.INFO,
                    "ALERT",
                    f"store down: {breach.rule} no longer holds on this gateway's own figures",
                    rule=breach.rule,
                    labels=breach.labels,
                )
        self._local_seen.update(breach.rule for breach in current.values())

    def _store_paused(self, now: float, local: LocalEvaluation | None = None) -> None:
        # One line when the watch stops for want of a store (the store's own line says why),
        # none per failed cycle; it retries every STORE_RETRY_S meanwhile.
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            if local is None:
                judging = "no alerts"
            else:
                judging = (
                    f"judging {len(local.judged)} of {len(self.specs)} rules on this gateway's "
                    "in-memory figures (log and /metrics only; the rest need the store or "
                    "a longer history), no stored alerts"
                )
            log_event(
                logger,
                logging.ERROR,
                "SYSTEM",
                f"watch paused: the store is unreachable; {judging}, incidents or "
                f"notifications until it is back (retrying every {STORE_RETRY_S:g} s)",
            )

    def _store_resumed(self) -> None:
        if self._paused_at is not None:
            paused = time.monotonic() - self._paused_at
            self._paused_at = None
            held = sorted(self._local_seen)
            seen = f"; held on this gateway's figures meanwhile: {', '.join(held)}" if held else ""
            self._local_seen = set()
            self.last_local = None
            log_event(
                logger,
                logging.WARNING,
                "SYSTEM",
                f"watch resumed after {paused:.1f} s without the store{seen}",
                paused_seconds=round(paused, 1),
            )

    @property
    def store_paused(self) -> bool:
        """True while the watch waits for the store to come back."""
        return self._paused_at is not None

    def _evaluate(self, conn: Connection, now: float) -> EvaluationReport:
        return evaluate(conn, self.config, now, specs=self.specs, live=self.live)

    async def deliver(self, only: list[str] | None = None) -> DeliveryReport:
        """Send what the outbox holds due, in rounds until nothing more is ready."""
        await self._open()
        assert self._session is not None
        total = DeliveryReport()
        for _ in range(MAX_DELIVERY_ROUNDS):
            done = await deliver(
                self._db,
                self._session,
                self.config.notifications,
                self.holder,
                clock=self.clock,
                only=only,
            )
            total.sent += done.sent
            total.failed += done.failed
            total.retrying += done.retrying
            if done.sent == 0:
                break
        if total.sent or total.failed or total.retrying:
            log_event(
                logger,
                logging.ERROR if total.failed else logging.INFO,
                "NOTIFICATION",
                f"notifications: {total.sent} sent, {total.retrying} to retry, "
                f"{total.failed} failed",
                sent=total.sent,
                retrying=total.retrying,
                failed=total.failed,
            )
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; then release the lease and close."""
        log_event(
            logger,
            logging.INFO,
            "SYSTEM",
            f"watch started: {len(self.specs)} rules every {self.interval:g} s",
            holder=self.holder,
        )
        probing = None
        if self.config.remediation.probes.enabled:
            probing = asyncio.get_running_loop().create_task(self._probe_loop(stop))
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.run_once()
                except Exception as exc:  # one bad cycle must not end the watch
                    logger.error(
                        "watch cycle crashed: %s",
                        exc,
                        exc_info=True,
                        extra={"category": "ERROR"},
                    )
                interval = STORE_RETRY_S if self.store_paused else self.interval
                delay = max(0.0, min(self.interval, interval) - (time.monotonic() - started))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            if probing is not None:
                probing.cancel()
                try:
                    await probing
                except asyncio.CancelledError:
                    pass
            await self.close()

    async def probe_once(self) -> None:
        """One round of golden probes of each environment's current model (leader only)."""
        if not self.leader:
            return
        current = await self._db(probed_models, self.config)
        if not current:
            return

        async def write(rows: list[dict[str, object]]) -> None:
            await self._db(write_samples, rows)

        scores = await self.probes.run_round(current, write, self.clock())
        for score in scores:
            log_event(
                logger,
                logging.DEBUG,
                "QUALITY",
                f"golden probes of {score.model_id}: {score.describe()}",
                model=score.model_id,
            )

    async def _probe_loop(self, stop: asyncio.Event) -> None:
        interval = self.config.remediation.probes.interval
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception as exc:  # a bad round must not end the probes
                logger.error("golden probe round failed: %s", exc, extra={"category": "ERROR"})
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Stop the routine runs in progress, release the lease (so a standby takes over at
        once) and free resources."""
        try:
            if self.routines is not None:
                await self.routines.close()
            if self.leader:
                from quality_gates.errors import StoreUnavailable

                try:
                    await self._db(_leader.release, _leader.WATCH_LEASE, self.holder)
                except StoreUnavailable:
                    log_event(
                        logger,
                        logging.WARNING,
                        "SYSTEM",
                        "the watch lease was not released (the store is unreachable); a "
                        f"standby takes over when it expires (at most {self.lease_ttl:g} s)",
                    )
        finally:
            for exporter in self._exporters:
                await exporter.close()
            await self.pool.close()
            if self._session is not None:
                await self._session.close()
                self._session = None
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=False)


def deliver_now(database: Database, config: QualityGatesConfig, keys: list[str]) -> DeliveryReport:
    """Try once to send the messages a command just enqueued; what fails stays in the outbox
    for the running evaluator to retry."""
    if not keys:
        return DeliveryReport()

    async def attempt() -> DeliveryReport:
        service = WatchService(database, config, interval=config.alerts.evaluation_interval)
        try:
            return await service.deliver(only=keys)
        finally:
            await service.close()

    return asyncio.run(attempt())
