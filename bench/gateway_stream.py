"""Streaming through the gateway: what it adds to time to first token and between chunks,
and how many chunks it relays per second of its own CPU.

A stub upstream (its own process, aiohttp) streams N chunks at a fixed pace for every
request; C concurrent clients read them straight from the stub, through an nginx hop
(proxy_buffering off) and through `quality-gates serve` (the lean server, telemetry on,
API key checked). Added time is the gateway's (or nginx's) figure minus the direct one.

    python bench/gateway_stream.py [--streams 100] [--chunks 200] [--pace-ms 10] [--record]

LiteLLM's proxy is not a peer here: its proxy extra is not installed in the dev
environment (the `litellm` client library is).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as peers
from _record import record

HOP = """worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  upstream stub {{ server 127.0.0.1:{stub}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{hop};
    location / {{ proxy_pass http://stub; proxy_http_version 1.1; proxy_buffering off;
                 proxy_set_header Connection ""; }}
  }}
}}
"""
BODY = '{"model":"current","stream":true,"messages":[{"role":"user","content":"Stream please"}]}'


def stub(port: int, chunks: int, pace: float) -> None:
    """The upstream: every stream request gets `chunks` content chunks `pace` s apart."""
    from aiohttp import web

    head = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"stub",'
    piece = head + b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
    end = (
        head
        + b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        + head
        + b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":'
        + str(chunks).encode()
        + b',"total_tokens":'
        + str(chunks + 5).encode()
        + b"}}\n\ndata: [DONE]\n\n"
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=peers.STUB_ANSWER.encode(), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(chunks):
            delay = start + i * pace - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(piece)
        await response.write(end)
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", ok)
    app.router.add_get("/", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def one(session: Any, url: str, headers: dict[str, str]) -> tuple[float, list[float], int]:
    """TTFT (ms), the gaps between content chunks (ms), and how many arrived."""
    started = time.perf_counter()
    first = last = 0.0
    gaps: list[float] = []
    count = 0
    async with session.post(url, data=BODY, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        async for line in response.content:
            if not line.startswith(b"data: {") or b'"content"' not in line:
                continue
            now = time.perf_counter()
            if count == 0:
                first = now
            else:
                gaps.append((now - last) * 1000.0)
            last = now
            count += 1
    return (first - started) * 1000.0, gaps, count


async def run(url: str, streams: int, headers: dict[str, str]) -> dict[str, float]:
    """`streams` concurrent streams against `url`."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        results = await asyncio.gather(*(one(session, url, headers) for _ in range(streams)))
    ttfts = sorted(r[0] for r in results)
    gaps = sorted(g for r in results for g in r[1])

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))]

    return {
        "ttft_p50": pct(ttfts, 0.50),
        "ttft_p99": pct(ttfts, 0.99),
        "gap_mean": statistics.fmean(gaps),
        "gap_p99": pct(gaps, 0.99),
        "chunks": float(sum(r[2] for r in results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--pace-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        stub(args.stub, args.chunks, args.pace_ms / 1000.0)
        return
    import psutil

    work = Path(tempfile.mkdtemp(prefix="qg-bench-stream-"))
    bench = peers.Bench(work, argparse.Namespace(connections=1, duration=1, litellm=""))
    ports = bench.ports
    figures: dict[str, list[dict[str, float]]] = {"direct": [], "nginx": [], "gateway": []}
    cpu_per_chunk: list[float] = []
    try:
        bench.start(
            [
                sys.executable,
                __file__,
                "--stub",
                str(ports["stub"]),
                "--chunks",
                str(args.chunks),
                "--pace-ms",
                str(args.pace_ms),
            ],
            "stub.log",
        )
        peers.wait_http(f"http://127.0.0.1:{ports['stub']}/", 30)
        conf = work / "hop.conf"
        conf.write_text(HOP.format(dir=work, stub=ports["stub"], hop=ports["hop"]))
        bench.start(["nginx", "-c", str(conf), "-p", str(work)], "nginx.log")
        folder = bench.gateway("lean")
        gateway = psutil.Process(bench.procs[-1].pid)
        key = (folder / "key").read_text()
        targets = {
            "direct": (f"http://127.0.0.1:{ports['stub']}/v1/chat/completions", {}),
            "nginx": (f"http://127.0.0.1:{ports['hop']}/v1/chat/completions", {}),
            "gateway": (
                f"http://127.0.0.1:{ports['lean']}/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
        }
        asyncio.run(run(targets["gateway"][0], 10, targets["gateway"][1]))  # warm up
        for n in range(args.rounds):
            for name, (url, headers) in targets.items():
                before = sum(gateway.cpu_times()[:2])
                figures[name].append(asyncio.run(run(url, args.streams, headers)))
                if name == "gateway":
                    spent = sum(gateway.cpu_times()[:2]) - before
                    cpu_per_chunk.append(figures[name][-1]["chunks"] / max(spent, 1e-9))
            print(
                f"round {n + 1}: "
                + ", ".join(f"{k} ttft p99 {v[-1]['ttft_p99']:.1f} ms" for k, v in figures.items()),
                flush=True,
            )
    finally:
        bench.stop_all()

    def med(name: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[name])

    command = (
        f"python bench/gateway_stream.py --streams {args.streams} --chunks {args.chunks} "
        f"--pace-ms {args.pace_ms:g} --rounds {args.rounds}"
    )
    lines = ["| path | TTFT p50 | TTFT p99 | gap mean | gap p99 |", "|---|---:|---:|---:|---:|"]
    for name in figures:
        lines.append(
            f"| {name} | {med(name, 'ttft_p50'):.2f} ms | {med(name, 'ttft_p99'):.2f} ms | "
            f"{med(name, 'gap_mean'):.2f} ms | {med(name, 'gap_p99'):.2f} ms |"
        )
    added = {
        hop: (
            med(hop, "ttft_p50") - med("direct", "ttft_p50"),
            med(hop, "ttft_p99") - med("direct", "ttft_p99"),
            med(hop, "gap_mean") - med("direct", "gap_mean"),
        )
        for hop in ("nginx", "gateway")
    }
    body = (
        "\n".join(lines)
        + "\n\n"
        + "".join(
            f"Added by {hop}: TTFT p50 {a[0]:+.2f} ms, p99 {a[1]:+.2f} ms; inter-chunk "
            f"delay {a[2]:+.3f} ms on average.\n"
            for hop, a in added.items()
        )
        + f"\nThe gateway relayed {statistics.median(cpu_per_chunk):,.0f} chunks per second of "
        f"its own CPU ({args.streams} concurrent streams of {args.chunks} chunks, "
        f"{args.pace_ms:g} ms apart; medians of {args.rounds} rounds). LiteLLM's proxy is not "
        "in this run (its proxy extra is not installed here)."
    )
    print(f"\n$ {command}\n{body}")
    if args.record:
        record("gateway_stream", "Gateway streaming: added TTFT and chunk delay", command, body)


if __name__ == "__main__":
    main()
