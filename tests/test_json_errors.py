"""Every error either role answers is JSON: index page, static files, wrong methods, unknown paths, HEAD."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_body_limits import api_port, connect, notify_port, request  # noqa: F401 - fixtures

pytestmark = pytest.mark.gen_test(timeout=60)
ROOT = str(Path(__file__).resolve().parent.parent).encode()

# (method, raw request target, status) that both roles answer alike.
BOTH_ROLES = [
    ("TRACE", "/", 405),
    ("POST", "/", None),  # the api's index page takes GET only (405); the notify role has no `/` (404)
    ("DELETE", "/health", 405),
    ("POST", "/metrics", 405),
    ("PUT", "/health/ready", 405),
    ("GET", "/api/nope", 404),
    ("POST", "/api/chats/x/y/z", 404),
    ("GET", "/nowhere", 404),
    ("GET", "/static/missing.js", 404),
    ("GET", "/static/../config.yaml", 404),
    ("GET", "/static/%2e%2e/config.yaml", 404),
    ("GET", "/favicon.ico", 404),
    ("OPTIONS", "*", 404),
    ("FOO", "/api/signin", 405),
]
API_ONLY = [
    ("GET", "/static/", 404),  # a directory
    ("GET", "/static/views", 404),
    ("GET", "/static/../../../../etc/passwd", 404),
    ("GET", "/robots.txt", 404),
    ("DELETE", "/api/signin", 405),
    ("GET", "/api/signin", 405),
    ("PATCH", "/api/files", 405),
    ("POST", "/api/openapi.json", 405),
]
NOTIFY_ONLY = [
    ("POST", "/events", 405),
    ("DELETE", "/api/online-users", 405),
    ("POST", "/api/sse/health", 405),
]


async def exchange(connect, port, method, target, headers=None):
    conn = await connect(port)
    await conn.send(request(method, target, headers))
    return await conn.response(head=method == "HEAD")


@pytest.mark.parametrize("role", ["api", "notify"])
async def test_errors_of_both_roles_are_json(connect, api_port, notify_port, role):
    port = api_port if role == "api" else notify_port
    cases = BOTH_ROLES + (API_ONLY if role == "api" else NOTIFY_ONLY)
    for method, target, status in cases:
        if status is None:
            status = 405 if role == "api" else 404
        reply = await exchange(connect, port, method, target)
        reply.assert_json_error(status)
        assert reply.json["error"]["code"] == {404: "not_found", 405: "method_not_allowed"}[status]
        assert b"<html" not in reply.body.lower() and b"Traceback" not in reply.body
        # Tornado's messages for the files it refuses name the path; ours say only that nothing is there.
        assert b"root static directory" not in reply.body and ROOT not in reply.body, reply.body


@pytest.mark.parametrize("role", ["api", "notify"])
async def test_head_of_an_error_route_is_json_without_a_body(connect, api_port, notify_port, role):
    port = api_port if role == "api" else notify_port
    for target, status in [("/api/nope", 404), ("/static/missing.js", 404),
                           ("/api/signin" if role == "api" else "/api/sse/health", 405)]:
        reply = await exchange(connect, port, "HEAD", target)
        assert reply.status == status, (target, reply)
        assert reply.headers["content-type"].startswith("application/json"), (target, reply.headers)
        assert reply.body == b""


async def test_a_405_says_what_is_allowed(connect, api_port):
    reply = await exchange(connect, api_port, "DELETE", "/api/signin")
    reply.assert_json_error(405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
    assert "POST" in reply.json["error"]["message"]
    index = await exchange(connect, api_port, "POST", "/")
    assert index.headers["allow"] == "GET"


async def test_what_is_not_an_error_keeps_its_own_type(connect, api_port):
    page = await exchange(connect, api_port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    script = await exchange(connect, api_port, "GET", "/static/app.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert "no-store" not in script.headers.get("cache-control", "")
    metrics = await exchange(connect, api_port, "GET", "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    # A range past the file's end: Tornado's answer is an empty text/plain 416.
    past = await exchange(connect, api_port, "GET", "/static/app.js", {"Range": "bytes=99999999-"})
    past.assert_json_error(416, "range_not_satisfiable")
    assert past.headers["content-range"].startswith("bytes */")


@pytest.mark.parametrize("role", ["api", "notify"])
async def test_an_error_without_a_body_keeps_the_connection(connect, api_port, notify_port, role):
    conn = await connect(api_port if role == "api" else notify_port)
    for method, target, status in [("GET", "/api/nope", 404), ("DELETE", "/health", 405), ("GET", "/health", 200)]:
        await conn.send(request(method, target))
        reply = await conn.response()
        assert reply.status == status, (method, target, reply)
