"""Running one drill: start the stack, load it, inject the fault, watch what the system does,
clear it, wait for recovery, put the environment back, and record the figures."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.drills import _restore, _scratch, targets
from quality_gates.drills import store as runs
from quality_gates.drills._config import CACHE_TTL, MAX_RULE_WINDOW
from quality_gates.drills._load import Outcome, SteadyLoad
from quality_gates.drills._scenarios import SCENARIOS, Scenario
from quality_gates.drills._stack import (
    DrillCannotRun,
    Stack,
    breaker_states,
    drill_stack,
    other_watch,
    wait_for_leader,
)
from quality_gates.errors import QualityGatesError, UsageError

if TYPE_CHECKING:
    from quality_gates.config import LoadedConfig
    from quality_gates.store import StoreURL
    from quality_gates.store.db import Connection

DEFAULT_DURATION = 15.0
DEFAULT_RATE = 15.0
MIN_WARMUP = 3.0
MAX_WARMUP = 40.0
BASELINE_GOLDEN = 20  # golden samples of the current model before a quality drill
RECOVERY_TIMEOUT = 120.0  # the runbook's restoration target: later is a miss anyway
POLL = 0.1
TAIL = 0.5
# Longest wait for a steady environment, before the fault and after: what an earlier fault
# left in the per-minute roll-ups ages out of a 10 s window within about 70 s.
QUIET_WAIT = 70.0


@dataclass
class DrillOptions:
    """What to drill and how hard."""

    scenario: str
    environment: str = "staging"
    provider: str | None = None
    duration: float = DEFAULT_DURATION
    rate: float = DEFAULT_RATE
    actor: str = "drill"
    scratch_store: bool = False  # run live against a temporary store (see `_scratch`)
    keep_scratch: Path | None = None  # keep that store here (implies scratch_store)


@dataclass
class DrillResult:
    """The whole record of one run (what `--json` prints)."""

    run_id: int
    scenario: str
    environment: str
    provider: str | None
    status: str
    figures: dict[str, Any]
    verdicts: dict[str, dict[str, Any]]
    details: dict[str, Any]
    incident: dict[str, Any] | None
    started_at: float
    finished_at: float
    missed_runbook: list[str] = field(default_factory=list)
    missed_project: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every runbook target was met, 1 when one was missed."""
        return 1 if self.missed_runbook else 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "run_id": self.run_id,
            "scenario": self.scenario,
            "environment": self.environment,
            "provider": self.provider,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "figures": self.figures,
            "verdicts": self.verdicts,
            "missed_runbook": self.missed_runbook,
            "missed_project": self.missed_project,
            "incident": self.incident,
            "details": self.details,
        }


@dataclass
class Observations:
    """Moments seen while the fault lasted and after (epoch seconds)."""

    injected: float = 0.0
    cleared: float = 0.0
    breaker_open: float | None = None
    alert_firing: float | None = None
    route_change: float | None = None
    rollback: float | None = None
    firing_before: set[str] = field(default_factory=set)
    degraded_on: float | None = None
    degraded_off: float | None = None
    queued_max: int = 0
    status_during: dict[str, Any] | None = None
    recovery: dict[str, float | None] = field(default_factory=dict)
    recovered: float | None = None


def check_options(conn: Connection, loaded: LoadedConfig, options: DrillOptions) -> Scenario:
    """Refuse bad input before anything starts (UsageError, exit 2)."""
    scenario = SCENARIOS.get(options.scenario)
    if scenario is None:
        raise UsageError(
            f"unknown scenario {options.scenario!r}; use one of {', '.join(SCENARIOS)}"
        )
    config = loaded.config
    if config.environment(options.environment) is None:
        raise UsageError(
            f"unknown environment {options.environment!r}; the config has "
            f"{', '.join(config.environments) or 'none'}"
        )
    if options.provider is not None and config.provider(options.provider) is None:
        raise UsageError(
            f"unknown provider {options.provider!r}; the config has "
            f"{', '.join(p.name for p in config.providers) or 'none'}"
        )
    if not (options.rate > 0 and math.isfinite(options.rate)):
        raise UsageError(f"--rate {options.rate:g}: give requests per second above 0")
    if options.duration <= 0:
        raise UsageError("--duration: the fault must last more than 0 s")
    return scenario


