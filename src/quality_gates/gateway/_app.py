"""`create_app(settings)`: the gateway's ASGI app, assembled in one place.

Shared resources (store connections, provider adapters, Redis client, metrics registry) are
opened in the lifespan and kept on `app.state`; background services are started and stopped
in one list there (`BACKGROUND SERVICES` below), so more can be plugged in without touching
the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.routing import Route

from quality_gates.config import LoadedConfig, Model, Provider, QualityGatesConfig
from quality_gates.errors import QualityGatesError, StoreError
from quality_gates.gateway import _output_check as output_check
from quality_gates.gateway._breaker import BreakerBoard
from quality_gates.gateway._cache import MemoryCache, RedisCache, ResponseCache
from quality_gates.gateway._control import (
    ControlSnapshot,
    ControlWatcher,
    Heartbeat,
    breakers_json,
    read_snapshot,
    writer_id,
)
from quality_gates.gateway._dispatch import Dispatcher
from quality_gates.gateway._gateway import Gateway, Services, parse_emergency
from quality_gates.gateway._health import LatencyBoard, Prober
from quality_gates.gateway._http import (
    GatewayASGI,
    embeddings,
    feedback,
    healthz,
    list_models,
    metrics_endpoint,
    readyz,
    retrieve_model,
    unknown_route,
)
from quality_gates.gateway._limits import (
    Admission,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    RetryBudget,
)
from quality_gates.gateway._messages_api import MessagesEndpoint
from quality_gates.gateway._metrics import GatewayMetrics, GatewayState
from quality_gates.gateway._reload import ConfigReloader, reload_summary
from quality_gates.gateway._routing import RouteTable
from quality_gates.gateway._server import ConnectionsCollector
from quality_gates.gateway._shared import SharedBreakers
from quality_gates.gateway._sink import ProcessSink
from quality_gates.gateway._telemetry import TelemetryWriter
from quality_gates.gateway.keys import ApiKey
from quality_gates.gateway.runtime import (
    CACHE,
    QUEUE,
    forced_breakers,
    parse_cache,
    parse_queue,
)
from quality_gates.providers import ChatProvider, build_provider
from quality_gates.store._health import StoreHealthCollector
from quality_gates.store.db import Database, StoreURL

log = logging.getLogger("quality_gates.gateway")
REDIS_ENV = "QG_REDIS_URL"
ProviderFactory = Callable[[Provider, Sequence[Model]], ChatProvider]


class BackgroundService(Protocol):
    """Something that runs beside the request path for the app's whole life."""

    async def start(self) -> None:
        """Begin (called once the app's state is ready)."""

    async def close(self) -> None:
        """Stop and release everything."""


ServiceFactory = Callable[["GatewayApp"], BackgroundService]


@dataclass
class AppSettings:
    """What a gateway process needs to start."""

    config: QualityGatesConfig
    store_url: StoreURL
    environment: str
    redis_url: str | None = None
    listen: str = ""
    config_path: Path | None = None  # watched and reloaded live when given
    config_digest: str | None = None  # of the file `config` was loaded from

    @classmethod
    def with_redis_from_env(cls, **kwargs: Any) -> AppSettings:
        """Settings with `redis_url` from $QG_REDIS_URL when not given."""
        kwargs.setdefault("redis_url", os.environ.get(REDIS_ENV) or None)
        return cls(**kwargs)


def default_provider_factory(provider: Provider, models: Sequence[Model]) -> ChatProvider:
    """The adapter of `provider` from quality_gates.providers."""
    return build_provider(provider, models)


