"""Registry operations: sync from the config, resolve names, move aliases, roll back, promote.

Every change is one transaction: the alias rows, their history lines, the control version
the gateways watch and the audit entry commit together or not at all.
"""

from __future__ import annotations

import getpass
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quality_gates._suggest import nearest
from quality_gates.config import ConfigSnapshot
from quality_gates.errors import ConflictError, NotFound, RegistryError, UsageError
from quality_gates.store import audit
from quality_gates.store import registry as sql
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import LoadedConfig

ACTOR_ENV = "QG_ACTOR"
SOURCES = ("manual", "auto", "pipeline", "canary", "config", "drill")
CONFIG_DIGEST_KEY = "config_digest"
CONFIG_SNAPSHOT_KEY = "config_snapshot"


def current_user() -> str:
    """The acting user: $QG_ACTOR, else the OS user."""
    explicit = os.environ.get(ACTOR_ENV)
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which path (manual, auto, pipeline, ...)."""

    name: str
    source: str = "manual"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise UsageError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")


@dataclass(frozen=True)
class Resolved:
    """A model reference resolved to a model id, and how."""

    model_id: str
    alias: str | None = None

    def describe(self, ref: str) -> str:
        """`current-model -> alias current -> claude-3-5-haiku`."""
        if self.alias is None:
            return self.model_id
        return (
            f"{ref} -> alias {self.alias} -> {self.model_id}"
            if ref != self.alias
            else (f"alias {self.alias} -> {self.model_id}")
        )


@dataclass
class AliasChange:
    """One alias moved."""

    environment: str
    alias: str
    from_model: str | None
    to_model: str
    history_id: int


@dataclass
class RollbackResult:
    """What a rollback moved and how long it took."""

    environment: str
    from_model: str
    to_model: str
    changes: list[AliasChange] = field(default_factory=list)
    duration_ms: float = 0.0
    audit_seq: int = 0
    operation_id: str = ""
    resolved: list[str] = field(default_factory=list)


@dataclass
class SyncReport:
    """What syncing the config into the registry changed."""

    changed: bool
    providers: int = 0
    models: int = 0
    seeded_aliases: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


def environments(conn: Connection, config: ConfigSnapshot | None = None) -> list[str]:
    """Environments known to the config or the store: production, staging, development first."""
    names = {r["environment"] for r in conn.execute("SELECT DISTINCT environment FROM aliases")}
    if config is not None:
        names |= set(config.environment_names)
    order = ("production", "staging", "development")
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def check_environment(conn: Connection, environment: str, config: ConfigSnapshot | None) -> None:
    """Raise a UsageError naming the known environments if `environment` is unknown."""
    known = environments(conn, config)
    if environment not in known:
        near = nearest(environment, known)
        hint = f"did you mean {near!r}?" if near else f"known: {', '.join(known) or 'none'}"
        raise UsageError(f"unknown environment {environment!r}", hint=hint)


def sync_config(
    conn: Connection, loaded: LoadedConfig, actor: Actor, *, force: bool = False
) -> SyncReport:
    """Bring providers, models and missing aliases from the config into the store.

    Aliases already in the store are left where they are (the store owns them once seeded);
    a difference from the config is reported as drift.
    """
    config = loaded.config
    snapshot = loaded.snapshot()
    if not force and synced_snapshot(conn, loaded.digest) is not None:
        return SyncReport(changed=False, drift=alias_drift(conn, snapshot))
    now = time.time()
    report = SyncReport(changed=True, providers=len(config.providers), models=len(config.models))
    with conn.write():
        for provider in config.providers:
            sql.upsert_provider(
                conn,
                name=provider.name,
                kind=provider.kind,
                protocol=provider.wire_protocol,
                endpoint=provider.base_url,
                region=provider.region,
                now=now,
            )
        for model in config.models:
            sql.upsert_model(
                conn,
                model_id=model.id,
                provider=model.provider,
                provider_model=model.provider_model,
                input_per_1k=model.price.input_per_1k,
                output_per_1k=model.price.output_per_1k,
                now=now,
            )
        in_use = [a.model_id for a in sql.list_aliases(conn)]
        keep_models = [m.id for m in config.models] + in_use
        report.removed += sql.delete_missing(conn, "models", "id", keep_models)
        keep_providers = [p.name for p in config.providers] + [
            r["provider"] for r in sql.known_models(conn).values()
        ]
        report.removed += sql.delete_missing(conn, "providers", "name", keep_providers)
        operation_id = uuid.uuid4().hex[:12]
        for env_name, env in config.environments.items():
            seeded = False
            for alias, model_id in env.aliases.items():
                if sql.get_alias(conn, env_name, alias, lock=True) is not None:
                    continue
                sql.write_alias(
                    conn,
                    environment=env_name,
                    name=alias,
                    model_id=model_id,
                    previous=None,
                    actor=actor.name,
                    now=now,
                )
                sql.add_history(
                    conn,
                    sql.AliasMove(
                        0,
                        now,
                        env_name,
                        alias,
                        None,
                        model_id,
                        "seed",
                        actor.name,
                        "initial alias from the config",
                        "config",
                        None,
                        operation_id,
                        None,
                    ),
                )
                report.seeded_aliases.append(f"{env_name}/{alias}={model_id}")
                seeded = True
            if seeded:
                sql.bump_control_version(conn, env_name, now=now)
        sql.set_meta(conn, CONFIG_DIGEST_KEY, loaded.digest)
        sql.set_meta(conn, CONFIG_SNAPSHOT_KEY, snapshot.to_json())
        audit.append(
            conn,
            actor=actor.name,
            action="registry.sync",
            target=str(loaded.path),
            details={
                "digest": loaded.digest,
                "providers": report.providers,
                "models": report.models,
                "seeded": report.seeded_aliases,
                "removed": report.removed,
                "source": actor.source,
            },
        )
    report.drift = alias_drift(conn, snapshot)
    return report


def synced_snapshot(conn: Connection, digest: str) -> ConfigSnapshot | None:
    """The config snapshot in the store, if it was synced from a file with this digest."""
    if sql.get_meta(conn, CONFIG_DIGEST_KEY) != digest:
        return None
    text = sql.get_meta(conn, CONFIG_SNAPSHOT_KEY)
    return ConfigSnapshot.from_json(text) if text else None


def alias_drift(conn: Connection, config: ConfigSnapshot) -> list[str]:
    """Aliases whose store value differs from the config's seed (the store wins)."""
    drift = []
    for env_name in config.environment_names:
        env = config.environment(env_name) or {}
        for alias, model_id in env.get("aliases", {}).items():
            row = sql.get_alias(conn, env_name, alias)
            if row is not None and row.model_id != model_id:
                drift.append(
                    f"{env_name}/{alias}: config says {model_id}, store has "
                    f"{row.model_id} (moved by {row.updated_by})"
                )
    return drift


