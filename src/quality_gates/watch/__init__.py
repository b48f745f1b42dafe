"""The watch plane: window metrics, alert rules, notifications, incidents and exports.

Light to import: heavy parts (aiohttp, boto3, OpenTelemetry) load inside the functions that
use them. Other planes use `record_event` and `current_incident` (see `watch.incidents`).
"""

from quality_gates.watch.incidents import current_incident, record_event

__all__ = ["current_incident", "record_event"]
