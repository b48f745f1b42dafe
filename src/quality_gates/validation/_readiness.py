"""Readiness checks: migrations, secrets, rollback readiness, failover chains, thresholds and
file permissions, each with its safe fix under `validate --fix` and a suggestion otherwise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from quality_gates.validation._framework import CheckResult, ValidationContext, check

ACTOR = "validate --fix"


@check("migrations", "the store's schema is current", needs_config=False, order=11)
def migrations(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL with the pending revisions; --fix applies them."""
    from quality_gates.store import schema_state, upgrade

    conn = ctx.conn()
    if conn is None:
        return [CheckResult("migrations", "WARN", "no store could be located")]
    state = schema_state(conn)
    evidence = {"applied": sorted(state.applied), "expected": sorted(state.expected)}
    if state.kind == "empty":
        return [
            CheckResult("migrations", "WARN", "no store yet: it is created on first use", evidence)
        ]
    if state.kind == "current":
        return [CheckResult("migrations", "PASS", "schema current", evidence)]
    if state.kind == "ahead":
        return [
            CheckResult(
                "migrations",
                "FAIL",
                f"the store has schema {', '.join(sorted(state.applied))}, unknown to this "
                "version (upgrade quality-gates)",
                evidence,
            )
        ]
    pending = state.pending
    if ctx.fix:
        applied = upgrade(ctx.store_url)
        return [
            CheckResult(
                "migrations",
                "PASS",
                f"fixed: applied {', '.join(applied) or 'the schema'}",
                {**evidence, "fixed": True, "applied_now": applied},
            )
        ]
    return [
        CheckResult(
            "migrations",
            "FAIL",
            f"{len(pending)} migration(s) pending: {', '.join(pending)}",
            {**evidence, "pending": pending, "suggestion": "quality-gates migrate (or --fix)"},
        )
    ]