def _current(conn: Connection, environment: str) -> str:
    from quality_gates.store.registry import get_alias

    alias = get_alias(conn, environment, "current")
    if alias is None:
        raise UsageError(f"{environment} has no `current` alias to drill against")
    return alias.model_id


def run_drill(
    conn: Connection,
    loaded: LoadedConfig,
    store_url: StoreURL,
    options: DrillOptions,
    *,
    progress: Any = None,
) -> DrillResult:
    """Run one drill end to end and record it (`drill_runs` + audit). Raises UsageError on
    bad input and DrillCannotRun when the stack could not start or act."""
    scenario = check_options(conn, loaded, options)
    config = loaded.config
    env = options.environment
    current = _current(conn, env)
    model = config.model(current)
    if model is None:
        raise UsageError(f"{env}'s current model {current!r} is not in the config's models")
    provider = None if scenario.every_provider else (options.provider or model.provider)
    if scenario.per_model and provider != model.provider:
        raise UsageError(
            f"quality-regression drills {env}'s current model {current}, served by "
            f"{model.provider}, not {provider}"
        )
    holder = other_watch(conn)
    scratch_mode = options.scratch_store or options.keep_scratch is not None
    if holder is not None and not scratch_mode:
        raise DrillCannotRun(
            f"a watch ({holder}) holds the evaluator lease on this store, so the drill's "
            "own watch could not act; run the drill with --scratch-store (its live "
            "operation in a temporary store, its record in this one), stop that "
            "`serve`/`watch` first, or drill against another store with --db"
        )
    scratch: _scratch.ScratchStore | None = None
    live, live_url = conn, store_url
    if scratch_mode:
        scratch = _scratch.create(
            conn, loaded, env, actor=options.actor, keep_in=options.keep_scratch
        )
        live, live_url = scratch.conn, scratch.url
    try:
        return _run(
            conn, live, live_url, loaded, options, scenario, provider, model, scratch, progress
        )
    finally:
        if scratch is not None:
            scratch.close()


def _run(
    conn: Connection,
    live: Connection,
    live_url: StoreURL,
    loaded: LoadedConfig,
    options: DrillOptions,
    scenario: Scenario,
    provider: str | None,
    model: Any,
    scratch: _scratch.ScratchStore | None,
    progress: Any,
) -> DrillResult:
    """The drill proper. `conn` is the workspace's store, where the record goes; `live` the
    store the drill's gateway and watch run against: the same one, or a scratch store."""
    config = loaded.config
    env = options.environment
    current = model.id
    say = progress or (lambda _text: None)
    before = _restore.capture(live, env)
    started = time.time()
    run_id = runs.record_run(
        conn,
        scenario=scenario.name,
        environment=env,
        provider=provider,
        actor=options.actor,
        details={
            "duration_s": options.duration,
            "rate": options.rate,
            "scratch_store": scratch is not None,
        },
        now=started,
    )
    obs = Observations()
    load: SteadyLoad | None = None
    details: dict[str, Any] = {"current_model": current}
    if scratch is not None:
        details["scratch_store"] = scratch.describe()
        say(f"running against a scratch store ({scratch.directory})")

    def fail(exc: QualityGatesError) -> None:
        _fail(conn, live, loaded, run_id, options, before, started, exc, details)

    try:
        load, stack_info = asyncio.run(
            _drive(conn, live, loaded, live_url, options, scenario, provider, model, obs, say)
        )
        details.update(stack_info)
    except QualityGatesError as exc:
        fail(exc)
        raise
    except (OSError, RuntimeError, TimeoutError) as exc:
        failure = DrillCannotRun(f"the drill could not complete: {type(exc).__name__}: {exc}")
        fail(failure)
        raise failure from None
    except KeyboardInterrupt:
        # Ctrl-C: the stack is down already; the environment still goes back as it was.
        fail(DrillCannotRun("interrupted"))
        raise
    _store_moments(live, env, obs)
    incident = _incident(live, env, obs.injected)
    incident_id = incident["id"] if incident else None
    restored = _restore.restore(
        live,
        config,
        env,
        before,
        actor=options.actor,
        run_id=run_id,
        since=started,
        incident_id=incident_id if incident and incident["drill"] else None,
    )
    _put_restore(details, restored, scratch)
    if incident is not None:
        incident = _incident(live, env, obs.injected)  # after the restore resolved it
        if incident is not None and scratch is not None:
            incident["store"] = "scratch"
    figures = _figures(scenario, provider, obs, load.outcomes if load else [])
    figures["notifications"] = sum(n["count"] for n in (incident or {}).get("notifications", []))
    judged = targets.verdicts(figures, scenario.judged, scenario.name)
    missed_runbook = targets.missed(judged, "runbook")
    missed_project = targets.missed(judged, "project")
    details.update(
        rollbacks=_rollbacks(live, env, obs.injected),
        firing_before=sorted(_rules_of(live, obs.firing_before)),
        left_firing=sorted(_rules_of(live, _firing_now(live, env))),
        detection_signal=detection_signal(figures),
        timeline_s=_relative(obs),
        load=_load_summary(load.outcomes if load else [], obs),
        status_during_fault=obs.status_during,
        queue={"max_depth": obs.queued_max},
    )
    finished = time.time()
    status = "missed" if missed_runbook else "passed"
    runs.finish_run(
        conn,
        run_id,
        status=status,
        actor=options.actor,
        # A scratch store's incident is gone with it: its id would name another incident
        # here; the incident itself is in the details.
        incident_id=None if scratch is not None else incident_id,
        figures=figures,
        verdicts=judged,
        details={**details, "incident": incident},
        now=finished,
    )
    return DrillResult(
        run_id,
        scenario.name,
        env,
        provider,
        status,
        figures,
        judged,
        details,
        incident,
        started,
        finished,
        missed_runbook,
        missed_project,
    )


