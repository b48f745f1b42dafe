"""CPU per request of the gateway's chat path in process: the ASGI app called directly (no
HTTP server in front), 20 concurrent callers, against the same nginx stub as
bench/gateway.py (a fixed chat completion, zero latency), telemetry on, API key checked.

It isolates the gateway's own code from the HTTP server and the load generator, so a change
to the request path shows up here with a few percent of noise where the HTTP figures of
bench/gateway.py move by 10% from run to run. The process's CPU time includes its threads
(telemetry, control), not the telemetry writer's process nor the upstream.

    python bench/gateway_path.py [--requests 20000] [--rounds 3] [--profile] [--record]
        [--otel [--sample-ratio 0.05]]

With --otel the GenAI OpenTelemetry export is on (every request in the histograms, the
sampled share as spans, sent over OTLP/HTTP every second to the nginx stub, which answers
200 to anything), so the figure includes building and sending them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as peers
from _record import record

CONCURRENCY = 20
WARM_UP = 500


async def measure(app: Any, secret: str, requests: int, profile: bool) -> float:
    """Microseconds of process CPU per request over `requests` calls."""
    body = peers.BODY.encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {secret}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]

    async def one() -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": headers,
            "query_string": b"",
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"the gateway answered {sent[0]['status']}: {sent[1:]}")

    router = app.router
    async with router.router.lifespan_context(router):
        for _ in range(WARM_UP):
            await one()
        left = requests

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        profiler = cProfile.Profile() if profile else None
        cpu = time.process_time()
        if profiler:
            profiler.enable()
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        if profiler:
            profiler.disable()
        spent = time.process_time() - cpu
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return spent / requests * 1e6


def otel_section(bench: Any, ratio: float | None) -> str:
    """The config's OpenTelemetry export, sent to the nginx stub every second."""
    extra = f", sample_ratio: {ratio:g}" if ratio is not None else ""
    return (
        "observability:\n  opentelemetry: {enabled: true, interval: 1s, "
        f'endpoint: "http://127.0.0.1:{bench.ports["stub"]}"{extra}}}\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="fresh gateway per round")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--otel", action="store_true", help="OpenTelemetry GenAI export on")
    parser.add_argument("--sample-ratio", type=float, default=None, help="with --otel")
    args = parser.parse_args()
    import uvloop

    from quality_gates.config import load_config
    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.store import StoreURL

    work = Path(tempfile.mkdtemp(prefix="qg-bench-path-"))
    bench = peers.Bench(work, argparse.Namespace(connections=1, duration=1, litellm=""))
    figures = []
    try:
        bench.nginx()
        for n in range(args.rounds):
            config, secret = bench.workspace(f"gw-{n}")
            folder = config.parent
            services: list[Any] = []
            if args.otel:
                config.write_text(config.read_text() + otel_section(bench, args.sample_ratio))
                from quality_gates.watch._genai_export import genai_background

                services.append(genai_background)
            settings = AppSettings(
                config=load_config(config).config,
                store_url=StoreURL.parse(f"sqlite:///{folder / '.quality-gates' / 'state.db'}"),
                environment="production",
            )
            os.chdir(folder)
            app = create_app(settings, services=services)
            last = args.profile and n == args.rounds - 1
            figures.append(uvloop.run(measure(app, secret, args.requests, last)))
            print(f"round {n + 1}: {figures[-1]:.0f} us of CPU per request", flush=True)
    finally:
        bench.stop_all()
    command = f"python bench/gateway_path.py --requests {args.requests} --rounds {args.rounds}"
    if args.otel:
        command += " --otel" + (
            f" --sample-ratio {args.sample_ratio:g}" if args.sample_ratio is not None else ""
        )
    body = (
        "| round | CPU per request |\n|---|---:|\n"
        + "".join(f"| {n + 1} | {f:.0f} us |\n" for n, f in enumerate(figures))
        + f"\nMedian {statistics.median(figures):.0f} us of process CPU per request: the chat "
        f"path called as an ASGI app by {CONCURRENCY} concurrent callers (no HTTP server), "
        "telemetry on, API key checked, against the nginx stub of bench/gateway.py"
        + (", OpenTelemetry GenAI export on." if args.otel else ".")
    )
    print(f"\n$ {command}\n{body}")
    if args.record:
        key, title = "gateway_path", "Gateway chat path in process (CPU per request)"
        if args.otel:
            key, title = "gateway_path_otel", title + ", OpenTelemetry export on"
        record(key, title, command, body)


if __name__ == "__main__":
    main()
