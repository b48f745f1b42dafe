"""CPU per request of the gateway's chat path in process: the ASGI app called directly (no
HTTP server in front), 20 concurrent callers, against the same nginx stub as
bench/gateway.py (a fixed chat completion, zero latency), telemetry on, API key checked.

It isolates the gateway's own code from the HTTP server and the load generator, so a change
to the request path shows up here with a few percent of noise where the HTTP figures of
bench/gateway.py move by 10% from run to run. The process's CPU time includes its threads
(telemetry, control), not the telemetry writer's process nor the upstream.

    python bench/gateway_path.py [--requests 20000] [--rounds 3] [--profile] [--record] [--tools]
        [--tool-answer]
        [--otel off|on|both [--sample-ratio 0.01]]

`--tools` sends a request with two tool definitions and a tool-call turn with its result in
the history instead (the stub's answer stays plain text, so this is the request side of
tools: parsing, validation and translation for the provider). `--tool-answer` (with
`--tools`) has the stub answer with a tool call instead, so the figure also holds reading
the call back and checking it against the tool's schema (`invalid_output_rate`).

With `--otel on` the GenAI OpenTelemetry export is on with its defaults (every request in
the histograms, 1% of them as spans sent each second, the histograms every 15 s and at
shutdown, over OTLP/HTTP to the nginx stub, which answers 200 to anything); the figure
includes building and sending them, up to the last flush at shutdown. `both` alternates
rounds without and with it, so both see the same machine.
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

# A tool call valid against get_forecast's schema, as an OpenAI-compatible upstream sends it.
TOOL_ANSWER = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {
                                "name": "get_forecast",
                                "arguments": '{"city":"Bergen","unit":"celsius"}',
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
    },
    separators=(",", ":"),
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
    # The shutdown is counted too: it flushes what background work (telemetry, an export)
    # still holds for the measured requests.
    spent = time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return spent / requests * 1e6


def otel_section(bench: Any, ratio: float | None) -> str:
    """The config's OpenTelemetry export (its defaults otherwise), sent to the nginx stub."""
    extra = f", sample_ratio: {ratio:g}" if ratio is not None else ""
    return (
        "observability:\n  opentelemetry: {enabled: true, "
        f'endpoint: "http://127.0.0.1:{bench.ports["stub"]}"{extra}}}\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="fresh gateway per round")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--tools", action="store_true", help="a request with tools and history")
    parser.add_argument(
        "--tool-answer", action="store_true", help="with --tools: the stub answers a tool call"
    )
    parser.add_argument(
        "--otel", choices=["off", "on", "both"], default="off", help="GenAI OpenTelemetry export"
    )
    parser.add_argument("--sample-ratio", type=float, default=None, help="with --otel on/both")
    args = parser.parse_args()
    request_body = (TOOLS_BODY if args.tools else peers.BODY).encode()
    if args.tool_answer and not args.tools:
        parser.error("--tool-answer needs --tools")
    import uvloop

    from quality_gates.config import load_config
    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.store import StoreURL

    work = Path(tempfile.mkdtemp(prefix="qg-bench-path-"))
    bench = peers.Bench(work, argparse.Namespace(connections=1, duration=1, litellm=""))
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.otel]
    figures: dict[bool, list[float]] = {mode: [] for mode in modes}
    try:
        bench.nginx(TOOL_ANSWER if args.tool_answer else peers.STUB_ANSWER)
        for n in range(args.rounds):
            for otel in modes:
                config, secret = bench.workspace(f"gw-{n}-{int(otel)}")
                folder = config.parent
                services: list[Any] = []
                if otel:
                    config.write_text(config.read_text() + otel_section(bench, args.sample_ratio))
                    from quality_gates.exports._genai_export import genai_background

                    services.append(genai_background)
                settings = AppSettings(
                    config=load_config(config).config,
                    store_url=StoreURL.parse(f"sqlite:///{folder / '.quality-gates' / 'state.db'}"),
                    environment="production",
                )
                os.chdir(folder)
                app = create_app(settings, services=services)
                last = args.profile and n == args.rounds - 1
                figures[otel].append(
                    uvloop.run(measure(app, secret, args.requests, last, request_body))
                )
                label = " (export on)" if otel else ""
                print(
                    f"round {n + 1}{label}: {figures[otel][-1]:.0f} us of CPU per request",
                    flush=True,
                )
    finally:
        bench.stop_all()
    command = f"python bench/gateway_path.py --requests {args.requests} --rounds {args.rounds}"
    command += " --tools" if args.tools else ""
    command += " --tool-answer" if args.tool_answer else ""
    if args.otel != "off":
        command += f" --otel {args.otel}" + (
            f" --sample-ratio {args.sample_ratio:g}" if args.sample_ratio is not None else ""
        )
    columns = [("export off", False), ("export on", True)]
    columns = [(name, mode) for name, mode in columns if mode in figures]
    body = (
        "| round | " + " | ".join(name for name, _ in columns) + " |\n"
        "|---|"
        + "---:|" * len(columns)
        + "\n"
        + "".join(
            f"| {n + 1} | " + " | ".join(f"{figures[m][n]:.0f} us" for _, m in columns) + " |\n"
            for n in range(args.rounds)
        )
        + "\nMedian "
        + ", ".join(f"{statistics.median(figures[m]):.0f} us ({name})" for name, m in columns)
        + f" of process CPU per request: the chat path called as an ASGI app by {CONCURRENCY} "
        "concurrent callers (no HTTP server), telemetry on, API key checked, against the nginx "
        "stub of bench/gateway.py."
    )
    if len(columns) == 2:
        off, on = (statistics.median(figures[m]) for m in (False, True))
        # Each round's pair ran back to back, so its difference is the steadier figure on a
        # machine whose load drifts.
        pairs = [(b - a) / a * 100 for a, b in zip(figures[False], figures[True], strict=True)]
        body += (
            f" The OpenTelemetry GenAI export costs {(on - off) / off * 100:+.1f}% between the "
            f"medians, {statistics.median(pairs):+.1f}% as the median of the rounds' pairs."
        )
    print(f"\n$ {command}\n{body}")
    if args.record:
        key, title = "gateway_path", "Gateway chat path in process (CPU per request)"
        if args.tools:
            key, title = "gateway_path_tools", "Gateway chat path in process, a tools request"
        if args.tool_answer:
            key, title = key + "_answer", title + " answered by a tool call"
        if args.otel != "off":
            key, title = key + "_otel", title + " with the OpenTelemetry export"
        record(key, title, command, body)


if __name__ == "__main__":
    main()
