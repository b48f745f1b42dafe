"""Requests/s of one simulator process at zero latency, measured with wrk (POST, a new prompt
on every request) beside peers on the same machine in the same run:

- nginx, one worker, returning a fixed chat-completion body (what the kernel and HTTP allow);
- a minimal aiohttp.web app in one process returning the same body (the obvious alternative
  server for the simulator).

Target: >= 5,000 non-streaming req/s, so the simulator never bounds a gateway benchmark.

    python bench/simulator_throughput.py [--duration 10] [--connections 50] [--rounds 3] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

TARGET_RPS = 5000.0
PATH = "/v1/chat/completions"
FIXED_BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "word " * 60},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 60, "total_tokens": 80},
    }
)
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"model":"bench-model","max_tokens":64,"messages":[{"role":"user",' ..
    '"content":"Summarise incident number ' .. counter .. ' for the on-call engineer."}]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer bench"}, body)
end
"""
AIOHTTP_APP = """
import sys
from aiohttp import web
BODY = sys.argv[2].encode()
async def answer(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_post("/v1/chat/completions", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def process(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process; always stop it (by its own PID)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_up(port)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nginx(folder: Path) -> Iterator[int]:
    port = free_port()
    (folder / "logs").mkdir(exist_ok=True)
    body = FIXED_BODY.replace("'", "\\'")
    conf = folder / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            pid {folder}/nginx.pid;
            error_log {folder}/logs/error.log;
            events {{ worker_connections 1024; }}
            http {{
              access_log off;
              client_body_temp_path {folder};
              proxy_temp_path {folder};
              fastcgi_temp_path {folder};
              uwsgi_temp_path {folder};
              scgi_temp_path {folder};
              server {{
                listen 127.0.0.1:{port};
                location {PATH} {{
                  default_type application/json;
                  return 200 '{body}';
                }}
              }}
            }}
            """
        )
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    with process([binary, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"], port):
        yield port


@contextmanager
def aiohttp_peer() -> Iterator[int]:
    port = free_port()
    with process([sys.executable, "-c", AIOHTTP_APP, str(port), FIXED_BODY], port):
        yield port


@contextmanager
def simulator() -> Iterator[int]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "quality_gates",
        "simulate",
        "--protocol",
        "openai",
        "--port",
        str(port),
        "--latency-p50",
        "0",
        "--seed",
        "1",
    ]
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    os.environ.clear()
    os.environ.update(env_free)
    with process(argv, port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/faults", timeout=5) as reply:
            faults = json.loads(reply.read())["faults"]
        if faults["latency_p50_ms"] != 0 or faults["server_error_rate"] != 0:
            raise RuntimeError(f"simulator is not at zero latency and zero errors: {faults}")
        yield port


def wrk(port: int, script: Path, duration: int, connections: int) -> tuple[float, float]:
    """(requests/s, median latency ms); refuses a run with any non-2xx answer or error."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    median = float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan")
    return rps, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median kept")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args()
    targets = {
        "nginx, 1 worker, fixed body (peer)": nginx,
        "aiohttp.web, 1 process, fixed body (peer)": lambda folder: aiohttp_peer(),
        "quality-gates simulator, 1 process, openai protocol": lambda folder: simulator(),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(WRK_SCRIPT)
        for _ in range(args.rounds):
            for name, start in targets.items():
                with start(folder) as port:
                    wrk(port, script, 2, args.connections)  # warm-up, not counted
                    results[name].append(wrk(port, script, args.duration, args.connections))
    lines = [
        "| target | req/s (median) | all rounds | p50 latency ms | vs nginx |",
        "|---|---:|---|---:|---:|",
    ]
    medians = {n: statistics.median(r for r, _ in runs) for n, runs in results.items()}
    base = medians["nginx, 1 worker, fixed body (peer)"]
    for name, runs in results.items():
        rounds = ", ".join(f"{r:,.0f}" for r, _ in runs)
        latency = statistics.median(m for _, m in runs)
        lines.append(
            f"| {name} | {medians[name]:,.0f} | {rounds} | {latency:.2f} | "
            f"{medians[name] / base:.2f}x |"
        )
    simulated = medians["quality-gates simulator, 1 process, openai protocol"]
    verdict = (
        f"- simulator: {simulated:,.0f} req/s at zero latency, target >= {TARGET_RPS:,.0f}: "
        f"{'met' if simulated >= TARGET_RPS else 'MISSED'}\n"
        "- every request carries a new prompt (the simulator parses it, draws its fate, "
        "builds a ~64-token answer and counts tokens); wrk, the peers and the simulator share "
        "the machine's 2 cores, so the ratio to nginx is the figure to compare across runs"
    )
    body = "\n".join(lines) + "\n\n" + verdict
    command = (
        f"python bench/simulator_throughput.py --duration {args.duration} "
        f"--connections {args.connections} --rounds {args.rounds}"
    )
    print(f"$ {command}\n\n{body}")
    if args.record:
        record(
            "simulator_throughput",
            "Simulator throughput at zero latency (wrk, POST, one process)",
            command,
            body,
        )


if __name__ == "__main__":
    main()
