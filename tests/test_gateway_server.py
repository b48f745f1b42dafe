"""The gateway's own HTTP/1.1 server (`gateway.server: lean`) spoken to over raw sockets on a
free loopback port: keep-alive and pipelining, framing, the errors it answers before the app
runs, a client that leaves, an app that fails, idle and slow connections, and a graceful stop.
(`quality-gates serve` on it, with the OpenAI SDK and the simulators, is in test_e2e_serve,
test_gateway_openai_sdk and the drills.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest

from quality_gates.gateway._server import LeanServer, StartupFailed


class App:
    """A small ASGI app whose paths exercise the server; it records what it saw."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.lifespan: list[str] = []
        self.disconnected = threading.Event()
        self.finished: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]
                self.lifespan.append(kind)
                if kind == "startup" and self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "no store"})
                    return
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        path = scope["path"]
        message = await receive()
        body = message["body"]
        if path == "/boom":
            raise ValueError("the app broke")
        if path == "/nothing":
            return
        if path == "/cut":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            return
        if path == "/bad-header":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"x-evil", b"a\r\nset-cookie: b")],
                }
            )
            return
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/stream-until-gone":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            gone = await receive()
            if gone["type"] == "http.disconnect":
                self.disconnected.set()
            await send({"type": "http.response.body", "body": b"late", "more_body": True})
            return
        if path == "/slow":
            await asyncio.sleep(0.5)
        if path == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        answer = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "http_version": scope["http_version"],
                "body": body.decode(),
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        self.finished.append(path)