@dataclass
class GatewayApp:
    """Everything the running app holds (on `app.state.gateway`)."""

    settings: AppSettings
    database: Database
    gateway: Gateway
    services: Services
    providers: dict[str, ChatProvider]
    control: ControlWatcher
    prober: Prober
    instance: str
    keys: dict[str, ApiKey] = field(default_factory=dict)
    keys_ever: int = 0
    redis: Any = None
    redis_link: Any = None  # gateway._redis.RedisLink when Redis is configured
    shared: SharedBreakers | None = None
    feedback_writer: Any = None
    factory: ProviderFactory = default_provider_factory
    started_at: float = field(default_factory=time.time)
    reloader: ConfigReloader | None = None
    last_snapshot: ControlSnapshot | None = None
    config_listeners: list[Callable[[QualityGatesConfig], None]] = field(default_factory=list)

    def auth_required(self) -> bool:
        """Whether requests need a key: always, never, or (auto) once any key was created
        (revoking the last key must not open the gateway)."""
        mode = self.settings.config.gateway.auth
        return mode == "required" or (mode == "auto" and self.keys_ever > 0)

    def set_keys(self, keys: dict[str, ApiKey], ever: int) -> None:
        """Replace the active keys (hash -> key) and the count of keys ever created."""
        self.keys, self.keys_ever = keys, ever

    def reload_config(self, loaded: LoadedConfig) -> None:
        """Put a new valid config in force: what the request path reads per request applies
        now (routes, chains, strategy, weights, thresholds, cache serving, retries,
        deadlines); the log line names what waits for a restart."""
        old = self.settings.config
        self.settings.config = loaded.config
        gateway = loaded.config.gateway
        self.services.settings = gateway
        self.services.dispatcher.settings = gateway
        if self.last_snapshot is not None:
            self.apply(self.last_snapshot)
        log.warning(reload_summary(old, loaded.config))
        for listener in list(self.config_listeners):
            try:
                listener(loaded.config)
            except Exception:
                log.exception("a part of the gateway failed to take the new config")

    def apply(self, snapshot: ControlSnapshot) -> None:
        """Swap in routes and runtime settings from the store."""
        self.last_snapshot = snapshot
        s = self.services
        gw = self.settings.config.gateway
        s.table = RouteTable(
            self.settings.config,
            s.environment,
            snapshot.aliases,
            snapshot.runtime,
            snapshot.version,
        )
        s.cache_mode = parse_cache(snapshot.runtime.get(CACHE))
        s.emergency = parse_emergency(snapshot.runtime.get("emergency"))
        queue = parse_queue(
            snapshot.runtime.get(QUEUE),
            size=gw.limits.queue_size,
            timeout=gw.limits.queue_timeout,
        )
        s.admission.configure(queue.enabled, queue.size, queue.timeout)
        s.breakers.force(forced_breakers(snapshot.runtime))
        s.metrics.control_reloads.labels(s.environment).inc()
        self._ensure_providers()

    def _ensure_providers(self) -> None:
        config = self.settings.config
        for deployment in self.services.table.in_use():
            if deployment.provider in self.providers:
                continue
            provider = config.provider(deployment.provider)
            if provider is None:
                continue
            try:
                self.providers[provider.name] = self.factory(provider, config.models)
            except QualityGatesError as exc:
                log.error("provider %s cannot be used: %s", provider.name, exc)

    def heartbeat(self) -> Heartbeat:
        """This process's heartbeat row now."""
        import psutil

        s = self.services
        process = psutil.Process()
        telemetry = s.telemetry
        return Heartbeat(
            id=self.instance,
            environment=s.environment,
            host=self.instance.split(":", 1)[0],
            pid=os.getpid(),
            listen=self.settings.listen,
            started_at=self.started_at,
            cpu_percent=process.cpu_percent(None),
            rss_bytes=process.memory_info().rss,
            inflight=s.admission.inflight,
            inflight_limit=s.admission.limit,
            queue_depth=s.admission.queue_depth,
            queue_limit=s.admission.queue_size if s.admission.queue_enabled else 0,
            dropped_telemetry=telemetry.dropped if telemetry else 0,
            buffered_telemetry=telemetry.buffered if telemetry else 0,
            control_version=s.table.version,
            breakers=breakers_json(s.breakers.views(time.time())),
        )


def redis_namespace(store_url: StoreURL) -> str:
    """Redis key prefix shared by the gateways of one store and apart from any other store's
    (so two deployments, or two test runs, can share a Redis without mixing state)."""
    import hashlib

    return f"qg:{hashlib.sha256(store_url.display.encode()).hexdigest()[:10]}:"


