"""The data plane: an OpenAI-compatible gateway with weighted routing, failover chains,
circuit breakers, stream-aware failover, a response cache, limits and telemetry.

Names are imported on first use so that the CLI's key and failover commands do not pay for
Starlette and the app when they only need the store-side services.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.gateway._app import AppSettings, GatewayApp, create_app
    from quality_gates.gateway._routing import Deployment, RoutePlan, RouteTable

_LAZY = {
    "_app": ("AppSettings", "GatewayApp", "create_app"),
    "_routing": ("Deployment", "RoutePlan", "RouteTable"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["AppSettings", "Deployment", "GatewayApp", "RoutePlan", "RouteTable", "create_app"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'quality_gates.gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quality_gates.gateway.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
