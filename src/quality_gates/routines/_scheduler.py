"""Routine checks: the watch leader runs each job of `routines:` when its cron slot comes due.

A run is the subprocess `python -m quality_gates <command>` with the watch's config and store
(see `_routine_run`), killed after the job's timeout. Exit 0 is passed, 1 and 3 failed,
anything else (a usage error, a command this quality-gates lacks, a timeout) an error.
Each run is a `job_runs` row whose details hold the slot, trigger, command, exit code,
duration, summary and the tail of the output. `RoutineScheduler` claims a slot and records
its run as started in one transaction, so a slot runs once however many evaluators stand by.
A failed run raises an alert (see `routine_specs`): one rule per job,
`routine-<job>-failed`, firing while the job's latest finished run failed, so the next
passing run resolves it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.routines import jobs
from quality_gates.routines._routine_run import (
    ERROR,
    FAILED,
    PASSED,
    Outcome,
    command_line,
    execute,
)
from quality_gates.routines._schedule import Due, due
from quality_gates.store.db import Connection, Row, StoreURL
from quality_gates.store.registry import get_meta, set_meta

if TYPE_CHECKING:
    from quality_gates.alerts._rules import RuleSpec
    from quality_gates.config import QualityGatesConfig
    from quality_gates.config._routines import RoutineJob

logger = logging.getLogger("quality_gates.watch")

ROUTINE_METRIC = "routine_failed"
MARKS_KEY = "routine_marks:"  # + job name: when the watch first saw it, the last slot run
MANUAL_PREFIX = "manual:"
ROUTINE_ACTOR_PREFIX = "routine:"  # a scheduled run's commands act as routine:<job>


def rule_name(job: str) -> str:
    """The alert rule of a job: `routine-daily-health-check-failed`."""
    return f"routine-{job}-failed"


# --- the record -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A run that was recorded as started and is to be executed."""

    run_id: int
    job: str
    words: list[str]
    details: dict[str, Any]


def _marks(conn: Connection, job: str) -> dict[str, Any]:
    raw = get_meta(conn, MARKS_KEY + job)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _set_marks(conn: Connection, job: str, marks: dict[str, Any]) -> None:
    set_meta(conn, MARKS_KEY + job, json.dumps(marks, sort_keys=True))


def running_runs(conn: Connection, job: str) -> list[Row]:
    """Runs of `job` recorded as still running."""
    return conn.execute(
        "SELECT id, job, started_at, holder FROM job_runs WHERE job = :job AND status = 'running'",
        {"job": job},
    )


def _abandon_stale(
    conn: Connection, job: RoutineJob, holder: str, grace: float, now: float
) -> bool:
    """Mark as error the runs nobody will finish: past timeout + grace, or left by another
    watch (this one holds the lease, so that one stopped). True if a live run remains."""
    alive = False
    for row in running_runs(conn, job.name):
        owner = str(row["holder"])
        too_old = now - float(row["started_at"]) > job.timeout + grace
        orphan = not owner.startswith(MANUAL_PREFIX) and owner != holder
        if too_old or orphan:
            reason = "ran past its timeout" if too_old else f"its watch ({owner}) stopped"
            jobs.finish_run(
                conn,
                int(row["id"]),
                ERROR,
                details={"summary": f"abandoned: {reason}", "abandoned": True},
                now=now,
            )
        else:
            alive = True
    return alive


def claim_due(
    conn: Connection,
    job: RoutineJob,
    *,
    holder: str,
    now: float,
    grace: float,
    late_after: float,
) -> Claim | None:
    """If `job` has a slot due and no run going, record its run as started (one transaction)."""
    marks = _marks(conn, job.name)
    if "first_seen" in marks and not running_runs(conn, job.name):
        # The usual case, every cycle: nothing due. Decided without taking the write lock.
        quiet = due(
            job.cron,
            job.timezone,
            now=now,
            last_slot=marks.get("last_slot"),
            first_seen=float(marks["first_seen"]),
            running=False,
            late_after=late_after,
        )
        if quiet is None:
            return None
    with conn.write():
        marks = _marks(conn, job.name)
        if "first_seen" not in marks:
            marks["first_seen"] = now
            _set_marks(conn, job.name, marks)
        running = _abandon_stale(conn, job, holder, grace, now)
        slot = due(
            job.cron,
            job.timezone,
            now=now,
            last_slot=marks.get("last_slot"),
            first_seen=float(marks["first_seen"]),
            running=running,
            late_after=late_after,
        )
        if slot is None:
            return None
        details = _start_details(job, "schedule", now, slot)
        run_id = jobs.start_run(conn, job.name, holder=holder, now=now, details=details)
        marks["previous_slot"], marks["last_slot"] = marks.get("last_slot"), slot.slot
        _set_marks(conn, job.name, marks)
    return Claim(run_id, job.name, command_line(job, slot.slot), details)


