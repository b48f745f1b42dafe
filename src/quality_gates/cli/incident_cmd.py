"""`incident open|list|show|ack|note|resolve|escalate|postmortem`: run incidents to closure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option

STATE_CHOICES = (
    "open",
    "all",
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
)


def register(group: click.Group) -> None:
    """Add the `incident` group."""
    group.add_command(incident)


@click.group()
def incident() -> None:
    """Incidents opened by alerts (or by hand): timeline, acknowledgement, escalation,
    resolution and the post-incident review."""


def _sent(ctx: click.Context, keys: list[str]) -> dict[str, int]:
    """Send what a command enqueued right away; the evaluator retries what fails."""
    from quality_gates.watch._service import deliver_now

    state = _context.state(ctx)
    report = deliver_now(state.database(), state.loaded().config, keys)
    return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed}


def _print_sent(outcome: dict[str, int]) -> None:
    from quality_gates.cli._output import info

    if sum(outcome.values()):
        info(
            f"notifications: {outcome['sent']} sent, {outcome['retrying']} queued for retry, "
            f"{outcome['failed']} failed"
        )


def _age(row: dict[str, Any]) -> str:
    from quality_gates.cli._output import ago

    return ago(row["opened_at"])


@incident.command("list")
@click.option("--state", type=click.Choice(STATE_CHOICES), default="open", show_default=True)
@environment_option(help_text="Only this environment.")
@click.option("--limit", "-n", type=click.IntRange(1, 10000), default=50, show_default=True)
@json_option
@click.pass_context
def list_incidents(
    ctx: click.Context, state: str, environment: str | None, limit: int, json_output: bool
) -> None:
    """Incidents, newest first (open ones by default)."""
    from rich.markup import escape

    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json, iso_utc, local_time, table

    rows = incidents.list_incidents(
        _context.state(ctx).conn(), state=state, environment=environment, limit=limit
    )
    if _context.wants_json(ctx, json_output):
        emit_json([{**r, "opened_at": iso_utc(r["opened_at"])} for r in rows])
        return
    if not rows:
        console().print(f"No {state if state != 'all' else ''} incidents.".replace("  ", " "))
        return
    view = table("#", "sev", "state", "env", "type", "opened", "age", "ack", "title")
    for r in rows:
        view.add_row(
            str(r["id"]),
            r["severity"],
            r["state"],
            r["environment"],
            r["type"],
            local_time(r["opened_at"]),
            _age(r),
            escape(r["acknowledged_by"] or "-"),
            escape(r["title"]),  # a drill's title starts "[drill]", which rich would eat
        )
    console().print(view)


@incident.command("show")
@click.argument("incident_id", type=int)
@click.option("--public", "public_only", is_flag=True, help="Only the public timeline.")
@json_option
@click.pass_context
def show(ctx: click.Context, incident_id: int, public_only: bool, json_output: bool) -> None:
    """One incident: its facts, alerts, timeline and notifications."""
    import json as jsonlib

    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json, iso_utc, local_time, table
    from quality_gates.notify import _outbox

    conn = _context.state(ctx).conn()
    row = incidents.get_incident(conn, incident_id)
    events = incidents.timeline(conn, incident_id, public_only=public_only)
    alerts = conn.execute(
        "SELECT rule, labels, severity, state, value, summary FROM alert_states "
        "WHERE incident_id = :id ORDER BY fired_at",
        {"id": incident_id},
    )
    messages = _outbox.recent(conn, limit=100, incident_id=incident_id)
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                **{k: (iso_utc(v) if k.endswith("_at") else v) for k, v in row.items()},
                "alerts": [{**a, "labels": jsonlib.loads(a["labels"])} for a in alerts],
                "timeline": [{**e, "ts": iso_utc(e["ts"])} for e in events],
                "notifications": [
                    {k: m[k] for k in ("channel", "event", "status", "attempts", "last_error")}
                    for m in messages
                ],
            }
        )
        return
    out = console()
    out.print(
        f"[bold]Incident #{row['id']}[/bold] {row['severity']} {row['type']} "
        f"[cyan]{row['state']}[/cyan] in {row['environment']}, opened {_age(row)}"
    )
    out.print(f"  {row['title']}", markup=False)
    if row["acknowledged_at"]:
        out.print(
            f"  acknowledged by {row['acknowledged_by']} at {local_time(row['acknowledged_at'])}"
        )
    if row["escalation_level"]:
        out.print(f"  escalation level {row['escalation_level']}")
    if row["resolved_at"]:
        out.print(f"  resolved by {row['resolved_by']} at {local_time(row['resolved_at'])}")
    if alerts:
        view = table("alert", "severity", "state", "summary", title="Alerts")
        for a in alerts:
            view.add_row(a["rule"], a["severity"], a["state"], a["summary"])
        out.print(view)
    view = table("time", "kind", "who", "what", "", title="Timeline")
    for e in events:
        view.add_row(
            local_time(e["ts"]),
            e["kind"],
            e["actor"],
            e["message"],
            "" if e["public"] else "internal",
        )
    out.print(view)
    if messages:
        view = table("channel", "event", "status", "attempts", "error", title="Notifications")
        for m in reversed(messages):
            view.add_row(
                m["channel"], m["event"], m["status"], str(m["attempts"]), m["last_error"] or ""
            )
        out.print(view)


@incident.command("open")
@click.option("--title", required=True, help="What is wrong, in a line (public).")
@click.option(
    "--severity",
    type=click.Choice(("P0", "P1", "P2", "P3")),
    required=True,
    help="P0 service down ... P3 minor (the severity table of the config).",
)
@click.option(
    "--type",
    "incident_type",
    type=click.Choice(("provider", "performance", "quality", "infrastructure", "security", "cost")),
    default="performance",
    show_default=True,
    help="Selects the escalation-matrix row and the notification routes.",
)
@environment_option(default="production")
@click.option(
    "--model-id",
    metavar="MODEL",
    help="The affected model (id or alias); `affected-model` then resolves to it.",
)
@click.option("--provider", metavar="NAME", help="The affected provider.")
@actor_option
@json_option
@click.pass_context
def open_incident(
    ctx: click.Context,
    title: str,
    severity: str,
    incident_type: str,
    environment: str,
    model_id: str | None,
    provider: str | None,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Declare an incident by hand (an alert opens one itself); alerts of the same kind in the
    same environment then join it, and its channels are notified as for an alert."""
    import time

    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json
    from quality_gates.errors import RegistryError, UsageError
    from quality_gates.incidents._incident_flow import group_key
    from quality_gates.registry import resolve_model

    state = _context.state(ctx)
    config = state.loaded().config
    if config.environment(environment) is None:
        known = ", ".join(config.environments)
        raise UsageError(f"--environment {environment!r} is not in the config (known: {known})")
    if provider is not None and provider not in {p.name for p in config.providers}:
        known = ", ".join(p.name for p in config.providers)
        raise UsageError(f"--provider {provider!r} is not in the config (known: {known})")
    conn = state.conn()
    details: dict[str, Any] = {}
    if model_id is not None:
        details["model_id"] = resolve_model(conn, environment, model_id).model_id
    if provider is not None:
        details["provider"] = provider
    key = group_key(environment, incident_type)
    already = conn.scalar(
        "SELECT id FROM incidents WHERE group_key = :key AND state IN "
        "('investigating', 'identified', 'monitoring') ORDER BY id DESC LIMIT 1",
        {"key": key},
    )
    if already is not None:
        raise RegistryError(
            f"incident #{already} is already open for {environment} ({key.split(':')[1]})",
            hint=f"add to it: `quality-gates incident note {already} ...` or escalate it",
        )
    row = incidents.open_incident(
        conn,
        config,
        title=title,
        incident_type=incident_type,
        severity=severity,
        environment=environment,
        group_key=key,
        actor=_context.actor(actor_name).name,
        now=time.time(),
        details=details,
    )
    keys = [
        str(r["idempotency_key"])
        for r in conn.execute(
            "SELECT idempotency_key FROM notifications WHERE incident_id = :id",
            {"id": row["id"]},
        )
    ]
    outcome = _sent(ctx, keys)
    if _context.wants_json(ctx, json_output):
        emit_json(
            {"incident": row["id"], "severity": severity, **details, "notifications": outcome}
        )
        return
    console().print(
        f"Incident #{row['id']} opened: {severity} {incident_type} in {environment}: {title}",
        markup=False,
    )
    _print_sent(outcome)


