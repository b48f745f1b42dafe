"""Gateway API keys: created once (the secret is shown once), stored as a SHA-256 hash.

Clients send `Authorization: Bearer <key>`. Roles: `client` (the chat API), `operator`
(also /metrics when it is protected), `admin` (everything). The gateway keeps the table in
memory and reloads it when the control watcher sees it change, so a revoked key stops
working within a second.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from quality_gates.errors import ConflictError, NotFound, UsageError
from quality_gates.store import audit
from quality_gates.store.db import Connection, Row

ROLES = ("client", "operator", "admin")
KEY_PREFIX = "qg-"
SHOWN_PREFIX_CHARS = 10
NAME_MAX = 100


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway and `keys list` see it (never the secret)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: float
    created_by: str
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: Row) -> ApiKey:
    return ApiKey(
        row["id"],
        row["name"],
        row["role"],
        row["prefix"],
        row["created_at"],
        row["created_by"],
        row["revoked_at"],
        row["last_used_at"],
    )


def create_key(conn: Connection, *, name: str, role: str, actor: str) -> tuple[ApiKey, str]:
    """A new key; returns it with its secret, which is not stored and cannot be shown again."""
    if role not in ROLES:
        raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise UsageError(f"--name must be 1 to {NAME_MAX} characters")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    with conn.write():
        if conn.one("SELECT id FROM api_keys WHERE name = :n", {"n": name}) is not None:
            raise ConflictError(
                f"a key named {name!r} exists already",
                hint="pick another --name, or `quality-gates keys revoke` the old one first",
            )
        row = conn.one(
            "INSERT INTO api_keys (name, role, key_hash, prefix, created_at, created_by) "
            "VALUES (:name, :role, :hash, :prefix, :now, :actor) RETURNING *",
            {
                "name": name,
                "role": role,
                "hash": hash_key(secret),
                "prefix": secret[:SHOWN_PREFIX_CHARS],
                "now": now,
                "actor": actor,
            },
        )
        audit.append(
            conn,
            actor=actor,
            action="key.create",
            target=f"key/{name}",
            details={"role": role, "prefix": secret[:SHOWN_PREFIX_CHARS]},
        )
    if row is None:
        raise ConflictError(f"the key {name!r} was not stored")
    return _key(row), secret


def list_keys(conn: Connection, *, include_revoked: bool = True) -> list[ApiKey]:
    """Keys by name."""
    rows = conn.execute("SELECT * FROM api_keys ORDER BY name")
    keys = [_key(r) for r in rows]
    return keys if include_revoked else [k for k in keys if k.active]


def revoke_key(conn: Connection, *, name: str, actor: str, reason: str = "") -> ApiKey:
    """Revoke a key by name; it stops working within a second on every gateway."""
    with conn.write():
        row = conn.one(f"SELECT * FROM api_keys WHERE name = :n{conn.for_update}", {"n": name})
        if row is None:
            known = [r["name"] for r in conn.execute("SELECT name FROM api_keys ORDER BY name")]
            raise NotFound(f"no key named {name!r}", hint=f"known: {', '.join(known) or 'none'}")
        if row["revoked_at"] is not None:
            raise UsageError(f"the key {name!r} is already revoked")
        now = time.time()
        conn.execute(
            "UPDATE api_keys SET revoked_at = :now WHERE id = :id", {"now": now, "id": row["id"]}
        )
        audit.append(
            conn,
            actor=actor,
            action="key.revoke",
            target=f"key/{name}",
            details={"role": row["role"], "prefix": row["prefix"], "reason": reason},
        )
    return _key({**row, "revoked_at": now})


def active_keys(conn: Connection) -> dict[str, ApiKey]:
    """hash -> key, for every key not revoked (what the gateway authenticates against)."""
    rows = conn.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL")
    return {r["key_hash"]: _key(r) for r in rows}


def keys_fingerprint(conn: Connection) -> tuple[int, int, float]:
    """(keys ever created, highest id, last revocation): changes on every create or revoke."""
    row = conn.one(
        "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top, "
        "COALESCE(MAX(revoked_at), 0) AS revoked FROM api_keys"
    )
    if row is None:
        return (0, 0, 0.0)
    return (int(row["n"]), int(row["top"]), float(row["revoked"]))
