"""A healthy system must stay quiet: `quality-gates init` (the default config, unchanged but
for free ports), its simulators and `serve` with the watch plane, and steady client traffic
(unique prompts, `current`, --rps requests per second) for --duration. Counts what the watch
did: incidents opened, notifications queued (sent or not: with the starter's channels unset
they are recorded as skipped, which still means the watch wanted to page), alerts that
fired, remediations. The target (issue 19): 0 incidents and 0 notifications.

    python bench/healthy_soak.py [--duration 30m] [--rps 5] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def qg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    return subprocess.run(
        [sys.executable, "-m", "quality_gates", *args],
        cwd=root, env=env, text=True, capture_output=True, check=False,
    )  # fmt: skip


CLIENTS = 4  # each sends rps / CLIENTS, so a slow answer does not lower the rate


def traffic(
    url: str, key: str, rps: float, until: float, statuses: dict[int, int], client: int
) -> None:
    n = 0
    start = time.monotonic()
    while time.monotonic() < until:
        n += 1
        body = json.dumps(
            {
                "model": "current",
                "messages": [{"role": "user", "content": f"soak question {client}-{n}"}],
            }
        ).encode()
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
        time.sleep(max(0.0, start + n / rps - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="30m")
    parser.add_argument("--rps", type=float, default=5.0)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    from quality_gates.units import parse_duration

    seconds = parse_duration(args.duration, bare_unit="m")
    with tempfile.TemporaryDirectory(prefix="qg-soak-") as folder:
        root = Path(folder)
        assert qg(root, "init").returncode == 0
        config = root / "quality-gates.yaml"
        text = config.read_text()
        for default in (9101, 9102, 9103):
            text = text.replace(f"port: {default}", f"port: {free_port()}")
        config.write_text(text)
        created = qg(root, "keys", "create", "--name", "soak", "--role", "client", "--json")
        key = json.loads(created.stdout)["key"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
        sim = subprocess.Popen(
            [sys.executable, "-m", "quality_gates", "simulate"], cwd=root, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        serve_log = (root / "serve.log").open("w")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "quality_gates", "serve", "--port", "0", "--json"],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=serve_log, text=True,
            start_new_session=True,
        )  # fmt: skip
        statuses: dict[int, int] = {}
        try:
            assert gateway.stdout is not None
            url = json.loads(gateway.stdout.readline())["listen"]
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not become ready")
                time.sleep(0.2)
            started = time.time()
            until = time.monotonic() + seconds
            workers = [
                threading.Thread(
                    target=traffic, args=(url, key, args.rps / CLIENTS, until, statuses, c)
                )
                for c in range(CLIENTS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        finally:
            for proc in (gateway, sim):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(40)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
            serve_log.close()
        db = sqlite3.connect(root / ".quality-gates" / "state.db")
        incidents = db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        notifications = db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
        fired = db.execute(
            "SELECT rule, COUNT(*) FROM alert_events WHERE to_state = 'firing' GROUP BY rule"
        ).fetchall()
        remediations = db.execute(
            "SELECT COUNT(*) FROM remediations WHERE state NOT IN ('skipped')"
        ).fetchone()[0]
        requests = sum(statuses.values())
        ok = statuses.get(200, 0)
    command = f"python bench/healthy_soak.py --duration {args.duration} --rps {args.rps:g}"
    body = (
        "| duration | requests | answered 200 | incidents | notifications | alerts fired | "
        "remediations |\n|---|---:|---:|---:|---:|---|---:|\n"
        f"| {args.duration} | {requests:,} | {ok:,} | {incidents} | {notifications} | "
        f"{', '.join(f'{r} x{n}' for r, n in fired) or 'none'} | {remediations} |\n\n"
        f"- started {time.strftime('%H:%M:%S', time.localtime(started))}, the starter config "
        "unchanged but for free simulator ports; unique prompts on `current`\n"
        f"- target (issue 19): 0 incidents and 0 notifications: "
        f"{'met' if incidents == 0 and notifications == 0 else 'NOT met'}"
    )
    print(command)
    print(body)
    if args.record:
        record("healthy_soak", "A healthy system stays quiet (default config)", command, body)


if __name__ == "__main__":
    main()
