"""A watch config pointed at local receivers, and a service on a controllable clock."""

from __future__ import annotations

from typing import Any

from tests.conftest import Workspace

from quality_gates.config import QualityGatesConfig, load_config
from quality_gates.watch._service import ExporterFactory, WatchService

PD_KEY_VARIABLE = "QG_TEST_PAGERDUTY_KEY"
PD_KEY = "R0UT1NGKEY0000000000000000000000"


def watch_config(
    ws: Workspace, base: str, *, rules: list[dict[str, Any]] | None = None, **sections: Any
) -> QualityGatesConfig:
    """The workspace's config with every channel pointed at `base` and fast retries."""
    config = load_config(ws.config_path).config
    data = config.model_dump(mode="json", by_alias=True)
    data["notifications"]["channels"] = [
        {"name": name, "type": "slack", "url": f"{base}/slack/{name}"}
        for name in ("ops-alerts", "ai-team", "infra-alerts", "security-alerts")
    ] + [
        {
            "name": "pagerduty",
            "type": "pagerduty",
            "routing_key": "${" + PD_KEY_VARIABLE + "}",
            "url": f"{base}/pagerduty/v2/enqueue",
        },
        {"name": "hooks", "type": "webhook", "url": f"{base}/webhook"},
    ]
    data["notifications"]["routes"].append({"channels": ["hooks"]})
    data["notifications"]["outbox"] = {
        "max_attempts": 50,
        "initial_backoff": "1s",
        "max_backoff": "4s",
    }
    if rules is not None:
        data["alerts"]["rules"] = rules
    data["alerts"]["slos"] = []
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return QualityGatesConfig.model_validate(data)


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(
    ws: Workspace,
    config: QualityGatesConfig,
    clock: Clock,
    exporters: ExporterFactory | None = None,
) -> WatchService:
    """A WatchService on the workspace's store with a fake clock (and the exporters given)."""
    return WatchService(ws.database, config, clock=clock, interval=1.0, exporters=exporters)
