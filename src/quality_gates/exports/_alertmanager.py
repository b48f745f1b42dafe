"""`rules export --format alertmanager`: an Alertmanager configuration for the config's
notification channels, to pair with the exported Prometheus rules.

The exported alerts carry `type` (provider, performance, quality, ...) and `priority` (the
incident severity P0-P3 the watch would give them), so each notification route of the config
becomes an Alertmanager route matching the same types and severities, with `continue: true`
because the watch sends an incident to every route that matches it. The config's inhibitions
become `inhibit_rules` on the `metric` label with the same `equal` labels (the environment
always among them, as in the watch). Secrets never enter the file: a `${VAR}` URL or routing
key becomes a `*_file` path under `secrets_dir`, which the operator fills from the
environment; channel headers other than a bearer token cannot be expressed and are listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.config._base import env_variables_in
from quality_gates.exports._prometheus import dump_yaml, duration

if TYPE_CHECKING:
    from quality_gates.config import Channel, QualityGatesConfig

DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"
NULL_RECEIVER = "quality-gates-unrouted"  # alerts no route of the config sends anywhere
PAGING = frozenset({"P0", "P1"})
GROUP_BY = ["alertname", "environment", "provider"]
_BEARER = re.compile(r"^\s*bearer\s+(?P<token>\S+)\s*$", re.IGNORECASE)
_LABELS = {
    "environment": "environment",
    "alias": "alias",
    "model_id": "model",
    "provider": "provider",
}


@dataclass
class AlertmanagerExport:
    """The configuration as data and what it could not carry over."""

    data: dict[str, Any]
    secret_files: list[str]
    not_exported: list[str]


def _secret(value: str, secrets_dir: str, files: list[str]) -> tuple[str, str]:
    """('file', path) for a `${VAR}` reference, else ('value', the literal)."""
    names = env_variables_in(value)
    if names and value.strip() == f"${{{names[0]}}}":
        path = f"{secrets_dir.rstrip('/')}/{names[0]}"
        files.append(f"{path} <- ${names[0]}")
        return "file", path
    return "value", value


def _receiver(
    channel: Channel, secrets_dir: str, files: list[str], skipped: list[str]
) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": channel.name}
    resolved = channel.send_resolved
    if channel.type == "pagerduty":
        kind, key = _secret(channel.routing_key or "", secrets_dir, files)
        config: dict[str, Any] = {"send_resolved": resolved}
        config["routing_key_file" if kind == "file" else "routing_key"] = key
        if channel.url:
            config["url"] = channel.url
        receiver["pagerduty_configs"] = [config]
        return receiver
    kind, url = _secret(channel.url or "", secrets_dir, files)
    if channel.type == "slack":
        config = {"send_resolved": resolved, "api_url_file" if kind == "file" else "api_url": url}
        if channel.slack_channel:
            config["channel"] = channel.slack_channel
        config["title"] = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}"
        config["text"] = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}"
        receiver["slack_configs"] = [config]
        return receiver
    if kind == "file":
        skipped.append(
            f"channel {channel.name}: its webhook URL comes from ${{...}} and Alertmanager 0.25 "
            "cannot read a webhook URL from a file (0.27 has url_file); the receiver is left "
            "empty: add `webhook_configs: [{url: ...}]` to it"
        )
        return receiver
    config = {"send_resolved": resolved, "url": url}
    for header, value in channel.headers.items():
        match = _BEARER.match(value)
        if header.lower() == "authorization" and match:
            token_kind, token = _secret(match.group("token"), secrets_dir, files)
            auth = {"type": "Bearer"}
            auth["credentials_file" if token_kind == "file" else "credentials"] = token
            config["http_config"] = {"authorization": auth}
        else:
            skipped.append(
                f"channel {channel.name}: header {header} (Alertmanager's webhook sends only "
                "an Authorization header)"
            )
    receiver["webhook_configs"] = [config]
    return receiver


def alertmanager_config(
    config: QualityGatesConfig, secrets_dir: str = DEFAULT_SECRETS_DIR
) -> AlertmanagerExport:
    """The Alertmanager configuration for the config's channels, routes and inhibitions."""
    files: list[str] = []
    skipped: list[str] = []
    notifications = config.notifications
    used = {name for route in notifications.routes for name in route.channels}
    receivers = [{"name": NULL_RECEIVER}] + [
        _receiver(channel, secrets_dir, files, skipped)
        for channel in notifications.channels
        if channel.name in used
    ]
    routes: list[dict[str, Any]] = []
    for route in notifications.routes:
        matchers = []
        if route.types:
            matchers.append(f'type=~"{"|".join(route.types)}"')
        if route.severities:
            matchers.append(f'priority=~"{"|".join(route.severities)}"')
        for channel in route.channels:
            entry: dict[str, Any] = {"receiver": channel, "continue": True}
            if matchers:
                entry["matchers"] = list(matchers)
            if route.severities and set(route.severities) <= PAGING:
                entry["group_wait"] = "10s"  # a page goes out without the usual wait
            routes.append(entry)
    inhibit_rules = [
        {
            "source_matchers": [f'metric="{rule.source_metric}"'],
            "target_matchers": [f'metric=~"{"|".join(rule.target_metrics)}"'],
            "equal": ["environment", *(_LABELS[n] for n in rule.equal if n != "environment")],
        }
        for rule in config.alerts.inhibit
    ]
    data: dict[str, Any] = {
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": GROUP_BY,
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": duration(4 * 3600),
            "routes": routes,
        },
        "receivers": receivers,
    }
    if inhibit_rules:
        data["inhibit_rules"] = inhibit_rules
    return AlertmanagerExport(data, files, skipped)


def render(export: AlertmanagerExport) -> str:
    """The configuration as YAML, with a header saying what to provide and what is left out."""
    header = [
        "# Alertmanager configuration generated by `quality-gates rules export --format "
        "alertmanager`",
        "# from the notification channels, routes and inhibitions of the quality-gates config;",
        "# pair it with `rules export --format prometheus`. Check: `amtool check-config FILE`.",
        "# Routes match the alerts' `type` and `priority` (the incident severity the watch gives",
        "# them before any escalation), like the config's notification routes.",
    ]
    if export.secret_files:
        header.append("# Secrets are read from files (write each from its environment variable):")
        header.extend(f"#   {line}" for line in export.secret_files)
    if export.not_exported:
        header.append("# Not carried over:")
        header.extend(f"#   - {line}" for line in export.not_exported)
    return "\n".join(header) + "\n" + dump_yaml(export.data)
