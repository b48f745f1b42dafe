"""Dashboard sign-in: gateway keys of role operator or admin, signed session cookies, CSRF.

- The server secret (32 random bytes) lives in the store's `qg_meta` table, created on first
  use, so every replica on one store signs and checks alike; it is never in the config.
  Deleting the row and restarting the web servers signs everyone out.
- A key is checked as the gateway checks it: the SHA-256 of what was typed must be the hash
  of a key that is not revoked. Client keys are refused.
- The session cookie holds the key's id and name, an expiry and a random nonce, signed with
  HMAC-SHA256; it is HttpOnly and SameSite=Strict. Each request re-reads the key, so a
  revoked key or a changed role ends its sessions at once.
- Every POST carries a CSRF token: HMAC(secret, nonce) of the session (or, on the login
  form, of a pre-login cookie).
- Wrong keys are counted per client address (`web.login_attempts` per 5 minutes) and
  logged with category SECURITY; a sign-in is audited (`web.login`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from quality_gates.gateway.keys import ApiKey, active_keys, hash_key
from quality_gates.store import audit
from quality_gates.store.db import Connection
from quality_gates.store.registry import get_meta, set_meta

SESSION_COOKIE = "qg_session"
LOGIN_COOKIE = "qg_login"
FLASH_COOKIE = "qg_flash"
SECRET_KEY = "web_session_secret"
SESSION_ROW = "web_session:"  # + sha256 of the session nonce, in qg_meta: key id, expiry
DASHBOARD_ROLES = ("operator", "admin")
THROTTLE_WINDOW_S = 300.0
THROTTLE_ADDRESSES = 10_000
log = logging.getLogger("quality_gates.web")


class LoginRefused(Exception):
    """A sign-in that must not succeed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Operator:
    """Who is signed in: their key's name and role, and the session's CSRF token."""

    key_id: int
    name: str
    role: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        """Admins may also manage keys."""
        return self.role == "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def server_secret(conn: Connection, *, actor: str = "web") -> bytes:
    """The store's signing secret, created (once, whoever races) on first use."""
    value = get_meta(conn, SECRET_KEY)
    if value is None:
        with conn.write():
            inserted = conn.execute(
                "INSERT INTO qg_meta (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING "
                "RETURNING key",
                {"k": SECRET_KEY, "v": secrets.token_hex(32)},
            )
            if inserted:
                audit.append(
                    conn,
                    actor=actor,
                    action="web.secret.create",
                    target="web/session-secret",
                    details={"stored": "qg_meta"},
                )
        value = get_meta(conn, SECRET_KEY)
    if value is None:
        raise RuntimeError("the store did not keep the session secret")
    return bytes.fromhex(value)


def sign(secret: bytes, purpose: str, payload: dict[str, Any]) -> str:
    """`payload` as a tamper-proof cookie value for one purpose."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(secret: bytes, purpose: str, value: str | None) -> dict[str, Any] | None:
    """The payload of a value `sign` made for `purpose`, or None if it was altered."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    expected = hmac.new(secret, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def csrf_token(secret: bytes, nonce: str) -> str:
    """The form token bound to one session (or pre-login) nonce."""
    return _b64(hmac.new(secret, f"csrf:{nonce}".encode(), hashlib.sha256).digest())


def csrf_ok(secret: bytes, nonce: str | None, token: str | None) -> bool:
    """Whether a submitted token belongs to the nonce."""
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, nonce), token)


def new_nonce() -> str:
    """A random nonce for a session or a login form."""
    return secrets.token_urlsafe(18)


def key_for(conn: Connection, presented: str) -> ApiKey | None:
    """The active key whose secret was presented (as the gateway checks it), or None."""
    return active_keys(conn).get(hash_key(presented.strip()))


