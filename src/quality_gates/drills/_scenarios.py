"""The four drills: which fault each injects, on what, and which figures judge it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LATENCY_SPIKE_MS = (4000.0, 6000.0)  # p50, p95 while the spike lasts: over the 3 s rule
REGRESSED_ACCURACY = 0.1


@dataclass(frozen=True)
class Scenario:
    """One drill: its fault and the figures judged against the targets."""

    name: str
    summary: str
    judged: tuple[str, ...]
    every_provider: bool = False
    per_model: bool = False  # the fault is laid on the current model only
    providers_down: int = 1  # how many providers of the current model's chain fail

    def fault(self, provider_model: str | None) -> dict[str, Any]:
        """The body of PUT /_sim/faults that injects the fault."""
        if self.name == "latency-spike":
            p50, p95 = LATENCY_SPIKE_MS
            return {"latency_p50_ms": p50, "latency_p95_ms": p95}
        if self.name == "quality-regression":
            return {"models": {str(provider_model): {"accuracy": REGRESSED_ACCURACY}}}
        return {"outage": True}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "provider-outage",
            "the provider answers 503 to everything; breakers and the watch's failover move "
            "traffic along the chain, then it fails back in steps",
            ("detection_s", "failover_s", "recovery_s", "total_recovery_s", "failed_pct"),
        ),
        Scenario(
            "latency-spike",
            "the provider's P95 goes over the latency threshold; remediation moves its traffic",
            ("detection_s", "failover_s", "recovery_s", "total_recovery_s", "failed_pct"),
        ),
        Scenario(
            "quality-regression",
            "the current model's accuracy drops; golden probes and the quality rule fire and "
            "`current` rolls back to previous-stable",
            ("detection_s", "rollback_s", "recovery_s", "total_recovery_s", "failed_pct"),
            per_model=True,
        ),
        Scenario(
            "two-provider-outage",
            "the current model's provider and the next provider of its failover chain answer "
            "503 to everything; the last provider of the chain serves every request",
            ("detection_s", "failover_s", "recovery_s", "total_recovery_s", "failed_pct"),
            providers_down=2,
        ),
        Scenario(
            "multi-provider-outage",
            "every provider is down; degraded service serves stale cache answers and queues",
            ("detection_s", "failover_s", "recovery_s", "total_recovery_s", "failed_pct"),
            every_provider=True,
        ),
    )
}
