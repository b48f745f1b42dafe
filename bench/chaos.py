"""The chaos matrix: each fault under bounded load (30 req/s, a quarter streamed) against
`quality-gates serve` in front of the built-in simulators, on SQLite and, when
QG_TEST_DATABASE_URL / QG_TEST_REDIS_URL are set, on PostgreSQL + Redis (each behind a TCP
proxy the bench cuts). Prints a table and writes it to RELIABILITY.md.

    python bench/chaos.py [--fast] [--backend sqlite|postgres|all] [--duration 10]
                          [--only NAME ...] [--no-record] [--json]

Per fault: client errors where a healthy path existed (target 0), errors with no healthy
path (counted apart, never hidden), broken streams passed off as clean (0), rows lost of the
answers given (0; SIGKILL bounded by the flush interval), watch resumed (<= 5 s), duplicate
notifications (0), `audit verify` and SQLite `PRAGMA integrity_check`. Exit 1 when a target is
missed, so `make chaos` fails loudly; the table says which.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import resource
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _chaos_load import Load, Outcome
from _chaos_stack import PRIMARY, ROOT, Stack, stack
from _record import machine

RELIABILITY = ROOT / "RELIABILITY.md"
WARM = 1.0  # load before the fault
TAIL = 2.0  # load after the fault is healed
FLUSH_WAIT = 15.0  # how long answered rows may take to reach the store
WATCH_TARGET = 5.0
IDLE_CONNECTIONS = 1000
PG_ENV, REDIS_ENV = "QG_TEST_DATABASE_URL", "QG_TEST_REDIS_URL"


@dataclass
class Effect:
    """What a fault's action saw beside the load's outcomes."""

    # Outcome kinds a client gets with no healthy path (e.g. a stream cut after its first
    # byte, requests in flight to a killed process): counted apart from the target.
    no_path: Callable[[Outcome], bool] = lambda o: False
    watch_resumed: float | None = None
    watch_target: float | None = WATCH_TARGET
    notes: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    # Answers given by a process that was then SIGKILLed (its unflushed rows may be lost).
    by_killed: Callable[[Outcome], bool] | None = None


Act = Callable[[Stack, Load, float], Awaitable[Effect]]


@dataclass
class Fault:
    name: str
    act: Act
    needs: str = ""  # "postgres" | "redis" | ""
    stream_share: float = 0.25
    prompts: int | None = None
    fast: bool = False


# -- the faults ---------------------------------------------------------------------------


def provider_fault(changes: dict[str, Any], providers: tuple[str, ...] = (PRIMARY,)) -> Act:
    async def act(st: Stack, load: Load, duration: float) -> Effect:
        for name in providers:
            st.faults(name, changes)
        await asyncio.sleep(duration)
        st.heal()
        return Effect(watch_target=None)

    return act


async def burst_5xx(st: Stack, load: Load, duration: float) -> Effect:
    st.faults(PRIMARY, {"server_error_rate": 1.0})
    await asyncio.sleep(min(duration, 3.0))
    st.heal()
    await asyncio.sleep(max(duration - 3.0, 0))
    return Effect(watch_target=None)


async def mid_stream_cut(st: Stack, load: Load, duration: float) -> Effect:
    st.faults(PRIMARY, {"stream_cut_rate": 1.0, "stream_cut_mode": "drop"})
    await asyncio.sleep(duration)
    st.heal()
    # A stream cut after its first bytes reached the client cannot move to another provider:
    # the honest outcome is an error event, which the client sees.
    return Effect(no_path=lambda o: o.kind == "stream_error", watch_target=None)


async def connection_refused(st: Stack, load: Load, duration: float) -> Effect:
    stopped = time.monotonic()
    await asyncio.to_thread(st.stop_simulator, PRIMARY)
    await asyncio.sleep(duration)
    await asyncio.to_thread(st.start_simulator, PRIMARY)
    # Streams already flowing from the provider when its process went away are cut after
    # their first byte, like a mid-stream cut: no healthy path. Anything started later had
    # the other providers.
    return Effect(
        watch_target=None, no_path=lambda o: o.kind == "stream_error" and o.started < stopped
    )


async def store_cut(st: Stack, load: Load, duration: float) -> Effect:
    assert st.pg_proxy is not None
    gateway = st.live_gateways()[0]
    mark = gateway.log.stat().st_size
    st.pg_proxy.cut()
    await asyncio.sleep(duration)
    st.pg_proxy.restore()
    restored = time.monotonic()
    effect = Effect()
    resumed = await wait_log(gateway.log, mark, "watch resumed after", 30.0)
    if resumed:
        effect.watch_resumed = time.monotonic() - restored
    else:
        effect.misses.append("no 'watch resumed' line within 30 s")
    text = gateway.log.read_text(errors="replace")[mark:]
    lost, back = text.count("store lost"), text.count("store back after")
    effect.notes.append(f"log: {lost} 'store lost', {back} 'store back'")
    if "watch cycle failed" in text:
        effect.misses.append("'watch cycle failed' logged")
    return effect


async def redis_cut(st: Stack, load: Load, duration: float) -> Effect:
    assert st.redis_proxy is not None
    gateway = st.live_gateways()[0]
    mark = gateway.log.stat().st_size
    st.redis_proxy.cut()
    await asyncio.sleep(duration)
    st.redis_proxy.restore()
    await asyncio.sleep(2.0)
    text = gateway.log.read_text(errors="replace")[mark:]
    effect = Effect(watch_target=None)
    effect.notes.append(
        f"log: {text.count('Redis lost')} 'Redis lost', {text.count('Redis back after')} "
        f"'Redis back', {text.count('Traceback')} tracebacks"
    )
    return effect


async def gateway_sigkill(st: Stack, load: Load, duration: float) -> Effect:
    gateway = st.live_gateways()[0]
    st.kill_gateway(gateway)
    killed = time.monotonic()
    port = int(gateway.url.rsplit(":", 1)[1])
    await asyncio.to_thread(st.start_gateway, port)  # what a supervisor does
    back = time.monotonic()
    # One process: what was in flight at the kill and what came before the restart answered
    # had no healthy path.
    effect = Effect(
        by_killed=lambda o: o.started < killed,
        no_path=lambda o: o.started <= back and o.kind in ("connection_error", "stream_error"),
    )
    effect.notes.append(f"restarted on the same port, ready in {back - killed:.1f} s")
    pid = str(st.live_gateways()[0].pid)
    effect.watch_resumed = await wait_holder(st, pid, killed, 30.0)
    if effect.watch_resumed is None:
        effect.misses.append("the restarted gateway did not take the watch lease in 30 s")
    await asyncio.sleep(max(duration - (time.monotonic() - killed), 0))
    return effect


async def replica_killed(st: Stack, load: Load, duration: float) -> Effect:
    await asyncio.to_thread(st.start_gateway)
    await asyncio.sleep(2.0)  # both serve
    holder = st.watch_holder() or ""
    live = st.live_gateways()
    victim = next((g for g in live if f":{g.pid}:" in holder), live[0])
    survivor = next(g for g in live if g is not victim)
    st.kill_gateway(victim)
    killed = time.monotonic()
    effect = Effect(
        by_killed=lambda o: o.gateway == victim.url, no_path=lambda o: o.gateway == victim.url
    )
    effect.watch_resumed = await wait_holder(st, str(survivor.pid), killed, 40.0)
    if effect.watch_resumed is None:
        effect.misses.append("the surviving replica did not take the watch lease in 40 s")
    effect.notes.append(f"killed the lease holder: {f':{victim.pid}:' in holder}")
    await asyncio.sleep(max(duration - (time.monotonic() - killed), 0))
    return effect


async def idle_connections(st: Stack, load: Load, duration: float) -> Effect:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    url = st.live_gateways()[0].url
    port = int(url.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    refused = 0
    for _ in range(IDLE_CONNECTIONS):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            sock.close()
            continue
        sockets.append(sock)
    ends = time.monotonic() + duration
    while time.monotonic() < ends:  # 2 bytes every 2 s: the issue's idle flood
        for sock in sockets:
            try:
                sock.send(b"\r\n")
            except OSError:
                pass
        await asyncio.sleep(2.0)
    closed = 0
    for sock in sockets:
        try:
            if sock.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        sock.close()
    effect = Effect(watch_target=None)
    effect.notes.append(
        f"{len(sockets)} idle held {duration:g} s, {closed} closed by the gateway, "
        f"{refused} refused at connect"
    )
    return effect


async def stops_reading(st: Stack, load: Load, duration: float) -> Effect:
    """A client asks for a long stream and reads only its head, then leaves."""
    huge = {"answer_tokens_p50": 60000, "answer_tokens_p95": 80000, "token_delay_ms": 0}
    model = "anthropic.claude-3-haiku-20240307-v1:0"  # previous-stable: only this client
    st.faults(PRIMARY, {"models": {model: huge}})
    url = st.live_gateways()[0].url
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps(
        {"model": "previous-stable", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = sock.recv(2048).decode(errors="replace")
    match = re.search(r"x-request-id: *(\S+)", head, re.I)
    await asyncio.sleep(duration)  # holds the stream without reading
    sock.close()
    effect = Effect(watch_target=None)
    st.faults(PRIMARY, {"models": {model: None}})
    if match is None:
        effect.misses.append(f"no request id in the head: {head[:120]!r}")
        return effect
    row = await wait_row(st, match.group(1), 15.0)
    if row is None:
        effect.misses.append("the stalled request was not recorded")
        return effect
    effect.notes.append(f"stalled client recorded {row['http_status']}/{row['error_class']}")
    if row["status"] == "error" and row["error_class"] != "client_disconnected":
        effect.misses.append("the stalled client was recorded as a provider error")
    return effect


FAULTS = (
    Fault("provider 429 storm", provider_fault({"rate_limit_rate": 1.0, "retry_after": 1})),
    Fault("provider 5xx burst (3 s)", burst_5xx, fast=True),
    Fault("one provider out", provider_fault({"outage": True}), fast=True),
    Fault("two providers out", provider_fault({"outage": True}, ("bedrock", "google"))),
    Fault(
        "slow first token (3-4 s)",
        provider_fault(
            {
                "ttft_p50_ms": 3000,
                "ttft_p95_ms": 4000,
                "latency_p50_ms": 3000,
                "latency_p95_ms": 4000,
            }
        ),
        stream_share=0.5,
    ),
    Fault("mid-stream cut", mid_stream_cut, stream_share=0.75, fast=True),
    Fault("connection refused", connection_refused),
    Fault("PostgreSQL cut", store_cut, needs="postgres"),
    Fault("Redis cut", redis_cut, needs="redis", prompts=20),
    Fault("gateway SIGKILL + restart", gateway_sigkill, fast=True),
    Fault("2 replicas, one SIGKILLed", replica_killed),
    Fault(f"{IDLE_CONNECTIONS} idle connections", idle_connections),
    Fault("client stops reading", stops_reading, fast=True),
)


# -- measuring ----------------------------------------------------------------------------


async def wait_log(log: Path, mark: int, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace")[mark:]:
            return True
        await asyncio.sleep(0.1)
    return False


async def wait_holder(st: Stack, pid: str, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = await asyncio.to_thread(st.watch_holder)
        if holder and f":{pid}:" in holder:
            return time.monotonic() - since
        await asyncio.sleep(0.2)
    return None


async def wait_row(st: Stack, request_id: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = st.ws.conn.one(
            "SELECT status, http_status, error_class FROM requests WHERE id = :id",
            {"id": request_id},
        )
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.2)
    return None


def stored(st: Stack, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join(f":i{n}" for n in range(len(chunk)))
        rows = st.ws.conn.execute(
            f"SELECT id FROM requests WHERE id IN ({marks})",
            {f"i{n}": i for n, i in enumerate(chunk)},
        )
        found.update(str(r["id"]) for r in rows)
    return found


async def rows_missing(st: Stack, answers: list[str]) -> int:
    """How many of `answers` have no row in `requests` after up to FLUSH_WAIT seconds."""
    deadline = time.monotonic() + FLUSH_WAIT
    while True:
        missing = set(answers) - await asyncio.to_thread(stored, st, answers)
        if not missing or time.monotonic() > deadline:
            return len(missing)
        await asyncio.sleep(0.5)


def integrity(st: Stack) -> str:
    if st.sqlite_path is None:
        return "-"
    with sqlite3.connect(f"file:{st.sqlite_path}?mode=ro", uri=True) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return "ok" if result == "ok" else f"FAIL {result}"


async def run_fault(st: Stack, fault: Fault, duration: float) -> dict[str, Any]:
    load = Load(lambda: [g.url for g in st.live_gateways()], fault.stream_share, fault.prompts)
    keys_before = list(st.receiver.keys)
    load.start()
    await asyncio.sleep(WARM)
    started = time.monotonic()
    try:
        effect = await fault.act(st, load, duration)
    finally:
        await asyncio.sleep(TAIL)
        await load.stop()
        st.heal()
    outcomes = load.outcomes
    no_path = [o for o in outcomes if o.kind != "ok" and effect.no_path(o)]
    errors = [o for o in outcomes if o.kind not in ("ok", "passed_off") and not effect.no_path(o)]
    passed_off = [o for o in outcomes if o.kind == "passed_off"]
    answers = [o.request_id for o in outcomes if o.request_id]
    by_killed = effect.by_killed or (lambda o: False)
    killed_answers = [o.request_id for o in outcomes if o.request_id and by_killed(o)]
    survivors = [a for a in answers if a not in set(killed_answers)]
    lost = await rows_missing(st, survivors)
    lost_killed = len(set(killed_answers) - await asyncio.to_thread(stored, st, killed_answers))
    new_keys = st.receiver.keys[len(keys_before) :]
    duplicates = sum(1 for k in new_keys if k and (k in keys_before or new_keys.count(k) > 1))
    audit = await asyncio.to_thread(st.qg, "audit", "verify")
    latencies = sorted(o.latency for o in outcomes if o.kind == "ok")
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    row = {
        "fault": fault.name,
        "backend": st.backend,
        "requests": len(outcomes),
        "errors": len(errors),
        "error_kinds": sorted({f"{o.kind}:{o.detail}" for o in errors})[:4],
        "no_path": len(no_path),
        "passed_off": len(passed_off),
        "answers": len(answers),
        "rows_lost": lost,
        "killed_answers": len(killed_answers),
        "killed_rows_lost": lost_killed,
        "watch_resumed_s": effect.watch_resumed,
        "watch_target": effect.watch_target,
        "notifications": len(new_keys),
        "duplicate_notifications": duplicates,
        "audit_verify": "ok" if audit.returncode == 0 else f"FAIL ({audit.returncode})",
        "integrity_check": integrity(st),
        "p95_s": round(p95, 3),
        "fault_s": round(time.monotonic() - started, 1),
        "notes": effect.notes,
        "misses": list(effect.misses),
    }
    row["misses"] += missed(row)
    return row


def missed(row: dict[str, Any]) -> list[str]:
    out = []
    if row["errors"]:
        out.append(f"{row['errors']} client errors with a healthy path")
    if row["passed_off"]:
        out.append(f"{row['passed_off']} broken streams passed off as clean")
    if row["rows_lost"]:
        out.append(f"{row['rows_lost']} rows lost")
    resumed, target = row["watch_resumed_s"], row["watch_target"]
    if target is not None and resumed is not None and resumed > target:
        out.append(f"watch resumed in {resumed:.1f} s (target {target:g} s)")
    if row["duplicate_notifications"]:
        out.append(f"{row['duplicate_notifications']} notifications delivered twice")
    if row["audit_verify"] != "ok":
        out.append("audit verify failed")
    if row["integrity_check"] not in ("ok", "-"):
        out.append("SQLite integrity_check failed")
    return out


# -- the run ------------------------------------------------------------------------------


async def run_backend(
    backend: str, faults: list[Fault], duration: float, pg: str | None, redis: str | None
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"qg-chaos-{backend}-") as folder:
        async with stack(Path(folder), backend, pg, redis) as st:
            for fault in faults:
                if fault.needs == "postgres" and backend != "postgres":
                    continue
                if fault.needs == "redis" and not redis:
                    continue
                print(f"  {backend}: {fault.name} ...", file=sys.stderr, flush=True)
                row = await run_fault(st, fault, duration)
                print("    " + json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
                await asyncio.sleep(2.5)  # the breaker cool-down: faults stay apart
    return rows


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| fault | store | requests | errors (healthy path) | no-path errors | passed off | "
        "rows lost / answers | killed process: rows lost | watch resumed s | notifications "
        "(dup) | audit | integrity | p95 s | verdict |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        killed = f"{r['killed_rows_lost']}/{r['killed_answers']}" if r["killed_answers"] else "-"
        verdict = "met" if not r["misses"] else "MISSED: " + "; ".join(r["misses"])
        if r["notes"]:
            verdict += " (" + "; ".join(r["notes"]) + ")"
        lines.append(
            f"| {r['fault']} | {r['backend']} | {r['requests']} | {r['errors']}"
            f"{' ' + ', '.join(r['error_kinds']) if r['error_kinds'] else ''} | {r['no_path']} | "
            f"{r['passed_off']} | {r['rows_lost']}/{r['answers'] - r['killed_answers']} | "
            f"{killed} | {cell(r['watch_resumed_s'])} | {r['notifications']} "
            f"({r['duplicate_notifications']}) | {r['audit_verify']} | {r['integrity_check']} | "
            f"{cell(r['p95_s'])} | {verdict} |"
        )
    return "\n".join(lines)


def write_reliability(command: str, text: str) -> None:
    today = datetime.date.today().isoformat()
    section = (
        f"<!-- chaos -->\n## Chaos matrix\n\nMeasured {today} on {machine()}.\n\n"
        f"```\n{command}\n```\n\n{text}\n<!-- /chaos -->\n"
    )
    current = RELIABILITY.read_text() if RELIABILITY.exists() else ""
    pattern = re.compile(r"<!-- chaos -->.*?<!-- /chaos -->\n", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: section, current)
    else:
        current = current.rstrip("\n") + "\n\n" + section if current else section
    RELIABILITY.write_text(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="the CI subset, SQLite, 2 s faults")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each fault lasts")
    parser.add_argument("--only", nargs="*", default=[], help="faults whose name contains")
    parser.add_argument("--no-record", action="store_true", help="do not touch RELIABILITY.md")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    args = parser.parse_args(argv)
    pg, redis = os.environ.get(PG_ENV) or None, os.environ.get(REDIS_ENV) or None
    faults = [f for f in FAULTS if not args.fast or f.fast]
    if args.only:
        faults = [f for f in faults if any(o.lower() in f.name.lower() for o in args.only)]
    duration = 2.0 if args.fast and args.duration == 10.0 else args.duration
    backends = ["sqlite"] if args.fast or args.backend in ("sqlite", "all") else []
    if not args.fast and args.backend in ("postgres", "all"):
        if pg:
            backends.append("postgres")
        else:
            print(f"PostgreSQL + Redis skipped: set {PG_ENV} and {REDIS_ENV}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for backend in backends:
        rows += asyncio.run(
            run_backend(backend, faults, duration, pg, redis if backend == "postgres" else None)
        )
    command = "python bench/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = table(rows)
    print(json.dumps(rows, indent=2) if args.json else text + f"\n\n{command.strip()}")
    if not args.no_record and not args.fast:
        write_reliability(command.strip(), text)
    return 1 if any(r["misses"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
