"""`config list|get|set|validate`: read and change quality-gates.yaml safely."""

from __future__ import annotations

from typing import Any

import click

from quality_gates.cli import _context, _runtime
from quality_gates.cli._context import actor_option, json_option


def register(group: click.Group) -> None:
    """Add the `config` group."""
    group.add_command(config)


@click.group()
def config() -> None:
    """Read, change and validate quality-gates.yaml."""


def _effective(ctx: click.Context) -> dict[str, Any]:
    return _context.state(ctx).loaded().config.model_dump(mode="json", by_alias=True)


def _redact(value: Any) -> Any:
    from quality_gates.config import looks_like_secret

    return "***" if isinstance(value, str) and looks_like_secret(value) else value


@config.command("list")
@click.argument("prefix", required=False)
@json_option
@click.pass_context
def list_values(ctx: click.Context, prefix: str | None, json_output: bool) -> None:
    """Every effective setting (defaults included) as dotted key = value; PREFIX narrows it
    (e.g. environments.production)."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.config import flatten, get_value

    data = _effective(ctx)
    scope = get_value(data, prefix) if prefix else data
    pairs = [
        (".".join(p for p in (prefix, key) if p), _redact(value)) for key, value in flatten(scope)
    ]
    if _context.wants_json(ctx, json_output):
        emit_json(dict(pairs))
        return
    out = console()
    for key, value in pairs:
        out.print(
            f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}", markup=False
        )


@config.command("get")
@click.argument("key")
@json_option
@click.pass_context
def get(ctx: click.Context, key: str, json_output: bool) -> None:
    """One effective value, e.g. environments.production.thresholds.p95_latency_ms (a section
    prints as YAML)."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.config import get_value

    value = _redact(get_value(_effective(ctx), key))
    if _context.wants_json(ctx, json_output):
        emit_json(value)
    elif isinstance(value, dict | list):
        import yaml

        console().print(yaml.safe_dump(value, sort_keys=False).rstrip(), markup=False)
    else:
        console().print(str(value), markup=False)


@config.command("set")
@click.argument("key", required=False)
@click.argument("value", required=False)
@_runtime.runtime_options
@actor_option
@json_option
@click.pass_context
def set_(
    ctx: click.Context,
    /,
    key: str | None,
    value: str | None,
    actor_name: str | None,
    json_output: bool,
    **runtime: Any,
) -> None:
    """Set KEY to VALUE (YAML: 1500ms, 2%, true, [a, b]) in the file, keeping its comments;
    nothing is written if the result would not validate. The flags change live settings
    in the store instead (running gateways apply them within a second)."""
    if _runtime.wanted(runtime):
        if key is not None:
            raise click.UsageError("give either KEY VALUE or runtime flags, not both")
        changed = _runtime.apply(ctx, runtime, actor_name)
        from quality_gates.cli._output import console, emit_json

        if _context.wants_json(ctx, json_output):
            emit_json(changed)
        else:
            for line in _runtime.render(changed):
                console().print(line, markup=False)
        return
    if key is None or value is None:
        raise click.UsageError("config set needs KEY VALUE, or runtime flags (see --help)")
    from quality_gates.cli._output import console, emit_json
    from quality_gates.config import set_value
    from quality_gates.store import audit

    state = _context.state(ctx)
    path = state.config_file()[0]
    before = _loaded_or_none(state)
    old, new, loaded = set_value(path, key, value)
    state.replace_config(loaded)
    conn = state.conn()
    with conn.write():
        audit.append(
            conn,
            actor=_context.actor(actor_name).name,
            action="config.set",
            target=f"{path}:{key}",
            details={"old": _redact(old), "new": _redact(new)},
        )
    from quality_gates.gateway._reload import needs_restart
    from quality_gates.gateway.config_pickup import wait_for_pickup

    pickup = wait_for_pickup(conn, loaded.digest)
    later = needs_restart(before.config, loaded.config) if before is not None else []
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "key": key,
                "old": _redact(old),
                "new": _redact(new),
                "file": str(path),
                "running_gateways": pickup.to_json(),
                "needs_restart": later,
            }
        )
        return
    console().print(f"{key}: {_redact(old)!r} -> {_redact(new)!r} in {path}", markup=False)
    console().print(f"  {pickup.line()}", markup=False)
    if later and pickup.gateways:
        console().print(
            f"  {', '.join(later)} changed: read only at start, so it applies when the "
            "gateways restart",
            markup=False,
        )


@config.command("validate")
@json_option
@click.pass_context
def validate(ctx: click.Context, json_output: bool) -> None:
    """Validate the config: exit 0 if valid (warnings shown), 2 with one line per problem."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.config import find_config, load_config

    loaded = load_config(find_config(_context.state(ctx).config_path))
    cfg = loaded.config
    summary: dict[str, Any] = {
        "file": str(loaded.path),
        "valid": True,
        "warnings": loaded.warnings,
        "providers": len(cfg.providers),
        "models": len(cfg.models),
        "environments": sorted(cfg.environments),
        "alert_rules": len(cfg.alerts.rules),
        "channels": len(cfg.notifications.channels),
    }
    if _context.wants_json(ctx, json_output):
        emit_json(summary)
        return
    out = console()
    for warning in loaded.warnings:
        out.print(warning, style="yellow", markup=False)
    out.print(
        f"[green]valid[/green]: {loaded.path} ({summary['providers']} providers, "
        f"{summary['models']} models, environments {', '.join(summary['environments'])}, "
        f"{summary['alert_rules']} alert rules)"
    )


def _loaded_or_none(state: Any) -> Any:
    """The config as it was before the edit (None when it does not load)."""
    from quality_gates.errors import ConfigError

    try:
        return state.loaded()
    except ConfigError:
        return None