def _put_restore(
    details: dict[str, Any], restored: list[str], scratch: _scratch.ScratchStore | None
) -> None:
    """What the restore put back: in the workspace's store, or (scratch mode) only in the
    scratch store, the workspace's being untouched."""
    if scratch is None:
        details["restore"] = restored
    else:
        details["restore"] = []
        details["scratch_store"]["undone_in_scratch"] = restored


def _fail(
    conn: Connection,
    live: Connection,
    loaded: LoadedConfig,
    run_id: int,
    options: DrillOptions,
    before: _restore.EnvironmentState,
    started: float,
    exc: QualityGatesError,
    details: dict[str, Any],
) -> None:
    restored = _restore.restore(
        live,
        loaded.config,
        options.environment,
        before,
        actor=options.actor,
        run_id=run_id,
        since=started,
        incident_id=None,
    )
    scratch_info = details.get("scratch_store")
    if isinstance(scratch_info, dict):
        scratch_info["undone_in_scratch"] = restored
        restored = []
    runs.finish_run(
        conn,
        run_id,
        status="failed",
        actor=options.actor,
        incident_id=None,
        figures={},
        verdicts={},
        details={**details, "error": str(exc), "restore": restored},
    )


async def _drive(
    record: Connection,
    conn: Connection,
    loaded: LoadedConfig,
    store_url: StoreURL,
    options: DrillOptions,
    scenario: Scenario,
    provider: str | None,
    model: Any,
    obs: Observations,
    say: Any,
) -> tuple[SteadyLoad, dict[str, Any]]:
    import aiohttp

    from quality_gates.units import bounded_duration

    env = options.environment
    duration = bounded_duration(options.duration) or options.duration
    recovery_timeout = bounded_duration(RECOVERY_TIMEOUT) or RECOVERY_TIMEOUT
    config_dir = loaded.directory
    say("starting simulators and the drill's gateway")
    async with (
        drill_stack(
            loaded.config, environment=env, store_url=store_url, config_dir=Path(config_dir)
        ) as stack,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        await wait_for_leader(stack, holder=lambda: other_watch(conn))
        faulted = (
            list(stack.simulators)
            if scenario.every_provider
            else _chain_providers(loaded, env, model.id, str(provider), scenario.providers_down)
        )
        info: dict[str, Any] = {
            "substitutions": stack.tuned.substitutions,
            "tuning": stack.tuned.tuning,
            "faulted_providers": faulted,
            "duration_s": duration,
            "rate": options.rate,
        }
        pool = max(30, math.ceil(options.rate * CACHE_TTL * 2))
        load = SteadyLoad(stack.gateway_url, options.rate, pool)
        load.start()
        try:
            say(f"warming up at {options.rate:g} req/s")
            await _warm_up(conn, env, load, scenario, model.id, pool / options.rate)
            if not scenario.every_provider and not any(
                o.upstream == provider for o in load.outcomes
            ):
                served = sorted({o.upstream for o in load.outcomes if o.upstream})
                raise UsageError(
                    f"{provider} served none of {env}'s traffic during the warm-up (served by "
                    f"{', '.join(served) or 'nobody'}); drill a provider in the route"
                )
            body = scenario.fault(model.provider_model)
            obs.firing_before = _firing_now(conn, env)
            info["steady_at_injection"] = _steady(conn, env)
            if not info["steady_at_injection"]:
                raise DrillCannotRun(
                    f"{env} did not settle before the fault (firing: "
                    f"{', '.join(sorted(obs.firing_before)) or 'none'}; or a failover in "
                    "force): what ran before would be measured as the drill's; retry in a "
                    "minute or drill another environment"
                )
            from quality_gates.store.registry import get_alias

            now_current = get_alias(conn, env, "current")
            if now_current is None or now_current.model_id != model.id:
                raise DrillCannotRun(
                    f"`current` in {env} moved during the warm-up (to "
                    f"{now_current.model_id if now_current else 'nothing'}); retry in a minute"
                )
            obs.injected = time.time()
            for name in faulted:
                await _put_faults(session, stack, name, body)
            _audit_fault(record, options.actor, env, faulted, body, "inject")
            say(f"fault injected: {scenario.name} on {', '.join(faulted)} for {duration:g} s")
            await _during_fault(conn, loaded, session, stack, scenario, faulted, obs, duration, env)
            obs.cleared = time.time()
            for name in faulted:
                await _put_faults(session, stack, name, {"reset": True})
            _audit_fault(record, options.actor, env, faulted, {"reset": True}, "clear")
            say("fault cleared; waiting for recovery")
            await _recover(
                conn, loaded, session, stack, scenario, faulted, obs, load, recovery_timeout, env
            )
            await asyncio.sleep(TAIL)
            await _settle(conn, env)
        finally:
            await load.stop()
            if obs.degraded_on is not None and obs.degraded_off is None:
                _emergency(conn, loaded, env, on=False)
                obs.degraded_off = time.time()
    return load, info


def _chain_providers(
    loaded: LoadedConfig, env: str, model_id: str, first: str, n: int
) -> list[str]:
    """`first`, then the next providers of the model's failover chain, `n` in all; a
    DrillCannotRun when the chain has fewer (the drill would leave no provider to serve)."""
    environment = loaded.config.environment(env)
    chain = environment.chain_for(model_id) if environment is not None else None
    members = [loaded.config.model(m) for m in (chain.models if chain is not None else [])]
    providers = list(dict.fromkeys([first, *(m.provider for m in members if m is not None)]))
    found = providers[:n]
    if n > 1 and (len(found) < n or len(providers) == len(found)):
        raise DrillCannotRun(
            f"{model_id}'s failover chain in {env} spans {len(providers)} provider(s): "
            f"taking {n} down would leave none to serve; add a chain member on another provider"
        )
    return found


async def _put_faults(session: Any, stack: Stack, provider: str, body: dict[str, Any]) -> None:
    url = f"{stack.simulators[provider].base_url}/_sim/faults"
    async with session.put(url, json=body) as response:
        if response.status != 200:
            raise DrillCannotRun(
                f"simulator {provider!r} refused the fault: {(await response.text())[:200]}"
            )


def _audit_fault(
    conn: Connection, actor: str, env: str, providers: list[str], body: dict[str, Any], what: str
) -> None:
    from quality_gates.store import audit

    with conn.write():
        audit.append(
            conn,
            actor=actor,
            action=f"drill.fault.{what}",
            target=f"{env}/{','.join(providers)}",
            details=body,
        )


async def _warm_up(
    conn: Connection, env: str, load: SteadyLoad, scenario: Scenario, model_id: str, cycle: float
) -> None:
    """Until every prompt of the pool has been answered once (so the cache holds it) and, for
    a quality drill, the golden probes have a baseline."""
    began = time.time()
    deadline = time.monotonic() + MAX_WARMUP
    least = max(MIN_WARMUP, cycle + 0.5)
    if scenario.per_model:
        # A quality rule compares its window with the samples before it: a baseline first.
        least = max(least, MAX_RULE_WINDOW + 2.0)
    while True:
        await asyncio.sleep(0.2)
        elapsed = time.time() - began
        ok = [o for o in load.outcomes if not o.failed]
        golden = BASELINE_GOLDEN
        if scenario.per_model:
            golden = int(
                conn.scalar(
                    "SELECT COUNT(*) FROM quality_samples WHERE scorer = 'golden' AND "
                    "environment = :env AND model_id = :model AND ts >= :since",
                    {"env": env, "model": model_id, "since": began},
                )
                or 0
            )
        ready = elapsed >= least and ok and golden >= BASELINE_GOLDEN
        # What ran before (an earlier drill, say) can still be in the per-minute roll-ups
        # and fire an alert, or hold a failover: wait up to QUIET_WAIT for a steady
        # environment; the injection refuses to measure an unsteady one.
        if ready and (_steady(conn, env) or elapsed >= least + QUIET_WAIT):
            return
        if not ready and time.monotonic() > deadline:
            raise DrillCannotRun(
                f"the stack was not ready after {MAX_WARMUP:g} s of warm-up "
                f"({len(ok)} answered requests, {golden} golden probe samples)"
            )


def _first_alert(
    conn: Connection, env: str, since: float, before: set[str] | frozenset[str] = frozenset()
) -> float | None:
    """When the first alert fired after `since` (not counting those already firing)."""
    rows = conn.execute(
        "SELECT fingerprint, ts FROM alert_events WHERE environment = :env "
        "AND to_state = 'firing' AND ts >= :since ORDER BY ts",
        {"env": env, "since": since},
    )
    times = [float(r["ts"]) for r in rows if r["fingerprint"] not in before]
    return times[0] if times else None


def _rules_of(conn: Connection, fingerprints: set[str]) -> set[str]:
    rows = conn.execute("SELECT fingerprint, rule, labels FROM alert_states")
    return {f"{r['rule']} {r['labels']}" for r in rows if r["fingerprint"] in fingerprints}


def _firing_now(conn: Connection, env: str) -> set[str]:
    rows = conn.execute(
        "SELECT fingerprint FROM alert_states WHERE environment = :env "
        "AND state IN ('pending', 'firing')",
        {"env": env},
    )
    return {str(r["fingerprint"]) for r in rows}


def _fault_alerts(conn: Connection, env: str, obs: Observations) -> list[str]:
    """Alerts the fault raised: fired between injection and clear, not firing before it."""
    rows = conn.execute(
        "SELECT DISTINCT fingerprint FROM alert_events WHERE environment = :env "
        "AND to_state = 'firing' AND ts >= :since AND ts <= :until",
        {"env": env, "since": obs.injected, "until": obs.cleared},
    )
    return [str(r["fingerprint"]) for r in rows if r["fingerprint"] not in obs.firing_before]


def _alerts_resolved(conn: Connection, env: str, obs: Observations) -> float | None:
    """When the last alert the fault raised resolved; None while one still fires."""
    last = 0.0
    since = obs.injected
    for fingerprint in _fault_alerts(conn, env, obs):
        row = conn.one(
            "SELECT to_state, ts FROM alert_events WHERE fingerprint = :fp AND ts >= :since "
            "ORDER BY ts DESC, id DESC LIMIT 1",
            {"fp": fingerprint, "since": since},
        )
        if row is None or row["to_state"] != "resolved":
            return None
        last = max(last, float(row["ts"]))
    return last or None


def _emergency(conn: Connection, loaded: LoadedConfig, env: str, *, on: bool) -> None:
    from quality_gates.gateway import emergency

    if on:
        emergency.switch_on(
            conn,
            loaded.config,
            environment=env,
            mode="degraded",
            reason="drill: multi-provider outage (the runbook's emergency procedure)",
            actor="drill",
        )
    elif emergency.current(conn, env) is not None:
        emergency.switch_off(conn, environment=env, actor="drill", reason="drill: providers back")


async def _during_fault(
    conn: Connection,
    loaded: LoadedConfig,
    session: Any,
    stack: Stack,
    scenario: Scenario,
    faulted: list[str],
    obs: Observations,
    duration: float,
    env: str,
) -> None:
    until = obs.injected + duration
    while time.time() < until:
        now = time.time()
        states = await _metrics(session, stack)
        if obs.breaker_open is None and any(
            v == 2 and d.split("/", 1)[0] in faulted for d, v in states["breakers"].items()
        ):
            obs.breaker_open = now
        obs.queued_max = max(obs.queued_max, int(states["queue_depth"]))
        # The runbook's emergency procedure, done by the drill as the on-call engineer
        # would: as soon as the outage is detected.
        if (
            scenario.every_provider
            and obs.degraded_on is None
            and (
                obs.breaker_open is not None
                or _first_alert(conn, env, obs.injected, obs.firing_before)
            )
        ):
            _emergency(conn, loaded, env, on=True)
            obs.degraded_on = time.time()
        if obs.status_during is None and now >= obs.injected + duration / 2:
            obs.status_during = _status(conn, loaded, env)
        await asyncio.sleep(POLL)
    if obs.status_during is None:
        obs.status_during = _status(conn, loaded, env)


async def _metrics(session: Any, stack: Stack) -> dict[str, Any]:
    try:
        breakers = await breaker_states(session, stack.gateway_url)
        async with session.get(f"{stack.gateway_url}/metrics") as response:
            text = await response.text()
    except (OSError, TimeoutError) as exc:
        raise DrillCannotRun(f"the drill's gateway stopped answering /metrics: {exc}") from None
    depth = 0.0
    for line in text.splitlines():
        if line.startswith("qg_gateway_queue_depth"):
            depth = float(line.rpartition(" ")[2])
    return {"breakers": breakers, "queue_depth": depth}


def _status(conn: Connection, loaded: LoadedConfig, env: str) -> dict[str, Any]:
    """What `quality-gates status` shows of the environment right now (the parts a drill
    changes)."""
    from quality_gates.status import collect

    report = collect(conn, loaded.snapshot(), environment=env)
    for entry in report.get("environments", []):
        if entry.get("name") == env:
            return {
                "emergency": entry.get("emergency"),
                "providers": entry.get("providers"),
                "failover": entry.get("failover"),
                "traffic_in_force": entry.get("traffic_in_force"),
                "alerts": [a.get("rule") for a in entry.get("alerts", [])],
            }
    return {}


async def _recover(
    conn: Connection,
    loaded: LoadedConfig,
    session: Any,
    stack: Stack,
    scenario: Scenario,
    faulted: list[str],
    obs: Observations,
    load: SteadyLoad,
    timeout: float,
    env: str,
) -> None:
    """Until everything the fault disturbed is back, or `timeout`."""
    from quality_gates.remediation import _remedy_store as remedies

    deadline = obs.cleared + timeout
    while time.time() < deadline:
        parts: dict[str, float | None] = {}
        if _fault_alerts(conn, env, obs):
            parts["alerts_resolved"] = _alerts_resolved(conn, env, obs)
        failovers = [
            r
            for r in remedies.find(conn, environment=env, action="failover")
            if r.started_at >= obs.injected and r.state != "skipped"
        ]
        if failovers:
            # Done when every failover the fault caused has finished (restored, or ended
            # otherwise: superseded by a later move of the same traffic).
            ends = [r.finished_at for r in failovers]
            parts["failback_done"] = None if None in ends else max(e for e in ends if e)
        back_after = max([obs.cleared, *[p for p in parts.values() if p]])
        if scenario.every_provider:
            served = _first(load.outcomes, lambda o: o.upstream is not None, obs.cleared)
            parts["live_answers"] = served
            if served is not None and obs.degraded_on is not None and obs.degraded_off is None:
                _emergency(conn, loaded, env, on=False)
                obs.degraded_off = time.time()
            if obs.degraded_on is not None:
                parts["degraded_off"] = obs.degraded_off
        elif not scenario.per_model:
            parts["provider_back"] = _first(
                load.outcomes, lambda o: o.upstream == faulted[0], back_after
            )
        obs.recovery = parts
        if all(v is not None for v in parts.values()):
            obs.recovered = max([obs.cleared, *[v for v in parts.values() if v is not None]])
            return
        await asyncio.sleep(POLL * 2)


def _steady(conn: Connection, env: str) -> bool:
    """No alert pending or firing and no failover in force in `env`."""
    from quality_gates.remediation import _remedy_store as remedies

    if _firing_now(conn, env):
        return False
    return not remedies.find(
        conn, environment=env, action="failover", states=remedies.ACTIVE_FAILOVER, limit=1
    )


async def _settle(conn: Connection, env: str) -> None:
    """Give alerts that fired after the fault (during the failback, say) a bounded chance to
    resolve, so the drill does not leave them firing; not part of any figure."""
    deadline = time.monotonic() + QUIET_WAIT / 3
    while _firing_now(conn, env) and time.monotonic() < deadline:
        await asyncio.sleep(POLL * 2)


def _first(outcomes: list[Outcome], match: Any, after: float) -> float | None:
    """When the first matching request sent after `after` was answered."""
    times = [o.done_at for o in outcomes if o.sent_at >= after and match(o)]
    return min(times) if times else None


def _figures(
    scenario: Scenario, provider: str | None, obs: Observations, outcomes: list[Outcome]
) -> dict[str, Any]:
    t0 = obs.injected

    def since(ts: float | None) -> float | None:
        return None if ts is None else round(max(0.0, ts - t0), 3)

    signals = {"breaker opened": obs.breaker_open, "alert firing": obs.alert_firing}
    seen = [ts for ts in signals.values() if ts is not None]
    figures: dict[str, Any] = {
        "detection_s": since(min(seen)) if seen else None,
        "breaker_open_s": since(obs.breaker_open),
        "alert_firing_s": since(obs.alert_firing),
        "route_change_s": since(obs.route_change),
    }
    if scenario.per_model:
        figures["rollback_s"] = since(obs.rollback)
    during = [o for o in outcomes if o.sent_at >= t0]
    failed = [o for o in during if o.failed]
    figures["requests_sent"] = len(during)
    figures["requests_failed"] = len(failed)
    figures["failed_pct"] = round(100.0 * len(failed) / len(during), 3) if during else None
    figures["broken_streams"] = sum(1 for o in during if o.broken)
    if scenario.every_provider:
        fault = [o for o in during if o.sent_at < obs.cleared]
        stale = [o for o in fault if o.cache == "stale" and not o.failed]
        figures["stale_served"] = len(stale)
        figures["stale_pct"] = round(100.0 * len(stale) / len(fault), 3) if fault else None
        figures["queued_max"] = obs.queued_max
        figures["degraded_s"] = since(obs.degraded_on)
        figures["failover_s"] = since(_first(outcomes, lambda o: o.cache == "stale", t0))
    elif not scenario.per_model:
        figures["failover_s"] = since(
            _first(outcomes, lambda o: o.upstream not in (None, provider), t0)
        )
    # Nothing detected, nothing recovered: a recovery figure would only time the clear.
    recovered = obs.recovered if figures["detection_s"] is not None else None
    figures["recovery_s"] = (
        None if recovered is None else round(max(0.0, recovered - obs.cleared), 3)
    )
    figures["total_recovery_s"] = since(recovered)
    return figures


def _store_moments(conn: Connection, env: str, obs: Observations) -> None:
    """What the store recorded after the injection: the first alert, the watch's traffic
    move, the automatic rollback."""
    from quality_gates.remediation import _remedy_store as remedies

    obs.alert_firing = _first_alert(conn, env, obs.injected, obs.firing_before)
    moves = [
        r.started_at
        for r in remedies.find(conn, environment=env, action="failover")
        if r.started_at >= obs.injected and r.state not in ("skipped", "dry_run")
    ]
    obs.route_change = min(moves) if moves else None
    rolled = conn.scalar(
        "SELECT MIN(ts) FROM alias_history WHERE environment = :env AND alias = 'current' "
        "AND operation = 'rollback' AND source = 'auto' AND ts >= :since",
        {"env": env, "since": obs.injected},
    )
    obs.rollback = float(rolled) if rolled is not None else None


def _rollbacks(conn: Connection, env: str, t0: float) -> list[dict[str, Any]]:
    """Automatic moves of `current` since the injection, in seconds after it."""
    rows = conn.execute(
        "SELECT ts, from_model, to_model FROM alias_history WHERE environment = :env "
        "AND alias = 'current' AND operation = 'rollback' AND source = 'auto' AND ts >= :since "
        "ORDER BY ts",
        {"env": env, "since": t0},
    )
    return [
        {"at_s": round(float(r["ts"]) - t0, 3), "from": r["from_model"], "to": r["to_model"]}
        for r in rows
    ]


def detection_signal(figures: dict[str, Any]) -> str:
    """Which signal detected the fault first, and the other one if it came too."""
    breaker, alert = figures.get("breaker_open_s"), figures.get("alert_firing_s")
    if breaker is None and alert is None:
        return "not detected"
    if alert is None:
        return "breaker opened (no alert fired)"
    if breaker is None:
        return "alert firing (no breaker opened)"
    first, second = ("breaker opened", "alert firing")
    if alert < breaker:
        first, second = second, first
    return f"{first} first, then {second}"


def _relative(obs: Observations) -> dict[str, Any]:
    t0 = obs.injected
    return {
        "injected_at": t0,
        "cleared_s": round(obs.cleared - t0, 3),
        "recovery_parts_s": {
            k: (None if v is None else round(v - t0, 3)) for k, v in obs.recovery.items()
        },
        "degraded_on_s": None if obs.degraded_on is None else round(obs.degraded_on - t0, 3),
        "degraded_off_s": None if obs.degraded_off is None else round(obs.degraded_off - t0, 3),
    }


def _load_summary(outcomes: list[Outcome], obs: Observations) -> dict[str, Any]:
    def phase(items: list[Outcome]) -> dict[str, Any]:
        by: dict[str, int] = {}
        for o in items:
            key = "failed" if o.failed else (o.cache if o.cache in ("hit", "stale") else o.provider)
            by[key or "?"] = by.get(key or "?", 0) + 1
        return {"sent": len(items), "failed": sum(o.failed for o in items), "served_by": by}

    t0, t1 = obs.injected, obs.cleared
    errors = sorted({o.error for o in outcomes if o.failed and o.error})[:5]
    return {
        "warm_up": phase([o for o in outcomes if o.sent_at < t0]),
        "fault": phase([o for o in outcomes if t0 <= o.sent_at < t1]),
        "recovery": phase([o for o in outcomes if o.sent_at >= t1]),
        "streams": sum(o.stream for o in outcomes),
        "errors": errors,
    }


def _incident(conn: Connection, env: str, since: float) -> dict[str, Any] | None:
    """The incident the drill's alerts opened (or joined), with its timeline and outbox."""
    from quality_gates import incidents
    from quality_gates.drills._config import DRILL_MARK

    incident_id = conn.scalar(
        "SELECT MIN(incident_id) FROM alert_events WHERE environment = :env AND ts >= :since "
        "AND incident_id IS NOT NULL",
        {"env": env, "since": since},
    )
    if incident_id is None:
        return None
    row = incidents.get_incident(conn, int(incident_id))
    events = incidents.timeline(conn, int(incident_id))
    notes = conn.execute(
        "SELECT channel, status, COUNT(*) AS n FROM notifications WHERE incident_id = :id "
        "GROUP BY channel, status ORDER BY channel, status",
        {"id": int(incident_id)},
    )
    return {
        "id": int(incident_id),
        "title": row["title"],
        "severity": row["severity"],
        "state": row["state"],
        "drill": str(row["title"]).startswith(DRILL_MARK),
        "timeline": [
            {"ts": float(e["ts"]), "kind": e["kind"], "actor": e["actor"], "message": e["message"]}
            for e in events
        ],
        "notifications": [
            {"channel": n["channel"], "state": n["status"], "count": int(n["n"])} for n in notes
        ],
    }
