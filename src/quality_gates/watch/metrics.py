"""The watch plane on `/metrics`: alert states, open incidents and the outbox, read from the
store at scrape time (a custom collector, so nothing drifts between scrapes).

Register it on the gateway's registry: `registry.register(WatchCollector(database))`;
`serve` does when it runs the watch. A store that does not answer leaves the families out of
that scrape rather than failing /metrics (the gateway's own `qg_gateway_store_up` says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from quality_gates.store.db import Database
from quality_gates.store.registry import get_meta

log = logging.getLogger("quality_gates.watch")


class WatchCollector:
    """qg_watch_alerts, qg_watch_incidents_open, qg_watch_notifications and the evaluator's
    last run, per the labels an operator filters on (never an incident id)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def describe(self) -> list[Any]:
        """Nothing up front: the families depend on the store (the registry calls collect)."""
        return []

    def collect(self) -> Iterator[Any]:
        """Read the store now; nothing when it does not answer (`qg_store_up` says why)."""
        try:
            families = list(self._families())
        except Exception:  # the store's, whatever its driver: /metrics must still answer
            log.warning("the watch metrics were left out of this scrape: the store failed")
            return iter(())
        return iter(families)

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        conn = self.database.shared()
        alerts = GaugeMetricFamily(
            "qg_watch_alerts",
            "Alerts pending or firing, by rule (muted: silenced or inhibited)",
            labels=["environment", "rule", "severity", "state", "muted"],
        )
        for row in conn.execute(
            "SELECT environment, rule, severity, state, "
            "(silenced_by IS NOT NULL OR inhibited_by IS NOT NULL) AS muted, COUNT(*) AS n "
            "FROM alert_states WHERE state IN ('pending', 'firing') "
            "GROUP BY environment, rule, severity, state, muted"
        ):
            labels = [row["environment"], row["rule"], row["severity"], row["state"]]
            alerts.add_metric([*labels, "true" if row["muted"] else "false"], row["n"])
        yield alerts
        incidents = GaugeMetricFamily(
            "qg_watch_incidents_open",
            "Open incidents by severity and state",
            labels=["environment", "severity", "state"],
        )
        for row in conn.execute(
            "SELECT environment, severity, state, COUNT(*) AS n FROM incidents WHERE state IN "
            "('investigating', 'identified', 'monitoring') GROUP BY environment, severity, state"
        ):
            incidents.add_metric([row["environment"], row["severity"], row["state"]], row["n"])
        yield incidents
        outbox = GaugeMetricFamily(
            "qg_watch_notifications",
            "Outbox messages by channel and status",
            labels=["channel", "status"],
        )
        for row in conn.execute(
            "SELECT channel, status, COUNT(*) AS n FROM notifications GROUP BY channel, status"
        ):
            outbox.add_metric([row["channel"], row["status"]], row["n"])
        yield outbox
        last = get_meta(conn, "watch_last_evaluation")
        if last is not None:
            yield GaugeMetricFamily(
                "qg_watch_last_evaluation_age_seconds",
                "Seconds since the evaluator last ran (alert if it stops)",
                value=max(0.0, time.time() - float(last)),
            )
