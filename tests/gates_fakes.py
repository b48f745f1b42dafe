"""A ChatProvider double for gate tests: answers dataset items right with a per-model
probability fixed by a hash of (seed, model, prompt), so runs are reproducible."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from quality_gates.errors import ProviderError, RateLimited
from quality_gates.providers import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    ProbeResult,
    StreamChunk,
    Usage,
)


def unit(*parts: object) -> float:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class KeyedProvider(ChatProvider):
    """Answers from an answer key: right with accuracy[model], else a wrong answer."""

    protocol = "fake"

    def __init__(
        self,
        name: str,
        key: dict[str, str],
        accuracy: dict[str, float],
        *,
        seed: int = 1,
        latency_s: float = 0.0,
        throttle_first: int = 0,
        failing: dict[str, ProviderError] | None = None,
    ) -> None:
        self.name = name
        self.key = key
        self.accuracy = accuracy
        self.seed = seed
        self.latency_s = latency_s
        self.throttle_left = throttle_first
        self.failing = failing or {}  # provider model -> the error every call to it raises
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.throttle_left > 0:
                self.throttle_left -= 1
                raise RateLimited("slow down", provider=self.name, status=429, retry_after=0.01)
            if request.model in self.failing:
                raise self.failing[request.model]
            prompt = request.messages[-1].content
            if request.messages[0].content.startswith("You are a strict evaluator"):
                # Playing a judge: pass answers that contain "answer-".
                verdict = "pass" if "ANSWER:\nanswer-" in prompt else "fail"
                text = f'{{"verdict": "{verdict}", "score": 1, "reason": "checked"}}'
                return ChatResponse(text, "stop", Usage(50, 10), 1.0, 1.0, self.name, request.model)
            expected = self.key.get(prompt)
            right = unit(self.seed, request.model, prompt) < self.accuracy.get(request.model, 1)
            text = expected if (expected is not None and right) else "I think it is 17."
            return ChatResponse(
                text=text,
                finish_reason="stop",
                usage=Usage(len(prompt) // 4, 5),
                latency_ms=self.latency_s * 1000 + 1.0,
                ttft_ms=self.latency_s * 500,
                provider=self.name,
                model=request.model,
            )
        finally:
            self.in_flight -= 1

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError

    async def probe(self) -> ProbeResult:
        return ProbeResult(self.name, True, 0.0)

    async def close(self) -> None:
        return None


def with_gates(config_text: str, gates_yaml: str) -> str:
    """The config with its `gates:` section replaced by `gates_yaml` (which starts with it)."""
    import re

    head = re.split(r"^gates:\n", config_text, flags=re.M)[0]
    tail = re.split(r"^gates:\n(?:[ #].*\n|\n)*", config_text, flags=re.M)
    rest = tail[1] if len(tail) > 1 else ""
    return head.rstrip("\n") + "\n" + gates_yaml.lstrip("\n") + rest


def write_dataset(path: Path, n: int) -> dict[str, str]:
    """n JSONL items `question i` -> `answer-i`; returns the key."""
    key = {}
    with path.open("w") as handle:
        for i in range(n):
            prompt = f"Question number {i}: what is the code word?"
            key[prompt] = f"answer-{i}"
            handle.write(json.dumps({"id": f"q{i}", "input": prompt, "expected": f"answer-{i}"}))
            handle.write("\n")
    return key
