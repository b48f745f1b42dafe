"""`keys create|list|revoke`: the gateway's API keys (stored hashed, shown once)."""

from __future__ import annotations

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option

ROLES = ("client", "operator", "admin")


def register(group: click.Group) -> None:
    """Add the `keys` group."""
    group.add_command(keys)


@click.group()
def keys() -> None:
    """API keys for the gateway (Authorization: Bearer <key>)."""


@keys.command("create")
@click.option("--name", required=True, help="A name for the key (shown in telemetry).")
@click.option("--role", type=click.Choice(ROLES), default="client", show_default=True)
@actor_option
@json_option
@click.pass_context
def create(
    ctx: click.Context, name: str, role: str, actor_name: str | None, json_output: bool
) -> None:
    """Create a key; the secret is printed once and only its hash is stored."""
    from quality_gates.cli._output import console, emit_json, warn
    from quality_gates.gateway.keys import create_key

    conn = _context.state(ctx).conn()
    key, secret = create_key(conn, name=name, role=role, actor=_context.actor(actor_name).name)
    if _context.wants_json(ctx, json_output):
        emit_json({"name": key.name, "role": key.role, "prefix": key.prefix, "key": secret})
        return
    console().print(f"created {key.role} key {key.name!r}:", markup=False)
    console().print(secret, markup=False)
    warn("this is the only time the key is shown; store it in a secret manager now")


@keys.command("list")
@click.option("--active", is_flag=True, help="Hide revoked keys.")
@json_option
@click.pass_context
def list_(ctx: click.Context, active: bool, json_output: bool) -> None:
    """Keys by name, with role, prefix and state (never the secret)."""
    from quality_gates.cli._output import console, emit_json, iso_utc, local_time, table
    from quality_gates.gateway.keys import list_keys

    rows = list_keys(_context.state(ctx).conn(), include_revoked=not active)
    if _context.wants_json(ctx, json_output):
        emit_json(
            [
                {
                    "name": k.name,
                    "role": k.role,
                    "prefix": k.prefix,
                    "created_at": iso_utc(k.created_at),
                    "created_by": k.created_by,
                    "revoked_at": iso_utc(k.revoked_at),
                    "active": k.active,
                }
                for k in rows
            ]
        )
        return
    if not rows:
        console().print(
            "No API keys: the gateway accepts requests without one "
            "(unless gateway.auth is required)."
        )
        return
    view = table("name", "role", "prefix", "created", "by", "state")
    for k in rows:
        view.add_row(
            k.name,
            k.role,
            k.prefix + "…",
            local_time(k.created_at),
            k.created_by,
            "active" if k.active else f"revoked {local_time(k.revoked_at)}",
        )
    console().print(view)


@keys.command("revoke")
@click.option("--name", required=True, help="The key to revoke.")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@actor_option
@json_option
@click.pass_context
def revoke(
    ctx: click.Context, name: str, reason: str, actor_name: str | None, json_output: bool
) -> None:
    """Revoke a key; running gateways refuse it within a second."""
    from quality_gates.cli._output import console, emit_json, iso_utc
    from quality_gates.gateway.keys import revoke_key

    key = revoke_key(
        _context.state(ctx).conn(), name=name, reason=reason, actor=_context.actor(actor_name).name
    )
    if _context.wants_json(ctx, json_output):
        emit_json({"name": key.name, "role": key.role, "revoked_at": iso_utc(key.revoked_at)})
        return
    console().print(f"revoked key {key.name!r} ({key.role}, {key.prefix}…)", markup=False)
