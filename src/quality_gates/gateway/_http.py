"""The gateway's HTTP surface: the chat path answered at the ASGI level, and the small
endpoints (/v1/models, /healthz, /readyz, /metrics) through Starlette."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from quality_gates.gateway._wire import Answer, ApiError, error_answer
from quality_gates.gateway.keys import ApiKey, hash_key

if TYPE_CHECKING:
    from quality_gates.gateway._app import GatewayApp

OPERATOR_ROLES = ("operator", "admin")
# The hashes of the last bearer tokens seen: a client sends the same key on every request,
# and a SHA-256 per request was 3% of the chat path's CPU. Bounded, so a flood of made-up
# tokens only evicts.
_token_hash = functools.lru_cache(maxsize=512)(hash_key)


def _error(exc: ApiError) -> Answer:
    return error_answer(exc)


def _error_response(exc: ApiError) -> Response:
    return Response(exc.body(), exc.status, exc.headers(), media_type="application/json")


def _authenticate(state: GatewayApp, header: str | None) -> ApiKey | None:
    if not header:
        if state.auth_required():
            raise ApiError(
                401, "missing API key: send Authorization: Bearer <key>", code="missing_api_key"
            )
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "malformed Authorization header: use Bearer <key>", code="invalid_api_key"
        )
    key = state.keys.get(_token_hash(token.strip()))
    if key is None:
        if not state.auth_required():
            return None
        raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
    return key


CHAT_PATH = "/v1/chat/completions"


def _scope_headers(scope: Scope) -> dict[str, str]:
    """The few request headers the chat path reads, by lower-case name."""
    wanted = (b"authorization", b"content-length", b"cache-control")
    return {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in wanted}


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client closed the connection before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _checked_key(state: GatewayApp, header: str | None) -> ApiError | ApiKey | None:
    """The key of a request, or the 401 to answer (counted as an authentication failure)."""
    try:
        return _authenticate(state, header)
    except ApiError as exc:
        token = (header or "").partition(" ")[2].strip() or None
        state.gateway.auth_failure(exc.code or "invalid_api_key", token)
        return exc


async def chat_completions(scope: Scope, receive: Receive, send: Send, state: GatewayApp) -> None:
    """POST /v1/chat/completions, answered at the ASGI level: it is the hot path, and a
    framework's routing, request object and middleware would cost a third of its time."""
    headers = _scope_headers(scope)
    checked = _checked_key(state, headers.get("authorization"))
    if isinstance(checked, ApiError):
        await _error(checked)(scope, receive, send)
        return
    key = checked
    try:
        limit = state.settings.config.gateway.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="body_too_large")
        body = await _read_body(receive, limit)
        cache_control = headers.get("cache-control", "")
        use_cache = "no-cache" not in cache_control and "no-store" not in cache_control
        response = await state.gateway.chat(body, key, use_cache=use_cache)
    except ApiError as exc:
        await _error(exc)(scope, receive, send)
        return
    await response(scope, receive, send)


class GatewayASGI:
    """The gateway app: the chat path directly, everything else (lifespan, /v1/models,
    /healthz, /readyz, /metrics) through Starlette."""

    def __init__(self, router: Starlette) -> None:
        self.router = router

    @property
    def state(self) -> Any:
        """The router's state (`state.gateway` is the running GatewayApp)."""
        return self.router.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CHAT_PATH:
            if scope["method"] == "POST":
                await chat_completions(scope, receive, send, self.router.state.gateway)
                return
            await _error(ApiError(405, f"{CHAT_PATH} takes POST", code="method_not_allowed"))(
                scope, receive, send
            )
            return
        await self.router(scope, receive, send)


async def list_models(request: Request) -> Response:
    """GET /v1/models: the environment's aliases (and model ids where allowed)."""
    state: GatewayApp = request.app.state.gateway
    try:
        _authenticate(state, request.headers.get("authorization"))
    except ApiError as exc:
        return _error_response(exc)
    table = state.services.table
    created = int(state.started_at)
    data = [
        {
            "id": alias,
            "object": "model",
            "created": created,
            "owned_by": table.deployments[model].provider if model in table.deployments else "",
            "model": model,
        }
        for alias, model in sorted(table.aliases.items())
    ]
    if table.env.allow_model_ids:
        data += [
            {"id": d.model_id, "object": "model", "created": created, "owned_by": d.provider}
            for d in sorted(table.deployments.values(), key=lambda d: d.model_id)
        ]
    return JSONResponse({"object": "list", "data": data})


async def feedback(request: Request) -> Response:
    """POST /v1/feedback: a 1-5 score for a response id (client key auth, as chat)."""
    from quality_gates.gateway._feedback import MAX_BODY, feedback_json, parse_feedback

    state: GatewayApp = request.app.state.gateway
    checked = _checked_key(state, request.headers.get("authorization"))
    if isinstance(checked, ApiError):
        return _error_response(checked)
    try:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the body is over {MAX_BODY} bytes", code="body_too_large")
        parsed = parse_feedback(raw)
        feedback_id = await state.feedback_writer.write(
            parsed, checked.name if checked is not None else None
        )
    except ApiError as exc:
        return _error_response(exc)
    state.services.metrics.feedback.labels(state.services.environment, str(parsed.score)).inc()
    return JSONResponse(feedback_json(feedback_id, parsed), status_code=201)


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is up."""
    return JSONResponse({"status": "ok"})


def readiness(state: GatewayApp) -> tuple[bool, dict[str, Any]]:
    """Ready: at least one deployment in use is not open. The gateway serves on its last
    routes while the store is away, so a lost store does not make it unready; the body says
    so (without the store's host, user or database: /readyz needs no key)."""
    now = time.time()
    routes = state.services.table.in_use()
    usable = [
        d.id
        for d in routes
        if d.provider in state.providers and not state.services.breakers.is_open(d.id, now)
    ]
    ready = bool(usable)
    telemetry = state.services.telemetry
    return ready, {
        "status": "ready" if ready else "not ready",
        "store": "ok" if state.control.store_ok else "unreachable",
        # Reads can work while writes fail (a full disk): telemetry says whether rows land.
        "telemetry": "failing" if telemetry is not None and telemetry.failing else "ok",
        "usable_deployments": usable,
        "deployments": len(routes),
        "control_version": state.services.table.version,
    }


async def readyz(request: Request) -> Response:
    """GET /readyz."""
    ready, body = readiness(request.app.state.gateway)
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics in the Prometheus text format."""
    state: GatewayApp = request.app.state.gateway
    if state.settings.config.gateway.metrics_require_key:
        try:
            key = _authenticate(state, request.headers.get("authorization"))
        except ApiError as exc:
            return _error_response(exc)
        if key is None or key.role not in OPERATOR_ROLES:
            return _error_response(
                ApiError(403, "/metrics needs an operator or admin key", code="forbidden")
            )
    return Response(
        generate_latest(state.services.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