@incident.command("ack")
@click.argument("incident_id", type=int)
@actor_option
@json_option
@click.pass_context
def ack(ctx: click.Context, incident_id: int, actor_name: str | None, json_output: bool) -> None:
    """Acknowledge: stops escalation; PagerDuty hears `acknowledge`."""
    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json

    state = _context.state(ctx)
    who = _context.actor(actor_name).name
    keys = incidents.acknowledge(state.conn(), state.loaded().config, incident_id, actor=who)
    outcome = _sent(ctx, keys)
    if _context.wants_json(ctx, json_output):
        emit_json({"incident": incident_id, "acknowledged_by": who, "notifications": outcome})
        return
    console().print(f"Incident #{incident_id} acknowledged by {who}.")
    _print_sent(outcome)


@incident.command("note")
@click.argument("incident_id", type=int)
@click.argument("text")
@click.option("--public", is_flag=True, help="Show it on the public status page too.")
@click.option(
    "--state",
    "new_state",
    type=click.Choice(("investigating", "identified", "monitoring")),
    help="Move the incident to this state as well.",
)
@actor_option
@json_option
@click.pass_context
def note(
    ctx: click.Context,
    incident_id: int,
    text: str,
    public: bool,
    new_state: str | None,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Add a note to the timeline (internal unless --public)."""
    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json

    who = _context.actor(actor_name).name
    event_id = incidents.add_note(
        _context.state(ctx).conn(), incident_id, text, actor=who, public=public, state=new_state
    )
    if _context.wants_json(ctx, json_output):
        emit_json(
            {"incident": incident_id, "event": event_id, "public": public, "state": new_state}
        )
        return
    where = "public" if public else "internal"
    moved = f"; state -> {new_state}" if new_state else ""
    console().print(f"Note added to incident #{incident_id} ({where}){moved}.")


@incident.command("resolve")
@click.argument("incident_id", type=int)
@click.option("--reason", help="What fixed it (goes to the channels and the timeline).")
@click.option("--root-cause", help="The root cause, if known (goes into the review).")
@actor_option
@json_option
@click.pass_context
def resolve(
    ctx: click.Context,
    incident_id: int,
    reason: str | None,
    root_cause: str | None,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Resolve; channels that heard of the incident hear the resolve."""
    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json

    state = _context.state(ctx)
    who = _context.actor(actor_name).name
    keys = incidents.resolve(
        state.conn(),
        state.loaded().config,
        incident_id,
        actor=who,
        reason=reason,
        root_cause=root_cause,
    )
    outcome = _sent(ctx, keys)
    if _context.wants_json(ctx, json_output):
        emit_json({"incident": incident_id, "resolved_by": who, "notifications": outcome})
        return
    console().print(
        f"Incident #{incident_id} resolved. Write the review: "
        f"quality-gates incident postmortem {incident_id}"
    )
    _print_sent(outcome)


@incident.command("escalate")
@click.argument("incident_id", type=int)
@click.option("--to", "contact", metavar="CONTACT", help="Who (default: the matrix's secondary).")
@click.option("--reason", default="escalated by hand", show_default=True)
@actor_option
@json_option
@click.pass_context
def escalate(
    ctx: click.Context,
    incident_id: int,
    contact: str | None,
    reason: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Escalate along the escalation matrix and notify the contact's channels."""
    from quality_gates import incidents
    from quality_gates.cli._output import console, emit_json
    from quality_gates.errors import UsageError

    state = _context.state(ctx)
    config = state.loaded().config
    if contact is not None and contact not in config.incidents.contacts:
        from quality_gates._suggest import did_you_mean

        known = list(config.incidents.contacts)
        raise UsageError(
            f"unknown contact {contact!r}{did_you_mean(contact, known)}",
            hint=f"known: {', '.join(known)}",
        )
    who = _context.actor(actor_name).name
    target, keys = incidents.escalate(
        state.conn(), config, incident_id, actor=who, reason=reason, to=contact
    )
    outcome = _sent(ctx, keys)
    if _context.wants_json(ctx, json_output):
        emit_json({"incident": incident_id, "escalated_to": target, "notifications": outcome})
        return
    console().print(f"Incident #{incident_id} escalated to {target}.")
    _print_sent(outcome)


@incident.command("postmortem")
@click.argument("incident_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write (default: postmortems/incident-N.md beside the config).",
)
@actor_option
@json_option
@click.pass_context
def postmortem(
    ctx: click.Context,
    incident_id: int,
    output: Path | None,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Write the post-incident review: timeline; detection, response and recovery times;
    impact (failed requests, affected keys, extra cost and tokens, providers); root cause and
    action items to fill in."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.incidents.postmortem import write_review
    from quality_gates.units import format_duration

    state = _context.state(ctx)
    path = output or state.config_file()[0].parent / "postmortems" / f"incident-{incident_id}.md"
    data = write_review(
        state.conn(),
        state.loaded().config,
        incident_id,
        path,
        actor=_context.actor(actor_name).name,
    )
    if _context.wants_json(ctx, json_output):
        emit_json(data)
        return
    times, impact = data["times"], data["impact"]

    def span(value: float | None) -> str:
        return "-" if value is None else format_duration(value)

    out = console()
    out.print(f"Review of incident #{incident_id} written to {path}")
    out.print(
        f"  detection {span(times['detection_seconds'])}, response "
        f"{span(times['response_seconds'])}, recovery {span(times['recovery_seconds'])}"
    )
    out.print(
        f"  {impact['failed_requests']:,} failed of {impact['requests']:,} requests; "
        f"extra cost ${impact['extra_cost']:.4f}; "
        f"providers: {', '.join(impact['providers']) or '-'}"
    )