@check("secrets", "no plain-text secrets in the config", needs_config=False, order=12)
def secrets(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL naming where each secret is (never its value); --fix moves them to the secrets
    file and leaves references."""
    import yaml

    from quality_gates.config._secrets import SECRETS_FILE
    from quality_gates.config._secrets_file import find_plain_secrets, move_secrets

    if ctx.config_path is None or not ctx.config_path.is_file():
        return []
    raw = yaml.safe_load(ctx.config_path.read_text(encoding="utf-8"))
    found = find_plain_secrets(raw)
    if not found:
        return [CheckResult("secrets", "PASS", "no plain-text secret in the config")]
    where = [s.where for s in found]
    if ctx.fix:
        moved = move_secrets(ctx.config_path)
        ctx.reload()
        listing = ", ".join(f"{s.where} -> {s.variable}" for s in moved)
        return [
            CheckResult(
                "secrets",
                "PASS",
                f"fixed: moved {len(moved)} secret(s) to {SECRETS_FILE} (0600): {listing}",
                {"fixed": True, "moved": {s.where: s.variable for s in moved}},
            )
        ]
    return [
        CheckResult(
            "secrets",
            "FAIL",
            f"{len(found)} plain-text secret(s) at {', '.join(where)}",
            {
                "where": where,
                "suggestion": "export each as an environment variable and reference it, or run "
                "`quality-gates validate --fix` to move them to "
                f"{SECRETS_FILE} (loaded by the CLI, mode 0600)",
            },
        )
    ]


def _history_candidate(conn: object, environment: str, current: str) -> tuple[str, float] | None:
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT from_model, ts FROM alias_history WHERE environment = :env AND alias = 'current' "
        "AND from_model IS NOT NULL AND from_model <> :current ORDER BY id DESC LIMIT 1",
        {"env": environment, "current": current},
    )
    return (str(rows[0]["from_model"]), float(rows[0]["ts"])) if rows else None


@check("rollback-readiness", "previous-stable is set and can take traffic", order=50)
def rollback_readiness(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL without previous-stable (fixed from the alias history), WARN when its provider
    failed its probe or it has no chain."""
    from quality_gates.registry import Actor, move_alias
    from quality_gates.store.registry import list_aliases

    conn = ctx.conn()
    if conn is None:
        return []
    aliases = {a.name: a.model_id for a in list_aliases(conn, ctx.environment)}
    current = aliases.get("current")
    if current is None:
        return [
            CheckResult(
                "rollback-readiness",
                "FAIL",
                f"{ctx.environment} has no current alias",
                {"suggestion": f"seed it under environments.{ctx.environment}.aliases"},
            )
        ]
    target = aliases.get("previous-stable")
    if target is None or target == current:
        found = _history_candidate(conn, ctx.environment, current)
        if found is not None and ctx.fix:
            from quality_gates.registry import current_user

            move_alias(
                conn,
                environment=ctx.environment,
                alias="previous-stable",
                model_ref=found[0],
                reason=f"validate --fix: current was {found[0]} before {current}",
                actor=Actor(f"{current_user()} ({ACTOR})", "manual"),
            )
            return [
                CheckResult(
                    "rollback-readiness",
                    "PASS",
                    f"fixed: previous-stable -> {found[0]} (current before {current}, from the "
                    "alias history)",
                    {"fixed": True, "previous_stable": found[0]},
                )
            ]
        why = "not set" if target is None else f"the same model as current ({current})"
        suggestion = (
            f"`quality-gates validate -e {ctx.environment} --fix` sets it to {found[0]}"
            if found
            else f"no earlier model in the history: add previous-stable under "
            f"environments.{ctx.environment}.aliases"
        )
        return [
            CheckResult(
                "rollback-readiness",
                "FAIL",
                f"previous-stable is {why}: an automatic rollback has nowhere to go",
                {"current": current, "suggestion": suggestion},
            )
        ]
    model = ctx.config.model(target)
    evidence = {"current": current, "previous_stable": target}
    probe = ctx.probes.get(model.provider) if model is not None else None
    if model is None:
        return [
            CheckResult(
                "rollback-readiness",
                "FAIL",
                f"previous-stable {target} is not a model of the config",
                evidence,
            )
        ]
    if probe is not None and not probe.healthy:
        return [
            CheckResult(
                "rollback-readiness",
                "WARN",
                f"previous-stable {target} is on {model.provider}, which failed its probe",
                {**evidence, "probe": probe.error_class},
            )
        ]
    return [
        CheckResult(
            "rollback-readiness", "PASS", f"current {current}, previous-stable {target}", evidence
        )
    ]


@check("failover-chains", "every model in use has a chain with a healthy backup", order=55)
def failover_chains(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL when the current model has no chain; WARN for other aliases, for a backup on the
    same provider, or a backup whose provider failed its probe."""
    from quality_gates.store.registry import list_aliases

    env = ctx.config.environment(ctx.environment)
    conn = ctx.conn()
    aliases = (
        {a.name: a.model_id for a in list_aliases(conn, ctx.environment)}
        if conn is not None
        else dict(env.aliases if env else {})
    )
    results = []
    for model_id in sorted(set(aliases.values())):
        chain = env.chain_for(model_id) if env is not None else None
        name = f"failover-chains:{model_id}"
        is_current = aliases.get("current") == model_id
        if chain is None:
            results.append(
                CheckResult(
                    name,
                    "FAIL" if is_current else "WARN",
                    f"{model_id} has no failover chain",
                    {
                        "suggestion": f"add {{primary: {model_id}, secondary: <model on another "
                        f"provider>}} under environments.{ctx.environment}.failover_chains"
                    },
                )
            )
            continue
        primary = ctx.config.model(model_id)
        backups = [ctx.config.model(m) for m in chain.models[1:]]
        healthy = [
            b
            for b in backups
            if b is not None
            and (ctx.probes.get(b.provider) is None or ctx.probes[b.provider].healthy)
        ]
        other = [b for b in healthy if primary is None or b.provider != primary.provider]
        evidence = {"chain": chain.models}
        if not healthy:
            results.append(
                CheckResult(name, "FAIL", f"no backup of {model_id} answers its probe", evidence)
            )
        elif not other:
            results.append(
                CheckResult(
                    name,
                    "WARN",
                    f"every healthy backup of {model_id} is on its own provider",
                    evidence,
                )
            )
        else:
            results.append(
                CheckResult(
                    name, "PASS", f"{' -> '.join(chain.models)} (backup {other[0].id})", evidence
                )
            )
    return results


@check("thresholds", "thresholds and alert rules agree", order=60)
def thresholds(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL on contradictions (a warning above its critical), WARN on odd settings."""
    config = ctx.config
    env = config.environment(ctx.environment)
    problems: list[tuple[str, str]] = []
    by_metric: dict[tuple[str, str], float] = {}
    for rule in config.alerts.rules:
        by_metric.setdefault((str(rule.metric), rule.severity), rule.threshold_value)
        if rule.window < config.alerts.evaluation_interval:
            problems.append(
                ("WARN", f"{rule.name}: window {rule.window:g} s is shorter than the evaluation")
            )
    for metric, rising in (("error_rate", True), ("p95_latency", True)):
        warning, critical = by_metric.get((metric, "warning")), by_metric.get((metric, "critical"))
        if warning is not None and critical is not None and (warning >= critical) == rising:
            problems.append(
                ("FAIL", f"{metric}: the warning ({warning:g}) is not below the critical")
            )
    if env is not None:
        t = env.thresholds
        critical_errors = by_metric.get(("error_rate", "critical"))
        if critical_errors is not None and t.error_rate > critical_errors:
            problems.append(
                ("WARN", f"the error-rate target {t.error_rate:.1%} is above the critical alert")
            )
        degraded = config.emergency.degraded
        if degraded.p95_latency_ms < t.p95_latency_ms:
            problems.append(("WARN", "the degraded P95 target is stricter than the normal one"))
    if not problems:
        return [CheckResult("thresholds", "PASS", "consistent")]
    worst = "FAIL" if any(level == "FAIL" for level, _ in problems) else "WARN"
    return [
        CheckResult(
            "thresholds",
            worst,  # type: ignore[arg-type]
            "; ".join(text for _, text in problems),
            {"problems": [text for _, text in problems]},
        )
    ]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@check("permissions", "config, store and secrets are not open to others", order=70)
def permissions(ctx: ValidationContext) -> list[CheckResult]:
    """WARN (FAIL for the secrets file) on loose modes; --fix tightens them."""
    from quality_gates.config._secrets import secrets_path

    if ctx.config_path is None:
        return []
    wanted: list[tuple[Path, int, str]] = [(ctx.config_path, 0o022, "WARN")]
    secrets = secrets_path(ctx.config_path.parent)
    if secrets.exists():
        wanted.append((secrets, 0o077, "FAIL"))
    store_path = getattr(ctx.store_url, "path", None)
    if store_path is not None:
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(str(store_path) + suffix)
            if candidate.exists():
                wanted.append((candidate, 0o007, "WARN"))
    loose = [(p, m, level) for p, m, level in wanted if _mode(p) & m]
    if not loose:
        return [CheckResult("permissions", "PASS", f"{len(wanted)} file(s) checked")]
    if ctx.fix:
        for path, mask, _ in loose:
            os.chmod(path, _mode(path) & ~mask)
        listing = ", ".join(f"{p.name} -> {oct(_mode(p))[2:]}" for p, _, _ in loose)
        return [CheckResult("permissions", "PASS", f"fixed: {listing}", {"fixed": True})]
    worst = "FAIL" if any(level == "FAIL" for *_, level in loose) else "WARN"
    listing = ", ".join(f"{p} is {oct(_mode(p))[2:]}" for p, _, _ in loose)
    return [
        CheckResult(
            "permissions",
            worst,  # type: ignore[arg-type]
            listing,
            {"suggestion": "chmod go-w the config, 600 the secrets file and the store (or --fix)"},
        )
    ]
