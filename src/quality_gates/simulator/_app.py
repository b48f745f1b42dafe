"""One simulated provider: routes a request to its protocol, asks the behaviour what happens,
and plays it out on the wire (at once when there is nothing to wait for).

Control endpoints, on the same port as the protocol:

    GET  /_sim/faults      the live profile, seed and faults
    PUT  /_sim/faults      change them: {"profile": "degraded"}, {"outage": true},
                           {"models": {"m": {"accuracy": 0.92}}}, {"seed": 7}, {"reset": true}
    GET  /_sim/answers     how many answer-key items are loaded, and from where
    PUT  /_sim/answers     add items: {"items": [{"input": ..., "expected": ...}], "replace": false}
    GET  /_sim/stats       outcomes counted since start (DELETE resets them)
    GET  /_sim/health      200 whatever the faults (for tests and scripts waiting on start-up)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from quality_gates.config._simulator import SimulatorFaults
from quality_gates.simulator._answers import count_tokens, parse_items
from quality_gates.simulator._behaviour import Behaviour, Plan, Prompt
from quality_gates.simulator._server import Request, Responder
from quality_gates.simulator._structured import embedding
from quality_gates.simulator._wire import ErrorKind, Reply, Route, WireError, WireProtocol, dumps
from quality_gates.simulator._wire_anthropic import AnthropicWire
from quality_gates.simulator._wire_bedrock import BedrockWire
from quality_gates.simulator._wire_gemini import GeminiWire
from quality_gates.simulator._wire_openai import OpenAIWire

log = logging.getLogger("quality_gates.simulator")

WIRES: dict[str, type[WireProtocol]] = {
    "openai": OpenAIWire,
    "anthropic": AnthropicWire,
    "gemini": GeminiWire,
    "bedrock": BedrockWire,
}
ERROR_MESSAGES: dict[str, str] = {
    "server_error": "The server had an error while processing your request (simulated).",
    "overloaded": "The model is overloaded. Please try again later (simulated).",
    "rate_limited": "Rate limit reached for requests (simulated).",
    "unavailable": "The service is unavailable (simulated outage).",
    "auth_missing": "No API key provided.",
    "auth_invalid": "Incorrect API key provided.",
}


@dataclass
class SimulatorSpec:
    """What to start: a name, a protocol, where to listen and how to behave."""

    name: str
    protocol: str
    host: str = "127.0.0.1"
    port: int = 0
    profile: str | None = None
    seed: int | None = None
    faults: SimulatorFaults = field(default_factory=SimulatorFaults)
    api_key: str | None = None
    models: list[str] = field(default_factory=list)
    base_dir: Path | None = None


class SimulatorApp:
    """The request handler of one simulated provider."""

    def __init__(self, spec: SimulatorSpec) -> None:
        if spec.protocol not in WIRES:
            raise ValueError(f"unknown protocol {spec.protocol!r} (known: {', '.join(WIRES)})")
        self.spec = spec
        self.wire = WIRES[spec.protocol]()
        self.behaviour = Behaviour(
            profile=spec.profile, faults=spec.faults, seed=spec.seed, base_dir=spec.base_dir
        )
        self.requests = 0

    def __call__(self, request: Request, responder: Responder) -> Awaitable[None] | None:
        if request.path.startswith("/_sim/"):
            self._control(request, responder)
            return None
        self.requests += 1
        route = self.wire.route(request.method, request.path)
        if isinstance(route, str):
            self._reply(responder, self._error(route, f"{request.method} {request.path}"))
            return None
        faults = self.behaviour.faults
        if faults.outage and not faults.models:
            self._outage(responder, faults)
            return None
        credentials = self.wire.credentials_error(request, self.spec.api_key)
        if credentials is not None:
            self._reply(responder, self._error(credentials))
            return None
        if route.kind == "models":
            names = self.spec.models or sorted(self.behaviour.faults.models) or ["qg-sim-model"]
            self._reply(responder, Reply(200, self.wire.models(names)))
            return None
        if route.kind == "embed":
            return self._embed(request, route, responder)
        try:
            prompt = self.wire.parse(request, route)
        except WireError as exc:
            self.behaviour.stats["bad_request"] += 1
            self._reply(responder, exc.reply)
            return None
        plan = self.behaviour.plan(prompt)
        if plan.outcome == "outage":
            self._outage(responder, self.behaviour.faults_for(prompt.model))
            return None
        if plan.outcome == "answer" and plan.delay == 0 and not prompt.stream:
            responder.send(200, self.wire.answer(prompt, plan))
            return None
        return self._play(prompt, plan, responder)

    def _embed(
        self, request: Request, route: Route, responder: Responder
    ) -> Awaitable[None] | None:
        """Embeddings of a fixed dimension (or the asked one), under the same faults."""
        try:
            model, texts, dimensions = self.wire.parse_embed(request, route)
        except WireError as exc:
            self.behaviour.stats["bad_request"] += 1
            self._reply(responder, exc.reply)
            return None
        prompt = Prompt(model=model, messages=[("user", " ".join(texts))])
        plan = self.behaviour.plan(prompt)
        if plan.outcome == "outage":
            self._outage(responder, self.behaviour.faults_for(model))
            return None
        if plan.outcome not in ("answer", "content_filtered"):
            return self._play(prompt, plan, responder)
        size = dimensions or self.behaviour.faults_for(model).embedding_dimensions
        vectors = [embedding(text, model, size) for text in texts]
        body = self.wire.embed_answer(model, vectors, sum(count_tokens(t) for t in texts))
        self.behaviour.stats["embeddings"] += 1
        if not plan.delay:
            responder.send(200, body)
            return None
        return self._send_later(plan.delay, body, responder)

    async def _send_later(self, delay: float, body: bytes, responder: Responder) -> None:
        await asyncio.sleep(delay)
        responder.send(200, body)

    def _error(self, kind: ErrorKind, detail: str = "", retry_after: float = 0.0) -> Reply:
        message = ERROR_MESSAGES.get(kind) or {
            "not_found": f"Unknown request URL: {detail}",
            "method_not_allowed": f"Method not allowed: {detail}",
        }.get(kind, detail)
        return self.wire.error(kind, message, retry_after)

    @staticmethod
    def _reply(responder: Responder, reply: Reply) -> None:
        responder.send(reply.status, reply.body, reply.content_type, reply.headers)

    def _outage(self, responder: Responder, faults: SimulatorFaults) -> None:
        self.behaviour.stats["outage"] += 1
        if faults.outage_mode == "reset":
            responder.reset()
        else:
            self._reply(responder, self._error("unavailable"))

    async def _play(self, prompt: Prompt, plan: Plan, responder: Responder) -> None:
        outcome = plan.outcome
        if outcome == "answer" and prompt.stream:
            await self._stream(prompt, plan, responder)
            return
        if plan.delay:
            await asyncio.sleep(plan.delay)
        if outcome == "hang":
            await asyncio.sleep(plan.hang_for)
            responder.cut()
        elif outcome == "reset":
            responder.reset()
        elif outcome in ("server_error", "overloaded", "rate_limited"):
            self._reply(responder, self._error(outcome, retry_after=plan.retry_after))
        elif outcome == "content_filtered" and prompt.stream:
            responder.start(200, self.wire.stream_content_type)
            await responder.write(self.wire.stream_open(prompt, plan))
            await responder.write(self.wire.stream_close(prompt, plan, filtered=True))
            responder.end()
        else:
            filtered = outcome == "content_filtered"
            responder.send(200, self.wire.answer(prompt, plan, filtered=filtered))

    async def _stream(self, prompt: Prompt, plan: Plan, responder: Responder) -> None:
        wire = self.wire
        responder.start(200, wire.stream_content_type, [("cache-control", "no-cache")])
        await responder.write(wire.stream_open(prompt, plan))
        if plan.delay:
            await asyncio.sleep(plan.delay)
        count = len(plan.pieces) if plan.cut_after is None else plan.cut_after
        if plan.token_delay == 0:
            await responder.write(
                b"".join(wire.stream_piece(prompt, plan, i) for i in range(count))
            )
        else:
            for i in range(count):
                if i:
                    await asyncio.sleep(plan.token_delay)
                await responder.write(wire.stream_piece(prompt, plan, i))
        if plan.cut_after is not None:
            if plan.cut_with_error:
                await responder.write(
                    wire.stream_error("Upstream model failed mid-stream (simulated).")
                )
                responder.end()
            else:
                responder.cut()
            return
        await responder.write(wire.stream_close(prompt, plan))
        responder.end()

    # -- /_sim/ -------------------------------------------------------------------------

    def _control(self, request: Request, responder: Responder) -> None:
        path, method = request.path.rstrip("/"), request.method
        if method not in ("GET", "HEAD"):
            # A web page can POST text/plain to localhost without a preflight: a change
            # must be JSON and must not come from a browser page (the CLI sends no Origin).
            if "origin" in request.headers:
                responder.send(403, dumps({"error": "control changes are refused from a web page"}))
                return
            content_type = request.headers.get("content-type", "")
            if request.body and not content_type.startswith("application/json"):
                responder.send(
                    415, dumps({"error": "control changes must be sent as application/json"})
                )
                return
            log.info(  # who changed what, for the drill's record
                "simulator %s: %s %s %s",
                self.spec.name,
                method,
                path,
                request.body[:200].decode("utf-8", "replace"),
            )
        try:
            if path == "/_sim/health":
                body: Any = {"ok": True, "provider": self.spec.name, "protocol": self.spec.protocol}
            elif path == "/_sim/faults" and method == "GET":
                body = self.describe()
            elif path == "/_sim/faults" and method in ("PUT", "POST", "PATCH"):
                self.behaviour.update(_json_object(request.body))
                body = self.describe()
            elif path == "/_sim/answers" and method == "GET":
                body = {"items": len(self.behaviour.key), "sources": self.behaviour.key.sources}
            elif path == "/_sim/answers" and method in ("PUT", "POST"):
                data = _json_object(request.body)
                if data.get("replace"):
                    self.behaviour.key.clear()
                added = self.behaviour.key.add(parse_items(data.get("items") or []))
                body = {"added": added, "items": len(self.behaviour.key)}
            elif path == "/_sim/stats" and method == "GET":
                body = self.stats()
            elif path == "/_sim/stats" and method == "DELETE":
                self.behaviour.stats.clear()
                self.requests = 0
                body = self.stats()
            else:
                responder.send(404, dumps({"error": f"no control endpoint {method} {path}"}))
                return
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            message = f"{where}: {problem['msg']}" if where else str(problem["msg"])
            responder.send(400, dumps({"error": message}))
            return
        except (ValueError, TypeError, OSError) as exc:
            responder.send(400, dumps({"error": str(exc)}))
            return
        responder.send(200, dumps(body))

    def describe(self) -> dict[str, Any]:
        """Who this simulator is and how it behaves now."""
        return {
            "provider": self.spec.name,
            "protocol": self.spec.protocol,
            **self.behaviour.snapshot(),
        }

    def stats(self) -> dict[str, Any]:
        """Requests and outcomes counted since start (or the last reset)."""
        return {
            "provider": self.spec.name,
            "requests": self.requests,
            "outcomes": dict(self.behaviour.stats),
            "uptime_s": round(time.time() - self.behaviour.started, 1),
        }


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data
