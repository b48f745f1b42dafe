"""The chaos matrix's fast subset, as CI runs it: `bench/chaos.py --fast` against `serve` and
the simulators on SQLite (a 5xx burst, one provider out, a mid-stream cut, a SIGKILL and
restart, a client that stops reading; 2 s each), every target checked from its JSON rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.conftest import ROOT
from tests.processes import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT = 240  # about 60 s on an idle 2-core machine
KILLED_ROWS_BOUND = 30  # one second of the bench's 30 req/s: the flush interval is 200 ms


def test_the_fast_chaos_subset_meets_its_targets() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--fast", "--no-record", "--json"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    rows = {row["fault"]: row for row in json.loads(done.stdout)}
    assert len(rows) == 5, rows.keys()
    for name, row in rows.items():
        assert row["requests"] > 0, name
        assert row["errors"] == 0, (name, row["error_kinds"])
        assert row["passed_off"] == 0, name
        assert row["rows_lost"] == 0, name
        assert row["duplicate_notifications"] == 0, name
        assert row["audit_verify"] == "ok", name
        assert row["integrity_check"] == "ok", name
    killed = rows["gateway SIGKILL + restart"]
    assert killed["killed_answers"] > 0
    assert killed["killed_rows_lost"] <= KILLED_ROWS_BOUND
    # The lease of a SIGKILLed watch lapses after its TTL (15 s), over the 5 s target: a
    # known miss recorded in RELIABILITY.md, so its takeover is only required to happen.
    assert killed["watch_resumed_s"] is not None
    assert rows["mid-stream cut"]["no_path"] > 0  # cut streams end with an error event
    assert "499/client_disconnected" in " ".join(rows["client stops reading"]["notes"])
