"""`dashboard`: the public status page and the operator dashboard, on their own port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option

if TYPE_CHECKING:
    import socket

    from quality_gates.cli._context import CliContext


def register(group: click.Group) -> None:
    """Add `dashboard`."""
    group.add_command(dashboard)


def web_app(state: CliContext, environment: str) -> Any:
    """The web app of one environment of the CLI's config and store (`serve` shares it)."""
    from quality_gates.web.app import WebAppSettings, create_web_app

    return create_web_app(
        WebAppSettings(
            config=state.loaded().config, store_url=state.store_url(), environment=environment
        )
    )


def bind_admin(host: str, port: int, flag: str) -> socket.socket:
    """The web app's socket, or a UsageError naming the flag to change."""
    from quality_gates.errors import UsageError
    from quality_gates.web.server import bind

    try:
        return bind(host, port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint=f"pick another {flag}, or 0 for a free one",
        ) from None


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: web.host].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port; 0 picks a free one [default: web.port, 8081].",
)
@click.option(
    "--environment",
    "-e",
    default=None,
    metavar="ENV",
    help="Environment to show [default: gateway.environment].",
)
@json_option
@click.pass_context
def dashboard(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    environment: str | None,
    json_output: bool,
) -> None:
    """Serve the public status page (/status, /status.json) and the operator dashboard (/,
    sign in with an operator or admin key) until Ctrl-C or SIGTERM."""
    import json
    import os
    import sys

    from quality_gates.cli._output import info
    from quality_gates.registry import check_environment
    from quality_gates.web.server import serve_forever

    state = _context.state(ctx)
    config = state.loaded().config
    env = environment or config.gateway.environment
    check_environment(state.conn(), env, state.snapshot())
    host = host or config.web.host
    sock = bind_admin(host, config.web.port if port is None else port, "--port")
    listen = f"http://{host}:{sock.getsockname()[1]}"
    app = web_app(state, env)
    if _context.wants_json(ctx, json_output):
        # One line before serving: a supervisor reads the address from it.
        facts = {"listen": listen, "environment": env, "pid": os.getpid()}
        sys.stdout.write(json.dumps(facts) + "\n")
        sys.stdout.flush()
    else:
        info(
            f"quality-gates dashboard on {listen}/ (status page {listen}/status, environment {env})"
        )
    state.close()  # the app opens a connection per worker thread
    serve_forever(app, sock)
