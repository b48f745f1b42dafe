"""CPU per request of the gateway's chat path in process: the ASGI app called directly (no
HTTP server in front), 20 concurrent callers, against the same nginx stub as
bench/gateway.py (a fixed chat completion, zero latency), telemetry on, API key checked.

It isolates the gateway's own code from the HTTP server and the load generator, so a change
to the request path shows up here with a few percent of noise where the HTTP figures of
bench/gateway.py move by 10% from run to run. The process's CPU time includes its threads
(telemetry, control), not the telemetry writer's process nor the upstream.

    python bench/gateway_path.py [--requests 20000] [--rounds 3] [--profile] [--record] [--tools]

`--tools` sends a request with two tool definitions and a tool-call turn with its result in
the history instead (the stub's answer stays plain text, so this is the request side of
tools: parsing, validation and translation for the provider).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
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
_WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
TOOLS_BODY = json.dumps(
    {
        "model": "current",
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"high_c": 4}'},
        ],
        "tools": [
            {"type": "function", "function": {"name": n, "parameters": _WEATHER}}
            for n in ("get_weather", "get_forecast")
        ],
        "tool_choice": "auto",
    }
)


async def measure(app: Any, secret: str, requests: int, profile: bool, body: bytes) -> float:
    """Microseconds of process CPU per request over `requests` calls."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="fresh gateway per round")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--tools", action="store_true", help="a request with tools and history")
    args = parser.parse_args()
    request_body = (TOOLS_BODY if args.tools else peers.BODY).encode()
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
            settings = AppSettings(
                config=load_config(config).config,
                store_url=StoreURL.parse(f"sqlite:///{folder / '.quality-gates' / 'state.db'}"),
                environment="production",
            )
            os.chdir(folder)
            app = create_app(settings)
            last = args.profile and n == args.rounds - 1
            figures.append(uvloop.run(measure(app, secret, args.requests, last, request_body)))
            print(f"round {n + 1}: {figures[-1]:.0f} us of CPU per request", flush=True)
    finally:
        bench.stop_all()
    command = f"python bench/gateway_path.py --requests {args.requests} --rounds {args.rounds}"
    command += " --tools" if args.tools else ""
    body = (
        "| round | CPU per request |\n|---|---:|\n"
        + "".join(f"| {n + 1} | {f:.0f} us |\n" for n, f in enumerate(figures))
        + f"\nMedian {statistics.median(figures):.0f} us of process CPU per request: the chat "
        f"path called as an ASGI app by {CONCURRENCY} concurrent callers (no HTTP server), "
        "telemetry on, API key checked, against the nginx stub of bench/gateway.py."
    )
    print(f"\n$ {command}\n{body}")
    if args.record:
        if args.tools:
            title = "Gateway chat path in process, a tools request (CPU per request)"
            record("gateway_path_tools", title, command, body)
        else:
            record("gateway_path", "Gateway chat path in process (CPU per request)", command, body)


if __name__ == "__main__":
    main()
