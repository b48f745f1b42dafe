"""The gateway against its peers, on one zero-latency upstream (an nginx stub that returns a
fixed chat completion), all measured in the same run:

- requests/s at saturation (wrk, one connection pool, POST script) for: the stub called
  directly, an nginx proxy_pass hop, this gateway (one process, telemetry on, API key
  checked) on its own server (lean, the default), under uvicorn and under granian, and the
  LiteLLM proxy (one worker, master key);
- added latency p50/p99 at 500 req/s against calling the stub directly, for independent
  arrivals (wrk with exponential gaps: a Poisson process, the verdict) and for hey's
  synchronized bursts of 10 (the worst case, shown beside it);
- telemetry completeness: rows stored == requests served at 1,000 req/s for 60 s;
- memory over a soak at 500 req/s (RSS of the gateway worker, from its heartbeat pid).

The response cache is off (every request is the same prompt, so a cache would measure
itself, not the proxy). Targets: >= 30x LiteLLM's req/s, >= 10% of the nginx hop's, p99
added <= 5 ms at 500 req/s, stored rows == served, RSS growth <= 10% over the soak.

    python bench/gateway.py [--duration 15] [--litellm /path/to/litellm] [--soak 600] [--record]

LiteLLM is not a dependency: install it in a throwaway venv outside the repo
(`python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

STUB_ANSWER = (
    '{"id":"chatcmpl-stub","object":"chat.completion","created":1700000000,"model":"stub-model",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},'
    '"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,'
    '"total_tokens":18}}'
)
BODY = '{"model":"current","messages":[{"role":"user","content":"What is six times seven?"}]}'
KEY = "sk-bench-master-key-0123456789abcdef"
GATEWAY = "lean"  # the server `serve` runs by default for one process (gateway.server: auto)
DEFAULT_LITELLM = "/tmp/litellm-venv/bin/litellm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g} s")


NGINX = """worker_processes 1;
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
    listen 127.0.0.1:{stub};
    location / {{ default_type application/json; return 200 '{answer}'; }}
  }}
  server {{
    listen 127.0.0.1:{hop};
    location / {{ proxy_pass http://stub; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}
}}
"""

CONFIG = """version: 1
project: bench
providers:
  - {{name: stub, kind: openai, endpoint: "http://127.0.0.1:{stub}"}}
models:
  - {{id: stub-model, provider: stub, price: {{input_per_1k: 0.001, output_per_1k: 0.002}}}}
environments:
  production:
    aliases: {{current: stub-model}}
gateway:
  server: {server}
  cache: {{enabled: false}}
"""


class Bench:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.qg = str(Path(sys.executable).with_name("quality-gates"))
        self.ports = {
            n: free_port() for n in ("stub", "hop", "lean", "uvicorn", "granian", "litellm")
        }

    def start(
        self, argv: list[str], log: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(self.work / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.work,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def nginx(self, answer: str = STUB_ANSWER) -> None:
        conf = self.work / "nginx.conf"
        answer = answer.replace("\\", "\\\\").replace("'", "\\'")  # nginx's escapes
        conf.write_text(
            NGINX.format(
                dir=self.work, stub=self.ports["stub"], hop=self.ports["hop"], answer=answer
            )
        )
        self.start(["nginx", "-c", str(conf), "-p", str(self.work)], "nginx.log")
        wait_http(f"http://127.0.0.1:{self.ports['stub']}/", 10)

    def workspace(self, name: str, server: str = "auto") -> tuple[Path, str]:
        """A gateway folder on the stub (config, store) and a client key created in it."""
        folder = self.work / name
        folder.mkdir()
        config = folder / "quality-gates.yaml"
        config.write_text(CONFIG.format(stub=self.ports["stub"], server=server))
        created = subprocess.run(
            [self.qg, "--config", str(config), "keys", "create", "--name", "bench", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        return config, json.loads(created.stdout)["key"]

    def gateway(self, server: str) -> Path:
        config, secret = self.workspace(f"gw-{server}", server)
        folder = config.parent
        (folder / "key").write_text(secret)
        self.start(
            [self.qg, "--config", str(config), "serve", "--port", str(self.ports[server])],
            f"gateway-{server}.log",
            cwd=folder,
        )
        wait_http(f"http://127.0.0.1:{self.ports[server]}/readyz", 60)
        return folder

    def litellm(self) -> bool:
        exe = self.args.litellm
        if not exe or not Path(exe).exists():
            return False
        conf = self.work / "litellm.yaml"
        conf.write_text(
            "model_list:\n  - model_name: current\n    litellm_params:\n"
            f"      model: openai/stub-model\n      api_base: http://127.0.0.1:{self.ports['stub']}"
            "/v1\n      api_key: sk-stub\n"
        )
        self.start(
            [
                exe,
                "--config",
                str(conf),
                "--port",
                str(self.ports["litellm"]),
                "--num_workers",
                "1",
            ],
            "litellm.log",
            env={"LITELLM_MASTER_KEY": KEY},
        )
        wait_http(f"http://127.0.0.1:{self.ports['litellm']}/health/liveliness", 180)
        return True

    def _script(self, name: str, key: str | None, extra: str = "") -> Path:
        """A wrk Lua script that POSTs BODY (with the key, if any), plus `extra`."""
        path = self.work / f"{name}-{'auth' if key else 'plain'}.lua"
        auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else ""
        path.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"{auth}wrk.body = '{BODY}'\n{extra}"
        )
        return path

    def _wrk(self, url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
        """One wrk run: req/s, non-2xx answers, and the p50 and p99 latency (ms)."""
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
        out = subprocess.run(
            [*argv, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout

        def pct(p: str) -> float:
            m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
            if not m:
                return float("nan")
            return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

        errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        return {
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "non2xx": float(errors.group(1)) if errors else 0.0,
            "p50": pct("50"),
            "p99": pct("99"),
        }

    def wrk(self, url: str, key: str | None) -> dict[str, float]:
        """Saturation throughput: --connections connections, back to back."""
        script = self._script("post", key)
        return self._wrk(url, script, self.args.connections, self.args.duration)

    def poisson(self, url: str, key: str | None, rate: int, seconds: int) -> dict[str, float]:
        """Latency at `rate` req/s of independent arrivals: wrk's POISSON_CONNECTIONS
        connections each wait an exponentially distributed gap (mean POISSON_CONNECTIONS /
        rate, less the ~1 ms an answer takes) before each request, so the merged arrivals are
        close to a Poisson process. wrk times each request from its send to its answer."""
        mean_ms = POISSON_CONNECTIONS * 1000.0 / rate - 1.0
        script = self._script("poisson", key, POISSON_DELAY.format(mean_ms=mean_ms))
        return self._wrk(url, script, POISSON_CONNECTIONS, seconds)

    def hey(self, url: str, key: str | None, rate: int, seconds: int) -> dict[str, float]:
        body = self.work / "body.json"
        body.write_text(BODY)
        workers = max(1, rate // 50)
        argv = [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(workers),
            "-q",
            "50",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
        ]
        if key:
            argv += ["-H", f"Authorization: Bearer {key}"]
        out = subprocess.run(
            [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 120
        ).stdout

        def pct(p: str) -> float:
            m = re.search(rf"\s{p}% in ([\d.]+) secs", out)
            return float(m.group(1)) * 1000.0 if m else float("nan")

        codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        return {
            "p50": pct("50"),
            "p99": pct("99"),
            "rps": rps,
            "served": float(sum(codes.values())),
            "ok": float(codes.get(200, 0)),
        }


POISSON_CONNECTIONS = 50
POISSON_DELAY = """local mean_ms = {mean_ms:.3f}
function init(args)
  math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
end
function delay()
  return -math.log(1.0 - math.random()) * mean_ms
end
"""


def rows(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        r = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        a = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        u = conn.execute(
            "SELECT COALESCE(SUM(count), 0) FROM rollups WHERE kind = 'request'"
        ).fetchone()[0]
    return int(r), int(a), int(u)


def settle(db: Path, timeout: float = 60.0) -> tuple[int, int, int]:
    """Row counts once they stop changing (the writer flushes every 0.5 s)."""
    last = rows(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = rows(db)
        if now == last:
            return now
        last = now
    return last


def worker_rss(db: Path) -> int:
    import psutil

    with sqlite3.connect(db) as conn:
        pid = conn.execute(
            "SELECT pid FROM gateway_instances ORDER BY heartbeat_at DESC"
        ).fetchone()[0]
    return int(psutil.Process(pid).memory_info().rss)


def scoring_rss(db: Path) -> int:
    """RSS of the gateway worker's child processes (the live-answer scoring process)."""
    import psutil

    with sqlite3.connect(db) as conn:
        pid = conn.execute(
            "SELECT pid FROM gateway_instances ORDER BY heartbeat_at DESC"
        ).fetchone()[0]
    return sum(int(c.memory_info().rss) for c in psutil.Process(pid).children(recursive=True))


def latency_only(bench: Bench, args: argparse.Namespace) -> None:
    """Added latency at 500 req/s: direct, then the gateway under each server, per round."""
    bench.nginx()
    servers = tuple(args.servers.split(","))
    folders = {s: bench.gateway(s) for s in servers}
    keys = {s: (f / "key").read_text() for s, f in folders.items()}
    path = "/v1/chat/completions"
    direct_url = f"http://127.0.0.1:{bench.ports['stub']}{path}"
    urls = {s: f"http://127.0.0.1:{bench.ports[s]}{path}" for s in servers}
    # Warm-up: connections, first-call paths, and the watch plane's first cycles
    # (in the full run the wrk rounds come first and do this).
    for server in servers:
        bench.hey(urls[server], keys[server], 500, 10)
    print(
        f"500 req/s for {args.latency_seconds} s per run, {args.rounds} rounds: independent "
        "arrivals (wrk, Poisson) and synchronized bursts (hey)"
    )
    print(
        "| round | server | direct p99 | gateway p50 | gateway p99 | added p99 | bursts: "
        "direct p99 | bursts: gateway p99 | bursts: added p99 | worker CPU/request |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    added: dict[str, list[tuple[float, float, float]]] = {s: [] for s in servers}
    for n in range(args.rounds):
        for server in servers:
            direct = bench.poisson(direct_url, None, 500, args.latency_seconds)
            gw = bench.poisson(urls[server], keys[server], 500, args.latency_seconds)
            direct_b = bench.hey(direct_url, None, 500, args.latency_seconds)
            db = folders[server] / ".quality-gates" / "state.db"
            cpu = worker_cpu(db)
            gw_b = bench.hey(urls[server], keys[server], 500, args.latency_seconds)
            per_request = (worker_cpu(db) - cpu) / gw_b["served"] * 1e6
            if gw_b["ok"] != gw_b["served"] or gw["non2xx"]:
                raise SystemExit(f"{server}: non-200 answers")
            a99, b99 = gw["p99"] - direct["p99"], gw_b["p99"] - direct_b["p99"]
            added[server].append((a99, b99, per_request))
            print(
                f"| {n + 1} | {server} | {direct['p99']:.2f} | {gw['p50']:.2f} | "
                f"{gw['p99']:.2f} | {a99:+.2f} | {direct_b['p99']:.2f} | {gw_b['p99']:.2f} | "
                f"{b99:+.2f} | {per_request:.0f} us |",
                flush=True,
            )
    for server in servers:
        rows = added[server]
        print(
            f"{server}: median added p99 {statistics.median(r[0] for r in rows):+.2f} ms "
            f"(independent arrivals; target <= 5 ms), "
            f"{statistics.median(r[1] for r in rows):+.2f} ms in bursts; "
            f"worker CPU {statistics.median(r[2] for r in rows):.0f} us per request"
        )
    print(BURST_NOTE)


def worker_cpu(db: Path) -> float:
    """CPU seconds (user + system, all threads) of the gateway worker so far."""
    import psutil

    with sqlite3.connect(db) as conn:
        pid = conn.execute(
            "SELECT pid FROM gateway_instances ORDER BY heartbeat_at DESC"
        ).fetchone()[0]
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


BURST_NOTE = (
    "hey paces each of its 10 clients with its own 50/s ticker, all started together, so the "
    "requests arrive as bursts of 10 every 20 ms; the last of a burst waits for the nine "
    "before it, so the added p99 cannot be below about 10x the gateway's CPU per request "
    "(plus whatever the shared cores take from it)."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved wrk rounds (median)")
    parser.add_argument("--litellm", default=DEFAULT_LITELLM)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument(
        "--servers", default="lean,uvicorn,granian", help="with --latency-only: which servers"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=5,
        help="not used: hey runs one client per 50 req/s (kept so recorded commands still run)",
    )
    parser.add_argument("--completeness-seconds", type=int, default=60)
    parser.add_argument("--soak", type=int, default=600, help="soak seconds (0 skips)")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the added latency at 500 req/s: the stub direct vs the gateway on its lean "
        "server, under uvicorn and under granian, interleaved for --rounds rounds of "
        "--latency-seconds (no wrk, peers, telemetry count or soak; never recorded)",
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "hey"):
        if not shutil.which(tool):
            sys.exit(f"bench/gateway.py needs {tool} on PATH")
    work = Path(tempfile.mkdtemp(prefix="qg-bench-gw-"))
    bench = Bench(work, args)
    lines: list[str] = []
    try:
        if args.latency_only:
            latency_only(bench, args)
            return
        bench.nginx()
        servers = ("lean", "uvicorn", "granian")
        folders = {s: bench.gateway(s) for s in servers}
        keys = {s: (f / "key").read_text() for s, f in folders.items()}
        has_litellm = bench.litellm()
        path = "/v1/chat/completions"
        targets = {
            "upstream stub, direct": (f"http://127.0.0.1:{bench.ports['stub']}{path}", None),
            "nginx proxy_pass hop": (f"http://127.0.0.1:{bench.ports['hop']}{path}", None),
            **{
                f"quality-gates gateway ({s}{', the default' if s == GATEWAY else ''})": (
                    f"http://127.0.0.1:{bench.ports[s]}{path}",
                    keys[s],
                )
                for s in servers
            },
        }
        if has_litellm:
            targets["LiteLLM proxy (1 worker)"] = (
                f"http://127.0.0.1:{bench.ports['litellm']}{path}",
                KEY,
            )
        throughput: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, key) in targets.items():
                result = bench.wrk(url, key)
                if result["non2xx"]:
                    raise SystemExit(f"{name}: {result['non2xx']:.0f} non-2xx answers under wrk")
                throughput[name].append(result["rps"])
        rps = {n: statistics.median(v) for n, v in throughput.items()}
        gw_name = f"quality-gates gateway ({GATEWAY}, the default)"
        db = folders[GATEWAY] / ".quality-gates" / "state.db"
        latency: dict[str, dict[str, float]] = {}
        bursts: dict[str, dict[str, float]] = {}
        gw_cpu = 0.0
        for name, (url, key) in targets.items():
            latency[name] = bench.poisson(url, key, 500, args.latency_seconds)
            cpu = worker_cpu(db) if name == gw_name else 0.0
            bursts[name] = bench.hey(url, key, 500, args.latency_seconds)
            if name == gw_name:
                gw_cpu = (worker_cpu(db) - cpu) / bursts[name]["served"] * 1e6
        direct, direct_b = latency["upstream stub, direct"], bursts["upstream stub, direct"]
        lines += [
            f"Throughput: wrk -t1 -c{args.connections} -d{args.duration}s, POST script, median "
            f"of {args.rounds} interleaved rounds. Latency at 500 req/s for "
            f"{args.latency_seconds} s each, two ways: independent arrivals (wrk, "
            f"{POISSON_CONNECTIONS} connections with exponential gaps, a Poisson process: the "
            "target's load) and synchronized bursts (hey, 10 clients of 50/s).",
            "",
            "| target | req/s (wrk) | req/s achieved | p50 ms | p99 ms | added p50 | added p99 "
            "| bursts: p99 ms | bursts: added p99 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in targets:
            lat, burst = latency[name], bursts[name]
            lines.append(
                f"| {name} | {rps[name]:,.0f} | {lat['rps']:,.0f} | {lat['p50']:.2f} | "
                f"{lat['p99']:.2f} | {lat['p50'] - direct['p50']:+.2f} | "
                f"{lat['p99'] - direct['p99']:+.2f} | {burst['p99']:.2f} | "
                f"{burst['p99'] - direct_b['p99']:+.2f} |"
            )
        lines += [
            "",
            f"Gateway ({GATEWAY}) worker CPU during its 500 req/s burst run: {gw_cpu:.0f} us per "
            f"request. {BURST_NOTE}",
        ]
        verdicts = []
        if has_litellm:
            ratio = rps[gw_name] / rps["LiteLLM proxy (1 worker)"]
            verdicts.append(
                f"gateway / LiteLLM req/s: {ratio:.1f}x (target >= 30x): "
                f"{'met' if ratio >= 30 else 'MISSED'}"
            )
        else:
            verdicts.append("LiteLLM not measured (no --litellm executable): ratio unknown")
        share = rps[gw_name] / rps["nginx proxy_pass hop"]
        verdicts.append(
            f"gateway / nginx hop req/s: {share:.1%} (target >= 10%): "
            f"{'met' if share >= 0.10 else 'MISSED'}"
        )
        added = latency[gw_name]["p99"] - direct["p99"]
        verdicts.append(
            f"gateway p99 added at 500 req/s (independent arrivals): {added:.2f} ms "
            f"(target <= 5 ms): {'met' if added <= 5.0 else 'MISSED'}"
        )
        burst_added = bursts[gw_name]["p99"] - direct_b["p99"]
        verdicts.append(
            f"gateway p99 added at 500 req/s in synchronized bursts of 10 (hey): "
            f"{burst_added:.2f} ms (not the target's load; shown for the worst case)"
        )
        before = settle(db, 20)
        load = bench.hey(targets[gw_name][0], keys[GATEWAY], 1000, args.completeness_seconds)
        after = settle(db)
        stored = after[0] - before[0]
        rolled = after[2] - before[2]
        lines += [
            "",
            f"Telemetry completeness: hey at 1,000 req/s for "
            f"{args.completeness_seconds} s against the gateway ({GATEWAY}): "
            f"{load['rps']:,.0f} req/s achieved, {load['served']:,.0f} answers "
            f"({load['ok']:,.0f} with 200); request rows stored {stored:,}, attempt "
            f"rows {after[1] - before[1]:,}, roll-up count {rolled:,}.",
        ]
        verdicts.append(
            f"telemetry rows stored == requests served: {stored:,} vs "
            f"{load['served']:,.0f}: {'met' if stored == load['served'] else 'MISSED'}"
        )
        if args.soak:
            samples = []
            soak_started = time.monotonic()
            soak_end = soak_started + args.soak
            proc = subprocess.Popen(
                [
                    "hey",
                    "-z",
                    f"{args.soak}s",
                    "-c",
                    "10",
                    "-q",
                    "50",
                    "-m",
                    "POST",
                    "-T",
                    "application/json",
                    "-D",
                    str(work / "body.json"),
                    "-H",
                    f"Authorization: Bearer {keys[GATEWAY]}",
                    targets[gw_name][0],
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            while time.monotonic() < soak_end:
                time.sleep(10)
                samples.append((time.monotonic() - soak_started, worker_rss(db)))
            out, _ = proc.communicate(timeout=120)
            side = scoring_rss(db)
            codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
            warm = [r for t, r in samples if t >= 60] or [r for _, r in samples]
            growth = (max(warm) - warm[0]) / warm[0]
            lines += [
                "",
                f"Soak: hey at 500 req/s for {args.soak} s; gateway worker RSS "
                f"{warm[0] / 2**20:.1f} MiB after 60 s warm-up, max "
                f"{max(warm) / 2**20:.1f} MiB, last {warm[-1] / 2**20:.1f} MiB "
                f"({len(samples)} samples every 10 s); answers by status: {codes}. "
                f"Its child processes (the live-answer scorer, which loads the PII and "
                f"profanity models, and multiprocessing's helpers) held {side / 2**20:.1f} MiB "
                "at the end.",
            ]
            verdicts.append(
                f"RSS growth over the soak after warm-up: {growth:+.1%} "
                f"(target <= 10%): {'met' if growth <= 0.10 else 'MISSED'}"
            )
        body = "\n".join(lines) + "\n\n" + "\n".join(f"- {v}" for v in verdicts)
        command = (
            f"python bench/gateway.py --duration {args.duration} --rounds {args.rounds} "
            f"--clients {args.clients} --soak {args.soak}"
        )
        print(f"$ {command}\n\n{body}")
        if args.record:
            record("gateway", "Gateway throughput, added latency, telemetry, memory", command, body)
    finally:
        bench.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