def _limits(config: QualityGatesConfig) -> dict[str, Limit]:
    return {p.name: Limit(p.quotas.rpm, p.quotas.tpm) for p in config.providers}


async def _open(
    settings: AppSettings,
    factory: ProviderFactory,
    providers: dict[str, ChatProvider] | None,
) -> GatewayApp:
    config = settings.config
    gw = config.gateway
    env = settings.environment
    database = Database(settings.store_url)
    loop = asyncio.get_running_loop()
    try:
        snapshot = await loop.run_in_executor(None, lambda: _first_snapshot(database, env))
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read the store at {settings.store_url.display}: {exc}") from exc
    instance = writer_id()
    redis = link = None
    if settings.redis_url:
        from quality_gates.gateway import _redis

        redis = _redis.redis_client(settings.redis_url)
        link = _redis.RedisLink(redis)
        try:
            await redis.ping()
        except _redis.REDIS_ERRORS as exc:  # Redis accelerates; the gateway starts without it
            link.lost(exc)
    holder: dict[str, GatewayApp] = {}
    breakers = BreakerBoard(gw.breaker)
    latency = LatencyBoard()
    namespace = redis_namespace(settings.store_url)
    limiter: RateLimiter = MemoryRateLimiter()
    if redis is not None and link is not None:
        limiter = _redis.FallbackRateLimiter(
            RedisRateLimiter(redis, namespace), MemoryRateLimiter(), link
        )
    budget = RetryBudget(gw.retry.budget_ratio, gw.retry.budget_min_per_second)
    admission = Admission(gw.limits.max_inflight)
    cache: ResponseCache | None = None
    if gw.cache.enabled:
        use_redis = gw.cache.backend == "redis" or (gw.cache.backend == "auto" and redis)
        if gw.cache.backend == "redis" and redis is None:
            raise StoreError(f"gateway.cache.backend is redis but ${REDIS_ENV} is not set")
        cache = MemoryCache(gw.cache)
        if use_redis and link is not None:
            cache = _redis.FallbackCache(RedisCache(redis, gw.cache, namespace), cache, link)
    telemetry = None
    if gw.telemetry.enabled:
        sink = ProcessSink(settings.store_url)
        telemetry = TelemetryWriter(gw.telemetry, env, instance, sink.write, sink.close)
    live: dict[str, ChatProvider] = dict(providers or {})

    def app_() -> GatewayApp:
        return holder["app"]

    state = GatewayState(
        environment=env,
        breakers=lambda: breakers.views(time.time()),
        inflight=lambda: admission.inflight,
        inflight_limit=lambda: admission.limit,
        queue_depth=lambda: admission.queue_depth,
        queue_limit=lambda: admission.queue_size if admission.queue_enabled else 0,
        cache_stats=lambda: cache.stats() if cache is not None else (0, 0),
        telemetry=lambda: (
            (
                telemetry.buffered,
                telemetry.dropped,
                telemetry.written_requests,
                telemetry.write_errors,
            )
            if telemetry
            else (0, 0, 0, 0)
        ),
        control_version=lambda: app_().services.table.version,
        store_ok=lambda: app_().control.store_ok,
    )
    metrics = GatewayMetrics(state)
    metrics.registry.register(StoreHealthCollector(database.health))  # type: ignore[arg-type]
    metrics.registry.register(ConnectionsCollector())  # type: ignore[arg-type]
    table = RouteTable(config, env, snapshot.aliases, snapshot.runtime, snapshot.version)
    provider_limits = _limits(config)
    dispatcher = Dispatcher(
        gw, env, lambda: live, breakers, latency, limiter, lambda: provider_limits, budget, metrics
    )
    services = Services(
        settings=gw,
        environment=env,
        table=table,
        breakers=breakers,
        latency=latency,
        dispatcher=dispatcher,
        limiter=limiter,
        budget=budget,
        admission=admission,
        cache=cache,
        telemetry=telemetry,
        metrics=metrics,
        key_limits={n: Limit(k.rpm, k.tpm) for n, k in gw.limits.keys.items()},
        default_key_limit=Limit(gw.limits.per_key.rpm, gw.limits.per_key.tpm),
    )
    control = ControlWatcher(
        env,
        database.connect,
        poll_interval=gw.control_poll,
        heartbeat_interval=gw.heartbeat,
        on_snapshot=lambda snap: app_().apply(snap),
        on_keys=lambda keys, ever: app_().set_keys(keys, ever),
        heartbeat=lambda: app_().heartbeat(),
        version=snapshot.version,
    )

    def on_probe(deployment: Any, result: Any) -> None:
        metrics.probes.labels(env, deployment.id, "ok" if result.healthy else "error").inc()

    def probe_sample(provider: str, result: Any, now: float) -> None:
        if telemetry is not None:
            telemetry.record_probe(
                provider, result.healthy, result.error_class, result.latency_ms, now
            )

    prober = Prober(
        gw.breaker.probe_interval,
        breakers,
        lambda: live,
        lambda: app_().services.table.in_use(),
        on_probe,
        probe_sample,
    )
    from quality_gates.gateway._feedback import FeedbackWriter

    app_state = GatewayApp(
        settings=settings,
        database=database,
        gateway=Gateway(services),
        services=services,
        providers=live,
        control=control,
        prober=prober,
        instance=instance,
        redis=redis,
        factory=factory,
        feedback_writer=FeedbackWriter(database.connect),
    )
    holder["app"] = app_state
    if redis is not None and link is not None:
        app_state.shared = SharedBreakers(redis, env, instance, breakers, namespace, link=link)
        breakers.listener = app_state.shared.on_transition
        link.on_back.append(app_state.shared.resync)
        app_state.redis_link = link
    app_state.apply(snapshot)
    return app_state


