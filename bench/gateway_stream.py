"""Streaming through the gateway: what it adds to time to first token and between chunks,
and how many chunks it relays per second of its own CPU, beside an nginx hop and LiteLLM.

A stub upstream (its own process, aiohttp) streams N chunks at a fixed pace for every
request. Clients read them straight from the stub, through an nginx hop (proxy_buffering
off), through `quality-gates serve` (the lean server, telemetry and the embedded watch on,
API key checked) and through the LiteLLM proxy (one worker, master key), all in the same
run. Added time is a path's figure minus the direct one.

Two loads per path and round:
- steady (the verdict): C clients each open streams back to back, their starts spread
  evenly over one stream's length, so C streams are open at any moment and new ones arrive
  at a steady rate; TTFT and inter-chunk gaps of every stream after the first stream length;
- burst (shown beside): C streams opened at the same instant, so the last one waits for the
  proxy to set up the C-1 before it (a thundering herd, not a concurrency level).

Chunks per CPU second: content chunks the clients received through the path over the CPU
time (user + system) the proxy's processes spent meanwhile, the gateway's telemetry and
scoring children included; targets: added TTFT p99 <= 5 ms at 100 concurrent streams and
>= 30x LiteLLM's chunks per CPU second.

    python bench/gateway_stream.py [--streams 100] [--chunks 200] [--pace-ms 10]
        [--seconds 10] [--rounds 3] [--litellm /tmp/litellm-venv/bin/litellm] [--record]

LiteLLM is not a dependency: install it in a throwaway venv outside the repo
(`python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


@dataclass
class Stream:
    """One stream as a client saw it."""

    started: float
    ttft_ms: float
    gaps_ms: list[float]
    chunks: int


async def one(session: Any, url: str, headers: dict[str, str]) -> Stream:
    """Read one stream: TTFT, the gaps between its content chunks, how many arrived."""
    started = time.perf_counter()
    first = last = 0.0
    gaps: list[float] = []
    count = 0
    async with session.post(url, data=BODY, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        async for line in response.content:
            if not line.startswith(b"data: {") or b"tok " not in line:
                continue
            now = time.perf_counter()
            if count == 0:
                first = now
            else:
                gaps.append((now - last) * 1000.0)
            last = now
            count += 1
    return Stream(started, (first - started) * 1000.0, gaps, count)


def _session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=300)
    )


async def burst(url: str, streams: int, headers: dict[str, str]) -> list[Stream]:
    """`streams` streams opened at the same instant."""
    async with _session() as session:
        return list(await asyncio.gather(*(one(session, url, headers) for _ in range(streams))))


async def steady(
    url: str, streams: int, headers: dict[str, str], seconds: float, stream_s: float
) -> tuple[list[Stream], int]:
    """`streams` clients opening streams back to back for `seconds`, their first starts
    spread over `stream_s`: the streams that started after the ramp (one `stream_s`), and
    the content chunks of every stream (what the proxy's CPU relayed meanwhile)."""
    async with _session() as session:
        begin = time.perf_counter()
        stop = begin + stream_s + seconds

        async def client(i: int) -> list[Stream]:
            await asyncio.sleep(i * stream_s / streams)
            done = []
            while time.perf_counter() < stop:
                done.append(await one(session, url, headers))
            return done

        results = await asyncio.gather(*(client(i) for i in range(streams)))
    every = [s for r in results for s in r]
    return [s for s in every if s.started >= begin + stream_s], sum(s.chunks for s in every)


def pct(values: list[float], p: float) -> float:
    """The p-quantile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(p * len(values)))]


def summary(streams: list[Stream]) -> dict[str, float]:
    """TTFT and gap percentiles of a load's streams."""
    ttfts = sorted(s.ttft_ms for s in streams)
    gaps = sorted(g for s in streams for g in s.gaps_ms)
    return {
        "streams": float(len(streams)),
        "ttft_p50": pct(ttfts, 0.50),
        "ttft_p99": pct(ttfts, 0.99),
        "gap_mean": statistics.fmean(gaps),
        "gap_p99": pct(gaps, 0.99),
        "chunks": float(sum(s.chunks for s in streams)),
    }


def cpu_seconds(procs: list[Any], children: bool = True) -> tuple[float, float]:
    """User and system CPU of processes (and all their children), now."""
    import psutil

    user = system = 0.0
    for proc in procs:
        try:
            family = [proc, *proc.children(recursive=True)] if children else [proc]
        except psutil.NoSuchProcess:
            continue
        for p in family:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            user += times.user
            system += times.system
    return user, system


@dataclass
class Path_:
    """A path the clients stream through: its URL, headers and the processes whose CPU it
    costs (none for the direct path)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    procs: list[Any] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--pace-ms", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="steady load per path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--litellm", default=peers.DEFAULT_LITELLM)
    parser.add_argument("--no-burst", action="store_true", help="only the steady load")
    parser.add_argument("--only", help="comma-separated paths (direct,nginx,gateway,litellm)")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        stub(args.stub, args.chunks, args.pace_ms / 1000.0)
        return
    import psutil

    stream_s = args.chunks * args.pace_ms / 1000.0
    work = Path(tempfile.mkdtemp(prefix="qg-bench-stream-"))
    bench = peers.Bench(work, argparse.Namespace(connections=1, duration=1, litellm=args.litellm))
    ports = bench.ports
    wanted = set((args.only or "direct,nginx,gateway,litellm").split(","))
    loads = ("steady",) if args.no_burst else ("steady", "burst")
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    per_cpu: dict[str, list[float]] = {}
    try:
        bench.start(
            [sys.executable, __file__, "--stub", str(ports["stub"]), "--chunks",
             str(args.chunks), "--pace-ms", str(args.pace_ms)],
            "stub.log",
        )  # fmt: skip
        peers.wait_http(f"http://127.0.0.1:{ports['stub']}/", 30)
        paths = {"direct": Path_(f"http://127.0.0.1:{ports['stub']}/v1/chat/completions")}
        if "nginx" in wanted:
            conf = work / "hop.conf"
            conf.write_text(HOP.format(dir=work, stub=ports["stub"], hop=ports["hop"]))
            hop = bench.start(["nginx", "-c", str(conf), "-p", str(work)], "nginx.log")
            peers.wait_http(f"http://127.0.0.1:{ports['hop']}/", 10)
            paths["nginx"] = Path_(
                f"http://127.0.0.1:{ports['hop']}/v1/chat/completions",
                procs=[psutil.Process(hop.pid)],
            )
        if "gateway" in wanted:
            folder = bench.gateway("lean")
            key = (folder / "key").read_text()
            paths["gateway"] = Path_(
                f"http://127.0.0.1:{ports['lean']}/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
                [psutil.Process(bench.procs[-1].pid)],
            )
        if "litellm" in wanted and bench.litellm():
            paths["LiteLLM"] = Path_(
                f"http://127.0.0.1:{ports['litellm']}/v1/chat/completions",
                {"authorization": f"Bearer {peers.KEY}"},
                [psutil.Process(bench.procs[-1].pid)],
            )
        paths = {k: v for k, v in paths.items() if k == "direct" or k.lower() in wanted}
        for path in paths.values():  # warm up: connections, imports, first-use caches
            asyncio.run(burst(path.url, 10, path.headers))
        for n in range(args.rounds):
            for name, path in paths.items():
                for load in loads:
                    before = cpu_seconds(path.procs)
                    before_own = sum(cpu_seconds(path.procs, children=False))
                    if load == "steady":
                        got, relayed = asyncio.run(
                            steady(path.url, args.streams, path.headers, args.seconds, stream_s)
                        )
                    else:
                        got = asyncio.run(burst(path.url, args.streams, path.headers))
                    after = cpu_seconds(path.procs)
                    user, system = after[0] - before[0], after[1] - before[1]
                    spent = user + system
                    own = sum(cpu_seconds(path.procs, children=False)) - before_own
                    figures.setdefault((name, load), []).append(summary(got))
                    if load == "steady" and path.procs:
                        per_cpu.setdefault(name, []).append(relayed / max(spent, 1e-9))
                        per_cpu.setdefault(name + " (main process)", []).append(
                            relayed / max(own, 1e-9)
                        )
                        per_cpu.setdefault(name + " (kernel share)", []).append(
                            system / max(spent, 1e-9)
                        )
                cpu = f", {per_cpu[name][-1]:,.0f} chunks / CPU s" if name in per_cpu else ""
                print(
                    f"round {n + 1} {name}: steady ttft p99 "
                    f"{figures[(name, 'steady')][-1]['ttft_p99']:.1f} ms{cpu}",
                    flush=True,
                )
    finally:
        bench.stop_all()
    report(args, figures, per_cpu, list(paths), loads)


def report(
    args: argparse.Namespace,
    figures: dict[tuple[str, str], list[dict[str, float]]],
    per_cpu: dict[str, list[float]],
    names: list[str],
    loads: tuple[str, ...],
) -> None:
    """Print the table and verdicts; write BENCHMARKS.md with --record."""

    def med(name: str, load: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[(name, load)])

    command = (
        f"python bench/gateway_stream.py --streams {args.streams} --chunks {args.chunks} "
        f"--pace-ms {args.pace_ms:g} --seconds {args.seconds:g} --rounds {args.rounds}"
        + (" --no-burst" if args.no_burst else "")
        + (f" --only {args.only}" if args.only else "")
    )
    lines = [
        "| path | load | streams | TTFT p50 | TTFT p99 | gap mean | gap p99 | chunks / CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        for load in loads:
            cpu = (
                f"{statistics.median(per_cpu[name]):,.0f}"
                if load == "steady" and name in per_cpu
                else ""
            )
            lines.append(
                f"| {name} | {load} | {med(name, load, 'streams'):.0f} | "
                f"{med(name, load, 'ttft_p50'):.2f} ms | {med(name, load, 'ttft_p99'):.2f} ms | "
                f"{med(name, load, 'gap_mean'):.2f} ms | {med(name, load, 'gap_p99'):.2f} ms | "
                f"{cpu} |"
            )
    notes = []
    for name in names[1:]:
        for load in loads:
            p50 = med(name, load, "ttft_p50") - med("direct", load, "ttft_p50")
            p99 = med(name, load, "ttft_p99") - med("direct", load, "ttft_p99")
            gap = med(name, load, "gap_mean") - med("direct", load, "gap_mean")
            notes.append(
                f"Added by {name} ({load}): TTFT p50 {p50:+.2f} ms, p99 {p99:+.2f} ms; "
                f"inter-chunk delay {gap:+.3f} ms on average."
            )
    verdicts = []
    if "gateway" in names:
        added = med("gateway", "steady", "ttft_p99") - med("direct", "steady", "ttft_p99")
        verdicts.append(
            f"gateway added TTFT p99 at {args.streams} concurrent streams: {added:+.2f} ms "
            f"(target <= 5 ms: {'met' if added <= 5.0 else 'missed'})"
        )
    if "gateway" in per_cpu and "LiteLLM" in per_cpu:
        ratio = statistics.median(per_cpu["gateway"]) / statistics.median(per_cpu["LiteLLM"])
        rounds = [g / lite for g, lite in zip(per_cpu["gateway"], per_cpu["LiteLLM"], strict=True)]
        verdicts.append(
            f"gateway / LiteLLM chunks per CPU second: {ratio:.1f}x "
            f"(target >= 30x: {'met' if ratio >= 30 else 'missed'}; round by round "
            f"{min(rounds):.1f}x to {max(rounds):.1f}x)"
        )
    elif "gateway" in per_cpu:
        verdicts.append("LiteLLM not measured (no --litellm executable): ratio unknown")
    if "gateway" in per_cpu:
        own = statistics.median(per_cpu["gateway (main process)"])
        verdicts.append(
            f"the gateway's main process alone: {own:,.0f} chunks per CPU second (the figure "
            "above adds its telemetry writer and live-answer scoring processes)"
        )
    shares = [
        f"{name} {statistics.median(per_cpu[name + ' (kernel share)']):.0%}"
        for name in names
        if name + " (kernel share)" in per_cpu
    ]
    if shares:
        verdicts.append(
            "share of the proxy's CPU spent in the kernel (system time: sockets, loopback "
            "TCP, epoll): " + ", ".join(shares)
        )
    body = (
        "\n".join(lines)
        + "\n\n"
        + "\n".join(notes)
        + f"\n\n{args.streams} streams of {args.chunks} chunks, {args.pace_ms:g} ms apart; "
        f"steady load {args.seconds:g} s per path and round; medians of {args.rounds} rounds.\n\n"
        + "\n".join(f"- {v}" for v in verdicts)
    )
    print(f"\n$ {command}\n{body}")
    if args.record:
        record("gateway_stream", "Gateway streaming: added TTFT and chunk delay", command, body)


if __name__ == "__main__":
    main()
