"""Request bodies over raw sockets: each route's limit applies while reading, refused bodies are never read."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from dataclasses import dataclass

import psutil
import pytest
from tornado.testing import bind_unused_port

from main import make_http_server

pytestmark = pytest.mark.gen_test(timeout=60)

MiB = 1024 * 1024
JSON_LIMIT = 65536
UPLOAD_LIMIT = 4096
BODY_TIMEOUT = 30.0


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "api": {"max_body_bytes": JSON_LIMIT, "body_timeout_seconds": BODY_TIMEOUT},
            "files": {"max_bytes": UPLOAD_LIMIT, "body_timeout_seconds": BODY_TIMEOUT}}


def served(io_loop, app, config):
    """`app` behind the HTTPServer main.py makes (its limits and timeouts), on a free port; yields the port."""
    sock, port = bind_unused_port()
    server = make_http_server(app, config)
    server.add_sockets([sock])
    yield port
    server.stop()
    io_loop.run_sync(lambda: asyncio.wait_for(server.close_all_connections(), 5))


@pytest.fixture
def api_port(io_loop, app, config):
    yield from served(io_loop, app, config)


@pytest.fixture
def notify_port(io_loop, notify_app, config):
    yield from served(io_loop, notify_app, config)


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def error_code(self):
        return (self.json or {}).get("error", {}).get("code")

    def assert_json_error(self, status: int, code: str | None = None) -> None:
        assert self.status == status, (self.status, self.body)
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        error = self.json["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), self.body
        assert code is None or error["code"] == code, self.body


class Conn:
    """One raw TCP connection to a served role."""

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    async def open(self) -> "Conn":
        loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        return self

    async def send(self, data: bytes) -> bool:
        """False when the server closed the connection before taking all of it."""
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    async def _recv(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer before the deadline")
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), remaining)
        except ConnectionResetError:
            return b""

    async def response(self, within: float = 5.0, head: bool = False) -> Raw:
        """The next response, parsed; fails if none has come within `within` seconds."""
        deadline = time.monotonic() + within
        while b"\r\n\r\n" not in self.buffer:
            data = await self._recv(deadline)
            if not data:
                raise AssertionError(f"closed without a response; got {self.buffer!r}")
            self.buffer += data
        head_bytes, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head or status in (204, 304) else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            data = await self._recv(deadline)
            if not data:
                break
            self.buffer += data
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Raw(status, headers, body)

    async def closed(self, within: float) -> bool:
        """True when the server closes the connection within `within` seconds (anything it sends is dropped)."""
        deadline = time.monotonic() + within
        try:
            while await self._recv(deadline):
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
def connect(io_loop):
    """`await connect(port)` -> an open Conn, closed after the test."""
    conns: list[Conn] = []

    async def open_conn(port: int) -> Conn:
        conn = Conn(port)
        conns.append(conn)
        return await conn.open()

    yield open_conn
    for conn in conns:
        conn.close()


def request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1") + body


def chunked(data: bytes, size: int = 65536, end: bool = True) -> bytes:
    out = b"".join(f"{len(data[i:i + size]):x}\r\n".encode() + data[i:i + size] + b"\r\n"
                   for i in range(0, len(data), size))
    return out + (b"0\r\n\r\n" if end else b"")


async def answered_at_once(connect, port: int, head: bytes) -> Raw:
    """Sends only the request's headers: the answer must come without the body, then the connection closes."""
    conn = await connect(port)
    await conn.send(head)
    reply = await conn.response(within=5)
    assert await conn.closed(within=5), "the connection should close rather than read the body"
    return reply


async def test_an_oversized_content_length_is_413_json_before_the_body(connect, api_port):
    reply = await answered_at_once(connect, api_port, request(
        "POST", "/api/signin", {"Content-Type": "application/json", "Content-Length": str(8 * MiB)}))
    reply.assert_json_error(413, "payload_too_large")
    assert str(JSON_LIMIT) in reply.json["error"]["message"]
    # The same with `Expect: 100-continue`: refused, and never invited to send.
    expect = await connect(api_port)
    await expect.send(request("POST", "/api/signup", {"Content-Length": str(JSON_LIMIT + 1), "Expect": "100-continue"}))
    refused = await expect.response()
    refused.assert_json_error(413, "payload_too_large")


async def test_a_json_body_just_over_its_limit_is_413_and_at_the_limit_is_read(connect, api_port, api):
    at_limit = json.dumps({"email": "nobody@example.com", "password": "wrong password"}).encode()
    at_limit += b" " * (JSON_LIMIT - len(at_limit))
    conn = await connect(api_port)
    await conn.send(request("POST", "/api/signin", {"Content-Length": str(JSON_LIMIT)}, at_limit))
    (await conn.response()).assert_json_error(401, "invalid_credentials")  # read, decoded, checked

    over = await answered_at_once(connect, api_port, request("POST", "/api/signin",
                                                            {"Content-Length": str(JSON_LIMIT + 1)}))
    over.assert_json_error(413, "payload_too_large")
    # Through an ordinary client sending the whole body too.
    sent = await api.post("/api/signin", raw=at_limit + b" ")
    assert sent.status == 413 and sent.error_code == "payload_too_large"