def _first_snapshot(database: Database, environment: str) -> ControlSnapshot:
    conn = database.connect()
    try:
        return read_snapshot(conn, environment)
    finally:
        conn.close()


class _Task:
    """A background service made of two coroutines."""

    def __init__(self, start: Callable[[], Any], close: Callable[[], Any]) -> None:
        self._start, self._close = start, close

    async def start(self) -> None:
        result = self._start()
        if asyncio.iscoroutine(result):
            await result

    async def close(self) -> None:
        result = self._close()
        if asyncio.iscoroutine(result):
            await result


def _background(state: GatewayApp, extra: Sequence[ServiceFactory]) -> list[BackgroundService]:
    """BACKGROUND SERVICES: everything that runs beside the request path, in start order
    (they stop in reverse). The watch plane's evaluator plugs in through `extra`."""
    services: list[BackgroundService] = [_Task(output_check.warm, lambda: None)]
    telemetry = state.services.telemetry
    if telemetry is not None:
        services.append(_Task(telemetry.start, telemetry.close))
    services.append(
        _Task(state.control.start, lambda: state.control.close(instance_id=state.instance))
    )
    services.append(_Task(state.prober.start, state.prober.close))
    services.append(_Task(lambda: None, state.feedback_writer.close))
    if state.shared is not None:
        services.append(_Task(state.shared.start, state.shared.close))
    path = state.settings.config_path
    if path is not None:
        state.reloader = ConfigReloader(path, state.settings.config_digest, state.reload_config)
        services.append(state.reloader)
    services.extend(factory(state) for factory in extra)
    return services


# Young-generation threshold once started (CPython's default is 700): the request path
# allocates a few hundred container objects per request, so the default runs a collection
# every couple of requests; fewer, slightly larger ones cost less in total.
GC_GEN0_THRESHOLD = 7000
# A full collection that took this long walked a heap that grew since the last freeze (the
# watch plane loads its scoring models after start-up: ~400k more objects, ~300 ms a pass).
GC_SLOW_FULL_MS = 20.0
# What start-up goes on loading after the first requests can be served (jsonschema imported
# in a thread, modules the first probes and the embedded watch import on first use) is
# frozen this long after start too, so the first full collection under traffic does not
# walk it (67 ms on the first streams of bench/gateway_stream.py before). gc.freeze() only
# moves lists: no pause.
GC_SETTLE_S = 10.0