class Running:
    """A LeanServer on its own loop in a thread."""

    def __init__(self, app: App, **options: Any) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = LeanServer(app, max_body=options.pop("max_body", 1024), **options)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(self.sock))
        except BaseException as exc:
            self.error = exc

    def start(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.thread.is_alive(), self.error
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(15)
        assert not self.thread.is_alive()

    def connect(self) -> tuple[socket.socket, BinaryIO]:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return conn, conn.makefile("rb")


@pytest.fixture
def running() -> Iterator[Running]:
    server = Running(App()).start()
    try:
        yield server
    finally:
        server.stop()


def read_response(f: BinaryIO, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response from a raw stream (content-length or chunked)."""
    line = f.readline()
    assert line, "the connection closed before a response"
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        assert name.lower() not in headers, f"header {name} twice"
        headers[name.lower()] = value.strip()
    if head or status in (100, 204, 304):
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    assert headers.get("transfer-encoding") == "chunked", headers
    body = b""
    while True:
        size = int(f.readline().strip(), 16)
        chunk = f.read(size + 2)
        assert chunk.endswith(b"\r\n")
        if size == 0:
            return status, headers, body
        body += chunk[:-2]


def closed(f: BinaryIO) -> bool:
    return f.read(1) == b""


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


def test_keep_alive_answers_in_order_with_one_connection(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(post("/a%20b?x=1", b'{"q": 1}', "X-Custom: Yes\r\n"))
        status, headers, body = read_response(f)
        seen = json.loads(body)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert "date" in headers
        assert "connection" not in headers
        assert seen["path"] == "/a b"
        assert seen["raw_path"] == "/a%20b"
        assert seen["query"] == "x=1"
        assert seen["body"] == '{"q": 1}'
        assert seen["http_version"] == "1.1"
        assert ["x-custom", "Yes"] in seen["headers"]  # names lower-cased, values as sent
        # Pipelined: two requests in one write, answered in the order they came.
        sock.sendall(post("/first", b"1") + post("/slow", b"2") + post("/third", b"3"))
        paths = [json.loads(read_response(f)[2])["path"] for _ in range(3)]
        assert paths == ["/first", "/slow", "/third"]


def test_the_body_may_arrive_in_pieces(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n01234")
        time.sleep(0.1)
        sock.sendall(b"56789")
        assert json.loads(read_response(f)[2])["body"] == "0123456789"
        sock.sendall(
            b"POST /x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert json.loads(read_response(f)[2])["body"] == "abcde"


def test_http_1_0_and_connection_close_end_the_connection(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(f)
        assert status == 200
        assert json.loads(body)["http_version"] == "1.0"
        assert headers["connection"] == "close"
        assert closed(f)
    sock, f = running.connect()
    with sock:
        sock.sendall(post("/bye", b"", "Connection: close\r\n"))
        assert read_response(f)[1]["connection"] == "close"
        assert closed(f)


def test_a_streamed_answer_is_chunked_and_head_and_204_carry_no_body(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(post("/stream", b""))
        status, headers, body = read_response(f)
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        assert body == b"one two three"
        sock.sendall(b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n")
        status, headers, body = read_response(f, head=True)
        assert status == 200
        assert int(headers["content-length"]) > 0
        sock.sendall(post("/empty", b""))
        status, headers, _ = read_response(f)
        assert status == 204
        assert "content-length" not in headers
        sock.sendall(post("/after", b""))  # the connection is still in step
        assert json.loads(read_response(f)[2])["path"] == "/after"


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
        (b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 99999\r\n\r\n", 413, "over 1024"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431, "head is over 65536"),
        (b"GET /x HTTP/1.1\r\n" + b"x-pad: " + b"b" * 70_000 + b"\r\n\r\n", 431, "head is over"),
    ],
)
def test_requests_that_cannot_be_read_get_a_json_error_and_the_connection_closes(
    running: Running, raw: bytes, status: int, says: str
) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(raw)
        got, headers, body = read_response(f)
        assert got == status
        assert headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert says in error["message"], error
        assert closed(f)
    assert running.app.finished == []


def test_a_body_over_the_bound_without_a_length_is_refused_while_it_streams(
    running: Running,
) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"200\r\n" + b"z" * 512 + b"\r\n")
        status, _, body = read_response(f)
        assert status == 413
        assert b"body_too_large" in body
        assert closed(f)


def test_a_bad_request_behind_a_good_one_is_answered_after_it(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(post("/slow", b"ok") + b"BROKEN\r\n\r\n")
        assert json.loads(read_response(f)[2])["path"] == "/slow"
        assert read_response(f)[0] == 400
        assert closed(f)


def test_expect_100_continue_gets_its_interim_answer(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
        )
        assert read_response(f)[0] == 100
        sock.sendall(b"hi")
        assert json.loads(read_response(f)[2])["body"] == "hi"


def test_an_app_that_fails_gets_a_500_and_the_traceback_is_logged(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="quality_gates.gateway.server")
    for path, logged in (
        ("/boom", "the app broke"),
        ("/nothing", "no answer"),
        ("/bad-header", "line break"),
    ):
        sock, f = running.connect()
        with sock:
            sock.sendall(post(path, b""))
            status, headers, body = read_response(f)
            assert (status, headers["connection"]) == (500, "close"), path
            assert json.loads(body)["error"]["code"] == "internal_error"
            assert b"set-cookie" not in body
            assert "set-cookie" not in headers
            assert closed(f)
        assert logged in caplog.text, path


def test_an_answer_the_app_leaves_unfinished_is_not_passed_off_as_whole(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="quality_gates.gateway.server")
    sock, f = running.connect()
    with sock:
        sock.sendall(post("/cut", b""))
        assert closed(f)  # no head, no body: the client sees a failed exchange
    assert "answer to POST /cut ended early" in caplog.text


def test_an_upgrade_is_answered_as_plain_http_then_the_connection_closes(
    running: Running,
) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        )
        status, _, body = read_response(f)
        assert status == 200
        assert json.loads(body)["path"] == "/ws"
        assert closed(f)


def test_an_upgrade_with_a_body_is_refused_and_its_body_never_runs_as_a_request(
    running: Running,
) -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nhost: t\r\n\r\n"
    sock, f = running.connect()
    with sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: foo\r\n"
            b"content-length: %d\r\n\r\n" % len(smuggled)
        )
        time.sleep(0.05)
        sock.sendall(smuggled)
        status, _, body = read_response(f)
        assert status == 400
        assert b"Upgrade request with a body" in body
        assert closed(f)
    assert "/smuggled" not in running.app.finished


def test_one_endless_header_line_is_cut_at_the_head_bound(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nx-long: ")
        with contextlib.suppress(OSError):  # the server may close while this is sent
            for _ in range(40):
                sock.sendall(b"a" * 8192)
        assert read_response(f)[0] == 431


def test_a_trailer_is_not_taken_for_a_request_header(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(
            b"POST /x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer proxy\r\n"
            b"transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
            b"authorization: Bearer attacker\r\n\r\n"
        )
        seen = json.loads(read_response(f)[2])
        assert seen["body"] == "hi"
        assert [v for k, v in seen["headers"] if k == "authorization"] == ["Bearer proxy"]


def test_a_stream_to_an_http_1_0_client_is_ended_by_the_close(running: Running) -> None:
    sock, f = running.connect()
    with sock:
        sock.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        assert f.readline().startswith(b"HTTP/1.1 200")
        head = b""
        while (line := f.readline()) != b"\r\n":
            head += line.lower()
        assert b"transfer-encoding" not in head
        assert b"connection: close" in head
        assert f.read() == b"one two three"


def test_a_client_that_leaves_mid_stream_is_told_to_the_app(running: Running) -> None:
    sock, f = running.connect()
    sock.sendall(post("/stream-until-gone", b""))
    assert f.readline().startswith(b"HTTP/1.1 200")
    sock.close()
    f.close()
    assert running.app.disconnected.wait(5)
    sock, f = running.connect()  # the server is unharmed
    with sock:
        sock.sendall(post("/x", b""))
        assert read_response(f)[0] == 200


def test_idle_and_slow_connections_are_closed() -> None:
    server = Running(App(), keep_alive=0.3, read_timeout=0.6).start()
    try:
        idle, f = server.connect()
        with idle:
            idle.sendall(post("/x", b""))
            assert read_response(f)[0] == 200
            started = time.monotonic()
            assert closed(f)
            assert time.monotonic() - started < 3
        slow, f = server.connect()
        with slow:
            slow.sendall(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nab")
            status, _, body = read_response(f)
            assert status == 408
            assert b"not complete within 0.6 s" in body
            assert closed(f)
    finally:
        server.stop()


def test_a_stop_lets_the_answer_in_flight_finish_then_runs_the_shutdown() -> None:
    app = App()
    server = Running(app).start()
    idle, idle_f = server.connect()
    busy, busy_f = server.connect()
    with idle, busy:
        idle.sendall(post("/x", b""))
        assert read_response(idle_f)[0] == 200
        busy.sendall(post("/slow", b""))
        time.sleep(0.1)
        server.server.loop.call_soon_threadsafe(server.server.stop)
        assert closed(idle_f)  # idle: closed at once
        status, headers, _ = read_response(busy_f)  # in flight: answered, then closed
        assert status == 200
        assert headers["connection"] == "close"
        assert closed(busy_f)
    server.thread.join(10)
    assert not server.thread.is_alive()
    assert server.error is None
    assert app.lifespan == ["startup", "shutdown"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


def test_a_failed_startup_stops_the_server_before_it_listens() -> None:
    server = Running(App(fail_startup=True))
    server.thread.start()
    server.thread.join(10)
    assert isinstance(server.error, StartupFailed)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


def test_bytes_without_a_request_do_not_keep_an_idle_connection_open() -> None:
    server = Running(App(), keep_alive=0.5).start()
    try:
        conn, f = server.connect()
        with conn:
            conn.sendall(post("/x", b""))
            assert read_response(f)[0] == 200
            started = time.monotonic()
            with contextlib.suppress(OSError):
                while time.monotonic() - started < 10:  # bare CRLFs, as the flood did
                    conn.sendall(b"\r\n")
                    time.sleep(0.1)
            assert time.monotonic() - started < 10, "the CRLFs kept the connection open"
            assert closed(f)
    finally:
        server.stop()


def test_a_head_that_trickles_in_gets_408_at_the_header_timeout() -> None:
    server = Running(App(), header_timeout=0.5, read_timeout=30).start()
    try:
        conn, f = server.connect()
        with conn:
            head = b"POST /x HTTP/1.1\r\nhost: t\r\nx-slow: " + b"a" * 200
            with contextlib.suppress(OSError):
                for byte in head:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.05)
            status, _, body = read_response(f)
            assert status == 408
            assert b"head was not complete within 0.5 s" in body
    finally:
        server.stop()


def test_past_max_connections_new_clients_get_a_fast_503_and_held_ones_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Running(App(), max_connections=3, keep_alive=30).start()
    open_now = server.server.connections
    # start()'s probe may still be in the accept queue: a served request behind it means
    # it was accepted; then wait for it to be gone.
    first, reader = server.connect()
    first.sendall(post("/x", b""))
    assert read_response(reader)[0] == 200
    reader.close()
    first.close()
    _wait(lambda: not open_now)
    held = [server.connect() for _ in range(3)]
    try:
        _wait(lambda: len(open_now) == 3)
        extra, f = server.connect()
        with extra:
            status, headers, body = read_response(f)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert json.loads(body)["error"]["code"] == "connection_limit"
            assert closed(f)
        for conn, reader in held:  # every client already in is still served
            conn.sendall(post("/x", b"still here"))
            assert read_response(reader)[0] == 200
        assert server.server.refused == 1
        gone, gone_reader = held.pop()
        gone_reader.close()  # the socket's descriptor lives as long as its file object
        gone.close()
        _wait(lambda: len(open_now) == 2)
        again, f = server.connect()
        with again:
            again.sendall(post("/x", b""))
            assert read_response(f)[0] == 200
    finally:
        for conn, reader in held:
            reader.close()
            conn.close()
        server.stop()
    assert len([r for r in caplog.records if "connection limit reached" in r.getMessage()]) == 1


def test_thousands_of_pipelined_small_requests_are_all_answered(running: Running) -> None:
    conn, f = running.connect()
    count = 5000
    request = b"GET /p HTTP/1.1\r\nhost: t\r\nx-pad: " + b"p" * 40 + b"\r\n\r\n"
    with conn:
        sender = threading.Thread(target=conn.sendall, args=(request * count,))
        sender.start()
        statuses = [read_response(f)[0] for _ in range(count)]
        sender.join(10)
    assert statuses == [200] * count


def test_an_http_1_0_request_with_transfer_encoding_ends_the_connection(
    running: Running,
) -> None:
    conn, f = running.connect()
    with conn:
        conn.sendall(
            b"POST /x HTTP/1.0\r\nhost: t\r\nconnection: keep-alive\r\n"
            b"transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        assert read_response(f)[0] == 200
        assert closed(f)
    assert "/smuggled" not in running.app.finished


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)
