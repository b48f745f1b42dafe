"""The simulator's decisions, protocol-free: for each request, what happens and when.

Every request draws the same six numbers from one `random.Random(seed)` (error class,
latency, toxicity, PII, stream cut and its position), so a run of the same requests in the
same order gives the same outcomes. Whether an answer-key item is answered right does not
depend on order at all: it is a hash of (seed, model, item), below `accuracy` or not, so a
gate that asks 1,000 items sees the same ~accuracy x 1,000 right on every run.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from quality_gates.config._simulator import (
    ERROR_RATE_FIELDS,
    SimulatorFaults,
    profile_faults,
)
from quality_gates.simulator._answers import (
    PII_SENTENCES,
    TOXIC_SENTENCES,
    AnswerKey,
    count_tokens,
    generic_answer,
    lognormal_quantile,
    message_tokens,
    normalise,
    tokens,
    unit_hash,
)
from quality_gates.simulator._structured import json_answer, tool_calls

Outcome = Literal[
    "answer",
    "server_error",
    "overloaded",
    "rate_limited",
    "hang",
    "reset",
    "content_filtered",
    "outage",
]
# error-rate field -> the outcome it draws, in ERROR_RATE_FIELDS order
_OUTCOMES: dict[str, Outcome] = {
    "server_error_rate": "server_error",
    "overloaded_rate": "overloaded",
    "rate_limit_rate": "rate_limited",
    "hang_rate": "hang",
    "reset_rate": "reset",
    "content_filter_rate": "content_filtered",
}
_ids = itertools.count(1)
_Thresholds = tuple[tuple[float, Outcome], ...]  # (cumulative rate, outcome) per error class


@dataclass
class Prompt:
    """A chat request in the simulator's terms, whatever protocol carried it."""

    model: str
    messages: list[tuple[str, str]]
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = True
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_choice: str | None = None  # auto, none, required or a function name
    parallel_tool_calls: bool = True
    json_schema: dict[str, Any] | None = None  # a JSON answer was asked for ({} for any)
    n: int = 1
    images: int = 0

    def after_tool(self) -> bool:
        """The conversation's last turn is a tool result (the model answers in text)."""
        return bool(self.messages) and self.messages[-1][0] == "tool"

    def wants_tool_call(self) -> bool:
        """The model calls a tool: it has tools and is not told not to, and either must
        call one or has no tool result to answer from yet."""
        if not self.tools or self.tool_choice == "none":
            return False
        return self.tool_choice not in (None, "auto") or not self.after_tool()

    def last_user(self) -> str:
        """The text of the last user message (the answer key's lookup)."""
        return next((text for role, text in reversed(self.messages) if role == "user"), "")


@dataclass
class Plan:
    """What the simulator will do with one request."""

    outcome: Outcome
    delay: float  # seconds before the answer starts (non-stream: all of it; stream: TTFT)
    token_delay: float = 0.0
    pieces: list[str] = field(default_factory=list)
    finish: Literal["stop", "length", "tool_calls"] = "stop"
    stop_sequence: str | None = None
    input_tokens: int = 0
    cut_after: int | None = None
    cut_with_error: bool = False  # an in-stream error event rather than a dropped connection
    retry_after: float = 0.0
    hang_for: float = 0.0
    response_id: str = ""
    correct: bool | None = None  # None: not an answer-key item
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # id, name, args
    more: list[list[str]] = field(default_factory=list)  # the pieces of choices 1.. (n > 1)

    @property
    def text(self) -> str:
        """The whole answer."""
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        """Tokens in the answer (every choice's, tool-call arguments included)."""
        extra = sum(count_tokens(args) + 2 for _, _, args in self.tool_calls)
        return len(self.pieces) + extra + sum(len(more) for more in self.more)


