"""The checks `validate` runs: the config, the credentials an environment needs, and a live
probe of every provider it sends traffic to."""

from __future__ import annotations

from quality_gates.validation._framework import CheckResult, ValidationContext, check


@check("config", "quality-gates.yaml validates", needs_config=False, order=10)
def config_lint(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL with every problem when the config does not load; WARN for its warnings."""
    where = str(ctx.config_path) if ctx.config_path else "quality-gates.yaml"
    if ctx.config_error is not None:
        problems = ctx.config_error.problems or [str(ctx.config_error)]
        summary = f"{len(problems)} problem(s): {problems[0]}"
        return [CheckResult("config", "FAIL", summary, {"file": where, "problems": problems})]
    warnings = ctx.loaded.warnings if ctx.loaded is not None else []
    if warnings:
        summary = f"{len(warnings)} warning(s): {warnings[0]}"
        return [CheckResult("config", "WARN", summary, {"file": where, "warnings": warnings})]
    return [CheckResult("config", "PASS", f"{where} is valid", {"file": where})]


@check("credentials", "every credential the environment needs is set", order=20)
def credentials(ctx: ValidationContext) -> list[CheckResult]:
    """FAIL naming each unset variable of each provider the environment uses."""
    missing: dict[str, list[str]] = {}
    for name in ctx.environment_providers():
        provider = ctx.config.provider(name)
        if provider is not None and provider.missing_credentials():
            missing[name] = provider.missing_credentials()
    if missing:
        listing = "; ".join(f"{p}: {', '.join(v)}" for p, v in missing.items())
        return [CheckResult("credentials", "FAIL", f"unset: {listing}", {"missing": missing})]
    used = ctx.environment_providers()
    return [
        CheckResult(
            "credentials",
            "PASS",
            f"set for {', '.join(used) or 'no providers'}",
            {"providers": used},
        )
    ]


@check("notifications", "notification channels have their variables", order=30)
def notification_variables(ctx: ValidationContext) -> list[CheckResult]:
    """WARN for channels whose URL or key variables are unset (they cannot notify)."""
    unset = {
        channel.name: channel.unset_variables()
        for channel in ctx.config.notifications.channels
        if channel.unset_variables()
    }
    if unset:
        listing = "; ".join(f"{c}: {', '.join(v)}" for c, v in unset.items())
        return [
            CheckResult(
                "notifications", "WARN", f"channels that cannot send: {listing}", {"unset": unset}
            )
        ]
    count = len(ctx.config.notifications.channels)
    return [CheckResult("notifications", "PASS", f"{count} channel(s) configured")]


@check("providers", "each provider of the environment answers a live probe", order=40)
async def provider_probes(ctx: ValidationContext) -> list[CheckResult]:
    """One result per provider: PASS with latency, WARN when slower than the environment's
    P95 threshold, FAIL with the error class."""
    from quality_gates.providers import probe_providers, probe_to_dict

    names = ctx.environment_providers()
    if not names:
        return [CheckResult("providers", "WARN", "the environment sends traffic to no provider")]
    env = ctx.config.environment(ctx.environment)
    limit_ms = env.thresholds.p95_latency_ms if env is not None else None
    probes = await probe_providers(ctx.config, names, timeout=ctx.probe_timeout)
    results = []
    for probe in probes:
        ctx.probes[probe.provider] = probe
        evidence = probe_to_dict(probe, ctx.config)
        name = f"providers:{probe.provider}"
        if not probe.healthy:
            summary = f"{probe.error_class}: {probe.detail}"
            results.append(CheckResult(name, "FAIL", summary, evidence))
        elif limit_ms is not None and probe.latency_ms > limit_ms:
            summary = f"healthy but slow: {probe.latency_ms:.0f} ms > P95 limit {limit_ms:.0f} ms"
            results.append(CheckResult(name, "WARN", summary, evidence))
        else:
            results.append(
                CheckResult(name, "PASS", f"healthy in {probe.latency_ms:.0f} ms", evidence)
            )
    return results


@check("notification-reachability", "notification endpoints answer a connection", order=35)
async def notification_reachability(ctx: ValidationContext) -> list[CheckResult]:
    """WARN for each channel whose endpoint does not accept a TCP connection (its messages
    would wait in the outbox); nothing is posted."""
    import asyncio
    from urllib.parse import urlsplit

    results = []
    for channel in ctx.config.notifications.channels:
        if channel.unset_variables():
            continue
        url = channel.target_url
        if not url:
            continue
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        name = f"notification-reachability:{channel.name}"
        try:
            async with asyncio.timeout(min(ctx.probe_timeout, 3.0)):
                _, writer = await asyncio.open_connection(parts.hostname, port)
            writer.close()
            results.append(CheckResult(name, "PASS", f"{parts.hostname}:{port} accepts"))
        except (OSError, TimeoutError) as exc:
            results.append(
                CheckResult(
                    name,
                    "WARN",
                    f"{parts.hostname}:{port} unreachable ({type(exc).__name__}); messages "
                    "wait in the outbox and retry",
                )
            )
    return results
