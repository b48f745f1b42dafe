"""What an operator can do from the dashboard, each in two steps: `preview` says exactly what
will happen (the confirmation page), `run` does it as the signed-in key's name.

Every action calls the same service function as its CLI command, so it is audited, refused
and timed the same way; a rollback or failover is also put on the open incident's timeline.
Key management is for admins only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quality_gates.config import QualityGatesConfig
from quality_gates.errors import UsageError
from quality_gates.store.db import Connection
from quality_gates.store.registry import get_alias
from quality_gates.units import parse_duration
from quality_gates.web.sessions import Operator

Form = Mapping[str, str]


@dataclass(frozen=True)
class Context:
    """What an action works on."""

    conn: Connection
    config: QualityGatesConfig
    environment: str
    operator: Operator


@dataclass(frozen=True)
class Preview:
    """The confirmation: a title, lines saying what will change, and whether it is risky."""

    title: str
    lines: list[str]
    danger: bool = False


@dataclass(frozen=True)
class Action:
    """One dashboard action."""

    name: str
    preview: Callable[[Context, Form], Preview]
    run: Callable[[Context, Form], str]
    admin_only: bool = False


def _field(form: Form, name: str, what: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise UsageError(f"{what} is required")
    return value


def _incident_id(form: Form) -> int:
    raw = _field(form, "incident", "the incident number")
    if not raw.isdigit():
        raise UsageError(f"incident {raw!r} is not a number")
    return int(raw)


def _incident(ctx: Context, form: Form) -> dict[str, Any]:
    from quality_gates.incidents import get_incident

    row = dict(get_incident(ctx.conn, _incident_id(form)))
    if row["environment"] != ctx.environment:
        raise UsageError(
            f"incident #{row['id']} belongs to {row['environment']}, not {ctx.environment}"
        )
    return row


# --- incidents -------------------------------------------------------------------------


def _ack_preview(ctx: Context, form: Form) -> Preview:
    row = _incident(ctx, form)
    return Preview(
        f"Acknowledge incident #{row['id']}?",
        [
            f"{row['severity']} {row['type']}: {row['title']}",
            "Acknowledging stops the response clock and the automatic escalation, and tells "
            "the channels that heard of it (PagerDuty: acknowledge).",
            f"Recorded as {ctx.operator.name}.",
        ],
    )


def _ack_run(ctx: Context, form: Form) -> str:
    from quality_gates.incidents import acknowledge

    incident_id = int(_incident(ctx, form)["id"])
    acknowledge(ctx.conn, ctx.config, incident_id, actor=ctx.operator.name)
    return f"Incident #{incident_id} acknowledged."


def _note_state(form: Form) -> str | None:
    state = (form.get("state") or "").strip()
    return state or None


def _note_preview(ctx: Context, form: Form) -> Preview:
    row = _incident(ctx, form)
    text = _field(form, "text", "the note's text")
    public = form.get("public") == "1"
    lines = [f"Note on incident #{row['id']} ({row['title']}):", f"“{text}”"]
    lines.append(
        "PUBLIC: this text will appear on the status page as written."
        if public
        else "Internal: only the dashboard and the CLI show it."
    )
    state = _note_state(form)
    if state and state != row["state"]:
        lines.append(f"State: {row['state']} -> {state}.")
    return Preview(f"Add a note to incident #{row['id']}?", lines, danger=public)


def _note_run(ctx: Context, form: Form) -> str:
    from quality_gates.incidents import add_note

    incident_id = int(_incident(ctx, form)["id"])
    add_note(
        ctx.conn,
        incident_id,
        _field(form, "text", "the note's text"),
        actor=ctx.operator.name,
        public=form.get("public") == "1",
        state=_note_state(form),
    )
    return f"Note added to incident #{incident_id}."


# --- rollback and failover -------------------------------------------------------------


def _rollback_target(ctx: Context, form: Form) -> tuple[str, str]:
    from quality_gates.registry import resolve_model

    current = get_alias(ctx.conn, ctx.environment, "current")
    if current is None:
        raise UsageError(f"{ctx.environment} has no current alias to roll back")
    expected = (form.get("from_model") or current.model_id).strip()
    target = resolve_model(ctx.conn, ctx.environment, _field(form, "to", "the model to go back to"))
    return expected, target.model_id


def _rollback_preview(ctx: Context, form: Form) -> Preview:
    current, target = _rollback_target(ctx, form)
    _field(form, "reason", "a reason")
    stable = get_alias(ctx.conn, ctx.environment, "previous-stable")
    return Preview(
        f"Roll back {ctx.environment}?",
        [
            f"current: {current} -> {target}",
            f"previous-stable: {stable.model_id if stable else '(unset)'} -> {current}",
            f"Reason: {form['reason'].strip()}",
            "Every gateway of the environment applies it within a second.",
        ],
        danger=True,
    )


def _rollback_run(ctx: Context, form: Form) -> str:
    from quality_gates.incidents import current_incident, record_event
    from quality_gates.registry import Actor, rollback

    current, target = _rollback_target(ctx, form)
    reason = _field(form, "reason", "a reason")
    incident = current_incident(ctx.conn, ctx.environment)
    result = rollback(
        ctx.conn,
        environment=ctx.environment,
        model_ref=current,
        previous_ref=target,
        reason=reason,
        actor=Actor(ctx.operator.name, "manual"),
        incident_id=incident,
    )
    record_event(
        ctx.conn,
        "rollback",
        f"rollback {result.from_model} -> {result.to_model} from the dashboard: {reason}",
        incident_id=incident,
        environment=ctx.environment,
        actor=ctx.operator.name,
        details={"operation_id": result.operation_id},
    )
    return f"Rolled back: current is now {result.to_model} (was {result.from_model})."


def _failover_names(ctx: Context, form: Form) -> tuple[str, str, str]:
    return (
        _field(form, "source", "the provider to leave"),
        _field(form, "target", "the provider to move to"),
        _field(form, "reason", "a reason"),
    )


def _failover_preview(ctx: Context, form: Form) -> Preview:
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import check_move, moved
    from quality_gates.gateway.route_view import alias_routes

    source, target, reason = _failover_names(ctx, form)
    # the same refusals as the failover the confirmation runs (failover.failover)
    before = check_move(ctx.conn, ctx.config, ctx.environment, source, target)
    after = moved(before, source, target, 1.0)
    routes = alias_routes(ctx.conn, ctx.config, ctx.environment, weights=after)
    return Preview(
        f"Fail over from {source} to {target}?",
        [
            f"Weights now: {describe_weights(before) or 'none'}",
            f"Weights after: {describe_weights(after) or 'none'} (immediately, in one step)",
            *(f"Route after: {r.describe()}" for r in routes),
            f"Reason: {reason}",
            "For gradual or canary steps with health checks, use `quality-gates failover "
            "--mode gradual|canary`.",
        ],
        danger=True,
    )


def _failover_run(ctx: Context, form: Form) -> str:
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import failover, live_probe
    from quality_gates.incidents import record_event

    source, target, reason = _failover_names(ctx, form)
    move = failover(
        ctx.conn,
        ctx.config,
        environment=ctx.environment,
        source=source,
        target=target,
        mode="immediate",
        reason=reason,
        actor=ctx.operator.name,
        probe=live_probe(ctx.config),
        pause=0.0,
    )
    record_event(
        ctx.conn,
        "failover",
        f"failover {source} -> {target} from the dashboard: {reason} "
        f"(now {describe_weights(move.final)})",
        environment=ctx.environment,
        actor=ctx.operator.name,
        details={"operation_id": move.operation_id},
    )
    return f"Failed over: traffic is now {describe_weights(move.final)}."


# --- silences and keys -----------------------------------------------------------------


def _silence_fields(form: Form) -> tuple[list[str], float, str]:
    matchers = _field(form, "matchers", "at least one matcher").split()
    try:
        duration = parse_duration(_field(form, "duration", "a duration"), bare_unit="m")
    except ValueError as exc:
        raise UsageError(f"duration: {exc}") from None
    return matchers, duration, _field(form, "comment", "a comment")


def _silence_preview(ctx: Context, form: Form) -> Preview:
    from quality_gates.alerts._rules import parse_matcher
    from quality_gates.units import format_duration

    matchers, duration, comment = _silence_fields(form)
    try:
        parsed = [str(parse_matcher(m)) for m in matchers]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Preview(
        "Silence matching alerts?",
        [
            f"Matchers: {' '.join(parsed)}",
            f"For {format_duration(duration)}; comment: {comment}",
            "Muted alerts keep their state but notify no one.",
        ],
    )


def _silence_run(ctx: Context, form: Form) -> str:
    from quality_gates.alerts import silences

    matchers, duration, comment = _silence_fields(form)
    silence_id = silences.add(
        ctx.conn, matchers, comment=comment, duration=duration, actor=ctx.operator.name
    )
    return f"Silence #{silence_id} added."


def _silence_id(form: Form) -> int:
    raw = _field(form, "silence", "the silence number")
    if not raw.isdigit():
        raise UsageError(f"silence {raw!r} is not a number")
    return int(raw)


def _expire_preview(ctx: Context, form: Form) -> Preview:
    silence_id = _silence_id(form)
    return Preview(f"Expire silence #{silence_id}?", ["Its alerts notify again at once."])


def _expire_run(ctx: Context, form: Form) -> str:
    from quality_gates.alerts import silences

    silence_id = _silence_id(form)
    silences.expire(ctx.conn, silence_id, actor=ctx.operator.name)
    return f"Silence #{silence_id} expired."


def _revoke_preview(ctx: Context, form: Form) -> Preview:
    from quality_gates.gateway.keys import list_keys

    name = _field(form, "key", "the key's name")
    if name not in {k.name for k in list_keys(ctx.conn, include_revoked=False)}:
        raise UsageError(f"there is no active key named {name!r}")
    lines = ["Every gateway refuses it within a second; its dashboard sessions end."]
    if name == ctx.operator.name:
        lines.append("This is the key you are signed in with: you will be signed out.")
    return Preview(f"Revoke the key {name!r}?", lines, danger=True)


def _revoke_run(ctx: Context, form: Form) -> str:
    from quality_gates.gateway.keys import revoke_key

    name = _field(form, "key", "the key's name")
    revoke_key(ctx.conn, name=name, actor=ctx.operator.name, reason="revoked from the dashboard")
    return f"Key {name!r} revoked."


ACTIONS = {
    a.name: a
    for a in (
        Action("ack", _ack_preview, _ack_run),
        Action("note", _note_preview, _note_run),
        Action("rollback", _rollback_preview, _rollback_run),
        Action("failover", _failover_preview, _failover_run),
        Action("silence", _silence_preview, _silence_run),
        Action("expire", _expire_preview, _expire_run),
        Action("revoke", _revoke_preview, _revoke_run, admin_only=True),
    )
}
