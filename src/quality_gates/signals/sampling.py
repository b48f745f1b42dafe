"""Live answers scored off the request path: the reference-free half of the quality signal.

Inside each gateway process the sampler is the gateway's answer tap: it keeps a share
(`remediation.sampling.share`) of answered requests in a bounded queue (a full queue drops
and counts) and, once a second, hands at most `max_per_second` of them to a scoring process
of its own, which scores them and writes the rows:

    refused     the answer declines (the gates' refusal detector)
    toxicity    profanity / insult probability (alt-profanity-check), when installed
    pii         personal data in the answer
    prompt_pii  personal data in the prompt
    injection   the prompt looks like a prompt-injection attempt (patterns and a classifier)

An answer that is only tool calls reaches the tap as its calls (`name(arguments)` lines), so
they are what is scored; an answer with nothing to read (no text, no call) is skipped and
counted in `skipped` by reason, never scored as a clean answer.

Each becomes a `quality_samples` row (`passed` = 0 when flagged) that the watch plane's
`refusal_rate`, `toxicity_rate`, `pii_rate` and `prompt_injection_rate` read; none of them
counts toward `quality_score`, which golden probes feed. Text is never stored.

The scorers run in a scoring process of the sampler's own (`_offload`): the PII and profanity
models never load into the gateway for it, and scoring never holds the gateway's GIL. If that
process dies, the batch is counted as lost and the next batch starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.errors import StoreUnavailable
from quality_gates.signals._offload import ScoringProcess, ScoringUnavailable
from quality_gates.store.db import Connection, Database, StoreURL

if TYPE_CHECKING:
    from quality_gates.config import SamplingSettings

log = logging.getLogger("quality_gates.watch")
PROFANITY_THRESHOLD = 0.5
FRESH = ("miss", "bypass", "record")  # answers that came from a provider just now
EMPTY_ANSWER = "empty_answer"  # skip reason: no text and no tool call to score


@dataclass(frozen=True)
class Sampled:
    """One answered request kept for scoring."""

    request_id: str
    environment: str
    model_id: str
    provider: str
    prompt: str
    answer: str


def score_rows(items: list[Sampled], now: float) -> list[dict[str, Any]]:
    """quality_samples rows for each item and each check."""
    from quality_gates.gates.scorers._text import is_refusal
    from quality_gates.signals.security import injection, pii_kinds, profanity

    rows = []
    toxic = profanity([i.answer for i in items])
    for index, item in enumerate(items):
        checks: list[tuple[str, bool, float]] = [
            ("refused", not is_refusal(item.answer), 0.0 if is_refusal(item.answer) else 1.0)
        ]
        if toxic is not None:
            checks.append(("toxicity", toxic[index] < PROFANITY_THRESHOLD, 1.0 - toxic[index]))
        answer_pii = pii_kinds(item.answer)
        checks.append(("pii", not answer_pii, 0.0 if answer_pii else 1.0))
        prompt_pii = pii_kinds(item.prompt)
        checks.append(("prompt_pii", not prompt_pii, 0.0 if prompt_pii else 1.0))
        verdict = injection(item.prompt)
        checks.append(("injection", not verdict.flagged, 1.0 - verdict.probability))
        for scorer, passed, score in checks:
            rows.append(
                {
                    "request_id": item.request_id,
                    "ts": now,
                    "environment": item.environment,
                    "model_id": item.model_id,
                    "provider": item.provider,
                    "scorer": scorer,
                    "score": max(0.0, min(1.0, score)),
                    "passed": 1 if passed else 0,
                }
            )
    return rows


_scoring_conn: tuple[StoreURL, Connection] | None = None


def score_and_write(url: StoreURL, batch: list[Sampled]) -> int:
    """Score `batch` and write its rows to the store at `url` (runs in the scoring process,
    which keeps one connection for its life); returns the number of rows written."""
    from quality_gates.signals.probes import write_samples

    global _scoring_conn
    if _scoring_conn is None or _scoring_conn[0] != url:
        _scoring_conn = (url, Database(url).connect())
    rows = score_rows(batch, time.time())
    write_samples(_scoring_conn[1], rows)
    return len(rows)


class LiveSampler:
    """The gateway's answer tap and the loop that scores what it kept."""

    def __init__(self, database: Database, settings: SamplingSettings) -> None:
        self.database = database
        self.settings = settings
        self.queue: deque[Sampled] = deque()
        self.dropped = 0
        self.skipped: Counter[str] = Counter()  # kept for scoring but nothing to score, by reason
        self.scored = 0
        self.lost = 0  # handed to a scoring process that died before writing them
        self.waiting_for_store = False
        self._rng = random.Random()
        self._scoring = ScoringProcess()  # spawned by `start` (or the first batch)
        self._task: asyncio.Task[None] | None = None

    def offer(self, rec: Any, prompt: str, answer: str) -> None:
        """Keep a share of answered requests (O(1); called on the request path)."""
        if rec.cache not in FRESH or self._rng.random() >= self.settings.share:
            return
        if not answer.strip():
            self.skipped[EMPTY_ANSWER] += 1
            return
        if len(self.queue) >= self.settings.queue:
            self.dropped += 1
            return
        self.queue.append(
            Sampled(rec.id, rec.environment, rec.model_id or "", rec.provider or "", prompt, answer)
        )

    def start(self) -> None:
        """Score in the background until closed (the scoring process and its models are
        loaded now, not when the first batch comes)."""
        self._scoring.warm(models=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-sampling")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.flush()
            except Exception as exc:  # scoring must never take the gateway down
                log.error("live answer scoring failed: %s", exc, extra={"category": "ERROR"})

    async def flush(self) -> int:
        """Score up to `max_per_second` queued answers now; returns how many."""
        batch: list[Sampled] = []
        while self.queue and len(batch) < self.settings.max_per_second:
            batch.append(self.queue.popleft())
        if not batch:
            return 0
        try:
            await self._scoring.run(score_and_write, self.database.url, batch)
        except StoreUnavailable as exc:
            # The store is lost (its own line says so once): keep the batch for the next
            # second, within the queue's bound, rather than drop it.
            room = max(0, self.settings.queue - len(self.queue))
            kept = batch[:room]
            self.queue.extendleft(reversed(kept))
            self.dropped += len(batch) - len(kept)
            if not self.waiting_for_store:
                self.waiting_for_store = True
                log.warning(
                    "live answer scoring waits for the store (%s); keeping up to %d answers",
                    exc,
                    self.settings.queue,
                    extra={"category": "SYSTEM"},
                )
            return 0
        except ScoringUnavailable as exc:
            self.lost += len(batch)
            log.error(
                "live answer scoring: %s; %d sampled answers lost",
                exc,
                len(batch),
                extra={"category": "ERROR"},
            )
            return 0
        if self.waiting_for_store:
            self.waiting_for_store = False
            log.warning("live answer scoring resumed", extra={"category": "SYSTEM"})
        self.scored += len(batch)
        return len(batch)

    async def close(self) -> None:
        """Score what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            while self.queue:
                await self.flush()
                if self.waiting_for_store:
                    log.error(
                        "live answer scoring: %d sampled answers not written (store lost)",
                        len(self.queue),
                    )
                    break
        except Exception as exc:
            log.error("live answer scoring failed at shutdown: %s", exc)
        await self._scoring.close()
