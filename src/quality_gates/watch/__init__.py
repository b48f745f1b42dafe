"""The watch plane: window metrics, alert rules, notifications, incidents, remediation and
exports.

Light to import: heavy parts (aiohttp, boto3, OpenTelemetry) load inside the functions that
use them, and the names below load on first use (PEP 562), so `status` reading a submodule
does not pay for the incident machinery. Other planes use `record_event` and
`current_incident` (see `watch.incidents`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.incidents import current_incident, record_event

__all__ = ["current_incident", "record_event"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from quality_gates import incidents

        value = getattr(incidents, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'quality_gates.watch' has no attribute {name!r}")
