"""Per-item outcomes of a run, kept compact (no answer text) for the statistics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer's numbers."""

    passed: bool
    score: float
    latency_ms: float
    ttft_ms: float
    cost: float
    input_tokens: int
    output_tokens: int
    error_class: str | None
    toxic: bool
    pii: bool
    refused: bool
    cached: bool

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """From a result record (JSONL line or stored row)."""
        flags = record.get("flags") or {}
        return cls(
            passed=bool(record.get("passed")),
            score=float(record.get("score") or 0.0),
            latency_ms=float(record.get("latency_ms") or 0.0),
            ttft_ms=float(record.get("ttft_ms") or 0.0),
            cost=float(record.get("cost") or 0.0),
            input_tokens=int(record.get("input_tokens") or 0),
            output_tokens=int(record.get("output_tokens") or 0),
            error_class=record.get("error_class"),
            toxic=bool(flags.get("profanity") or flags.get("moderation") or flags.get("toxic")),
            pii=bool(flags.get("pii")),
            refused=bool(flags.get("refused")),
            cached=bool(record.get("cached")),
        )


@dataclass
class Tally:
    """Outcomes by role ("candidate", "baseline") and item id, one per repetition."""

    roles: dict[str, dict[str, list[Outcome]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, role: str, item_id: str, outcome: Outcome) -> None:
        """Record one outcome."""
        items = self.roles.setdefault(role, {})
        if item_id not in items:
            items[item_id] = []
            if role == "candidate":
                self.order.append(item_id)
        items[item_id].append(outcome)

    def add_record(self, record: dict[str, Any]) -> None:
        """Record a result record."""
        self.add(str(record["role"]), str(record["id"]), Outcome.from_record(record))

    def outcomes(self, role: str) -> dict[str, list[Outcome]]:
        """Item id -> outcomes for a role."""
        return self.roles.get(role, {})

    def paired_ids(self, a: str = "candidate", b: str = "baseline") -> list[str]:
        """Ids answered under both roles, in the candidate's order."""
        other = self.roles.get(b, {})
        return [i for i in self.order if i in other]

    def flat(self, role: str) -> Iterable[Outcome]:
        """Every outcome of a role."""
        for outcomes in self.outcomes(role).values():
            yield from outcomes