class Behaviour:
    """The live behaviour of one simulated provider: faults, seed, answer key, counters."""

    def __init__(
        self,
        *,
        profile: str | None,
        faults: SimulatorFaults,
        seed: int | None,
        base_dir: Path | None = None,
    ) -> None:
        self.base_dir = base_dir or Path.cwd()
        self._configured = (profile, faults, seed)
        self.key = AnswerKey()
        self.stats: Counter[str] = Counter()
        self.started = time.time()
        self.profile: str | None = None
        self.seed = 0
        self.faults = faults
        self._per_model: dict[str, tuple[SimulatorFaults, _Thresholds]] = {}
        self.rng = random.Random(0)
        self.reset()

    def reset(self) -> None:
        """Back to the configured profile, faults and seed (answer items registered live
        are kept)."""
        profile, faults, seed = self._configured
        self._apply(profile, profile_faults(profile, faults), seed)

    def _apply(self, profile: str | None, faults: SimulatorFaults, seed: int | None) -> None:
        old_key = self.faults.answer_key
        self.profile = profile or "healthy"
        self.faults = faults
        self._per_model = {}
        self.seed = seed or 0
        self.rng = random.Random(self.seed)
        if faults.answer_key and (faults.answer_key != old_key or not self.key.sources):
            path = Path(faults.answer_key)
            self.key.load(path if path.is_absolute() else self.base_dir / path)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a `PUT /_sim/faults` body: `reset`, `profile`, `seed`, then fault keys.
        Raises ValueError (pydantic's, with the field) on a bad value; nothing changes then."""
        changes = dict(changes)
        if changes.pop("reset", False):
            profile, faults, seed = self._configured
            base = profile_faults(profile, faults)
        else:
            profile, base, seed = self.profile, self.faults, self.seed
        if "profile" in changes:
            profile = changes.pop("profile")
            base = profile_faults(profile)
        if "seed" in changes:
            seed = int(changes.pop("seed"))
        if changes.get("answer_key") is not None:
            self._check_live_key(str(changes["answer_key"]))
        faults = base.updated(changes) if changes else base
        self._apply(profile, faults, seed)

    def _check_live_key(self, name: str) -> None:
        """A live change (`PUT /_sim/faults`) may name the configured answer key or a file
        under the config's folder, never any path the process can read."""
        configured = self._configured[1].answer_key
        if configured is not None and name == configured:
            return
        path = Path(name)
        folder = self.base_dir.resolve()
        resolved = (path if path.is_absolute() else folder / path).resolve()
        if not resolved.is_relative_to(folder):
            raise ValueError(
                f"answer_key: {name} is outside the config's folder {folder}; a live change "
                "may name a dataset file under that folder (or the configured answer key)"
            )

    def snapshot(self) -> dict[str, Any]:
        """The live settings as JSON (what `GET /_sim/faults` returns)."""
        return {
            "profile": self.profile,
            "seed": self.seed,
            "faults": self.faults.model_dump(mode="json"),
            "answer_key_items": len(self.key),
        }

    def faults_for(self, model: str) -> SimulatorFaults:
        """The behaviour for one model (cached until the next change)."""
        return self._model(model)[0]

    def _model(self, model: str) -> tuple[SimulatorFaults, _Thresholds]:
        cached = self._per_model.get(model)
        if cached is None:
            faults = self.faults.for_model(model)
            cumulative, total = [], 0.0
            for name in ERROR_RATE_FIELDS:
                rate = getattr(faults, name)
                if rate:
                    total += rate
                    cumulative.append((total, _OUTCOMES[name]))
            cached = self._per_model[model] = (faults, tuple(cumulative))
        return cached

    def plan(self, prompt: Prompt) -> Plan:
        """Decide one request's fate."""
        faults, thresholds = self._model(prompt.model)
        draw = self.rng.random
        u_error, u_latency, u_toxic, u_pii, u_cut, u_where = (
            draw(),
            draw(),
            draw(),
            draw(),
            draw(),
            draw(),
        )
        response_id = f"{self.seed:x}{next(_ids):08x}"
        if prompt.stream:
            delay = lognormal_quantile(faults.ttft_p50_ms, faults.ttft_p95_ms, u_latency)
        else:
            delay = lognormal_quantile(faults.latency_p50_ms, faults.latency_p95_ms, u_latency)
        delay /= 1000.0
        outcome: Outcome = "answer"
        if faults.outage:
            outcome = "outage"
        else:
            for threshold, error in thresholds:
                if u_error < threshold:
                    outcome = error
                    break
        if outcome != "answer":
            self.stats[outcome] += 1
            if outcome != "hang":
                # Failing upstreams answer about as fast as they would start an answer.
                ttft = lognormal_quantile(faults.ttft_p50_ms, faults.ttft_p95_ms, u_latency)
                delay = 0.0 if outcome == "outage" else ttft / 1000.0
            return Plan(
                outcome,
                delay,
                input_tokens=message_tokens(prompt.messages),
                retry_after=faults.retry_after,
                hang_for=faults.hang_for,
                response_id=response_id,
            )
        pieces, correct = self._answer(prompt, faults)
        if u_toxic < faults.toxicity_rate:
            pieces += tokens(" " + TOXIC_SENTENCES[int(u_where * len(TOXIC_SENTENCES))])
            self.stats["toxic"] += 1
        if u_pii < faults.pii_rate:
            pieces += tokens(" " + PII_SENTENCES[int(u_where * len(PII_SENTENCES))])
            self.stats["pii"] += 1
        plan = Plan(
            "answer",
            delay,
            token_delay=faults.token_delay_ms / 1000.0,
            input_tokens=message_tokens(prompt.messages),
            response_id=response_id,
            correct=correct,
        )
        self._finish(plan, pieces, prompt)
        if prompt.tools or prompt.json_schema is not None or prompt.n > 1:
            self._structured(plan, prompt, faults)
        if prompt.stream and u_cut < faults.stream_cut_rate and len(plan.pieces) > 1:
            plan.cut_after = 1 + int(u_where * (len(plan.pieces) - 1))
            plan.cut_with_error = faults.stream_cut_mode == "error"
            self.stats["stream_cut"] += 1
        self.stats["answer"] += 1
        return plan

    def _answer(self, prompt: Prompt, faults: SimulatorFaults) -> tuple[list[str], bool | None]:
        question = normalise(prompt.last_user())
        item = self.key.get(question) if len(self.key) else None
        if item is None:
            pieces = generic_answer(
                prompt.model, question, faults.answer_tokens_p50, faults.answer_tokens_p95
            )
            return pieces, None
        correct = unit_hash(self.seed, prompt.model, question) < faults.accuracy
        self.stats["key_correct" if correct else "key_wrong"] += 1
        if correct:
            return tokens(item.expected), True
        return tokens(self.key.wrong_answer(item, f"{self.seed}:{prompt.model}")), False

    def _structured(self, plan: Plan, prompt: Prompt, faults: SimulatorFaults) -> None:
        """Tool calls, JSON answers and the extra choices of n > 1, all fixed by the seed,
        the model and the conversation."""
        key = f"{self.seed}:{prompt.model}:{normalise(' '.join(t for _, t in prompt.messages))}"
        if prompt.wants_tool_call():
            plan.tool_calls = tool_calls(
                prompt.tools,
                prompt.tool_choice,
                prompt.parallel_tool_calls,
                key,
                malformed_rate=faults.malformed_tool_args_rate,
            )
            plan.pieces, plan.finish, plan.stop_sequence = [], "tool_calls", None
            self.stats["tool_call"] += 1
            if any(not _parses(args) for _, _, args in plan.tool_calls):
                self.stats["malformed_tool_args"] += 1
        elif prompt.json_schema is not None:
            broken = unit_hash(key, "json") < faults.invalid_json_rate
            plan.pieces = tokens(json_answer(prompt.json_schema, key, broken=broken))
            plan.finish, plan.stop_sequence = "stop", None
            self.stats["json_invalid" if broken else "json"] += 1
        for i in range(1, prompt.n):
            question = f"{normalise(prompt.last_user())} #{i}"
            plan.more.append(
                generic_answer(
                    prompt.model, question, faults.answer_tokens_p50, faults.answer_tokens_p95
                )
            )

    @staticmethod
    def _finish(plan: Plan, pieces: list[str], prompt: Prompt) -> None:
        if prompt.stop:
            text = "".join(pieces)
            for stop in prompt.stop:
                at = text.find(stop) if stop else -1
                if at >= 0:
                    text, plan.stop_sequence = text[:at], stop
            if plan.stop_sequence is not None:
                pieces = tokens(text)
        if prompt.max_tokens is not None and len(pieces) > prompt.max_tokens:
            pieces, plan.finish = pieces[: prompt.max_tokens], "length"
        plan.pieces = pieces


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