async def test_a_chunked_body_is_counted_while_read(connect, api_port):
    body = json.dumps({"email": "nobody@example.com", "password": "wrong password"}).encode()
    small = await connect(api_port)
    await small.send(request("POST", "/api/signin", {"Transfer-Encoding": "chunked"}, chunked(body, size=7)))
    (await small.response()).assert_json_error(401)

    # Many small chunks past the limit, and one chunk whose declared size alone passes it.
    for pieces in (chunked(b" " * (JSON_LIMIT + 1), size=1000, end=False),
                   f"{JSON_LIMIT * 4:x}\r\n".encode() + b" " * (JSON_LIMIT + 1)):
        conn = await connect(api_port)
        await conn.send(request("POST", "/api/signin", {"Transfer-Encoding": "chunked"}))
        await conn.send(pieces)  # and never the end: the limit, not the end, stops the read
        (await conn.response()).assert_json_error(413, "payload_too_large")
        assert await conn.closed(within=5)


async def test_bad_framing_headers_are_json_400(connect, api_port):
    for headers in ({"Content-Length": "12abc"}, {"Content-Length": "5, 6"}, {"Content-Length": "-1"},
                    {"Content-Length": "5", "Transfer-Encoding": "chunked"}, {"Transfer-Encoding": "gzip"}):
        reply = await answered_at_once(connect, api_port, request("POST", "/api/signin", headers))
        reply.assert_json_error(400, "bad_request")
    same_twice = await connect(api_port)
    await same_twice.send(request("POST", "/api/signin", {"Content-Length": "2, 2"}, b"{}"))
    (await same_twice.response()).assert_json_error(422)  # Tornado takes equal duplicates; so do we


async def test_bodies_refused_for_what_the_route_would_refuse_anyway(connect, api_port, api):
    length = {"Content-Length": str(JSON_LIMIT)}
    # A verb the route lacks, a body on a GET, a stranger on an authenticated route: before the body.
    (await answered_at_once(connect, api_port, request("DELETE", "/api/signin", length))).assert_json_error(
        405, "method_not_allowed")
    (await answered_at_once(connect, api_port, request("GET", "/api/users", {"Content-Length": "10"}))
     ).assert_json_error(413, "payload_too_large")
    (await answered_at_once(connect, api_port, request("POST", "/api/chats", length))).assert_json_error(
        401, "unauthorized")
    (await answered_at_once(connect, api_port, request("POST", "/api/nowhere", length))).assert_json_error(
        404, "not_found")
    # With a valid token the body is read as usual.
    user = await api.signup()
    body = json.dumps({"chat_type": "nope"}).encode()
    conn = await connect(api_port)
    await conn.send(request("POST", "/api/chats", {"Authorization": f"Bearer {user['token']}",
                                                   "Content-Length": str(len(body))}, body))
    (await conn.response()).assert_json_error(422)


async def test_uploads_up_to_files_max_bytes_and_not_beyond(connect, api_port, api, config):
    user = await api.signup()
    boundary = "limitboundary"

    def upload(size: int) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + b"\1" * size + \
            f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {user['token']}"}
    ok = await api.post("/api/files", raw=upload(UPLOAD_LIMIT), headers=headers, token=user["token"])
    assert ok.status == 201 and ok.body["size"] == UPLOAD_LIMIT, ok.body
    over = await api.post("/api/files", raw=upload(UPLOAD_LIMIT + 1), headers=headers, token=user["token"])
    assert over.status == 413 and over.error_code == "payload_too_large"
    # Chunked, within the limit, is read and parsed like any other.
    conn = await connect(api_port)
    await conn.send(request("POST", "/api/files", {**headers, "Transfer-Encoding": "chunked"},
                            chunked(upload(100), size=50)))
    chunked_ok = await conn.response()
    assert chunked_ok.status == 201 and chunked_ok.json["size"] == 100, chunked_ok.body
    broken = await api.post("/api/files", raw=b"--nope\r\n", headers=headers, token=user["token"])
    assert broken.status == 400 and broken.error_code == "bad_request", broken.body

    # Before the body, on the headers: a declared size past the limit, a missing or bad token.
    big = str(config.files.max_bytes * 100)
    (await answered_at_once(connect, api_port, request("POST", "/api/files", {**headers, "Content-Length": big}))
     ).assert_json_error(413, "payload_too_large")
    anonymous = {"Content-Type": headers["Content-Type"], "Content-Length": str(UPLOAD_LIMIT)}
    (await answered_at_once(connect, api_port, request("POST", "/api/files", anonymous))).assert_json_error(401)
    forged = {**anonymous, "Authorization": "Bearer not.a.token"}
    (await answered_at_once(connect, api_port, request("POST", "/api/files", forged))).assert_json_error(401)


