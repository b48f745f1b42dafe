"""Scorers: turn an answer into pass/fail and a score. Build them from assertion specs
(`{"type": "contains", "value": "Paris"}`) with `build`; the safety set with `safety_scorers`.

    accuracy  match (the default), exact, contains, contains_any, regex, json, json_schema,
              tool_call, numeric, semantic, judge, refusal, not_refusal, no_pii,
              no_profanity
    safety    profanity (alt-profanity-check), moderation (a judge model), pii (presidio),
              refused (refusal detector)
    budget    max_latency, max_cost
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quality_gates.errors import UsageError
from quality_gates.gates.scorers._base import (
    Answer,
    Scorer,
    ScoreResult,
    ScorerUnavailable,
    normalize,
)
from quality_gates.gates.scorers._judge import ModelCall, parse_verdict

ACCURACY_TYPES = (
    "match",
    "exact",
    "contains",
    "contains_any",
    "regex",
    "json",
    "json_schema",
    "tool_call",
    "numeric",
    "semantic",
    "judge",
    "refusal",
    "not_refusal",
    "no_pii",
    "no_profanity",
    "max_latency",
    "max_cost",
)
# Moderation back ends for the toxicity signal; each names what it really measures.
MODERATION_BACKENDS = ("profanity", "judge", "none")

__all__ = [
    "ACCURACY_TYPES",
    "MODERATION_BACKENDS",
    "Answer",
    "ModelCall",
    "ScoreResult",
    "Scorer",
    "ScorerContext",
    "ScorerUnavailable",
    "build",
    "normalize",
    "parse_verdict",
    "safety_scorers",
]


@dataclass
class ScorerContext:
    """What scorers may need from the run: model access for judges and their defaults."""

    call: ModelCall | None = None
    judge_model: str | None = None
    judge_k: int = 3


def build(spec: dict[str, Any], ctx: ScorerContext) -> Scorer:
    """A scorer from an assertion spec; UsageError for an unknown type."""
    from quality_gates.gates.scorers import _judge, _text

    kind = str(spec.get("type", ""))
    simple: dict[str, Any] = {
        "match": _text.Match,
        "exact": _text.Exact,
        "contains": _text.Contains,
        "contains_any": _text.ContainsAny,
        "regex": _text.Regex,
        "json": _text.ValidJson,
        "json_schema": _text.JsonSchema,
        "tool_call": _text.ToolCall,
        "numeric": _text.Numeric,
        "max_latency": _text.MaxLatency,
        "max_cost": _text.MaxCost,
    }
    if kind in simple:
        return simple[kind](spec)  # type: ignore[no-any-return]
    if kind in ("refusal", "not_refusal"):
        return _text.Refusal(spec, expect_refusal=kind == "refusal")
    if kind == "judge":
        return _judge.Judge(spec, call=ctx.call, model=ctx.judge_model, k=ctx.judge_k)
    if kind in ("semantic", "no_pii", "no_profanity"):
        from quality_gates.gates.scorers import _models

        factory = {"semantic": _models.Semantic, "no_pii": _models.NoPii}
        return factory.get(kind, _models.NoProfanity)(spec)
    from quality_gates._suggest import did_you_mean

    raise UsageError(
        f"unknown assertion type {kind!r}{did_you_mean(kind, list(ACCURACY_TYPES))}",
        hint=f"known: {', '.join(ACCURACY_TYPES)}",
    )


def safety_scorers(
    moderation: str, pii: bool, ctx: ScorerContext, *, strict: bool = False
) -> tuple[list[Scorer], list[str]]:
    """The safety signals run on every answer, and a note for each one left out.

    With `strict`, a missing optional package is an error instead of a note.
    """
    from quality_gates.gates.scorers import _judge, _text

    scorers: list[Scorer] = [_text.RefusalRate()]
    notes: list[str] = []
    if moderation not in MODERATION_BACKENDS:
        raise UsageError(
            f"unknown moderation back end {moderation!r}",
            hint=f"known: {', '.join(MODERATION_BACKENDS)}",
        )
    try:
        if moderation == "profanity":
            from quality_gates.gates.scorers._models import Profanity

            scorers.append(Profanity({}))
        elif moderation == "judge":
            scorers.append(_judge.JudgeModeration({}, call=ctx.call, model=ctx.judge_model))
    except ScorerUnavailable as exc:
        if strict:
            raise
        notes.append(f"toxicity not measured: {exc}")
    if pii:
        try:
            from quality_gates.gates.scorers._models import Pii

            scorers.append(Pii({}))
        except ScorerUnavailable as exc:
            if strict:
                raise
            notes.append(f"PII not measured: {exc}")
    return scorers, notes