def _rolled_back(conn: Connection, environment: str) -> Resolved:
    row = conn.one(
        "SELECT to_model FROM alias_history WHERE environment = :env AND alias = 'current' "
        "AND operation = 'rollback' ORDER BY id DESC LIMIT 1",
        {"env": environment},
    )
    if row is None:
        raise NotFound(
            f"rolled-back-model: no rollback is recorded in {environment}",
            hint=f"see `quality-gates history -e {environment} --alias current`",
        )
    return Resolved(str(row["to_model"]), "rolled-back-model")


def _affected(conn: Connection, environment: str) -> Resolved:
    import json

    incident = conn.scalar(
        "SELECT id FROM incidents WHERE environment = :env AND state IN ('investigating', "
        "'identified', 'monitoring') ORDER BY id DESC LIMIT 1",
        {"env": environment},
    )
    if incident is None:
        raise NotFound(
            f"affected-model: no incident is open in {environment}, so none names a model",
            hint="name the model (an id or an alias such as current-model)",
        )
    rows = conn.execute(
        "SELECT labels FROM alert_states WHERE incident_id = :id ORDER BY fired_at DESC",
        {"id": incident},
    )
    labels = [json.loads(r["labels"]) for r in rows]
    named = next((lab["model_id"] for lab in labels if lab.get("model_id")), None)
    if named is not None:
        return Resolved(str(named), f"affected-model (incident #{incident})")
    opened = conn.scalar(
        "SELECT details FROM incident_events WHERE incident_id = :id AND kind = 'opened' "
        "ORDER BY id LIMIT 1",
        {"id": incident},
    )
    declared = json.loads(opened) if opened else {}
    if declared.get("model_id"):  # declared by hand: `incident open --model-id`
        return Resolved(str(declared["model_id"]), f"affected-model (incident #{incident})")
    providers = {lab["provider"] for lab in labels if lab.get("provider")}
    if declared.get("provider"):
        providers.add(str(declared["provider"]))
    current = sql.get_alias(conn, environment, "current")
    models = sql.known_models(conn)
    if current is not None and providers:
        model = models.get(current.model_id)
        if model is not None and model["provider"] in providers:
            return Resolved(current.model_id, f"affected-model (incident #{incident})")
    raise NotFound(
        f"affected-model: open incident #{incident} in {environment} names no model"
        + (f" (its alerts name provider {', '.join(sorted(providers))})" if providers else ""),
        hint="name the model (an id or an alias such as current-model)",
    )


