"""Concurrent and interrupted registry changes leave a consistent store and audit chain."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace

from quality_gates.errors import ConflictError, RegistryError
from quality_gates.registry import Actor, move_alias, rollback
from quality_gates.store import Database, StoreURL, audit
from quality_gates.store import registry as sql

pytestmark = pytest.mark.slow
ROUNDS = 8


def _race(
    url: str, base: str, barrier: Any, results: Any, name: str, source: str, target: str
) -> None:
    conn = Database(StoreURL.parse(url, base_dir=Path(base))).connect()
    barrier.wait()
    try:
        rollback(
            conn,
            environment="production",
            model_ref=source,
            previous_ref=target,
            reason=f"race by {name}",
            actor=Actor(name),
        )
        results.put((name, "won", ""))
    except ConflictError as exc:
        results.put((name, "conflict", str(exc)))
    except RegistryError as exc:
        results.put((name, "refused", str(exc)))
    finally:
        conn.close()


def test_two_processes_rolling_back_the_same_alias_one_wins(workspace: Workspace) -> None:
    ctx = multiprocessing.get_context("fork")
    pair = ("claude-3-5-haiku", "claude-3-haiku")
    outcomes = []
    for round_no in range(ROUNDS):
        source, target = pair if round_no % 2 == 0 else pair[::-1]
        before = len(sql.history(workspace.conn, environment="production", limit=10000))
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(
                target=_race,
                args=(
                    workspace.db_url,
                    str(workspace.root),
                    barrier,
                    results,
                    name,
                    source,
                    target,
                ),
            )
            for name in ("p1", "p2")
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        got = sorted((results.get(timeout=5) for _ in procs), key=lambda r: r[1])
        outcomes.append([g[1] for g in got])
        assert [g[1] for g in got].count("won") == 1, got
        loser = next(g for g in got if g[1] != "won")
        assert f"is not current in production (it is {target}" in loser[2] or (
            loser[1] == "conflict" and f"was moved to {target}" in loser[2]
        )
        current = sql.get_alias(workspace.conn, "production", "current")
        assert current is not None
        assert current.model_id == target
        moves = sql.history(workspace.conn, environment="production", limit=10000)
        assert len(moves) == before + 2  # current and previous-stable, once
    assert audit.verify(workspace.conn).ok
    ids = [m.id for m in sql.history(workspace.conn, limit=10000)]
    assert len(ids) == len(set(ids))
    # The loser is refused with a clear reason; whether it saw the alias before the winner
    # wrote it (a conflict) or after (a refusal) depends on scheduling.
    assert all(o in (["conflict", "won"], ["refused", "won"]) for o in outcomes), outcomes


def test_a_move_that_lands_between_look_and_lock_is_a_conflict(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the interleaving: the other writer commits after this rollback looked at
    `current` and before it took the lock."""
    from quality_gates.registry import _service

    real_get_alias = _service.sql.get_alias
    interfered = []

    def get_alias_then_interfere(conn, environment, name, *, lock=False):  # type: ignore[no-untyped-def]
        row = real_get_alias(conn, environment, name, lock=lock)
        if not lock and name == "current" and not interfered:
            interfered.append(True)
            other = Database(StoreURL.parse(workspace.db_url, base_dir=workspace.root)).connect()
            try:
                move_alias(
                    other,
                    environment="production",
                    alias="current",
                    model_ref="llama-3-1-70b",
                    reason="the other writer",
                    actor=Actor("bob"),
                )
            finally:
                other.close()
        return row

    monkeypatch.setattr(_service.sql, "get_alias", get_alias_then_interfere)
    with pytest.raises(
        ConflictError,
        match="was moved to llama-3-1-70b by bob while this rollback ran; nothing changed",
    ):
        rollback(
            workspace.conn,
            environment="production",
            model_ref="claude-3-5-haiku",
            previous_ref="previous-stable",
            reason="mine",
            actor=Actor("alice"),
        )
    current = sql.get_alias(workspace.conn, "production", "current")
    assert current is not None
    assert current.model_id == "llama-3-1-70b"
    assert audit.verify(workspace.conn).ok


def _burst(url: str, base: str, ready: Any) -> None:
    conn = Database(StoreURL.parse(url, base_dir=Path(base))).connect()
    models = ("llama-3-1-70b", "gemini-1-5-flash")
    i = 0
    while True:
        move_alias(
            conn,
            environment="production",
            alias="backup",
            model_ref=models[i % 2],
            reason=f"burst {i}",
            actor=Actor("burst"),
        )
        i += 1
        if i == 20:
            ready.set()


def test_sigkill_during_a_burst_of_alias_moves_leaves_a_consistent_store(
    workspace: Workspace,
) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_burst, args=(workspace.db_url, str(workspace.root), ready))
    proc.start()
    assert ready.wait(30)
    time.sleep(0.2)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL

    fresh = Database(StoreURL.parse(workspace.db_url, base_dir=workspace.root)).connect()
    try:
        row = sql.get_alias(fresh, "production", "backup")
        assert row is not None
        moves = sql.history(fresh, environment="production", alias="backup", limit=100000)
        # One seed plus one history line per committed move; the alias version counts moves.
        assert len(moves) == row.version
        assert moves[0].to_model == row.model_id
        assert all(newer.from_model == older.to_model for newer, older in itertools.pairwise(moves))
        entries = audit.entries(fresh, action="alias.set", limit=100000)
        assert len(entries) == row.version - 1
        result = audit.verify(fresh)
        assert result.ok, result.problem
        # The store still takes writes: no lock was left behind.
        move_alias(
            fresh,
            environment="production",
            alias="backup",
            model_ref="claude-3-haiku",
            reason="after the kill",
            actor=Actor("tester"),
        )
    finally:
        fresh.close()
