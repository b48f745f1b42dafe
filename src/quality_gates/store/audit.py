"""The append-only audit log: every change any command makes, in a hash chain.

Entry N stores sha256 over its own fields and the hash of entry N-1; `audit_head` holds the
last sequence number and hash, written in the same transaction, so that editing, inserting
or deleting any entry (the last one included) is found by `verify`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quality_gates.store.db import Connection, Row

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """One audited change."""

    seq: int
    ts: float
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_json(data: Mapping[str, Any]) -> str:
    """Stable JSON: sorted keys, no spaces; what the hash is computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(
    seq: int, ts: float, actor: str, action: str, target: str, details: str, prev_hash: str
) -> str:
    """The hash that chains an entry to its predecessor."""
    payload = json.dumps(
        [seq, repr(ts), actor, action, target, details, prev_hash], separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    ts: float | None = None,
) -> AuditEntry:
    """Add an entry; call inside `conn.write()` so it commits with the change it records."""
    with conn.write():
        head = conn.one(f"SELECT seq, hash FROM audit_head WHERE id = 1{conn.for_update}")
        seq = (head["seq"] if head else 0) + 1
        prev = head["hash"] if head else GENESIS_HASH
        when = time.time() if ts is None else ts
        text = canonical_json(details or {})
        digest = entry_hash(seq, when, actor, action, target, text, prev)
        conn.execute(
            "INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash) "
            "VALUES (:seq, :ts, :actor, :action, :target, :details, :prev, :hash)",
            {
                "seq": seq,
                "ts": when,
                "actor": actor,
                "action": action,
                "target": target,
                "details": text,
                "prev": prev,
                "hash": digest,
            },
        )
        if head:
            conn.execute(
                "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1",
                {"seq": seq, "hash": digest},
            )
        else:
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, :seq, :hash)",
                {"seq": seq, "hash": digest},
            )
    return AuditEntry(seq, when, actor, action, target, dict(details or {}), prev, digest)


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        row["seq"],
        row["ts"],
        row["actor"],
        row["action"],
        row["target"],
        json.loads(row["details"]),
        row["prev_hash"],
        row["hash"],
    )


def entries(
    conn: Connection,
    *,
    limit: int = 50,
    action: str | None = None,
    target: str | None = None,
    since: float | None = None,
) -> list[AuditEntry]:
    """Newest first; `action` matches a prefix (`alias.` finds every alias change)."""
    clauses: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if action:
        clauses.append("action LIKE :action")
        params["action"] = action.rstrip("*") + "%"
    if target:
        clauses.append("target = :target")
        params["target"] = target
    if since is not None:
        clauses.append("ts >= :since")
        params["since"] = since
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    rows = conn.execute(f"SELECT * FROM audit_log {where}ORDER BY seq DESC LIMIT :limit", params)
    return [_entry(r) for r in rows]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of walking the chain."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    first_bad_seq: int | None = None


def _diagnose(row: Row, reach: int = 5) -> str:
    """Why an entry's hash does not match: renumbered (rows inserted or deleted before it)
    or edited in place."""
    seq = row["seq"]
    for shift in range(1, reach + 1):
        for original in (seq - shift, seq + shift):
            if (
                original > 0
                and entry_hash(
                    original,
                    row["ts"],
                    row["actor"],
                    row["action"],
                    row["target"],
                    row["details"],
                    row["prev_hash"],
                )
                == row["hash"]
            ):
                what = "inserted" if original < seq else "deleted"
                return (
                    f"entries {what} before entry {seq}: it was entry {original} and was renumbered"
                )
    return f"entry {seq} edited (its contents no longer match its hash)"


def verify(conn: Connection, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain from the first entry; report the first edited, inserted or deleted one."""
    head = conn.one("SELECT seq, hash FROM audit_head WHERE id = 1")
    head_seq, head_hash = (head["seq"], head["hash"]) if head else (0, GENESIS_HASH)
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    last_seq = 0
    while True:
        rows = conn.execute(
            "SELECT * FROM audit_log WHERE seq > :after ORDER BY seq LIMIT :n",
            {"after": last_seq, "n": batch},
        )
        if not rows:
            break
        for row in rows:
            seq = row["seq"]
            if seq != expected_seq:
                what = (
                    f"entries {expected_seq}-{seq - 1} deleted"
                    if seq > expected_seq
                    else f"entry {seq} out of order"
                )
                return VerifyResult(False, checked, head_seq, head_hash, what, expected_seq)
            recomputed = entry_hash(
                seq,
                row["ts"],
                row["actor"],
                row["action"],
                row["target"],
                row["details"],
                row["prev_hash"],
            )
            if recomputed != row["hash"]:
                return VerifyResult(False, checked, head_seq, head_hash, _diagnose(row), seq)
            if row["prev_hash"] != prev_hash:
                return VerifyResult(
                    False,
                    checked,
                    head_seq,
                    head_hash,
                    f"entry {seq} inserted or re-chained (it does not follow entry {seq - 1})",
                    seq,
                )
            prev_hash, last_seq = row["hash"], seq
            expected_seq += 1
            checked += 1
    if last_seq != head_seq:
        what = (
            f"entries {last_seq + 1}-{head_seq} deleted from the end"
            if last_seq < head_seq
            else f"entries after {head_seq} appended outside the audit writer"
        )
        return VerifyResult(False, checked, head_seq, head_hash, what, min(last_seq, head_seq) + 1)
    if prev_hash != head_hash:
        return VerifyResult(
            False,
            checked,
            head_seq,
            head_hash,
            f"entry {last_seq} does not match the recorded head",
            last_seq,
        )
    return VerifyResult(True, checked, head_seq, head_hash)
