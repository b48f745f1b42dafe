"""The whole quality-gates.yaml, and the checks that span its sections."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from quality_gates._suggest import did_you_mean
from quality_gates.config._alerts import AlertSettings
from quality_gates.config._base import (
    ENV_VAR_PATTERN,
    Duration,
    StrictModel,
    is_env_reference,
    looks_like_secret,
)
from quality_gates.config._environments import Environment
from quality_gates.config._gates import GateSettings
from quality_gates.config._gateway import GatewaySettings
from quality_gates.config._incidents import IncidentSettings
from quality_gates.config._notifications import Notifications
from quality_gates.config._observability import ObservabilitySettings
from quality_gates.config._providers import CREDENTIAL_FIELDS, Model, Provider
from quality_gates.config._remediation import EmergencySettings, RemediationSettings
from quality_gates.config._routines import RoutineSettings
from quality_gates.config._web import WebSettings

Path = tuple[str | int, ...]
SIMULATOR_ONLY_FIELDS = ("protocol", "port", "profile", "seed", "faults")


class StoreRetention(StrictModel):
    """How long telemetry is kept, per kind; null keeps it for good. The audit log is
    append-only and never pruned; incidents, their timelines and gate runs are records and
    are kept too."""

    requests: Duration | None = Field(
        30 * 86400.0, description="request rows and their attempts (roll-ups keep the figures)"
    )
    rollups: Duration | None = Field(400 * 86400.0, description="per-minute roll-ups")
    quality_samples: Duration | None = Field(30 * 86400.0, description="scored live answers")
    feedback: Duration | None = Field(90 * 86400.0, description="user feedback rows")
    alert_events: Duration | None = Field(180 * 86400.0, description="alert state changes")
    notifications: Duration | None = Field(
        90 * 86400.0, description="delivered, failed or skipped notifications (never pending)"
    )
    job_runs: Duration | None = Field(180 * 86400.0, description="routine runs")
    interval: Duration = Field(3600.0, gt=0, description="how often the watch leader prunes")


class StoreSettings(StrictModel):
    """Where state lives: SQLite beside the config by default, or a PostgreSQL URL."""

    url: str | None = Field(
        None, description="sqlite:///path.db or postgresql://user@host/db; ${VAR} allowed"
    )
    retention: StoreRetention = Field(default_factory=StoreRetention)


class QualityGatesConfig(StrictModel):
    """The root of quality-gates.yaml."""

    version: Literal[1] = 1
    project: str = "ai-service"
    store: StoreSettings = Field(default_factory=StoreSettings)
    providers: list[Provider] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    environments: dict[str, Environment] = Field(default_factory=dict)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    notifications: Notifications = Field(default_factory=Notifications)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    remediation: RemediationSettings = Field(default_factory=RemediationSettings)
    emergency: EmergencySettings = Field(default_factory=EmergencySettings)
    routines: RoutineSettings = Field(default_factory=RoutineSettings)

    @model_validator(mode="after")
    def _default_routines_fit(self) -> QualityGatesConfig:
        # The runbook's default routines name production and staging; a config without one
        # of them does not get a routine that could only fail. Written routines are kept.
        if "routines" not in self.model_fields_set and self.environments:
            names = list(self.environments)
            self.routines.jobs = [
                j for j in self.routines.jobs if j.alert_environment(names) in names
            ]
        return self

    def provider(self, name: str) -> Provider | None:
        """The provider called `name`."""
        return next((p for p in self.providers if p.name == name), None)

    def model(self, model_id: str) -> Model | None:
        """The model with id `model_id`."""
        return next((m for m in self.models if m.id == model_id), None)

    def environment(self, name: str) -> Environment | None:
        """The environment called `name`."""
        return self.environments.get(name)


@dataclass(frozen=True)
class Finding:
    """One problem found in the config: where, what, and whether it blocks loading."""

    path: Path
    message: str
    level: Literal["error", "warning"] = "error"


def _unknown(kind: str, name: str, known: list[str]) -> str:
    listing = ", ".join(sorted(known)) if known else "none defined"
    return f"unknown {kind} {name!r}{did_you_mean(name, known)} (known: {listing})"


def cross_check(config: QualityGatesConfig) -> list[Finding]:
    """Checks that span sections: references by name, duplicates, simulator-only fields."""
    findings: list[Finding] = []
    provider_names = [p.name for p in config.providers]
    model_ids = [m.id for m in config.models]

    seen: dict[str, int] = {}
    ports: dict[int, str] = {}
    for i, provider in enumerate(config.providers):
        if provider.name in seen:
            findings.append(
                Finding(("providers", i, "name"), f"provider {provider.name!r} is defined twice")
            )
        seen[provider.name] = i
        if provider.kind == "simulator":
            if provider.protocol is None:
                findings.append(
                    Finding(
                        ("providers", i, "protocol"),
                        "a simulator needs protocol: bedrock, gemini, openai or anthropic",
                    )
                )
            if provider.port:
                if provider.port in ports:
                    findings.append(
                        Finding(
                            ("providers", i, "port"),
                            f"port {provider.port} is also used by {ports[provider.port]!r}",
                        )
                    )
                ports[provider.port] = provider.name
        else:
            for field in SIMULATOR_ONLY_FIELDS:
                if field in provider.model_fields_set:
                    findings.append(
                        Finding(("providers", i, field), f"{field} applies only to kind: simulator")
                    )
        allowed = list(CREDENTIAL_FIELDS.get(provider.kind, {}))
        for field, variable in provider.credentials.items():
            path: Path = ("providers", i, "credentials", field)
            if field not in allowed:
                findings.append(
                    Finding(
                        path,
                        f"{provider.kind} takes no credential {field!r}"
                        f"{did_you_mean(field, allowed)} (accepted: "
                        f"{', '.join(allowed)})",
                    )
                )
            elif looks_like_secret(variable):
                findings.append(
                    Finding(
                        path,
                        "plain-text secret; put the name of an environment variable here instead",
                        "warning",
                    )
                )
            elif not ENV_VAR_PATTERN.match(variable):
                findings.append(
                    Finding(
                        path,
                        f"{variable!r} is not an environment variable name "
                        "(letters, digits and _; e.g. OPENAI_API_KEY)",
                    )
                )

    seen_models: set[str] = set()
    for i, model in enumerate(config.models):
        if model.id in seen_models:
            findings.append(Finding(("models", i, "id"), f"model {model.id!r} is defined twice"))
        seen_models.add(model.id)
        if model.provider not in provider_names:
            findings.append(
                Finding(
                    ("models", i, "provider"), _unknown("provider", model.provider, provider_names)
                )
            )

    for env_name, env in config.environments.items():
        for alias, target in env.aliases.items():
            if target not in model_ids:
                findings.append(
                    Finding(
                        ("environments", env_name, "aliases", alias),
                        _unknown("model", target, model_ids),
                    )
                )
        primaries: set[str] = set()
        for j, chain in enumerate(env.failover_chains):
            for position in ("primary", "secondary", "tertiary"):
                member = getattr(chain, position)
                if member and member not in model_ids:
                    findings.append(
                        Finding(
                            ("environments", env_name, "failover_chains", j, position),
                            _unknown("model", member, model_ids),
                        )
                    )
            if len(set(chain.models)) != len(chain.models):
                findings.append(
                    Finding(
                        ("environments", env_name, "failover_chains", j),
                        "a chain names the same model twice",
                    )
                )
            if chain.primary in primaries:
                findings.append(
                    Finding(
                        ("environments", env_name, "failover_chains", j, "primary"),
                        f"{chain.primary!r} already has a failover chain",
                    )
                )
            primaries.add(chain.primary)
        for provider_name in env.traffic:
            if provider_name not in provider_names:
                findings.append(
                    Finding(
                        ("environments", env_name, "traffic", provider_name),
                        _unknown("provider", provider_name, provider_names),
                    )
                )

    channel_names = [c.name for c in config.notifications.channels]
    for i, route in enumerate(config.notifications.routes):
        for channel in route.channels:
            if channel not in channel_names:
                findings.append(
                    Finding(
                        ("notifications", "routes", i, "channels"),
                        _unknown("channel", channel, channel_names),
                    )
                )
    for contact, spec in config.incidents.contacts.items():
        for channel in spec.channels:
            if channel not in channel_names:
                findings.append(
                    Finding(
                        ("incidents", "contacts", contact, "channels"),
                        _unknown("channel", channel, channel_names),
                    )
                )
    findings += _trigger_findings(config)
    findings += _routine_findings(config)
    contacts = list(config.incidents.contacts)
    for i, row in enumerate(config.incidents.escalation):
        for position in ("primary", "secondary"):
            who = getattr(row, position)
            if who not in contacts:
                findings.append(
                    Finding(
                        ("incidents", "escalation", i, position),
                        f"{who!r} is not in incidents.contacts, so escalation cannot notify them",
                        "warning",
                    )
                )
    return findings


def _trigger_findings(config: QualityGatesConfig) -> list[Finding]:
    """Remediation triggers written in the file that name no alert rule (they never fire)."""
    rules = [r.name for r in config.alerts.rules]
    written: list[tuple[Path, list[str]]] = []
    for action in ("rollback", "failover"):
        policy = getattr(config.remediation, action)
        if "triggers" in policy.model_fields_set:
            written.append((("remediation", action, "triggers"), policy.triggers))
        for env, override in config.remediation.environments.items():
            triggers = (override.get(action) or {}).get("triggers")
            if isinstance(triggers, list):
                written.append((("remediation", "environments", env, action, "triggers"), triggers))
    by_name = {r.name: r for r in config.alerts.rules}
    findings = []
    for path, names in written:
        for index, name in enumerate(names):
            if name not in rules:
                findings.append(
                    Finding(
                        (*path, index),
                        f"no alert rule is called {name!r}, so it triggers nothing"
                        f"{did_you_mean(name, rules)}",
                        "warning",
                    )
                )
            elif by_name[name].severity == "info" or not by_name[name].opens_incident:
                findings.append(
                    Finding(
                        (*path, index),
                        f"{name!r} only notifies (info, or an efficiency rule without "
                        "`incident: true`), so it never triggers remediation",
                        "warning",
                    )
                )
    return findings


def _routine_findings(config: QualityGatesConfig) -> list[Finding]:
    """Routines defined twice, or raising their alert in an environment the config lacks."""
    findings: list[Finding] = []
    seen: set[str] = set()
    environments = list(config.environments)
    if "routines" not in config.model_fields_set:
        return findings
    for i, job in enumerate(config.routines.jobs):
        if job.name in seen:
            findings.append(
                Finding(("routines", "jobs", i, "name"), f"routine {job.name!r} is defined twice")
            )
        seen.add(job.name)
        named = job.alert_environment(environments)
        if environments and named not in environments:
            field = "environment" if job.environment else "command"
            findings.append(
                Finding(
                    ("routines", "jobs", i, field),
                    f"routine {job.name!r} concerns {_unknown('environment', named, environments)}",
                    "warning",
                )
            )
    return findings


def _strings(data: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*path, index))
    elif isinstance(data, str):
        yield path, data


def secret_findings(raw: Any) -> list[Finding]:
    """Warnings for every string in the file that reads like a credential in plain text."""
    findings = []
    for path, value in _strings(raw):
        if "credentials" in path:
            continue  # cross_check reports these with a more specific message
        if not is_env_reference(value) and looks_like_secret(value):
            findings.append(
                Finding(
                    path,
                    "plain-text secret; use a ${VAR} reference to an environment variable",
                    "warning",
                )
            )
    return findings