def claim_manual(conn: Connection, job: RoutineJob, *, holder: str, now: float) -> Claim:
    """Record a run asked for by hand (`routines run`), whatever the schedule says."""
    details = _start_details(job, "manual", now, None)
    run_id = jobs.start_run(conn, job.name, holder=MANUAL_PREFIX + holder, now=now, details=details)
    return Claim(run_id, job.name, command_line(job, now), details)


def _start_details(job: RoutineJob, trigger: str, now: float, slot: Due | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "trigger": trigger,
        "command": job.command,
        "cron": job.cron,
        "timezone": job.timezone,
    }
    if slot is not None:
        details.update(
            {
                "slot": slot.slot,
                "late": slot.late,
                "skipped_slots": slot.skipped,
                "timing": slot.describe(),
            }
        )
    return details


def record_outcome(
    conn: Connection, claim: Claim, outcome: Outcome, *, now: float | None = None
) -> dict[str, Any]:
    """Store how the run ended; returns the details written."""
    details = {
        **claim.details,
        "exit_code": outcome.exit_code,
        "duration": round(outcome.duration, 3),
        "timed_out": outcome.timed_out,
        "summary": outcome.summary,
        "output": outcome.output,
    }
    jobs.finish_run(conn, claim.run_id, outcome.status, details=details, now=now)
    return details


def record_interrupted(conn: Connection, claim: Claim, *, now: float | None = None) -> None:
    """The watch stopped mid-run: record it and give the slot back, so the next watch runs
    it (late) rather than counting it as done."""
    with conn.write():
        jobs.finish_run(
            conn,
            claim.run_id,
            ERROR,
            details={
                **claim.details,
                "summary": "interrupted: the watch stopped",
                "interrupted": True,
            },
            now=now,
        )
        if claim.details.get("trigger") == "schedule":
            marks = _marks(conn, claim.job)
            if marks.get("last_slot") == claim.details.get("slot"):
                marks["last_slot"] = marks.get("previous_slot")
                _set_marks(conn, claim.job, marks)


def run_now(
    conn: Connection,
    config: QualityGatesConfig,
    job: RoutineJob,
    *,
    config_path: Path,
    store_url: str,
    actor: str,
) -> tuple[Claim, Outcome]:
    """Run `job` now (the `routines run` command), recorded with trigger manual; refused
    (ConflictError) while a run of the job is going."""
    from quality_gates.errors import ConflictError
    from quality_gates.store import audit
    from quality_gates.store._leader import holder_id

    now = time.time()
    with conn.write():
        live = [
            r
            for r in running_runs(conn, job.name)
            if now - float(r["started_at"]) <= job.timeout + config.routines.grace
        ]
        if live:
            raise ConflictError(
                f"routine {job.name} is already running (run #{live[0]['id']} since "
                f"{now - float(live[0]['started_at']):.0f} s, by {live[0]['holder']})"
            )
        claim = claim_manual(conn, job, holder=f"{actor}@{holder_id()}", now=now)
    try:
        outcome = asyncio.run(
            execute(
                claim.words,
                config_path=config_path,
                store_url=store_url,
                timeout=job.timeout,
                output_limit=config.routines.output_limit,
                actor=actor,
            )
        )
    except BaseException:
        record_interrupted(conn, claim)
        raise
    record_outcome(conn, claim, outcome)
    with conn.write():
        audit.append(
            conn,
            actor=actor,
            action="routine.run",
            target=f"routine/{job.name}",
            details={"run": claim.run_id, "status": outcome.status, "exit_code": outcome.exit_code},
        )
    return claim, outcome


# --- the scheduler in the watch loop ------------------------------------------------------


