"""The web plane on its real server (`serve --admin-port`'s AdminServer): forms are bounded
before they are read, and X-Forwarded-For is believed only from web.trusted_proxies."""

from __future__ import annotations

import http.client
import socket
import stat
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Workspace
from tests.web_support import csrf_of, web_settings

from quality_gates.config import QualityGatesConfig, load_config
from quality_gates.web.app import MAX_FORM_BYTES, create_web_app
from quality_gates.web.server import AdminServer, bind


@contextmanager
def admin(ws: Workspace, config: QualityGatesConfig) -> Iterator[int]:
    sock = bind("127.0.0.1", 0)
    server = AdminServer(create_web_app(web_settings(ws, config)), sock)
    port = sock.getsockname()[1]
    server.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the admin server did not start"
            time.sleep(0.05)
    try:
        yield port
    finally:
        server.stop()


def _login(port: int, key: str, forwarded: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    page = conn.getresponse()
    cookie = page.getheader("set-cookie", "").split(";")[0]
    token = csrf_of(page.read().decode())
    body = urllib.parse.urlencode({"key": key, "csrf": token})
    headers = {"content-type": "application/x-www-form-urlencoded", "cookie": cookie}
    if forwarded:
        headers["x-forwarded-for"] = forwarded
    conn.request("POST", "/login", body=body, headers=headers)
    answer = conn.getresponse()
    text = answer.read().decode()
    conn.close()
    return answer.status, text


def test_a_login_body_over_the_bound_is_refused_before_it_is_read(workspace: Workspace) -> None:
    config = load_config(workspace.config_path).config
    with admin(workspace, config) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        # A declared 1 GiB: refused on the head alone, nothing of it sent.
        conn.putrequest("POST", "/login")
        conn.putheader("content-type", "application/x-www-form-urlencoded")
        conn.putheader("content-length", str(1 << 30))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
        # Undeclared (chunked): read up to the bound, then refused.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        chunks = (b"k" * 16384 for _ in range(MAX_FORM_BYTES // 16384 + 4))
        conn.request(
            "POST",
            "/login",
            body=chunks,
            headers={"content-type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        assert conn.getresponse().status == 413
        conn.close()


def test_x_forwarded_for_is_ignored_unless_from_a_trusted_proxy(workspace: Workspace) -> None:
    config = load_config(workspace.config_path).config
    config.web.login_attempts = 2
    with admin(workspace, config) as port:
        # Each try claims another address; the throttle still sees the real peer.
        answers = [_login(port, "qg-wrong", forwarded=f"10.0.0.{i}") for i in range(4)]
        assert answers[-1][0] == 429
        assert "Too many wrong keys from 127.0.0.1" in answers[-1][1]
    config.web.trusted_proxies = ["127.0.0.1"]
    with admin(workspace, config) as port:
        assert _login(port, "qg-wrong", forwarded="10.9.9.9")[0] == 401
        statuses = [_login(port, "qg-wrong", forwarded="10.9.9.9")[0] for _ in range(2)]
        assert statuses[-1] == 429  # the proxy's word is taken: 10.9.9.9 is throttled
        assert _login(port, "qg-wrong", forwarded="10.9.9.10")[0] == 401


def test_init_and_migrate_leave_the_store_and_its_wal_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    from tests.conftest import run_cli

    work = tmp_path / "w"
    result = run_cli("init", "--dir", str(work), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    store = work / ".quality-gates" / "state.db"
    files = [f for f in store.parent.iterdir() if f.name.startswith("state.db")]
    assert store in files
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    store.chmod(0o644)  # as an older version left it
    result = run_cli("--config", str(work / "quality-gates.yaml"), "migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


def test_a_session_cookie_stops_working_after_logout_even_when_copied(
    workspace: Workspace,
) -> None:
    from starlette.testclient import TestClient
    from tests.web_support import make_keys

    keys = make_keys(workspace)
    with TestClient(create_web_app(web_settings(workspace))) as client:
        page = client.get("/login")
        signed = client.post(
            "/login",
            data={"key": keys.operator, "csrf": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        copied = client.cookies.get("qg_session")
        assert client.get("/dashboard.json").status_code == 200
        token = csrf_of(client.get("/").text)
        client.post("/logout", data={"csrf": token}, follow_redirects=False)
        client.cookies.set("qg_session", copied)  # as a stolen copy would be replayed
        assert client.get("/dashboard.json").status_code == 401
