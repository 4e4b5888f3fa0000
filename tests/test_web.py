"""The HTTP surface every route shares: JSON errors, validation, limits, health, metrics, OpenAPI."""

import pytest

pytestmark = pytest.mark.gen_test


async def test_malformed_json_is_400(api):
    reply = await api.post("/api/signin", raw=b"{not json")
    assert reply.status == 400 and reply.error_code == "malformed_json"


async def test_wrong_types_are_422_naming_the_field(api):
    reply = await api.post("/api/signup", {"fullname": "X", "email": {"$gt": ""}, "password": "long enough pw",
                                           "workspace": "W"})
    assert reply.status == 422
    assert reply.body["error"]["fields"] == {"email": "Email must be text"}
    missing = await api.post("/api/signin", {"email": "a@b.co"})
    assert missing.status == 422 and missing.body["error"]["fields"] == {"password": "Password is required"}
    short = await api.post("/api/signup", {"fullname": "X", "email": "a@b.co", "password": "short", "workspace": "W"})
    # One plain sentence, the same in the message and in fields, never twice.
    assert short.status == 422 and short.body["error"]["fields"] == {"password": "Password must be at least 8 characters"}
    assert short.body["error"]["message"] == "Password must be at least 8 characters"


async def test_oversize_body_is_413(api, config):
    reply = await api.post("/api/signin", raw=b'{"email": "' + b"a" * (config.api.max_body_bytes + 1) + b'"}')
    assert reply.status == 413 and reply.error_code == "payload_too_large"


async def test_unknown_routes_are_json_404(api):
    for method, path in [("GET", "/api/nope"), ("POST", "/api/chats/x/y/z"), ("GET", "/nowhere")]:
        reply = await api.call(method, path, body={} if method == "POST" else None)
        assert reply.status == 404, path
        assert reply.error_code == "not_found"


async def test_wrong_method_is_json_405(api):
    reply = await api.call("DELETE", "/api/signin")
    assert reply.status == 405 and reply.error_code == "method_not_allowed"


async def test_health_ready_metrics_openapi(api):
    health = await api.get("/health")
    assert health.body == {"status": "ok", "role": "api"}
    ready = await api.get("/health/ready")
    assert ready.status == 200 and ready.body["status"] == "ready"
    await api.get("/api/users")
    metrics = await api.get("/metrics")
    assert metrics.status == 200 and b"fechatter_http_requests_total" in metrics.body
    doc = await api.get("/api/openapi.json")
    assert doc.body["openapi"] == "3.1.0"
    assert {"/api/signup", "/api/signin", "/api/refresh", "/api/users"} <= set(doc.body["paths"])
    assert "401" in doc.body["paths"]["/api/users"]["get"]["responses"]