class RoutineScheduler:
    """Starts the due routines of the config each watch cycle (leader only) as tasks."""

    def __init__(
        self,
        config: QualityGatesConfig,
        *,
        config_path: Path,
        store_url: str,
        holder: str,
        late_after: float,
    ) -> None:
        self.config = config
        self.config_path = config_path.resolve()
        self.store_url = store_url
        self.holder = holder
        self.late_after = late_after
        self.tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def jobs(self) -> list[RoutineJob]:
        """The enabled jobs."""
        return [j for j in self.config.routines.jobs if j.enabled]

    async def tick(self, db: Callable[..., Awaitable[Any]], now: float) -> list[Claim]:
        """Claim every due slot and start its run; returns what started."""
        started = []
        for job in self.jobs:
            task = self.tasks.get(job.name)
            if task is not None and not task.done():
                continue
            try:
                claim = await db(self._claim, job, now)
            except Exception as exc:  # one job's trouble must not stop the others or the cycle
                logger.error(
                    "routine %s could not be scheduled: %s",
                    job.name,
                    exc,
                    extra={"category": "ERROR"},
                )
                continue
            if claim is None:
                continue
            from quality_gates._jsonlog import log_event

            log_event(
                logger,
                logging.INFO,
                "ROUTINE",
                f"routine {job.name} started ({claim.details.get('timing')}): "
                + " ".join(claim.words),
                job=job.name,
                run=claim.run_id,
            )
            self.tasks[job.name] = asyncio.get_running_loop().create_task(
                self._run(db, job, claim), name=f"qg-routine-{job.name}"
            )
            started.append(claim)
        return started

    def _claim(self, conn: Connection, job: RoutineJob, now: float) -> Claim | None:
        return claim_due(
            conn,
            job,
            holder=self.holder,
            now=now,
            grace=self.config.routines.grace,
            late_after=self.late_after,
        )

    async def _run(self, db: Callable[..., Awaitable[Any]], job: RoutineJob, claim: Claim) -> None:
        from quality_gates._jsonlog import log_event

        try:
            outcome = await execute(
                claim.words,
                config_path=self.config_path,
                store_url=self.store_url,
                timeout=job.timeout,
                output_limit=self.config.routines.output_limit,
                actor=f"{ROUTINE_ACTOR_PREFIX}{job.name}",
            )
        except asyncio.CancelledError:
            await db(_interrupted, claim)
            raise
        except Exception as exc:  # recorded as the run's error rather than lost in the task
            outcome = Outcome(ERROR, None, 0.0, f"the run failed to execute: {exc}")
        try:
            await db(_recorded, claim, outcome)
        except Exception as exc:  # the store went away: the next leader closes the row
            logger.error(
                "routine %s run #%s could not be recorded: %s",
                job.name,
                claim.run_id,
                exc,
                extra={"category": "ERROR"},
            )
            return
        log_event(
            logger,
            logging.INFO if outcome.status == PASSED else logging.WARNING,
            "ROUTINE",
            f"routine {job.name} {outcome.status}: {outcome.summary}",
            job=job.name,
            run=claim.run_id,
            status=outcome.status,
        )

    async def wait(self) -> None:
        """Wait for the runs in progress to finish (tests, `watch --once`)."""
        pending = [t for t in self.tasks.values() if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Kill the runs in progress; each is recorded as interrupted and its slot given back."""
        for task in self.tasks.values():
            task.cancel()
        await self.wait()


def _interrupted(conn: Connection, claim: Claim) -> None:
    record_interrupted(conn, claim)


def _recorded(conn: Connection, claim: Claim, outcome: Outcome) -> None:
    record_outcome(conn, claim, outcome)


def store_url_for_children(url: StoreURL) -> str:
    """The store URL a run gets: SQLite as an absolute path, others as configured."""
    if url.dialect == "sqlite" and url.path is not None:
        return f"sqlite:///{url.path.resolve()}"
    return url.raw


# --- the alert ------------------------------------------------------------------------------


def routine_specs(config: QualityGatesConfig) -> list[RuleSpec]:
    """One alert rule per enabled job: firing while its latest finished run failed."""
    from quality_gates.alerts._rules import RuleSpec

    environments = list(config.environments)
    return [
        RuleSpec(
            name=rule_name(job.name),
            metric=ROUTINE_METRIC,
            op=">",
            threshold=0.5,
            window=0.0,
            for_=0.0,
            keep_firing_for=0.0,
            severity=job.severity,
            type=job.type,
            group_by=("environment", "job"),
            summary=f"routine check {job.name} failed",
            labels={"environment": job.alert_environment(environments), "job": job.name},
        )
        for job in config.routines.jobs
        if job.enabled
    ]


def latest_finished(conn: Connection, job: str) -> Row | None:
    """The job's latest run that finished (an interrupted run does not count)."""
    for row in jobs.last_runs(conn, job=job, limit=10):
        if row["status"] != "running" and not row["details"].get("interrupted"):
            return row
    return None


def routine_sample(conn: Connection, spec: RuleSpec) -> tuple[float | None, str | None]:
    """The rule's value (1 failed, 0 passed, None never run) and the alert's summary."""
    job = str(spec.labels.get("job", ""))
    row = latest_finished(conn, job)
    if row is None:
        return None, None
    failed = row["status"] in (FAILED, ERROR)
    details = row["details"]
    summary = (
        f"routine check {job} {row['status']} (run #{row['id']}, "
        f"{details.get('trigger', 'schedule')}): {details.get('summary') or 'no summary'}"
    )
    return (1.0 if failed else 0.0), summary


# --- what `routines list` shows -----------------------------------------------------------


def overview(conn: Connection, config: QualityGatesConfig, now: float) -> list[dict[str, Any]]:
    """Each job: its schedule, next run, and last run, as JSON-ready data."""
    from quality_gates.routines._schedule import next_slot

    names = [j.name for j in config.routines.jobs]
    latest = jobs.latest_by_job(conn, names)
    environments = list(config.environments)
    out = []
    for job in config.routines.jobs:
        upcoming = next_slot(job.cron, job.timezone, now) if job.enabled else None
        row = latest.get(job.name)
        out.append(
            {
                "name": job.name,
                "cron": job.cron,
                "timezone": job.timezone,
                "command": job.command,
                "enabled": job.enabled,
                "timeout": job.timeout,
                "severity": job.severity,
                "environment": job.alert_environment(environments),
                "alert_rule": rule_name(job.name),
                "next_run": jobs.iso_utc(upcoming),
                "next_run_ts": upcoming,
                "last_run": jobs.run_view(row) if row is not None else None,
            }
        )
    return out
