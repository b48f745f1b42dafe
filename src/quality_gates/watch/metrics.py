"""The watch plane on `/metrics`: alert states, open incidents and the outbox, read from the
store at scrape time (a custom collector, so nothing drifts between scrapes).

Register it on the gateway's registry: `registry.register(WatchCollector(database))`;
`serve` does when it runs the watch. A store that does not answer leaves the families out of
that scrape rather than failing /metrics (the gateway's own `qg_gateway_store_up` says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from quality_gates.store.db import Database
from quality_gates.store.registry import get_meta

if TYPE_CHECKING:
    from quality_gates.watch._evaluate import LocalEvaluation

log = logging.getLogger("quality_gates.watch")


class WatchCollector:
    """qg_watch_alerts, qg_watch_incidents_open, qg_watch_notifications and the evaluator's
    last run, per the labels an operator filters on (never an incident id)."""

    def __init__(
        self, database: Database, local: Callable[[], LocalEvaluation | None] | None = None
    ) -> None:
        self.database = database
        self.local = local  # the embedded watch's judgement on in-memory figures, if any
        self._failing = False

    def describe(self) -> list[Any]:
        """Nothing up front: the families depend on the store (the registry calls collect)."""
        return []

    def collect(self) -> Iterator[Any]:
        """Read the store now; nothing when it does not answer (`qg_store_up` says why),
        except what the watch judged on this gateway's in-memory figures meanwhile."""
        families = list(self._local_families())
        try:
            families += list(self._families())
        except Exception:  # the store's, whatever its driver: /metrics must still answer
            if not self._failing:  # one line per outage, not one per scrape
                log.warning("the watch's store metrics are left out of scrapes: the store failed")
            self._failing = True
            return iter(families)
        if self._failing:
            log.info("the watch's store metrics are back in scrapes")
        self._failing = False
        return iter(families)

    def _local_families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        if self.local is None:
            return
        family = GaugeMetricFamily(
            "qg_watch_store_down_breaches",
            "While the store is unreachable: rules breaking their threshold on this "
            "gateway's in-memory figures (no incident or notification until it is back)",
            labels=["environment", "rule", "severity"],
        )
        evaluation = self.local()
        counts: dict[tuple[str, str, str], int] = {}
        for breach in evaluation.breaches if evaluation is not None else []:
            key = (breach.labels.get("environment", ""), breach.rule, breach.severity)
            counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            family.add_metric(list(key), n)
        yield family

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
