"""quality-gates.yaml: pydantic models, loading with file:line errors, and safe edits.

Names are imported on first use (PEP 562) so that commands which never validate the file
(`--help`, `status` on an unchanged config) do not pay pydantic's ~200 ms import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from quality_gates.config._locate import CONFIG_ENV, CONFIG_NAMES, find_config
from quality_gates.config._secrets import looks_like_secret, resolve_env
from quality_gates.config._snapshot import ConfigSnapshot

if TYPE_CHECKING:
    from quality_gates.config._alerts import (
        METRICS,
        AlertRule,
        AlertSettings,
        BurnWindow,
        InhibitRule,
        Slo,
    )
    from quality_gates.config._editing import flatten, get_value, set_value, write_atomically
    from quality_gates.config._environments import (
        ENVIRONMENT_NAMES,
        STANDARD_ALIASES,
        Environment,
        FailoverChain,
        Thresholds,
        parse_traffic,
    )
    from quality_gates.config._gates import (
        CanaryMetric,
        CanarySettings,
        GateSettings,
        MetricPolicy,
        PerformanceSettings,
    )
    from quality_gates.config._gateway import (
        BreakerSettings,
        CacheSettings,
        GatewaySettings,
        KeyLimit,
        LimitSettings,
        RetrySettings,
        TelemetrySettings,
    )
    from quality_gates.config._incidents import (
        SEVERITY_ORDER,
        EscalationRule,
        IncidentSettings,
        SeverityLevel,
    )
    from quality_gates.config._loader import LoadedConfig, load_config, parse_config_text
    from quality_gates.config._notifications import Channel, NotificationRoute, Notifications
    from quality_gates.config._observability import (
        CloudWatchSettings,
        LogSettings,
        ObservabilitySettings,
        OpenTelemetrySettings,
    )
    from quality_gates.config._providers import Model, Price, Provider, Quotas
    from quality_gates.config._remediation import (
        DegradedTargets,
        EmergencySettings,
        FailbackPolicy,
        FailoverPolicy,
        ProbeSettings,
        RemediationPolicy,
        RemediationSettings,
        RollbackPolicy,
        SamplingSettings,
    )
    from quality_gates.config._root import QualityGatesConfig, StoreRetention, StoreSettings
    from quality_gates.config._simulator import SimulatorFaults, profile_faults
    from quality_gates.config._starter import render_starter
    from quality_gates.config._web import StatusPageSettings, WebSettings

_LAZY = {
    "_alerts": ("METRICS", "AlertRule", "AlertSettings", "BurnWindow", "InhibitRule", "Slo"),
    "_editing": ("flatten", "get_value", "set_value", "write_atomically"),
    "_environments": (
        "ENVIRONMENT_NAMES",
        "STANDARD_ALIASES",
        "Environment",
        "FailoverChain",
        "Thresholds",
        "parse_traffic",
    ),
    "_gates": (
        "CanaryMetric",
        "CanarySettings",
        "GateSettings",
        "MetricPolicy",
        "PerformanceSettings",
    ),
    "_gateway": (
        "BreakerSettings",
        "CacheSettings",
        "GatewaySettings",
        "KeyLimit",
        "LimitSettings",
        "RetrySettings",
        "TelemetrySettings",
    ),
    "_incidents": ("SEVERITY_ORDER", "EscalationRule", "IncidentSettings", "SeverityLevel"),
    "_loader": ("LoadedConfig", "load_config", "parse_config_text"),
    "_notifications": ("Channel", "NotificationRoute", "Notifications"),
    "_observability": (
        "CloudWatchSettings",
        "LogSettings",
        "ObservabilitySettings",
        "OpenTelemetrySettings",
    ),
    "_providers": ("Model", "Price", "Provider", "Quotas"),
    "_remediation": (
        "DegradedTargets",
        "EmergencySettings",
        "FailbackPolicy",
        "FailoverPolicy",
        "ProbeSettings",
        "RemediationPolicy",
        "RemediationSettings",
        "RollbackPolicy",
        "SamplingSettings",
    ),
    "_root": ("QualityGatesConfig", "StoreRetention", "StoreSettings"),
    "_simulator": ("SimulatorFaults", "profile_faults"),
    "_starter": ("render_starter",),
    "_web": ("StatusPageSettings", "WebSettings"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAMES",
    "ENVIRONMENT_NAMES",
    "METRICS",
    "SEVERITY_ORDER",
    "STANDARD_ALIASES",
    "AlertRule",
    "AlertSettings",
    "BreakerSettings",
    "BurnWindow",
    "CacheSettings",
    "CanaryMetric",
    "CanarySettings",
    "Channel",
    "CloudWatchSettings",
    "ConfigSnapshot",
    "DegradedTargets",
    "EmergencySettings",
    "Environment",
    "EscalationRule",
    "FailbackPolicy",
    "FailoverChain",
    "FailoverPolicy",
    "GateSettings",
    "GatewaySettings",
    "IncidentSettings",
    "InhibitRule",
    "KeyLimit",
    "LimitSettings",
    "LoadedConfig",
    "LogSettings",
    "MetricPolicy",
    "Model",
    "NotificationRoute",
    "Notifications",
    "ObservabilitySettings",
    "OpenTelemetrySettings",
    "PerformanceSettings",
    "Price",
    "ProbeSettings",
    "Provider",
    "QualityGatesConfig",
    "Quotas",
    "RemediationPolicy",
    "RemediationSettings",
    "RetrySettings",
    "RollbackPolicy",
    "SamplingSettings",
    "SeverityLevel",
    "SimulatorFaults",
    "Slo",
    "StatusPageSettings",
    "StoreRetention",
    "StoreSettings",
    "TelemetrySettings",
    "Thresholds",
    "WebSettings",
    "find_config",
    "flatten",
    "get_value",
    "load_config",
    "looks_like_secret",
    "parse_config_text",
    "parse_traffic",
    "profile_faults",
    "render_starter",
    "resolve_env",
    "set_value",
    "write_atomically",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'quality_gates.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quality_gates.config.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