async def test_the_notify_role_refuses_any_body_at_once(connect, notify_port):
    for method, path, headers in [
        ("GET", "/events", {"Content-Length": "100"}),
        ("GET", "/events", {"Transfer-Encoding": "chunked"}),
        ("GET", "/api/online-users", {"Content-Length": str(8 * MiB)}),
        ("OPTIONS", "/events", {"Content-Length": "1"}),
    ]:
        reply = await answered_at_once(connect, notify_port, request(method, path, headers))
        reply.assert_json_error(413, "payload_too_large")
    post = await answered_at_once(connect, notify_port, request("POST", "/events", {"Content-Length": str(MiB)}))
    post.assert_json_error(405, "method_not_allowed")
    assert post.headers["allow"] == "GET, OPTIONS"


@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False},
                                               "api": {"body_timeout_seconds": 0.3},
                                               "files": {"body_timeout_seconds": 0.3}}])
async def test_a_stalled_body_is_cut_off_after_the_body_timeout(connect, api_port, notify_port, api):
    user = await api.signup()
    cases = [
        ("POST", "/api/signin", {"Content-Length": "1000"}, b'{"email": '),
        ("POST", "/api/signin", {"Transfer-Encoding": "chunked"}, b"a\r\n{\"email\": \r\n"),
        ("POST", "/api/files", {"Content-Length": "1000", "Authorization": f"Bearer {user['token']}",
                                "Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\n"),
    ]
    for method, path, headers, start in cases:
        conn = await connect(api_port)
        await conn.send(request(method, path, headers, start))
        began = time.monotonic()
        assert await conn.closed(within=10), f"{path} {headers}: a stalled body was never cut off"
        assert time.monotonic() - began >= 0.2, "cut off before the body timeout"
    # A request without a body is not subject to it: a slow handler is not a slow sender.
    healthy = await connect(api_port)
    await healthy.send(request("GET", "/health"))
    assert (await healthy.response()).status == 200


# files.max_bytes as in config.yaml (10 MiB), so that HTTPServer's own limit lets 8 MiB through.
@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False}}])
async def test_stalled_unauthenticated_bodies_do_not_grow_memory(connect, api_port, config):
    """Eight strangers announce 8 MiB each and push all but the last byte, then stall.

    Before: Tornado read every byte before prepare() and held 64 MiB. Now each is refused on its
    headers and the connection closes, so the pushes fail rather than complete; the process's
    RSS (the server runs in it) stays within a few MiB.
    """
    assert config.files.max_bytes > 8 * MiB
    payload = b"x" * (8 * MiB - 1)
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss

    async def stranger(chunked_body: bool) -> bool:
        conn = await connect(api_port)
        if chunked_body:
            head = request("POST", "/api/signin", {"Transfer-Encoding": "chunked"})
            body = f"{len(payload):x}\r\n".encode() + payload
        else:
            head = request("POST", "/api/signin", {"Content-Length": str(len(payload) + 1)})
            body = payload
        await conn.send(head)
        try:
            return await asyncio.wait_for(conn.send(body), 20)
        except TimeoutError:
            return True  # the server stopped reading but kept the connection: as bad as completing

    pushed = await asyncio.gather(*(stranger(i % 2 == 1) for i in range(8)))
    gc.collect()
    grown = process.memory_info().rss - before
    assert not any(pushed), "the server read a refused body to its end"
    assert grown < 8 * MiB, f"RSS grew by {grown / MiB:.1f} MiB for 8 refused bodies"



# files.max_bytes as in config.yaml (10 MiB): an 8 MiB upload is within the route's limit, so only the token refuses it.
@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False}}])
async def test_an_upload_with_an_ended_or_garbage_token_is_401_unread(connect, api_port, api, deps, config):
    """A token logout-all ended still has a valid signature: the session is checked on the headers too,
    before any byte of the upload is read (before: only the signature, and 10 MiB were read first)."""
    assert config.files.max_bytes > 8 * MiB
    user = await api.signup()
    assert (await api.post("/api/logout-all", token=user["token"])).status == 204
    boundary = "endedboundary"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode() + b"\1" * (8 * MiB) + \
        f"\r\n--{boundary}--\r\n".encode()
    for token in (user["token"], "garbage", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA"):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(payload))}
        # The headers alone get the answer, and the connection closes rather than read on.
        reply = await answered_at_once(connect, api_port, request("POST", "/api/files", headers))
        reply.assert_json_error(401, "unauthorized")
        # Pushing the whole body: the server stops taking it long before its 8 MiB are in.
        conn = await connect(api_port)
        await conn.send(request("POST", "/api/files", headers))
        try:
            pushed = await asyncio.wait_for(conn.send(payload), 20)
        except TimeoutError:
            pushed = True  # the server stopped reading but kept the connection open
        assert not pushed, f"{token[:10]}: the server read an unauthorized upload to its end"
    assert await deps.store.files.find_one({}) is None and await deps.store.file_chunks.find_one({}) is None
    # Signed in again, an upload goes through.
    fresh = (await api.post("/api/signin", {"email": user["user"]["email"], "password": user["password"]})).body
    ok = await api.post("/api/files", raw=payload[:300] + f"\r\n--{boundary}--\r\n".encode(),
                        token=fresh["access_token"],
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert ok.status == 201, ok.body


@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": True, "uploads_per_minute_per_user": 1},
                                               "files": {"max_bytes": UPLOAD_LIMIT}}])
