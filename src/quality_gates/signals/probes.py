"""Golden probes: the online quality signal the quality rules read.

Every `remediation.probes.interval`, a few dataset items with expected answers (rotated
through the first `pool` items of `probes.dataset`, else `gates.dataset`, else the built-in
set) go straight to the provider of each environment's `current` model, and each answer is
scored with the gates' scorers (the item's assertions, else `probes.scorer`). One
`quality_samples` row per scored answer, with a `probe-` request id; failed calls are no
quality signal and write nothing. Probe traffic never passes through the gateway, so it never
shows in client metrics; it is bounded to `items` calls per distinct current model per round.

The same scoring checks a rollback target before remediation moves `current` onto it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.errors import QualityGatesError
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.gates.datasets import DatasetItem
    from quality_gates.gates.scorers import Scorer
    from quality_gates.providers import ChatProvider, ProbeResult

log = logging.getLogger("quality_gates.watch")
PROBE_PREFIX = "probe-"
GOLDEN_SCORER = "golden"  # the `scorer` of probe samples in quality_samples


class AdapterPool:
    """One adapter per provider, built on first use and closed together."""

    def __init__(self, config: QualityGatesConfig) -> None:
        self.config = config
        self._adapters: dict[str, ChatProvider] = {}

    def get(self, provider: str) -> ChatProvider:
        """The adapter of `provider` (CredentialMissing if it needs an unset variable)."""
        adapter = self._adapters.get(provider)
        if adapter is None:
            from quality_gates.providers import build_provider

            spec = self.config.provider(provider)
            if spec is None:
                raise QualityGatesError(f"provider {provider!r} is not in the config")
            adapter = self._adapters[provider] = build_provider(spec, self.config.models)
        return adapter

    async def probe(self, provider: str, timeout: float = 10.0) -> ProbeResult:
        """A live probe of `provider`; any failure is an unhealthy result."""
        from quality_gates.providers import ProbeResult

        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await self.get(provider).probe()
        except Exception as exc:  # a probe reports, it never raises
            return ProbeResult(
                provider,
                False,
                (time.perf_counter() - started) * 1000.0,
                getattr(exc, "error_class", "timeout" if isinstance(exc, TimeoutError) else "error")
                or "error",
                str(exc) or type(exc).__name__,
            )

    async def close(self) -> None:
        """Close every adapter."""
        adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            try:
                await adapter.close()
            except Exception:  # closing must not fail the caller
                log.debug("closing an adapter failed", exc_info=True)


@dataclass
class ProbeScore:
    """One probed item: passed, score in [0, 1], or the error class of a failed call."""

    item_id: str
    passed: bool = False
    score: float = 0.0
    error_class: str | None = None
    latency_ms: float = 0.0


@dataclass
class ModelScore:
    """Scored probes of one model."""

    model_id: str
    provider: str
    scores: list[ProbeScore] = field(default_factory=list)

    @property
    def answered(self) -> list[ProbeScore]:
        """Probes that got an answer."""
        return [s for s in self.scores if s.error_class is None]

    @property
    def mean(self) -> float | None:
        """Mean score of answered probes, None when none answered."""
        answered = self.answered
        return sum(s.score for s in answered) / len(answered) if answered else None

    def describe(self) -> str:
        """`9/10 right (0.90), 0 failed calls`."""
        answered = self.answered
        failed = len(self.scores) - len(answered)
        right = sum(s.passed for s in answered)
        mean = self.mean
        shown = "no answer" if mean is None else f"{right}/{len(answered)} right ({mean:.2f})"
        return f"{shown}, {failed} failed call(s)"


class GoldenProbes:
    """Sends golden items to models and scores the answers."""

    def __init__(
        self,
        config: QualityGatesConfig,
        pool: AdapterPool,
        *,
        config_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.settings = config.remediation.probes
        self.pool = pool
        self.config_dir = config_dir
        self._items: list[DatasetItem] | None = None
        self._scorers: dict[str, Scorer] = {}
        self.offset = 0

    def items(self) -> list[DatasetItem]:
        """The probe pool: items with an expected answer or assertions (read once)."""
        if self._items is None:
            from quality_gates.gates.datasets import locate, read_items

            path = self.settings.dataset or self.config.gates.dataset
            try:
                source = locate(path, base=self.config_dir)
            except QualityGatesError as exc:
                log.warning("golden probes use the built-in dataset: %s", exc)
                source = locate(None)
            pool = []
            for item in read_items(source):
                if item.expected is not None or item.assertions:
                    pool.append(item)
                if len(pool) >= self.settings.pool:
                    break
            self._items = pool
        return self._items

    async def _scorer(self, spec: dict[str, Any]) -> Scorer:
        from quality_gates.gates.scorers import ScorerContext, build

        key = repr(sorted(spec.items()))
        scorer = self._scorers.get(key)
        if scorer is None:
            # Building a model-backed scorer loads its model (presidio for no_pii, the
            # profanity model): seconds of work that, on the event loop `serve` shares with
            # the gateway, stopped every request for 3-8 s (a drill's own P95 alert).
            built = await asyncio.to_thread(build, spec, ScorerContext())
            scorer = self._scorers.setdefault(key, built)
        return scorer

    def next_items(self, count: int) -> list[DatasetItem]:
        """The next `count` items of the rotation."""
        items = self.items()
        if not items:
            return []
        chosen = [items[(self.offset + i) % len(items)] for i in range(min(count, len(items)))]
        self.offset = (self.offset + len(chosen)) % len(items)
        return chosen

    async def score_model(self, model_id: str, items: list[DatasetItem]) -> ModelScore:
        """Ask `model_id` each item at its provider, concurrently, and score the answers."""
        model = self.config.model(model_id)
        if model is None:
            raise QualityGatesError(f"model {model_id!r} is not in the config")
        result = ModelScore(model_id, model.provider)
        calls = (self._one(model.provider, model.provider_model, item) for item in items)
        result.scores = list(await asyncio.gather(*calls))
        return result

    async def _one(self, provider: str, provider_model: str, item: DatasetItem) -> ProbeScore:
        from quality_gates.gates.scorers import Answer
        from quality_gates.providers import ChatRequest

        started = time.perf_counter()
        try:
            adapter = self.pool.get(provider)
            async with asyncio.timeout(self.settings.timeout):
                response = await adapter.complete(
                    ChatRequest(
                        model=provider_model,
                        messages=item.messages,
                        temperature=0.0,
                        max_tokens=256,
                        request_id=f"{PROBE_PREFIX}{uuid.uuid4().hex[:16]}",
                    )
                )
        except Exception as exc:  # a failed call is counted, never raised
            return ProbeScore(
                item.id,
                error_class=getattr(exc, "error_class", "timeout")
                if isinstance(exc, QualityGatesError | TimeoutError)
                else "error",
                latency_ms=(time.perf_counter() - started) * 1000.0,
            )
        answer = Answer(response.text, latency_ms=response.latency_ms)
        specs = list(item.assertions) or [{"type": self.settings.scorer}]
        results = [await (await self._scorer(spec)).score(item, answer) for spec in specs]
        return ProbeScore(
            item.id,
            all(r.passed for r in results),
            sum(r.score for r in results) / len(results),
            latency_ms=response.latency_ms,
        )

    async def run_round(
        self, current: dict[str, str], write: Any, now: float | None = None
    ) -> list[ModelScore]:
        """Probe each distinct model of `current` (environment -> model id) with the next
        items and hand the samples to `write(rows)`; returns the scores."""
        items = self.next_items(self.settings.items)
        if not items:
            return []
        models = sorted(set(current.values()))
        scored = await asyncio.gather(*(self.score_model(m, items) for m in models))
        now = time.time() if now is None else now
        rows = []
        for score in scored:
            for environment, model_id in current.items():
                if model_id != score.model_id:
                    continue
                for probe in score.answered:
                    rows.append(
                        {
                            "request_id": f"{PROBE_PREFIX}{uuid.uuid4().hex[:16]}",
                            "ts": now,
                            "environment": environment,
                            "model_id": model_id,
                            "provider": score.provider,
                            "scorer": GOLDEN_SCORER,
                            "score": probe.score,
                            "passed": 1 if probe.passed else 0,
                        }
                    )
        if rows:
            await write(rows)
        return list(scored)


def write_samples(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert quality samples (golden probes or sampled live answers)."""
    with conn.write():
        conn.executemany(
            "INSERT INTO quality_samples (request_id, ts, environment, model_id, provider, "
            "scorer, score, passed) VALUES (:request_id, :ts, :environment, :model_id, "
            ":provider, :scorer, :score, :passed)",
            rows,
        )


def probed_models(conn: Connection, config: QualityGatesConfig) -> dict[str, str]:
    """environment -> current model id, for environments whose remediation is enabled."""
    from quality_gates.store.registry import list_aliases

    out = {}
    for alias in list_aliases(conn):
        if alias.name != "current":
            continue
        if not config.remediation.policy(alias.environment).enabled:
            continue
        if config.model(alias.model_id) is not None:
            out[alias.environment] = alias.model_id
    return out