class _FreezeSurvivors:
    """A gc callback: after a slow full collection, freeze what survived it. Everything alive
    right after a full collection is reachable, so freezing it frees nothing that could have
    been freed, and the next full collections walk only what came after."""

    def __init__(self, slow_ms: float = GC_SLOW_FULL_MS) -> None:
        self.slow_ms = slow_ms
        self.started = 0.0
        self.freezes = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
        elif (time.perf_counter() - self.started) * 1000.0 >= self.slow_ms:
            gc.freeze()
            self.freezes += 1


def tune_gc() -> None:
    """For a server process once its start-up is done: everything allocated so far (modules,
    config, routes) goes to the permanent generation, so does what start-up still loads in
    the next `GC_SETTLE_S`, and whatever survives a slow full collection later
    (`_FreezeSurvivors`), so full collections walk only what requests left behind.
    Measured at 500 req/s with the watch plane on: full collections over the ~500k start-up
    and scoring-model objects stopped the loop for 250-400 ms, several times a minute."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    if not any(isinstance(cb, _FreezeSurvivors) for cb in gc.callbacks):
        gc.callbacks.append(_FreezeSurvivors())
    with contextlib.suppress(RuntimeError):  # no loop: nothing loads later
        asyncio.get_running_loop().call_later(GC_SETTLE_S, gc.freeze)


def create_app(
    settings: AppSettings,
    *,
    provider_factory: ProviderFactory | None = None,
    providers: dict[str, ChatProvider] | None = None,
    services: Sequence[ServiceFactory] = (),
    server_process: bool = False,
) -> GatewayASGI:
    """The gateway app. `provider_factory` builds an adapter per provider (default: the
    real adapters); `providers` supplies ready ones by name (tests); `services` adds
    background services (e.g. the watch plane's evaluator). `server_process` (the app owns
    its process, as under `serve`) tunes the garbage collector once started (`tune_gc`)."""
    factory = provider_factory or default_provider_factory

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = await _open(settings, factory, providers)
        app.state.gateway = state
        running: list[BackgroundService] = []
        try:
            for service in _background(state, services):
                await service.start()
                running.append(service)
            await state.control.poll_once()  # keys and heartbeat before the first request
            if server_process:
                tune_gc()
            yield
        finally:
            for service in reversed(running):
                try:
                    await service.close()
                except Exception:
                    log.exception("a background service failed to stop cleanly")
            for adapter in state.providers.values():
                with contextlib.suppress(Exception):
                    await adapter.close()
            if state.redis_link is not None:
                await state.redis_link.close()
            if state.redis is not None:
                with contextlib.suppress(Exception):
                    await state.redis.aclose()

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/messages", MessagesEndpoint(), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    handlers = {404: unknown_route, 405: unknown_route}
    return GatewayASGI(Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers))


SETTINGS_ENV = {
    "config": "QG_CONFIG",
    "store": "QG_DATABASE_URL",
    "environment": "QG_GATEWAY_ENVIRONMENT",
    "listen": "QG_GATEWAY_LISTEN",
}


def settings_from_env() -> AppSettings:
    """AppSettings from the variables `quality-gates serve --workers N` sets for its workers."""
    from pathlib import Path

    from quality_gates.config import load_config

    missing = [v for v in SETTINGS_ENV.values() if not os.environ.get(v)]
    if missing:
        raise StoreError(f"gateway worker started without {', '.join(missing)}")
    loaded = load_config(Path(os.environ[SETTINGS_ENV["config"]]))
    return AppSettings.with_redis_from_env(
        config=loaded.config,
        store_url=StoreURL.parse(os.environ[SETTINGS_ENV["store"]], base_dir=loaded.directory),
        environment=os.environ[SETTINGS_ENV["environment"]],
        listen=os.environ[SETTINGS_ENV["listen"]],
        config_path=loaded.path,
        config_digest=loaded.digest,
    )


def app_from_env() -> GatewayASGI:
    """The app of one uvicorn worker process (factory for `--workers N`)."""
    return create_app(settings_from_env())
