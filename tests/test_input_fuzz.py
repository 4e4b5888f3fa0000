"""Raw bytes at every route of both roles, with and without a token: never a 5xx, never a traceback in the log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
import pytest

from app.services.paging import encode_cursor
from tests.support.chats import create_chat, make_team
from tests.test_files import multipart

pytestmark = pytest.mark.gen_test(timeout=120)

SEED = 13
# Requests in flight at once: enough to overlap the notify role's short waits, few enough for 2 shared cores.
CONCURRENCY = 24
ANSWER_TIMEOUT = 15.0
# The cases are dealt round-robin into slices, each against an api and notify of its own, so that xdist spreads
# them; every slice builds the same full list (same seed) and checks that it covers every form.
SLICES = 4
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
# Changes that would take away what later requests aim at (the seeded chat, the token): sent last.
DESTRUCTIVE = re.compile(r"^(DELETE |POST /api/logout)")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Answer:
    status: int | None  # None: the connection closed with no answer
    headers: dict[str, str]
    body: bytes


@dataclass
class Case:
    role: str
    label: str
    data: bytes
    method: str = "GET"
    order: int = 0  # 0 first, 1 destructive, 2 the logouts
    answer: Answer | None = None


# The operation keys of an OpenAPI path item (beside them: servers, parameters, summary).
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def route_templates(application) -> list[str]:
    """Every route of a role as a path template, from the application's own route table."""
    templates = []
    for rule in application.wildcard_router.rules:
        template = getattr(rule, "template", None)
        if template is None:  # Tornado's own static routes: /static/(.*), /(favicon\.ico), /(robots\.txt)
            pattern = rule.matcher.regex.pattern.rstrip("$")
            template = re.sub(r"\(\.\*\)", "{static}", pattern).replace("\\", "").strip("()")
            template = template.replace("/(", "/").rstrip(")")
        template = template.replace(".*", "nowhere")  # the JSON 404 for the rest of /api/
        templates.append(template)
    return templates


def implemented_methods(handler) -> list[str]:
    """The methods a handler of ours defines (Tornado's own answer 405)."""
    if not isinstance(handler, type):
        return []
    ours = [k for k in handler.__mro__ if k.__module__.startswith(("app.", "roles."))]
    return [m for m in METHODS if any(m.lower() in vars(k) for k in ours)]


def fill(template: str, ids: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: ids.get(m.group(1), "x"), template)


async def exchange(host: str, port: int, data: bytes) -> Answer:
    """One request on its own connection; the whole answer (or only its head, for an event stream)."""
    reader, writer = await asyncio.open_connection(host, port, limit=2**22)
    try:
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # answered (and closed) before all was sent: the answer is still there to read
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
            if head.startswith(b"HTTP/1.1 100 "):  # Expect: 100-continue; the answer follows
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError):
            return Answer(None, {}, b"")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if headers.get("content-type", "").startswith("text/event-stream"):
            return Answer(status, headers, b"")
        try:
            body = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
        except ConnectionError:
            body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = dechunk(body)
        return Answer(status, headers, body)
    finally:
        writer.close()


def dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


Bytes = bytes | str


