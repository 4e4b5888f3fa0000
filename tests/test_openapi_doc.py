"""The one OpenAPI document of both roles: valid, complete, described, and every path it names answers."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate
from tornado.httpclient import HTTPRequest

from app import events

pytestmark = pytest.mark.gen_test(timeout=60)

VERBS = ("get", "post", "put", "patch", "delete")
# Made by each stream for itself or never delivered as a frame.
NOT_FRAMES = {events.SESSIONS_REVOKED}


def _templates(app) -> dict[str, set[str]]:
    """Each route template of a running app and the verbs its handler implements (not the catch-all 404)."""
    found: dict[str, set[str]] = {}
    for rule in app.wildcard_router.rules:
        template = getattr(rule, "template", None)
        if template is None or ".*" in template:
            continue
        handler = rule.target
        found[template] = {verb for verb in VERBS if handler._verb(verb.upper()) is not None}
    return found


def _operations(doc):
    for path, item in doc["paths"].items():
        for verb, op in item.items():
            if verb in VERBS:
                yield path, verb, op


async def _doc(api):
    reply = await api.get("/api/openapi.json")
    assert reply.status == 200
    return reply.body


async def test_the_document_validates_and_lists_every_route_of_both_roles(api, app, notify_app):
    doc = await _doc(api)
    validate(doc)  # openapi-spec-validator: OpenAPI 3.1 and its JSON Schema dialect
    documented = {path: {v for v in item if v in VERBS} for path, item in doc["paths"].items()}
    for role_app in (app, notify_app):
        for template, verbs in _templates(role_app).items():
            assert template in documented, f"{role_app.settings['role']} route {template} is not in the document"
            assert verbs <= documented[template], (template, verbs - documented[template])
    notify = _templates(notify_app)
    assert {"/events", "/api/online-users", "/api/sse/health"} <= notify.keys()
    notify_server = {s["url"] for s in doc["servers"]} - {"/"}
    assert len(notify_server) == 1
    for path in notify.keys() - {"/health", "/health/ready", "/metrics"}:
        assert [s["url"] for s in doc["paths"][path]["servers"]] == list(notify_server), path
    assert doc["servers"][0]["url"] == "/" and all(s["description"] for s in doc["servers"])


async def test_every_operation_and_schema_has_a_description_and_an_example(api):
    doc = await _doc(api)
    missing = []
    for path, verb, op in _operations(doc):
        if len(op.get("description", "").strip()) < 20 or not op.get("summary"):
            missing.append(f"{verb.upper()} {path}: no description (docstring of the handler, or Operation(description=))")
        contents = [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        contents += list(op.get("requestBody", {}).get("content", {}).values())
        for media in contents:
            if "example" not in media and "examples" not in media and media["schema"].get("format") != "binary":
                missing.append(f"{verb.upper()} {path}: a body without an example")
        for param in op.get("parameters", []):
            if not param.get("description"):
                missing.append(f"{verb.upper()} {path}: parameter {param['name']} without a description")
    for name, schema in doc["components"]["schemas"].items():
        if not schema.get("description"):
            missing.append(f"schema {name}: no description (a docstring, or app.openapi.SCHEMA_DESCRIPTIONS)")
        if not schema.get("examples"):
            missing.append(f"schema {name}: no example")
    assert not missing, "\n".join(missing)


async def test_the_stream_is_described_with_every_event_and_resume_parameters(api):
    doc = await _doc(api)
    stream = doc["paths"]["/events"]["get"]
    assert "id: <cursor>" in stream["description"] and ": ping" in stream["description"]
    names = {(p["in"], p["name"]) for p in stream["parameters"]}
    assert {("header", "Last-Event-ID"), ("query", "last_event_id"), ("query", "access_token")} <= names
    media = stream["responses"]["200"]["content"]["text/event-stream"]
    assert media["schema"] == {"$ref": "#/components/schemas/EventFrame"}
    schemas = doc["components"]["schemas"]
    described = {}
    for variant in schemas["EventFrame"]["oneOf"]:
        frame = schemas[variant["$ref"].rsplit("/", 1)[-1]]
        described[frame["properties"]["event"]["const"]] = frame["properties"]["data"]
    published = {value for name, value in vars(events).items()
                 if re.fullmatch(r"[A-Z_]+", name) and isinstance(value, str) and re.fullmatch(r"[a-z]+(\.[a-z_]+)?", value)
                 and name not in ("ENV_PREFIX",)}
    expected = {e for e in published if e in events.CHAT_EVENTS or e in (events.RESYNC, events.PRESENCE,
                                                                           events.USER_UPDATED, events.CHAT_SETTINGS)}
    assert expected - NOT_FRAMES <= described.keys(), expected - described.keys()
    assert described["message.created"] == {"$ref": "#/components/schemas/MessageOut"}
    assert described["resync"]["required"] == ["reason"]


async def test_every_documented_path_answers_on_its_role(api, base_url, notify_url, http_client):
    """No documented path meets the catch-all `no route` 404 of its role (ids are examples, so 404s of a
    missing chat are fine; a missing route is not)."""
    doc = await _doc(api)
    notify_server = next(s["url"] for s in doc["servers"] if s["url"] != "/")
    notify_paths = {path for path, item in doc["paths"].items()
                    if [s["url"] for s in item.get("servers", [])] == [notify_server]}
    assert {"/events", "/api/online-users", "/api/sse/health"} <= notify_paths
    checked = 0
    for path, verb, op in _operations(doc):
        if path == "/events":
            continue  # a stream: answered in test_notify_*; without a token it is the 401 checked below
        url = (notify_url if path in notify_paths else base_url) + re.sub(r"\{\w+\}", "665f1c2e9b1d4a00c0ffee01", path)
        body = b"{}" if verb in ("post", "put", "patch") else None
        reply = await http_client.fetch(HTTPRequest(url, method=verb.upper(), body=body, follow_redirects=False),
                                        raise_error=False)
        assert reply.code < 500, (verb, path, reply.code, reply.body[:300])
        if reply.code in (404, 405):
            error = json.loads(reply.body)["error"]
            assert not error["message"].startswith("no route"), (verb, path, error)
            assert reply.code != 405, (verb, path, error)
        checked += 1
    assert checked >= 40
    unauthenticated = await http_client.fetch(f"{notify_url}/events", raise_error=False)
    assert unauthenticated.code == 401


async def test_the_docs_page_and_its_files_are_served_here(api, base_url, http_client):
    page = await http_client.fetch(f"{base_url}/api/docs")
    html = page.body.decode()
    assert page.headers["Content-Type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/api/docs/") for a in assets), assets  # nothing from a CDN
    for asset in assets:
        reply = await http_client.fetch(base_url + asset)
        assert reply.code == 200 and len(reply.body) > 20, asset
    assert b'"/api/openapi.json"' in (await http_client.fetch(f"{base_url}/api/docs/init.js")).body
    redirect = await http_client.fetch(f"{base_url}/docs", follow_redirects=False, raise_error=False)
    assert redirect.code == 302 and redirect.headers["Location"] == "/api/docs"
    missing = await http_client.fetch(f"{base_url}/api/docs/assets/nothing.js", raise_error=False)
    assert missing.code == 404 and json.loads(missing.body)["error"]["code"] == "not_found"


async def test_errors_carry_the_request_id_of_their_access_line(api, base_url, http_client):
    given = await http_client.fetch(f"{base_url}/api/chats", headers={"X-Request-Id": "trace-42.a"},
                                    raise_error=False)
    assert given.code == 401 and given.headers["X-Request-Id"] == "trace-42.a"
    assert json.loads(given.body)["error"]["request_id"] == "trace-42.a"
    # A header that is not a plain id is replaced, never echoed (no header injection, no log forging).
    made = await http_client.fetch(f"{base_url}/api/nowhere", headers={"X-Request-Id": "x" * 300},
                                   raise_error=False)
    rid = made.headers["X-Request-Id"]
    assert made.code == 404 and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert json.loads(made.body)["error"]["request_id"] == rid
    ok = await http_client.fetch(f"{base_url}/health")
    assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["X-Request-Id"]) and ok.headers["X-Request-Id"] != rid
