"""A canary window's requests split into the candidate's side and the baseline's side, each
judged on its own model's upstream attempts rather than on what the client finally got.

The gateway retries and fails over, so a client rarely sees a candidate's error: the request
is answered by a retry or by the next model of the chain. What the canary must judge is the
model's own outcome, read from the request's attempt rows:

- a request *reached the models* unless the cache answered it, it was refused before any
  upstream call (a limit, the queue) or its client left (499); a request every breaker
  refused reached them too: its model was unavailable;
- its model *failed* it when the first attempt was not the model's (it was skipped: breaker
  open, provider over its quota) or that first attempt failed (errors before any retry or
  failover, by class); a request answered by another model after failover is such a failure;
- the model's latency and TTFT are those of its own successful attempts;
- tokens, cost, refusals and unusable structured outputs (tool arguments that are not JSON
  or break the tool's schema, JSON that breaks the requested schema: the gateway's
  `output_check`) are those of the answers the model gave.

Client-visible outcomes (the status and latency the client got, how many requests another
model answered) are kept beside, for the report; they do not decide.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CACHED = ("hit", "stale")
NOT_TRIED = "not_tried"  # failure class: the model was skipped (breaker open, quota)
# Upstream refusals with no attempt that still say the model was unavailable.
UNAVAILABLE = ("circuit_open",)
# The client's fault: another model would refuse it too; neither side is judged on it.
CLIENT_FAULTS = ("bad_request",)
CLIENT_LEFT = "cancelled"  # request status when the client went away (499)


@dataclass
class Side:
    """One side of the comparison: the requests routed to it and its model's own outcome."""

    model: str
    requests: int = 0  # routed to this side (the share's numerator or its complement)
    cached: int = 0  # answered by the gateway's cache: says nothing of the model
    judged: int = 0  # reached the models
    failures: int = 0  # the model failed them (first attempt failed, or it was skipped)
    failure_classes: Counter[str] = field(default_factory=Counter)
    attempts: int = 0  # every call to the model, retries included
    attempt_errors: int = 0
    latency_ms: list[float] = field(default_factory=list)  # its successful attempts
    ttft_ms: list[float] = field(default_factory=list)
    output_tokens: list[float] = field(default_factory=list)  # its answers
    input_tokens: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    refusals: list[bool] = field(default_factory=list)
    outputs_checked: int = 0  # its answers to tools / response_format requests
    outputs_invalid: int = 0  # of them, unusable
    client_errors: int = 0  # requests the client saw fail (5xx)
    answered_by_other: int = 0  # the client got another model's answer
    client_latency_ms: list[float] = field(default_factory=list)

    def add(self, row: Mapping[str, Any]) -> None:
        """Count one request routed to this side."""
        self.requests += 1
        if str(row.get("cache") or "miss") in CACHED:
            self.cached += 1
            return
        if row.get("status") == CLIENT_LEFT:
            return  # the client left: a cut answer says nothing of the model
        attempts: list[Mapping[str, Any]] = list(row.get("attempts") or ())
        if not attempts and row.get("error_class") not in UNAVAILABLE:
            return  # refused before any upstream call: not the model's doing
        first = attempts[0] if attempts else None
        if first is not None and first.get("error_class") in CLIENT_FAULTS:
            return
        self.judged += 1
        self.client_latency_ms.append(float(row.get("latency_ms") or 0.0))
        if row.get("status") == "error":
            self.client_errors += 1
        if first is None or first.get("model_id") != self.model:
            self.failures += 1
            self.failure_classes[NOT_TRIED] += 1
        elif first.get("status") != "ok":
            self.failures += 1
            self.failure_classes[str(first.get("error_class") or "error")] += 1
        for attempt in attempts:
            if attempt.get("model_id") != self.model:
                continue
            self.attempts += 1
            if attempt.get("status") != "ok":
                self.attempt_errors += 1
                continue
            if attempt.get("latency_ms") is not None:
                self.latency_ms.append(float(attempt["latency_ms"]))
            if attempt.get("ttft_ms") is not None:
                self.ttft_ms.append(float(attempt["ttft_ms"]))
        answered_by = row.get("model_id")
        if row.get("status") != "ok" or answered_by is None:
            return
        if answered_by != self.model:
            self.answered_by_other += 1
            return
        self.output_tokens.append(float(row.get("output_tokens") or 0))
        self.input_tokens.append(float(row.get("input_tokens") or 0))
        self.cost.append(float(row.get("cost") or 0.0))
        verdict = row.get("output_check")
        if verdict is not None:
            self.outputs_checked += 1
            self.outputs_invalid += verdict != "valid"
        answer = row.get("answer")
        if answer is not None:
            from quality_gates.gates.scorers._text import is_refusal

            self.refusals.append(is_refusal(str(answer)))

    def values(self, metric: str) -> list[float]:
        """The sample of a continuous metric."""
        sample: list[float] = getattr(self, metric)
        return sample

    def to_json(self) -> dict[str, Any]:
        """What the report shows of this side: the model's own outcome and the client's."""
        judged = self.judged or None
        return {
            "model": self.model,
            "requests": self.requests,
            "cached": self.cached,
            "judged": self.judged,
            "failures": self.failures,
            "failure_rate": self.failures / judged if judged else None,
            "failure_classes": dict(self.failure_classes.most_common()),
            "attempts": self.attempts,
            "attempt_errors": self.attempt_errors,
            "latency_p50_ms": _median(self.latency_ms),
            "outputs_checked": self.outputs_checked,
            "outputs_invalid": self.outputs_invalid,
            "client": {
                "error_rate": self.client_errors / judged if judged else None,
                "answered_by_other": self.answered_by_other,
                "latency_p50_ms": _median(self.client_latency_ms),
            },
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def split(rows: Iterable[Mapping[str, Any]], *, candidate: str, baseline: str) -> tuple[Side, Side]:
    """(candidate side, baseline side) of the requests routed for the canary's alias: canary
    requests judge the candidate, the others the baseline."""
    canary, base = Side(candidate), Side(baseline)
    for row in rows:
        (canary if row.get("canary") else base).add(row)
    return canary, base