def sign_in(conn: Connection, presented: str, *, address: str) -> ApiKey:
    """The key that may open a session, or LoginRefused (401 wrong key, 403 client key)."""
    key = key_for(conn, presented) if presented.strip() else None
    if key is None:
        log.warning(
            "dashboard sign-in refused: unknown or revoked key",
            extra={"category": "SECURITY", "address": address},
        )
        raise LoginRefused("That key is not valid (wrong, or revoked).", 401)
    if key.role not in DASHBOARD_ROLES:
        log.warning(
            "dashboard sign-in refused: %s key %s",
            key.role,
            key.name,
            extra={"category": "SECURITY", "address": address},
        )
        raise LoginRefused(
            f"The key {key.name!r} has the {key.role} role: the dashboard needs an operator "
            "or admin key.",
            403,
        )
    with conn.write():
        audit.append(
            conn,
            actor=key.name,
            action="web.login",
            target=f"key/{key.name}",
            details={"role": key.role, "address": address},
        )
    return key


def session_payload(key: ApiKey, ttl: float, now: float) -> dict[str, Any]:
    """What the session cookie carries."""
    return {"k": key.id, "n": key.name, "x": now + ttl, "r": new_nonce()}


def _session_row(nonce: str) -> str:
    # The row is named by a hash of the cookie's nonce, so reading the store is not enough
    # to forge a session (the cookie must also carry the signature).
    return SESSION_ROW + hashlib.sha256(nonce.encode()).hexdigest()


def open_session(conn: Connection, payload: dict[str, Any], now: float) -> None:
    """Record a session server-side (so logging out can end it) and forget expired ones."""
    with conn.write():
        for row in conn.execute(
            "SELECT key, value FROM qg_meta WHERE key LIKE :p", {"p": SESSION_ROW + "%"}
        ):
            if float(str(row["value"]).rpartition(":")[2] or 0) < now:
                conn.execute("DELETE FROM qg_meta WHERE key = :k", {"k": row["key"]})
        set_meta(conn, _session_row(str(payload["r"])), f"{payload['k']}:{payload['x']}")


def close_session(conn: Connection, secret: bytes, cookie: str | None) -> bool:
    """End the session of `cookie` in the store (logout): the cookie stops working even if
    it was copied. True if there was one."""
    payload = unsign(secret, "session", cookie)
    if payload is None:
        return False
    with conn.write():
        gone = conn.execute(
            "DELETE FROM qg_meta WHERE key = :k RETURNING key",
            {"k": _session_row(str(payload.get("r", "")))},
        )
    return bool(gone)


def operator_of(conn: Connection, secret: bytes, cookie: str | None, now: float) -> Operator | None:
    """The operator of a valid, unexpired, not logged-out session whose key is still active
    and allowed."""
    payload = unsign(secret, "session", cookie)
    if payload is None or float(payload.get("x", 0)) < now:
        return None
    if get_meta(conn, _session_row(str(payload.get("r", "")))) is None:
        return None  # logged out (or never opened here)
    row = conn.one(
        "SELECT id, name, role FROM api_keys WHERE id = :id AND revoked_at IS NULL",
        {"id": int(payload.get("k", -1))},
    )
    if row is None or row["name"] != payload.get("n") or row["role"] not in DASHBOARD_ROLES:
        return None
    return Operator(
        int(row["id"]), str(row["name"]), str(row["role"]), csrf_token(secret, str(payload["r"]))
    )


class Throttle:
    """Wrong keys per client address over a sliding five minutes (per process)."""

    def __init__(self, limit: int, window: float = THROTTLE_WINDOW_S) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until `address` may try again (0: now)."""
        with self._lock:
            failures = self._failures.get(address)
            if not failures:
                return 0.0
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0.0
            return failures[0] + self.window - now

    def failed(self, address: str, now: float) -> None:
        """Count one wrong key (and forget addresses quiet for a whole window)."""
        with self._lock:
            if len(self._failures) >= THROTTLE_ADDRESSES:
                self._failures = {
                    a: f for a, f in self._failures.items() if f and f[-1] > now - self.window
                }
            self._failures.setdefault(address, deque()).append(now)
