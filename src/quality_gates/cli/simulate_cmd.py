"""`simulate`: run simulated providers; `simulate fault` / `simulate show` drive them live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option

if TYPE_CHECKING:
    from quality_gates.config import Provider
    from quality_gates.simulator import RunningSimulator, SimulatorSpec

# Spelled out rather than imported: a command module imports only click at module level
# (tests/test_cli_simulate.py checks they match the config's lists).
PROTOCOLS = ("openai", "anthropic", "gemini", "bedrock")
PROFILES = ("healthy", "degraded", "outage", "throttled", "flaky-stream")


def register(group: click.Group) -> None:
    """Add the `simulate` group."""
    group.add_command(simulate)


@click.group(invoke_without_command=True)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="Start only these simulators of the config (repeatable; default: all).",
)
@click.option("--protocol", type=click.Choice(PROTOCOLS), help="Start one from flags instead.")
@click.option("--name", metavar="NAME", help="Its provider name (with --protocol).")
@click.option("--host", default=None, metavar="HOST", help="Listen address (127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port; 0 picks a free one.")
@click.option("--profile", type=click.Choice(PROFILES), help="Behaviour profile.")
@click.option("--seed", type=int, help="Random seed (outcomes repeat for the same seed).")
@click.option("--latency-p50", metavar="DURATION", help="Median latency, e.g. 250ms or 0.")
@click.option("--latency-p95", metavar="DURATION", help="95th percentile latency, e.g. 1.5s.")
@json_option
@click.pass_context
def simulate(
    ctx: click.Context,
    providers: tuple[str, ...],
    protocol: str | None,
    name: str | None,
    host: str | None,
    port: int | None,
    profile: str | None,
    seed: int | None,
    latency_p50: str | None,
    latency_p95: str | None,
    json_output: bool,
) -> None:
    """Run simulated providers that speak the real wire protocols, until Ctrl-C / SIGTERM.

    \b
    Without flags: every provider of the config with `kind: simulator`.
    One from flags: quality-gates simulate --protocol openai --port 9101 --profile healthy --seed 7
    Change one live: quality-gates simulate fault --provider meta --error-rate 0.2
    """
    if ctx.invoked_subcommand is not None:
        return
    from quality_gates.simulator import serve_forever

    specs = _specs(ctx, providers, protocol, name, host, port, profile, seed)
    latency = _latency_changes(latency_p50, latency_p95)
    if latency:
        from pydantic import ValidationError

        from quality_gates.errors import UsageError

        for spec in specs:
            try:
                spec.faults = spec.faults.updated(latency)
            except ValidationError as exc:
                raise UsageError(f"--latency-p50/--latency-p95: {exc.errors()[0]['msg']}") from None
    as_json = _context.wants_json(ctx, json_output)
    try:
        serve_forever(specs, lambda running: _announce(running, as_json))
    except ValueError as exc:  # an unreadable answer key, a bad protocol
        from quality_gates.errors import ConfigError

        raise ConfigError(str(exc)) from None
    except OSError as exc:  # the port is taken
        from quality_gates.errors import UsageError

        raise UsageError(f"cannot listen: {exc}") from None


def _specs(
    ctx: click.Context,
    providers: tuple[str, ...],
    protocol: str | None,
    name: str | None,
    host: str | None,
    port: int | None,
    profile: str | None,
    seed: int | None,
) -> list[SimulatorSpec]:
    from quality_gates.errors import UsageError
    from quality_gates.simulator import SimulatorSpec, spec_from_provider

    if protocol:
        if providers:
            raise UsageError("give either --protocol (one from flags) or --provider, not both")
        return [
            SimulatorSpec(
                name=name or protocol,
                protocol=protocol,
                host=host or "127.0.0.1",
                port=port or 0,
                profile=profile,
                seed=seed,
            )
        ]
    loaded = _context.state(ctx).loaded()
    config = loaded.config
    chosen = _simulators(config.providers, providers)
    if port is not None and len(chosen) > 1:
        raise UsageError("--port needs a single simulator (add --provider NAME)")
    specs = []
    for provider in chosen:
        spec = spec_from_provider(provider, config.models, base_dir=loaded.directory, port=port)
        spec.host = host or spec.host
        spec.profile = profile or spec.profile
        spec.seed = seed if seed is not None else spec.seed
        specs.append(spec)
    return specs


def _simulators(all_providers: list[Provider], wanted: tuple[str, ...]) -> list[Provider]:
    from quality_gates._suggest import did_you_mean
    from quality_gates.errors import UsageError

    simulated = [p for p in all_providers if p.kind == "simulator"]
    names = [p.name for p in simulated]
    if not wanted:
        if not simulated:
            raise UsageError(
                "the config has no provider with kind: simulator",
                hint="add one, or start one from flags: --protocol openai --port 9101",
            )
        return simulated
    chosen = []
    for name in wanted:
        match = next((p for p in simulated if p.name == name), None)
        if match is None:
            listing = ", ".join(names) or "none"
            raise UsageError(
                f"no simulator called {name!r}{did_you_mean(name, names)} (simulators: {listing})"
            )
        chosen.append(match)
    return chosen


def _announce(running: list[RunningSimulator], as_json: bool) -> None:
    from quality_gates.cli._output import console, emit_json, info

    rows = [
        {
            "provider": sim.name,
            "protocol": sim.spec.protocol,
            "host": sim.spec.host,
            "port": sim.port,
            "base_url": sim.base_url,
            "profile": sim.app.behaviour.profile,
            "seed": sim.app.behaviour.seed,
            "answer_key_items": len(sim.app.behaviour.key),
        }
        for sim in running
    ]
    if as_json:
        emit_json({"simulators": rows})
    else:
        out = console()
        for row in rows:
            out.print(
                f"{row['provider']:<12} {row['protocol']:<9} {row['base_url']:<24} "
                f"profile {row['profile']}  seed {row['seed']}",
                markup=False,
            )
        out.file.flush()
    info("simulating until Ctrl-C; change behaviour with `quality-gates simulate fault`")


def _latency_changes(p50: str | None, p95: str | None) -> dict[str, float]:
    from quality_gates.errors import UsageError
    from quality_gates.units import parse_latency_ms

    changes = {}
    for key, value in (("latency_p50_ms", p50), ("latency_p95_ms", p95)):
        if value is None:
            continue
        try:
            changes[key] = parse_latency_ms(value)
        except ValueError as exc:
            raise UsageError(f"--{key[:-3].replace('_', '-')}: {exc}") from None
    if "latency_p50_ms" in changes and "latency_p95_ms" not in changes:
        changes["latency_p95_ms"] = max(changes["latency_p50_ms"], 0.0)
    return changes


@simulate.command("fault")
@click.option("--provider", required=True, metavar="NAME", help="The simulated provider.")
@click.option("--outage", type=click.Choice(["on", "off"]), help="Full outage on or off.")
@click.option("--error-rate", metavar="RATIO", help="Share of 500 errors, e.g. 0.2 or 20%.")
@click.option("--rate-limit-rate", metavar="RATIO", help="Share of 429s (with retry-after).")
@click.option("--latency-p50", metavar="DURATION", help="Median latency, e.g. 800ms.")
@click.option("--latency-p95", metavar="DURATION", help="95th percentile latency, e.g. 3s.")
@click.option("--accuracy", metavar="RATIO", help="Answer-key accuracy, e.g. 0.8.")
@click.option("--profile", type=click.Choice(PROFILES), help="Switch to a profile first.")
@click.option("--seed", type=int, help="Reseed (outcomes repeat from here).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other fault key, e.g. --set stream_cut_rate=0.3 (repeatable).",
)
@click.option("--model", metavar="MODEL", help="Apply the changes to this model name only.")
@click.option("--reset", is_flag=True, help="Back to the configured behaviour first.")
@actor_option
@json_option
@click.pass_context
def fault(
    ctx: click.Context,
    provider: str,
    outage: str | None,
    error_rate: str | None,
    rate_limit_rate: str | None,
    latency_p50: str | None,
    latency_p95: str | None,
    accuracy: str | None,
    profile: str | None,
    seed: int | None,
    assignments: tuple[str, ...],
    model: str | None,
    reset: bool,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Change a running simulator's behaviour (PUT /_sim/faults); prints the result."""
    from quality_gates.cli._output import emit_json
    from quality_gates.simulator.control import put_faults
    from quality_gates.store import audit

    changes = _fault_changes(
        outage, error_rate, rate_limit_rate, latency_p50, latency_p95, accuracy, assignments
    )
    body: dict[str, Any] = {"models": {model: changes}} if model and changes else dict(changes)
    if reset:
        body["reset"] = True
    if profile:
        body["profile"] = profile
    if seed is not None:
        body["seed"] = seed
    if not body:
        from quality_gates.errors import UsageError

        raise UsageError("nothing to change", hint="e.g. --outage on, --error-rate 0.2, --reset")
    state = _context.state(ctx)
    target = _simulator_provider(ctx, provider)
    result = put_faults(target.base_url, body, provider=provider)
    conn = state.conn()
    with conn.write():
        audit.append(
            conn,
            actor=_context.actor(actor_name, "drill").name,
            action="simulator.fault",
            target=provider,
            details=body,
        )
    if _context.wants_json(ctx, json_output):
        emit_json(result)
        return
    _render_faults(result, changed=set(changes) | ({"profile"} if profile else set()), model=model)


