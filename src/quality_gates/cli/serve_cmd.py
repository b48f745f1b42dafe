"""`serve`: run the OpenAI-compatible gateway for one environment."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.store import StoreURL

APP_FACTORY = "quality_gates.cli._serve_app:app_from_env"


def register(group: click.Group) -> None:
    """Add `serve`."""
    group.add_command(serve)


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: gateway.host].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port; 0 picks a free one [default: gateway.port, 8080].",
)
@click.option(
    "--environment",
    "-e",
    default=None,
    metavar="ENV",
    help="Environment whose aliases and routes to serve [default: gateway.environment].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes sharing the port [default: gateway.workers, 1].",
)
@click.option(
    "--watch/--no-watch",
    default=None,
    help="Run the alert evaluator inside the gateway [default: gateway.watch, on].",
)
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve the status page and operator dashboard on this port (0: a free one).",
)
@json_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    environment: str | None,
    workers: int | None,
    watch: bool | None,
    admin_port: int | None,
    json_output: bool,
) -> None:
    """Serve /v1/chat/completions, /v1/models, /healthz, /readyz and /metrics until stopped
    (Ctrl-C or SIGTERM drain in-flight requests and flush telemetry)."""
    import json
    import logging
    import os
    import sys

    from quality_gates.cli._output import info
    from quality_gates.gateway._app import REDIS_ENV
    from quality_gates.registry import check_environment

    state = _context.state(ctx)
    loaded = state.loaded()
    gw = loaded.config.gateway
    env = environment or gw.environment
    conn = state.conn()
    check_environment(conn, env, state.snapshot())
    store_url = state.store_url()
    host = host or gw.host
    port = gw.port if port is None else port
    workers = workers or gw.workers
    watch = gw.watch if watch is None else watch
    server = _server(gw.server, workers)  # a lean server asked to run several workers fails here
    for provider in loaded.config.providers:
        provider.missing_credentials()  # fail now, not in a worker
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        from quality_gates.errors import UsageError

        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="pick another --port, or 0 for a free one",
        ) from None
    bound = sock.getsockname()[1]
    listen = f"http://{host}:{bound}"
    admin = None
    if admin_port is not None:
        from quality_gates.cli.dashboard_cmd import bind_admin, web_app
        from quality_gates.web.server import AdminServer

        admin_sock = bind_admin(host, admin_port, "--admin-port")
        admin_url = f"http://{host}:{admin_sock.getsockname()[1]}"
        admin = (AdminServer(web_app(state, env), admin_sock), admin_url)
    redis_url = os.environ.get(REDIS_ENV) or None
    from quality_gates.gateway._server import default_max_connections, raise_fd_limit

    fds_before, fds = raise_fd_limit()
    max_connections = gw.max_connections or default_max_connections(fds, gw.limits.max_inflight)
    facts = {
        "listen": listen,
        "environment": env,
        "workers": workers,
        "server": server,
        "store": store_url.display,
        "redis": bool(redis_url),
        "watch": watch,
        "admin": admin[1] if admin else None,
        "pid": os.getpid(),
        "fd_limit": fds,
        "fd_limit_raised_from": fds_before if fds_before != fds else None,
        "max_connections": max_connections,
    }
    if _context.wants_json(ctx, json_output):
        # One line, flushed before serving starts: a supervisor reads the address from it.
        sys.stdout.write(json.dumps(facts) + "\n")
        sys.stdout.flush()
    else:
        info(
            f"quality-gates gateway on {listen} (environment {env}, {workers} worker(s) "
            f"on {server}, "
            f"store {store_url.display}{', Redis shared state' if redis_url else ''}"
            f"{', alert evaluator on' if watch else ''})"
        )
        raised = f", raised from {fds_before}" if fds_before != fds else ""
        info(f"file descriptors: {fds}{raised}; up to {max_connections} client connections")
        if admin:
            info(f"status page {admin[1]}/status, operator dashboard {admin[1]}/")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    state.close()  # the workers open their own connections; none may be shared with them
    if admin:
        admin[0].start()  # a thread of this process, whichever server runs the gateway
    try:
        _run(
            loaded.config,
            store_url,
            env,
            listen,
            redis_url,
            workers,
            sock,
            str(loaded.path),
            store_url.raw,
            watch,
            server,
            max_connections,
            loaded.digest,
        )
    finally:
        if admin:
            admin[0].stop()


def _server(choice: str, workers: int) -> str:
    """The server to run: `auto` is the gateway's own (`lean`) for one process and uvicorn
    for several (its supervisor runs the workers). On a zero-latency upstream the lean
    server served 13% more requests per second than uvicorn (uvloop, httptools) at
    saturation and added +1.5 ms of p99 at 500 req/s against uvicorn's +2.6 and granian's
    +6.0 (bench/gateway.py, 2026-11-28)."""
    if choice == "auto":
        return "lean" if workers == 1 else "uvicorn"
    if choice == "lean" and workers > 1:
        from quality_gates.errors import UsageError

        raise UsageError(
            f"gateway.server lean runs one process; it cannot run --workers {workers}",
            hint="set gateway.server to auto or uvicorn for several workers, or run several "
            "serve processes behind a balancer",
        )
    return choice


@contextlib.contextmanager
def _drained_stop() -> Iterator[None]:
    """SIGINT and SIGTERM end `serve` with exit 0 once uvicorn has drained and flushed.

    uvicorn catches both, shuts down gracefully, then puts back the handlers it found and
    raises the signal again, so the process would die of it (exit -15) after a clean stop.
    The handlers found are these, which note the signal and return."""
    import signal

    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    config: QualityGatesConfig,
    store_url: StoreURL,
    env: str,
    listen: str,
    redis_url: str | None,
    workers: int,
    sock: socket.socket,
    config_path: str,
    store_raw: str,
    watch: bool,
    server: str,
    max_connections: int,
    config_digest: str | None = None,
) -> None:
    import os

    from quality_gates.cli._serve_app import WATCH_ENV, build
    from quality_gates.errors import StoreError
    from quality_gates.gateway._app import SETTINGS_ENV, AppSettings

    try:
        if server == "granian":
            # Granian binds its own socket (in its supervisor, shared with its workers); the
            # port was found free by binding it here, so hand it over.
            host, port = sock.getsockname()[:2]
            sock.close()
            os.environ.update(
                {
                    SETTINGS_ENV["config"]: config_path,
                    SETTINGS_ENV["store"]: store_raw,
                    SETTINGS_ENV["environment"]: env,
                    SETTINGS_ENV["listen"]: listen,
                    WATCH_ENV: "1" if watch else "0",
                }
            )
            from granian import Granian
            from granian.constants import Interfaces, Loops
            from granian.log import LogLevels

            Granian(
                APP_FACTORY,
                address=host,
                port=port,
                interface=Interfaces.ASGI,
                workers=workers,
                loop=Loops.uvloop,
                websockets=False,
                factory=True,
                log_level=LogLevels.warning,
                log_access=False,
                workers_kill_timeout=30,
            ).serve()
            return
        import uvicorn

        common: dict[str, Any] = {
            "log_level": "warning",
            "access_log": False,
            "loop": "uvloop",
            "http": "httptools",
            "lifespan": "on",
            "timeout_graceful_shutdown": 30,
            # uvicorn's bound counts connections and requests in flight; past it, 503.
            "limit_concurrency": max_connections,
            # X-Forwarded-For only from gateway.trusted_proxies (uvicorn trusts 127.0.0.1).
            "proxy_headers": bool(config.gateway.trusted_proxies),
            "forwarded_allow_ips": list(config.gateway.trusted_proxies),
        }
        if workers == 1:
            settings = AppSettings(
                config=config,
                store_url=store_url,
                environment=env,
                redis_url=redis_url,
                listen=listen,
                config_path=Path(config_path).resolve(),
                config_digest=config_digest,
            )
            app = build(
                settings,
                watch=watch,
                config_dir=Path(config_path).parent,
                config_path=Path(config_path).resolve(),
                server_process=True,
            )
            if server == "lean":
                from quality_gates.gateway import _server as lean

                try:
                    lean.run(
                        app,
                        sock,
                        max_body=config.gateway.max_body_bytes,
                        max_connections=max_connections,
                        header_timeout=config.gateway.header_timeout,
                    )
                except lean.StartupFailed as exc:
                    raise StoreError(f"the gateway could not start: {exc}") from None
                return
            with _drained_stop():
                uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        os.environ.update(
            {
                SETTINGS_ENV["config"]: config_path,
                SETTINGS_ENV["store"]: store_raw,
                SETTINGS_ENV["environment"]: env,
                SETTINGS_ENV["listen"]: listen,
                WATCH_ENV: "1" if watch else "0",
            }
        )
        config_ = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **common)
        Multiprocess(config_, sockets=[sock]).run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise StoreError("the gateway could not start (see the log lines above)") from None
    finally:
        sock.close()
