"""`silence add|list|expire`: mute alerts that match labels, with a comment and an expiry."""

from __future__ import annotations

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option


def register(group: click.Group) -> None:
    """Add the `silence` group."""
    group.add_command(silence)


@click.group()
def silence() -> None:
    """Mute matching alerts for a while (they keep their state but notify no one)."""


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--comment", "-m", required=True, help="Why (shown to whoever is on call next).")
@click.option(
    "--duration", "-d", default="1h", show_default=True, help="How long: 30m, 2h, 1d (max 30d)."
)
@actor_option
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    matchers: tuple[str, ...],
    comment: str,
    duration: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Silence alerts matching every MATCHER: name=value, name!=value, name=~regex.

    Labels: alertname, severity, metric, type, environment, provider, alias, model_id.
    Example: quality-gates silence add provider=bedrock alertname=~p95.* -m "maintenance" -d 2h
    """
    from quality_gates.alerts import silences
    from quality_gates.cli._output import console, emit_json, local_time
    from quality_gates.errors import UsageError
    from quality_gates.units import parse_duration

    try:
        seconds = parse_duration(duration, bare_unit="m")
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    conn = _context.state(ctx).conn()
    who = _context.actor(actor_name).name
    silence_id = silences.add(conn, list(matchers), comment=comment, duration=seconds, actor=who)
    row = next(s for s in silences.listing(conn) if s["id"] == silence_id)
    if _context.wants_json(ctx, json_output):
        emit_json(row)
        return
    console().print(
        f"Silence #{silence_id} on {' '.join(matchers)} until {local_time(row['ends_at'])} "
        f"({comment})",
        markup=False,
    )


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@json_option
@click.pass_context
def list_silences(ctx: click.Context, include_expired: bool, json_output: bool) -> None:
    """Silences in force (and scheduled), with the alerts they mute now."""
    from quality_gates.alerts import silences
    from quality_gates.cli._output import console, emit_json, iso_utc, local_time, table

    rows = silences.listing(_context.state(ctx).conn(), include_expired=include_expired)
    if _context.wants_json(ctx, json_output):
        emit_json(
            [
                {
                    **r,
                    **{k: iso_utc(r[k]) for k in ("created_at", "starts_at", "ends_at")},
                }
                for r in rows
            ]
        )
        return
    if not rows:
        console().print("No silences.")
        return
    view = table("#", "state", "matchers", "until", "by", "comment", "muting")
    for r in rows:
        view.add_row(
            str(r["id"]),
            r["state"],
            " ".join(r["matchers"]),
            local_time(r["ends_at"]),
            r["created_by"],
            r["comment"],
            ", ".join(r["muting"]) or "-",
        )
    console().print(view)


@silence.command("expire")
@click.argument("silence_id", type=int)
@actor_option
@json_option
@click.pass_context
def expire(ctx: click.Context, silence_id: int, actor_name: str | None, json_output: bool) -> None:
    """End a silence now; its alerts notify again at the next evaluation."""
    from quality_gates.alerts import silences
    from quality_gates.cli._output import console, emit_json

    who = _context.actor(actor_name).name
    silences.expire(_context.state(ctx).conn(), silence_id, actor=who)
    if _context.wants_json(ctx, json_output):
        emit_json({"silence": silence_id, "expired_by": who})
        return
    console().print(f"Silence #{silence_id} expired.")