def request(method: Bytes, target: Bytes, *, host: Bytes, headers: list[tuple[Bytes, Bytes]] = (),
            body: bytes | None = None, version: str = "HTTP/1.1", length: bool = True) -> bytes:
    """The bytes of one request, exactly as given: nothing is escaped or checked."""
    def b(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode()

    lines = [b(method) + b" " + b(target) + b" " + b(version), b"Host: " + b(host)]
    lines += [b(name) + b": " + b(value) for name, value in headers]
    if body is not None and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def bodies(rng: random.Random, file_id: str) -> dict[str, tuple[bytes, str]]:
    """name -> (body, content type): bytes, encodings, nesting, numbers, shapes."""
    found = {f"random {n}": (rng.randbytes(n), "application/json") for n in (1, 17, 300, 4000)}
    found.update({
        "empty": (b"", "application/json"),
        "nesting bomb": (b"[" * 2048, "application/json"),
        "object bomb": (b'{"a":' * 2048, "application/json"),
        "nested in valid": (b'{"content":"x","members":' + b"[" * 1500 + b"]" * 1500 + b"}", "application/json"),
        "closed bomb": (b"[" * 900 + b"]" * 900, "application/json"),
        "not UTF-8": (b'{"content": "\xff\xfe", "email": "\xc3\x28"}', "application/json"),
        "encoded surrogate": (b'{"content": "\xed\xa0\x80"}', "application/json"),
        "lone surrogate": (rb'{"content": "\ud800", "name": "\udfff", "email": "\ud800@x.io"}', "application/json"),
        "NUL escapes": (rb'{"content": "a\u0000b", "name": "\u0000", "fullname": "\u0000", "q": "\u0000"}',
                        "application/json"),
        "raw NUL": (b'{"content": "a\x00b"}', "application/json"),
        "huge float": (b'{"seq": 1e999, "content": 1e999}', "application/json"),
        "huge ints": (json.dumps({"seq": 2**70, "members": [2**70], "user_ids": [-(2**70)], "limit": 2**64,
                                  "content": "x", "reply_to": 2**70}).encode(), "application/json"),
        "big int seq": (b'{"seq": 9223372036854775808}', "application/json"),
        "negative seq": (b'{"seq": -9223372036854775809}', "application/json"),
        "duplicate keys": (b'{"content": "a", "content": "b", "seq": 1, "seq": 2}', "application/json"),
        "array": (b"[]", "application/json"),
        "number": (b"1", "application/json"),
        "string": (b'"x"', "application/json"),
        "null": (b"null", "application/json"),
        "operators": (b'{"email": {"$gt": ""}, "password": {"$ne": 1}, "members": [{"$gt": ""}], '
                      b'"name": {"$regex": ".*"}, "refresh_token": {"$gt": ""}}', "application/json"),
        "long strings": (json.dumps({k: "\U0001f600" * 30000 for k in ("content", "name", "email")}).encode()[:60000],
                         "application/json"),
        "BOM": (b'\xef\xbb\xbf{"content": "x"}', "application/json"),
        "latin-1 charset": ('{"content": "é"}'.encode("latin-1"), "application/json; charset=latin-1"),
        "form": (b"%FF=%FE&content=%ED%A0%80&a&&=", "application/x-www-form-urlencoded"),
        "form charset": (b"a=1", "application/x-www-form-urlencoded; charset=\xff"),
        "text": ("content=ü".encode(), "text/plain"),
    })
    boundary = "fuzzboundary"

    def part(headers: bytes, data: bytes = b"data") -> bytes:
        return b"--" + boundary.encode() + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"

    end = b"--" + boundary.encode() + b"--\r\n"
    ctype = f"multipart/form-data; boundary={boundary}"
    found.update({
        "multipart non-ASCII type": (
            part('Content-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png中'
                 .encode()) + end, ctype),
        "multipart non-UTF-8 headers": (
            part(b'Content-Disposition: form-data; name="file"; filename="\xff.png"\r\nContent-Type: image/\xfe') + end,
            ctype),
        "multipart RFC 2231 name": (
            part(b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%FF%FE%ED%A0%80.txt") + end, ctype),
        "multipart control name": (
            part(b'Content-Disposition: form-data; name="file"; filename="a\x00b\x1b\x7f.txt"') + end, ctype),
        "multipart path name": (
            part(b'Content-Disposition: form-data; name="file"; filename="../../\\..\\etc/passwd"') + end, ctype),
        "multipart no name": (part(b'Content-Disposition: form-data; filename="a"') + end, ctype),
        "multipart no final": (part(b'Content-Disposition: form-data; name="file"; filename="a"'), ctype),
        "multipart no headers": (b"--" + boundary.encode() + b"\r\nfile\r\n" + end, ctype),
        "multipart many parts": (
            b"".join(part(f'Content-Disposition: form-data; name="f{i}"'.encode()) for i in range(500)) + end, ctype),
        "multipart two files": (
            part(b'Content-Disposition: form-data; name="file"; filename="a"')
            + part(b'Content-Disposition: form-data; name="file"; filename="b"') + end, ctype),
        "multipart no boundary": (b"--x\r\n\r\n--x--", "multipart/form-data"),
        "multipart bad boundary": (b"--\xff\r\n\r\n--\xff--", "multipart/form-data; boundary=\xff"),
        "multipart quoted boundary": (b'--"q"--', 'multipart/form-data; boundary="q"'),
        "multipart other": (b"x", "multipart/mixed; boundary=x"),
        "multipart dataxyz": (b"x", "multipart/form-dataxyz; boundary=x"),
    })
    good, good_type = multipart([("file", "ok.txt", "text/plain", b"fine")])
    found["multipart gzip"] = (good, good_type + "\r\nContent-Encoding: gzip")
    found["file ids"] = (json.dumps({"content": "x", "files": [file_id, "%FF", "\u0000", "a" * 65]}).encode(),
                         "application/json")
    return found


QUERIES = [
    "%FF", "%", "%zz", "%%", "a=%FF", "%FF=a", "=", "&&&", "a" * 6000, "limit=1e3", "limit=-1", "limit=%EF%BC%90",
    "limit=%D9%A5", "limit=%C2%B2", "limit=1&limit=2", "limit=99999999999999999999999", "limit=50.0",
    "cursor=" + "A" * 17000, "cursor=%FF", "cursor=j" + base64.urlsafe_b64encode(b'["users", 1]').decode(),
    "cursor=" + base64.urlsafe_b64encode(b"j" + b"[" * 3000).decode(), "q=%ED%A0%80", "q=" + "x" * 2000,
    "q=%00", "q=.*%2B%2B(", "chat_id=%00", "chat_id=" + "a" * 70, "workspace_id=%7B%24gt%3A%22%22%7D",
    "chat_id=x&chat_id=y", "before=%C2%B2", "after=-1", "before=1e3", "after=1e999",
    "access_token=%FF", "access_token=" + "A" * 3000, "access_token=a.b.c", "access_toke%6E=x",
    "last_event_id=%C2%B2", "last_event_id=%E2%91%A0", "last_event_id=%EF%BC%91%EF%BC%92",
    "last_event_id=99999999999999999999999999", "last_event_id=-1", "last_event_id=+1", "last_event_id=%20%201",
    "last_event_id=%FF", "last_event_id=1&last_event_id=x",
]

# (label, extra header lines, body): forms of the head itself. Bytes are sent as they are.
HEADER_FORMS = [
    ("duplicate Content-Length same", [("Content-Length", "2"), ("Content-Length", "2")], b"{}", False),
    ("duplicate Content-Length differ", [("Content-Length", "2"), ("Content-Length", "3")], b"{}x", False),
    ("Content-Length list", [("Content-Length", "2, 2")], b"{}", False),
    ("Content-Length sign", [("Content-Length", "+2")], b"{}", False),
    ("Content-Length hex", [("Content-Length", "0x2")], b"{}", False),
    ("Content-Length unicode digit", [("Content-Length", "²".encode())], b"{}", False),
    ("Content-Length fullwidth", [("Content-Length", "２".encode())], b"{}", False),
    ("Content-Length latin-1 digit", [("Content-Length", b"\xb2")], b"{}", False),
    ("Content-Length negative", [("Content-Length", "-1")], b"", False),
    ("Content-Length huge", [("Content-Length", "9" * 40)], b"", False),
    ("chunked", [("Transfer-Encoding", "chunked")], b"2\r\n{}\r\n0\r\n\r\n", False),
    ("chunked and length", [("Transfer-Encoding", "chunked"), ("Content-Length", "2")], b"2\r\n{}\r\n0\r\n\r\n",
     False),
    ("chunked bad size", [("Transfer-Encoding", "chunked")], b"zz\r\n{}\r\n0\r\n\r\n", False),
    ("chunked negative size", [("Transfer-Encoding", "chunked")], b"-2\r\n{}\r\n0\r\n\r\n", False),
    ("chunked huge size", [("Transfer-Encoding", "chunked")], b"f" * 30 + b"\r\n{}\r\n0\r\n\r\n", False),
    ("chunked extension", [("Transfer-Encoding", "chunked")], b"2;\xff=\xfe\r\n{}\r\n0\r\n\r\n", False),
    ("chunked trailer", [("Transfer-Encoding", "chunked")], b"2\r\n{}\r\n0\r\nX-T: \xff\r\n\r\n", False),
    ("gzip transfer", [("Transfer-Encoding", "gzip, chunked")], b"2\r\n{}\r\n0\r\n\r\n", False),
    ("identity transfer", [("Transfer-Encoding", "identity")], b"", False),
    ("Chunked capital", [("Transfer-Encoding", "Chunked")], b"2\r\n{}\r\n0\r\n\r\n", False),
    ("two transfer headers", [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
     b"2\r\n{}\r\n0\r\n\r\n", False),
    ("obs-fold", [("X-Folded", "a\r\n b"), ("Authorization", "Bearer\r\n\tx")], b"{}", True),
    ("obs-fold of Host", [(" X-Folded-Into-Host", "a")], b"{}", True),
    ("no colon", [("X-No-Colon", "")], b"{}", True),
    ("space in name", [("X Bad", "a")], b"{}", True),
    ("NUL in value", [("X-Nul", b"a\x00b")], b"{}", True),
    ("CR in value", [("X-Cr", b"a\rb")], b"{}", True),
    ("non-ASCII value", [("X-Text", "中文".encode()), ("User-Agent", b"\xff\xfe")], b"{}", True),
    ("long header", [("X-Long", "a" * 60000)], b"{}", True),
    ("too long header", [("X-Long", "a" * 70000)], b"{}", True),
    ("many headers", [(f"X-H{i}", "v") for i in range(3000)], b"{}", True),
    ("Basic", [("Authorization", "Basic dXNlcjpwYXNz")], b"{}", True),
    ("Bearer empty", [("Authorization", "Bearer")], b"{}", True),
    ("Bearer spaces", [("Authorization", "Bearer    ")], b"{}", True),
    ("bearer lower", [("Authorization", "bearer a.b.c")], b"{}", True),
    ("Bearer non-ASCII", [("Authorization", "Bearer 中文.令牌".encode())], b"{}", True),
    ("Bearer latin-1", [("Authorization", b"Bearer \xff\xfe\xfd")], b"{}", True),
    ("Bearer two words", [("Authorization", "Bearer a b")], b"{}", True),
    ("Bearer long", [("Authorization", "Bearer " + "A" * 20000)], b"{}", True),
    ("Bearer fake JWT", [("Authorization", "Bearer "
                          + ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=")
                                     for p in (b'{"alg":"none"}', b'{"sub":{"$gt":""},"exp":1e999}', b"")))],
     b"{}", True),
    ("Bearer bad segments", [("Authorization", "Bearer \xff.\xfe.\xfd".encode("latin-1"))], b"{}", True),
    ("Bearer base64 junk", [("Authorization", "Bearer " + base64.urlsafe_b64encode(b"\xff" * 60).decode())],
     b"{}", True),
    ("two Authorization", [("Authorization", "Bearer a"), ("Authorization", "Bearer b")], b"{}", True),
    ("Digest", [("Authorization", 'Digest username="\xff"'.encode("latin-1"))], b"{}", True),
    ("Last-Event-ID unicode", [("Last-Event-ID", "²".encode())], b"{}", True),
    ("Last-Event-ID fullwidth", [("Last-Event-ID", "１２".encode())], b"{}", True),
    ("Last-Event-ID latin-1", [("Last-Event-ID", b"\xb2\xb3")], b"{}", True),
    ("Last-Event-ID huge", [("Last-Event-ID", "9" * 100)], b"{}", True),
    ("Last-Event-ID two", [("Last-Event-ID", "1"), ("Last-Event-ID", "2")], b"{}", True),
    ("Origin junk", [("Origin", b"http://\xff\xfe:99999")], b"{}", True),
    ("Origin IPv6 broken", [("Origin", "http://[::1")], b"{}", True),
    ("Origin null", [("Origin", "null")], b"{}", True),
    ("Expect", [("Expect", "100-continue")], b"{}", True),
    ("Expect junk", [("Expect", "\xff")], b"{}", True),
    ("Content-Encoding gzip", [("Content-Encoding", "gzip"), ("Content-Type", "application/json")], b"\x1f\x8bxx",
     True),
    ("Content-Type junk", [("Content-Type", b"\xff/\xfe; charset=\xfd")], b"{}", True),
    ("Accept-Encoding", [("Accept-Encoding", "gzip, deflate, br, \xff")], b"{}", True),
    ("Cookie junk", [("Cookie", b"a=\xff; =; ;;; b")], b"{}", True),
    ("X-Forwarded-For junk", [("X-Forwarded-For", "\xff, ::ffff:1.2.3.4, [::1")], b"{}", True),
    ("If-None-Match junk", [("If-None-Match", 'W/"\xff"'), ("If-Modified-Since", "yesterday")], b"{}", True),
    ("Range junk", [("Range", "bytes=9-1,-0,abc")], b"{}", True),
]

HOSTS = [b"[::1", b"\xff\xfe", b"a" * 300, b"", b"host:99999999", b"[::1]:80", b"h\x00st"]
REQUEST_LINES = [
    ("lowercase method", b"get", None, "HTTP/1.1"),
    ("HTTP/1.0", b"GET", None, "HTTP/1.0"),
    ("HTTP/2.0", b"GET", None, "HTTP/2.0"),
    ("HTTP/0.9", b"GET", None, "HTTP/0.9"),
    ("junk version", b"GET", None, "HTXP/1.1"),
    ("absolute form", b"GET", "http://example.com{path}", "HTTP/1.1"),
    ("asterisk", b"OPTIONS", "*", "HTTP/1.1"),
    ("raw non-ASCII path", b"GET", "{path}/\u4e2d", "HTTP/1.1"),
    ("raw latin-1 path", b"GET", b"{path}/\xff", "HTTP/1.1"),
    ("percent path", b"GET", "{path}/%FF%00%2e%2e", "HTTP/1.1"),
    ("dot segments", b"GET", "/api/../{path}", "HTTP/1.1"),
    ("double slash", b"GET", "//{path}", "HTTP/1.1"),
    ("fragment", b"GET", "{path}#frag", "HTTP/1.1"),
    ("unknown method", b"BREW", None, "HTTP/1.1"),
    ("long method", b"X" * 5000, None, "HTTP/1.1"),
    ("CONNECT", b"CONNECT", "example.com:443", "HTTP/1.1"),
]


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


@pytest.fixture
def caplog_all(caplog):
    caplog.set_level(logging.INFO)
    return caplog


@pytest.mark.parametrize("slice_no", range(SLICES))
async def test_no_input_gets_a_5xx_or_a_traceback(app, api, deps, base_url, notify_app, notify_url, caplog_all,
                                                  slice_no):
    rng = random.Random(SEED)
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="fuzzed")
    message = (await api.post(f"/api/chats/{chat['id']}/messages", {"content": "seed"}, token=t.owner["token"])).body
    body, ctype = multipart([("file", "seed.txt", "text/plain", b"seed")])
    file = (await api.call("POST", "/api/files", raw=body, token=t.owner["token"],
                           headers={"Content-Type": ctype})).body
    real = {"chat_id": chat["id"], "user_id": t.member["id"], "message_id": message["id"], "file_id": file["id"],
            "static": "app.js"}
    junk_ids = ["%FF", "%00", "a" * 300, "..", "%2e%2e%2f%2e%2e", "%E4%B8%AD", "%7B%22%24gt%22%3A%22%22%7D", "-"]
    tokens = {"none": None, "owner": t.owner["token"], "member": t.member["token"], "forged": "a.b.c"}

    roles = {"api": (app, base_url), "notify": (notify_app, notify_url)}
    templates = {role: route_templates(application) for role, (application, _) in roles.items()}
    # Every documented path is a route of the table the requests are built from.
    doc_paths = (await api.get("/api/openapi.json")).body["paths"]
    documented = set(doc_paths)
    # The one document describes both roles (notify's paths carry their own server).
    served = set(templates["api"]) | set(templates["notify"])
    assert documented <= served, documented - served
    assert {"/events", "/api/online-users", "/api/sse/health"} <= set(templates["notify"])

    all_bodies = bodies(rng, file["id"])
    takes_query = {path for path, ops in doc_paths.items()
                   if any(p.get("in") == "query" for method, op in ops.items() if method in HTTP_METHODS
                          for p in op.get("parameters", []))}
    takes_query |= set(templates["notify"])
    cases: list[Case] = []
    for role, (application, url) in roles.items():
        host = urlsplit(url).netloc
        handlers = {getattr(rule, "template", None): rule.target for rule in application.wildcard_router.rules}

        def add(label: str, method: str, data: bytes, *, path: str) -> None:
            order = 0
            if DESTRUCTIVE.match(f"{method} {path}"):
                order = 2 if "logout" in path else 1
            cases.append(Case(role, label, data, method, order))

        def auth(who: str) -> list[tuple[str, str]]:
            return [("Authorization", f"Bearer {tokens[who]}")] if tokens[who] else []

        for template in templates[role]:
            handler = handlers.get(template)
            implemented = implemented_methods(handler)
            public = [m for m in implemented if not getattr(getattr(handler, m.lower()), "requires_auth", False)]
            path = fill(template, real)
            junk = fill(template, {name: rng.choice(junk_ids) for name in PLACEHOLDER.findall(template)})
            for method in METHODS:
                for who, target in [(who, path) for who in tokens] + [("owner", junk)]:
                    data = request(method, target, host=host,
                                   headers=[*auth(who), ("Content-Type", "application/json")],
                                   body=b"{}" if method in BODY_METHODS else None)
                    add(f"{method} {target} as {who}", method, data, path=path)
            # Every body at each method that reads one; a sample elsewhere (the body is read, then refused).
            body_methods = [m for m in implemented if m in BODY_METHODS]
            chosen = list(all_bodies) if body_methods else rng.sample(sorted(all_bodies), 6)
            for name in chosen:
                payload, content_type = all_bodies[name]
                for method in body_methods or ["POST"]:
                    for who in ["owner", "none"] if method in public else ["owner"]:
                        data = request(method, path, host=host,
                                       headers=[*auth(who), ("Content-Type", _b(content_type))], body=payload)
                        add(f"{method} {path} as {who} with body {name}", method, data, path=path)
            method = "GET" if "GET" in implemented or not implemented else implemented[0]
            for query in QUERIES if template in takes_query else rng.sample(QUERIES, 8):
                for who in ["owner", "none"] if method in public else ["owner"]:
                    target = f"{path}?{query}"
                    add(f"{method} {target[:120]} as {who}", method,
                        request(method, target, host=host, headers=auth(who),
                                body=b"{}" if method in BODY_METHODS else None), path=path)
            # Each header form at a third of the routes, every form somewhere (seeded).
            for label, extra, payload, with_length in HEADER_FORMS:
                if rng.random() < 1 / 3 or template in ("/events", "/api/signin", "/api/files"):
                    # Forms of the head alone go without a body where the method takes none (else: a 413 first).
                    body = payload if not with_length or method in BODY_METHODS else None
                    data = request(method, path, host=host, headers=[*auth("owner"), *extra], body=body,
                                   length=with_length)
                    add(f"{method} {path} with {label}", method, data, path=path)
            for bad_host in HOSTS:
                for extra in ([], [("Origin", "http://localhost")]):  # the notify role reads Host for CORS
                    add(f"GET {path} with Host {bad_host[:20]!r} {extra}", "GET",
                        request("GET", path, host=bad_host, headers=[*auth("owner"), *extra]), path=path)
            for label, verb, target, version in REQUEST_LINES:
                target = _b(target or "{path}").replace(b"{path}", path.encode())
                add(f"{label} {path}", verb.decode(), request(verb, target, host=host, headers=auth("owner"),
                                                              version=version), path=path)
            for verb in ("TRACE", "PATCH", "OPTIONS"):
                data = request(verb, path, host=host, headers=[*auth("owner"), ("Origin", "http://evil.example"),
                                                               ("Access-Control-Request-Method", "DELETE"),
                                                               ("Access-Control-Request-Headers", b"\xff, x")],
                               body=rng.randbytes(64))
                add(f"{verb} {path} with Origin and bytes", verb, data, path=path)
    # Cursors are opaque but not secret: forged ones, well-formed, with values no int64 or id holds.
    api_host = urlsplit(base_url).netloc
    digest = hashlib.sha256(msgspec.json.encode([["seed"], None])).hexdigest()[:16]
    huge = 2**70
    forged = [encode_cursor("search", [digest, [huge, chat["id"], -huge], {chat["id"]: [huge, -huge, True]}]),
              encode_cursor("search", [digest, None, {chat["id"]: [2**63, 2**63, False], "%FF": [1, 1, True]}]),
              encode_cursor("search", [digest, [1.5, "\u0000", "x"], {}]),
              *(encode_cursor(kind, value) for kind in ("users", "channels", "members")
                for value in ("\u0000", "\uffff" * 100, huge, "$gt", ["a"], {"$gt": ""}))]
    for cursor in forged:
        for target in ("/api/search/messages?q=seed&", "/api/users?", "/api/channels/public?",
                       f"/api/chats/{chat['id']}/members?"):
            cases.append(Case("api", f"GET {target}cursor=<forged {cursor[:30]}>", request(
                "GET", f"{target}cursor={cursor}", host=api_host,
                headers=[("Authorization", f"Bearer {tokens['owner']}")])))
    # Every header form, query and body was sent somewhere.
    labels = " | ".join(case.label for case in cases)
    assert all(f"with {label}" in labels for label, *_ in HEADER_FORMS)
    cases = cases[slice_no::SLICES]
    assert {case.order for case in cases} == {0, 1, 2}

    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def send(case: Case) -> None:
        _, url = roles[case.role]
        parts = urlsplit(url)
        async with semaphore:
            case.answer = await exchange(parts.hostname, parts.port, case.data)

    started = time.monotonic()
    for order in (0, 1):
        await asyncio.gather(*(send(case) for case in cases if case.order == order))
    # Whatever the uploads stored downloads again (an upload once stored `image/png中`, and every download was a 500).
    stored = await deps.store.files.find({}, {"_id": 1}).to_list()
    downloads = [Case("api", f"GET /api/files/{doc['_id']} after the fuzz", request(
        "GET", f"/api/files/{doc['_id']}", host=urlsplit(base_url).netloc,
        headers=[("Authorization", f"Bearer {tokens['owner']}")])) for doc in stored]
    await asyncio.gather(*(send(case) for case in downloads))
    cases += downloads
    await asyncio.gather(*(send(case) for case in cases if case.order == 2))  # the logouts, last
    elapsed = time.monotonic() - started

    failures = []
    statuses: dict[str, int] = {}
    for case in cases:
        answer = case.answer
        key = f"{case.role} {answer.status}"
        statuses[key] = statuses.get(key, 0) + 1
        if answer.status is None and not case.label.endswith("too long header"):
            # (A head past max_header_size is closed unanswered by Tornado's HTTP/1 layer, before any handler.)
            failures.append(f"{case.role} {case.label}: the connection closed with no answer")
        elif answer.status is not None and answer.status >= 500:
            failures.append(f"{case.role} {case.label}: {answer.status} {answer.body[:200]!r}")
        elif answer.status is not None and answer.status >= 400 and answer.body and case.method != "HEAD":
            # Every error a handler writes is JSON with a code (contract section 2), never HTML.
            try:
                assert answer.headers.get("content-type", "").startswith("application/json")
                assert isinstance(json.loads(answer.body)["error"]["code"], str)
            except (AssertionError, ValueError, KeyError, TypeError):
                failures.append(f"{case.role} {case.label}: {answer.status} not a JSON error: "
                                f"{answer.headers.get('content-type')} {answer.body[:120]!r}")
    logged = [r for r in caplog_all.records
              if r.exc_info or "Traceback" in r.getMessage() or "Uncaught exception" in r.getMessage()
              or (r.name == "fechatter.access" and r.levelno >= logging.ERROR)]
    print(f"\nfuzz slice {slice_no}: {len(cases)} requests in {elapsed:.1f}s; answers {dict(sorted(statuses.items()))}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])
    assert not logged, "\n".join(f"{r.name}: {r.getMessage()[:300]}" for r in logged[:20])