def resolve_model(conn: Connection, environment: str, ref: str) -> Resolved:
    """A model id, an alias (`previous-stable`), or the runbook's `<alias>-model` placeholder.

    `current-model` is alias `current`, `backup-model` alias `backup`, and
    `production-model` the `current` alias of environment `production`. Two virtual aliases:
    `rolled-back-model` is the model the last rollback in the environment moved `current`
    to; `affected-model` the model the open incident's alerts name (or, for a provider's
    alerts, the current model when it runs on that provider).
    """
    if ref == "rolled-back-model":
        return _rolled_back(conn, environment)
    if ref == "affected-model":
        return _affected(conn, environment)
    models = sql.known_models(conn)
    if ref in models:
        return Resolved(ref)
    candidates = [ref]
    if ref.endswith("-model"):
        candidates.append(ref[: -len("-model")])
    for name in candidates:
        row = sql.get_alias(conn, environment, name)
        if row is not None:
            return Resolved(row.model_id, name)
    stem = candidates[-1]
    if stem != environment:
        row = sql.get_alias(conn, stem, "current")
        if row is not None:
            return Resolved(row.model_id, f"{stem}/current")
    aliases = [a.name for a in sql.list_aliases(conn, environment)]
    known = sorted(models) + aliases
    near = nearest(ref, known)
    hint = (
        f"did you mean {near!r}?"
        if near
        else (
            f"models: {', '.join(sorted(models)) or 'none'}; aliases in {environment}: "
            f"{', '.join(aliases) or 'none'}"
        )
    )
    raise NotFound(f"{ref!r} is neither a model nor an alias in {environment}", hint=hint)


def _record_move(
    conn: Connection,
    *,
    environment: str,
    alias: str,
    to_model: str,
    previous: sql.AliasRow | None,
    operation: str,
    actor: Actor,
    reason: str,
    operation_id: str,
    started: float,
    incident_id: int | None,
) -> AliasChange:
    now = time.time()
    sql.write_alias(
        conn,
        environment=environment,
        name=alias,
        model_id=to_model,
        previous=previous,
        actor=actor.name,
        now=now,
    )
    history_id = sql.add_history(
        conn,
        sql.AliasMove(
            0,
            now,
            environment,
            alias,
            previous.model_id if previous else None,
            to_model,
            operation,
            actor.name,
            reason,
            actor.source,
            (time.perf_counter() - started) * 1000.0,
            operation_id,
            incident_id,
        ),
    )
    return AliasChange(
        environment, alias, previous.model_id if previous else None, to_model, history_id
    )