@pytest.mark.usefixtures("frozen_window")
async def test_past_the_upload_rate_limit_the_body_is_never_read(connect, api_port, api, deps):
    """The upload limit is asked on the headers: a user past it cannot make the server read (and hold)
    upload after upload only to refuse each once it is in."""
    user = await api.signup()
    boundary = "ratedboundary"
    headers = {"Authorization": f"Bearer {user['token']}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\nbytes\r\n--{boundary}--\r\n").encode()
    assert (await api.post("/api/files", raw=body, headers=headers, token=user["token"])).status == 201
    for framing in ({"Content-Length": str(UPLOAD_LIMIT)}, {"Transfer-Encoding": "chunked"}):
        reply = await answered_at_once(connect, api_port, request("POST", "/api/files", {**headers, **framing}))
        reply.assert_json_error(429, "rate_limited")
        assert int(reply.headers["retry-after"]) == 59
    assert len(await deps.store.files.find({}, {"_id": 1}).to_list()) == 1


@pytest.mark.parametrize("config_overrides", [{"limits": {"enabled": False}}])
async def test_stalled_downloads_hold_a_few_chunks_each_not_the_file(api_port, api, config):
    """Eight readers start an 8 MiB download and stop reading. Before: each download read the whole file,
    then held it in the write buffer until its reader took it: 64 MiB and more. Streamed through one
    GridFS cursor, still 44 MiB (nx-27017 answers a `*.chunks` find with every chunk at once). Now a
    download reads DOWNLOAD_BATCH_BYTES of chunks at a time and writes them one by one."""
    import tracemalloc

    from tests.test_files import multipart

    assert config.files.max_bytes >= 8 * MiB
    user = await api.signup()
    body, ctype = multipart([("file", "big.bin", "application/octet-stream", b"\7" * (8 * MiB))])
    up = await api.post("/api/files", raw=body, token=user["token"], headers={"Content-Type": ctype})
    assert up.status == 201, up.body
    del body
    loop = asyncio.get_running_loop()
    socks = []
    tracemalloc.start()
    try:
        for _ in range(8):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that takes almost nothing
            sock.setblocking(False)
            socks.append(sock)
            await loop.sock_connect(sock, ("127.0.0.1", api_port))
            await loop.sock_sendall(sock, request("GET", up.body["url"], {"Authorization": f"Bearer {user['token']}"}))
        for sock in socks:  # each answer has begun: its headers are here
            head = b""
            while b"\r\n\r\n" not in head:
                head += await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
            assert head.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {8 * MiB}".encode() in head, head
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for sock in socks:
            sock.close()
    assert held < 24 * MiB, f"8 stalled downloads hold {held / MiB:.1f} MiB"


async def test_the_session_is_checked_once_per_request(app, api):
    """prepare() checks the session on the headers of a request with a body, and the verb's @authenticated
    asks again: the second ask is answered by the first. Without a body only the verb checks it."""
    from tests.test_files import multipart

    user = await api.signup()
    live = app.settings["session_check"]
    checked: list[str] = []

    async def counted(identity):
        checked.append(identity.user_id)
        return await live(identity)

    app.settings["session_check"] = counted
    try:
        assert (await api.get("/api/chats", token=user["token"])).status == 200
        assert len(checked) == 1, "a request without a body"
        created = await api.post("/api/chats", {"type": "public_channel", "name": "once", "members": []},
                                 token=user["token"])
        assert created.status == 201, created.body
        assert len(checked) == 2, "a JSON body: prepare, then the verb"
        body, ctype = multipart([("file", "a.txt", "text/plain", b"once")])
        uploaded = await api.post("/api/files", raw=body, token=user["token"], headers={"Content-Type": ctype})
        assert uploaded.status == 201, uploaded.body
        assert checked == [user["id"]] * 3, "an upload: prepare and admit_body, then the verb"
    finally:
        app.settings["session_check"] = live
