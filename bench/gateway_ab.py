"""The gateway at another commit against this checkout's, interleaved in one run.

Recorded figures move by more than 5% between runs on a shared machine; a before/after
claim is made here instead, both gateways serving at once on one nginx stub (bench/gateway.py's
set-up), wrk rounds alternating which goes first. The other commit's code is run from its
source folder on PYTHONPATH (for example `git worktree add /tmp/base <commit>`), with its
own store (a store migrated by newer code is refused by older code).

    python bench/gateway_ab.py --base-src /tmp/base/src --rounds 4 --duration 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import gateway as g  # bench/gateway.py, beside this file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", required=True, help="the other commit's src folder")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qg-bench-ab-"))
    bench = g.Bench(work, argparse.Namespace(duration=args.duration, connections=50, litellm=None))
    bench.ports["base"] = g.free_port()
    try:
        bench.nginx()
        head = bench.gateway("lean")
        os.environ["PYTHONPATH"] = args.base_src  # the base's own `keys create` and store
        try:
            config, secret = bench.workspace("gw-base", "lean")
        finally:
            del os.environ["PYTHONPATH"]
        port = bench.ports["base"]
        bench.start(
            [bench.qg, "--config", str(config), "serve", "--port", str(port)],
            "gateway-base.log",
            env={"PYTHONPATH": args.base_src},
            cwd=config.parent,
        )
        g.wait_http(f"http://127.0.0.1:{port}/readyz", 60)
        keys = {"head": (head / "key").read_text(), "base": secret}
        urls = {
            "head": f"http://127.0.0.1:{bench.ports['lean']}/v1/chat/completions",
            "base": f"http://127.0.0.1:{port}/v1/chat/completions",
        }
        rps: dict[str, list[float]] = {"base": [], "head": []}
        p99: dict[str, list[float]] = {"base": [], "head": []}
        for r in range(args.rounds):
            order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
            for name in order:
                rps[name].append(bench.wrk(urls[name], keys[name])["rps"])
            for name in order:
                p99[name].append(bench.poisson(urls[name], keys[name], 500, args.duration)["p99"])
            print(f"round {r + 1}: " + ", ".join(f"{n} {rps[n][-1]:,.0f} req/s" for n in order))
        for name in ("base", "head"):
            print(
                f"{name}: req/s median {statistics.median(rps[name]):,.0f} "
                f"({' / '.join(f'{v:,.0f}' for v in rps[name])}); p99 at 500 req/s median "
                f"{statistics.median(p99[name]):.2f} ms"
            )
        ratio = statistics.median(rps["head"]) / statistics.median(rps["base"])
        print(f"head / base req/s: {ratio * 100:.1f}%")
        print(
            f"\npython bench/gateway_ab.py --base-src {args.base_src} --rounds {args.rounds} "
            f"--duration {args.duration}"
        )
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