@simulate.command("show")
@click.option("--provider", "providers", multiple=True, metavar="NAME", help="Default: all.")
@json_option
@click.pass_context
def show(ctx: click.Context, providers: tuple[str, ...], json_output: bool) -> None:
    """Live behaviour and counters of running simulators (GET /_sim/faults, /_sim/stats)."""
    from quality_gates.cli._output import emit_json
    from quality_gates.simulator.control import get_json

    config = _context.state(ctx).loaded().config
    results = []
    for provider in _simulators(config.providers, providers):
        faults = get_json(provider.base_url, "/_sim/faults", provider=provider.name)
        faults["stats"] = get_json(provider.base_url, "/_sim/stats", provider=provider.name)
        results.append(faults)
    if _context.wants_json(ctx, json_output):
        emit_json(results)
        return
    for result in results:
        _render_faults(result, changed=set(), model=None)


def _simulator_provider(ctx: click.Context, name: str) -> Provider:
    config = _context.state(ctx).loaded().config
    return _simulators(config.providers, (name,))[0]


def _fault_changes(
    outage: str | None,
    error_rate: str | None,
    rate_limit_rate: str | None,
    latency_p50: str | None,
    latency_p95: str | None,
    accuracy: str | None,
    assignments: tuple[str, ...],
) -> dict[str, Any]:
    import yaml

    from quality_gates.errors import UsageError
    from quality_gates.units import parse_latency_ms

    changes: dict[str, Any] = {}
    if outage:
        changes["outage"] = outage == "on"
    for key, value in (
        ("server_error_rate", error_rate),
        ("rate_limit_rate", rate_limit_rate),
        ("accuracy", accuracy),
    ):
        if value is not None:
            changes[key] = value  # the simulator validates ratios (0.2 or 20%)
    for key, value in (("latency_p50_ms", latency_p50), ("latency_p95_ms", latency_p95)):
        if value is not None:
            try:
                changes[key] = parse_latency_ms(value)
            except ValueError as exc:
                raise UsageError(f"--{key[:-3].replace('_', '-')}: {exc}") from None
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. hang_rate=0.05")
        changes[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return changes


def _render_faults(result: dict[str, Any], *, changed: set[str], model: str | None) -> None:
    from quality_gates.cli._output import console

    out = console()
    faults = result["faults"]
    out.print(
        f"[bold]{result['provider']}[/bold] ({result['protocol']})  profile {result['profile']}"
        f"  seed {result['seed']}  answer-key items {result.get('answer_key_items', 0)}"
    )
    keys = (
        "outage",
        "latency_p50_ms",
        "latency_p95_ms",
        "server_error_rate",
        "overloaded_rate",
        "rate_limit_rate",
        "hang_rate",
        "reset_rate",
        "stream_cut_rate",
        "accuracy",
        "toxicity_rate",
        "pii_rate",
    )
    line = "  ".join(
        f"{'*' if k in changed and not model else ''}{k}="
        + (f"{faults[k]:g}" if isinstance(faults[k], float) else str(faults[k]))
        for k in keys
    )
    out.print(f"  {line}", markup=False)
    for name, overrides in faults.get("models", {}).items():
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
        out.print(f"  model {name}: {shown}", markup=False)
    stats = result.get("stats")
    if stats:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats["outcomes"].items()))
        out.print(f"  {stats['requests']} requests: {outcomes or 'none yet'}", markup=False)