def _refuse_stale(
    row: sql.AliasRow,
    seen: sql.AliasRow | None,
    *,
    environment: str,
    alias: str,
    expected: str,
    verb: str,
) -> None:
    """Raise why `alias` is not at `expected`: a concurrent move (it was when this operation
    looked, before taking the lock) is a ConflictError; otherwise the request was wrong."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.updated_at))
    if seen is not None and seen.model_id == expected and seen.version != row.version:
        raise ConflictError(
            f"conflict: {alias} in {environment} was moved to {row.model_id} by {row.updated_by} "
            f"while this {verb} ran; nothing changed",
            hint="check `quality-gates history` and retry if still needed",
        )
    raise RegistryError(
        f"{verb} refused: {expected} is not {alias} in {environment} (it is {row.model_id}, "
        f"set by {row.updated_by} at {when})",
        hint=f"pass --model-id {row.model_id}, or see `quality-gates history -e {environment}`",
    )


def rollback(
    conn: Connection,
    *,
    environment: str,
    model_ref: str,
    previous_ref: str,
    reason: str,
    actor: Actor,
    incident_id: int | None = None,
) -> RollbackResult:
    """Point `current` from A back to B and set `previous-stable` to A, atomically.

    Refuses (exit 1) when A is not current in the environment, when B is unknown or when
    B is A; a concurrent move of `current` gives a ConflictError.
    """
    if not reason.strip():
        raise UsageError("a rollback needs --reason (it goes into the history and audit log)")
    clock = time.perf_counter()
    operation_id = uuid.uuid4().hex[:12]
    seen = sql.get_alias(conn, environment, "current")  # what this rollback looked at
    resolved_from = resolve_model(conn, environment, model_ref)
    resolved_to = resolve_model(conn, environment, previous_ref)
    with conn.write():
        current = sql.get_alias(conn, environment, "current", lock=True)
        if current is None:
            raise RegistryError(
                f"rollback refused: {environment} has no current alias",
                hint="seed it in the config's environments section",
            )
        if current.model_id != resolved_from.model_id:
            _refuse_stale(
                current,
                seen,
                environment=environment,
                alias="current",
                expected=resolved_from.model_id,
                verb="rollback",
            )
        if resolved_to.model_id == current.model_id:
            raise RegistryError(
                f"rollback refused: {resolved_to.model_id} is already current in {environment}"
            )
        previous_stable = sql.get_alias(conn, environment, "previous-stable", lock=True)
        changes = [
            _record_move(
                conn,
                environment=environment,
                alias="current",
                to_model=resolved_to.model_id,
                previous=current,
                operation="rollback",
                actor=actor,
                reason=reason,
                operation_id=operation_id,
                started=clock,
                incident_id=incident_id,
            ),
            _record_move(
                conn,
                environment=environment,
                alias="previous-stable",
                to_model=current.model_id,
                previous=previous_stable,
                operation="rollback",
                actor=actor,
                reason=reason,
                operation_id=operation_id,
                started=clock,
                incident_id=incident_id,
            ),
        ]
        sql.bump_control_version(conn, environment)
        entry = audit.append(
            conn,
            actor=actor.name,
            action="alias.rollback",
            target=f"{environment}/current",
            details={
                "from": current.model_id,
                "to": resolved_to.model_id,
                "previous_stable": current.model_id,
                "reason": reason,
                "source": actor.source,
                "operation_id": operation_id,
                "incident_id": incident_id,
                "via": resolved_to.alias,
            },
        )
    resolved = [
        r.describe(ref)
        for r, ref in ((resolved_from, model_ref), (resolved_to, previous_ref))
        if r.alias
    ]
    return RollbackResult(
        environment,
        current.model_id,
        resolved_to.model_id,
        changes,
        (time.perf_counter() - clock) * 1000.0,
        entry.seq,
        operation_id,
        resolved,
    )


def move_alias(
    conn: Connection,
    *,
    environment: str,
    alias: str,
    model_ref: str,
    reason: str,
    actor: Actor,
    expect_model: str | None = None,
    operation: str = "set",
    incident_id: int | None = None,
) -> AliasChange:
    """Point one alias at a model; with `expect_model`, only if it still points there."""
    started = time.perf_counter()
    seen = sql.get_alias(conn, environment, alias)
    target = resolve_model(conn, environment, model_ref)
    operation_id = uuid.uuid4().hex[:12]
    with conn.write():
        row = sql.get_alias(conn, environment, alias, lock=True)
        if expect_model is not None and (row is None or row.model_id != expect_model):
            if row is None:
                raise RegistryError(f"{alias} does not exist in {environment}")
            _refuse_stale(
                row,
                seen,
                environment=environment,
                alias=alias,
                expected=expect_model,
                verb=f"move of {alias}",
            )
        if row is not None and row.model_id == target.model_id:
            raise RegistryError(f"{alias} in {environment} already points to {target.model_id}")
        change = _record_move(
            conn,
            environment=environment,
            alias=alias,
            to_model=target.model_id,
            previous=row,
            operation=operation,
            actor=actor,
            reason=reason,
            operation_id=operation_id,
            started=started,
            incident_id=incident_id,
        )
        sql.bump_control_version(conn, environment)
        audit.append(
            conn,
            actor=actor.name,
            action=f"alias.{operation}",
            target=f"{environment}/{alias}",
            details={
                "from": change.from_model,
                "to": change.to_model,
                "reason": reason,
                "source": actor.source,
                "operation_id": operation_id,
                "incident_id": incident_id,
            },
        )
    return change


def promote(
    conn: Connection,
    *,
    environment: str,
    candidate_ref: str,
    reason: str,
    actor: Actor,
    expect_current: str | None = None,
    incident_id: int | None = None,
) -> list[AliasChange]:
    """previous-stable <- current <- candidate, in one transaction."""
    started = time.perf_counter()
    seen = sql.get_alias(conn, environment, "current")
    candidate = resolve_model(conn, environment, candidate_ref)
    operation_id = uuid.uuid4().hex[:12]
    with conn.write():
        current = sql.get_alias(conn, environment, "current", lock=True)
        if current is not None and expect_current and current.model_id != expect_current:
            _refuse_stale(
                current,
                seen,
                environment=environment,
                alias="current",
                expected=expect_current,
                verb="promotion",
            )
        if current is not None and current.model_id == candidate.model_id:
            raise RegistryError(f"{candidate.model_id} is already current in {environment}")
        changes = []
        if current is not None:
            previous_stable = sql.get_alias(conn, environment, "previous-stable", lock=True)
            changes.append(
                _record_move(
                    conn,
                    environment=environment,
                    alias="previous-stable",
                    to_model=current.model_id,
                    previous=previous_stable,
                    operation="promote",
                    actor=actor,
                    reason=reason,
                    operation_id=operation_id,
                    started=started,
                    incident_id=incident_id,
                )
            )
        changes.append(
            _record_move(
                conn,
                environment=environment,
                alias="current",
                to_model=candidate.model_id,
                previous=current,
                operation="promote",
                actor=actor,
                reason=reason,
                operation_id=operation_id,
                started=started,
                incident_id=incident_id,
            )
        )
        sql.bump_control_version(conn, environment)
        audit.append(
            conn,
            actor=actor.name,
            action="alias.promote",
            target=f"{environment}/current",
            details={
                "from": current.model_id if current else None,
                "to": candidate.model_id,
                "reason": reason,
                "source": actor.source,
                "operation_id": operation_id,
                "incident_id": incident_id,
            },
        )
    return changes
