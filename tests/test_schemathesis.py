"""Schemathesis against /api/openapi.json of a live api process: every route, authenticated, no 5xx, no answer outside the schema."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_test_config
from tests.processes import RoleProcess

# Bounded for CI: examples per route and generation mode, the same ones on every run
# (SCHEMATHESIS_MAX_EXAMPLES=200 for a longer hunt).
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    # Input the schema forbids is refused with a 4xx, never accepted.
    negative_data_rejection,
]


def _call(base: str, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
          content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, mongo_uri, nats_url, key_files):
    """An api process of this module, with a team, chats, a message and a file to aim the generated requests at."""
    config = make_test_config(tmp_path_factory.mktemp("schemathesis"), mongo_uri, nats_url, key_files,
                              limits={"enabled": False})
    process = RoleProcess("api", config).start_blocking()
    # The notify role's non-streaming routes are in the same document, with their own server.
    notify = RoleProcess("notify", config).start_blocking()
    try:
        base = process.url
        owner = _call(base, "POST", "/api/signup", {"fullname": "Olga Owner", "email": f"o{uuid.uuid4().hex[:8]}@x.io",
                                                    "password": "schemathesis pw", "workspace": f"st-{uuid.uuid4().hex[:8]}"})
        code = owner["workspace"]["invite_code"]
        members = [
            _call(base, "POST", "/api/signup", {"fullname": f"Member {i}", "email": f"m{uuid.uuid4().hex[:8]}@x.io",
                                                "password": "schemathesis pw", "invite_code": code})
            for i in range(2)
        ]
        token = owner["access_token"]
        ids = [m["user"]["id"] for m in members]
        chat = _call(base, "POST", "/api/chats", {"type": "group", "name": "seeded", "members": ids}, token)
        message = _call(base, "POST", f"/api/chats/{chat['id']}/messages", {"content": "seeded message"}, token)
        boundary = "stboundary"
        upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                  f"Content-Type: application/octet-stream\r\n\r\nbytes\r\n--{boundary}--\r\n").encode()
        file = _call(base, "POST", "/api/files", token=token, raw=upload,
                     content_type=f"multipart/form-data; boundary={boundary}")
        yield SimpleNamespace(url=base, token=token, owner=owner, member_ids=ids, chat_id=chat["id"],
                              message_id=message["id"], file_id=file["id"], process=process, notify_url=notify.url)
    finally:
        assert process.stop() == 0, process.log_tail()
        assert notify.stop() == 0, notify.log_tail()


def _aim_at_real_ids(case, live_api, turn: int) -> None:
    """Every other case uses ids that exist, so the generated requests reach past the 404 of a random id."""
    if turn % 2:
        return
    params = case.path_parameters or {}
    if "chat_id" in params:
        if case.method.upper() == "DELETE" and case.path == "/api/chats/{chat_id}":
            # Deleting the seeded chat would leave every later case a 404: give it one of its own.
            params["chat_id"] = _call(live_api.url, "POST", "/api/chats",
                                      {"type": "group", "members": live_api.member_ids}, live_api.token)["id"]
        else:
            params["chat_id"] = live_api.chat_id
    if "message_id" in params:
        params["message_id"] = live_api.message_id
    if "user_id" in params:
        params["user_id"] = live_api.member_ids[0]
    if "file_id" in params:
        params["file_id"] = live_api.file_id


# The operations are split into slices so that xdist spreads them and each stays well inside the test timeout.
SLICES = 8


@pytest.mark.parametrize("slice_no", range(SLICES))
def test_every_route_answers_within_its_schema(live_api, slice_no):
    """Positive and negative examples for every operation of the live document; failures are collected, not shrunk.

    (schemathesis.pytest's lazy parametrize needs pytest < 9, so the operations are driven here directly.)
    """
    import requests

    schema = schemathesis.openapi.from_url(f"{live_api.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    routes = {(op.method.upper(), op.path) for op in operations}
    # logout-all ends every token of the caller, the one this module shares too (tests/test_sessions.py covers it).
    operations = [op for op in operations if (op.method.upper(), op.path) != ("POST", "/api/logout-all")]
    # The stream never ends by itself (tests/test_notify_* cover it); the rest of notify is called on its own server.
    operations = [op for op in operations if op.path != "/events"]
    raw = json.loads(urllib.request.urlopen(f"{live_api.url}/api/openapi.json", timeout=10).read())
    notify_server = next(s["url"] for s in raw["servers"] if s["url"] != "/")
    on_notify = {path for path, item in raw["paths"].items()
                 if [s["url"] for s in item.get("servers", [])] == [notify_server]}
    assert {"/api/online-users", "/api/sse/health"} <= on_notify
    assert {("GET", "/api/online-users"), ("GET", "/api/sse/health")} <= {(o.method.upper(), o.path) for o in operations}
    assert len(routes) >= 20 and ("POST", "/api/chats/{chat_id}/messages") in routes
    operations = sorted(operations, key=lambda op: (op.path, op.method))[slice_no::SLICES]
    session = requests.Session()
    # A fixed header: negative cases break the body, query or path, never just the token (the authz matrix does that).
    auth = {"Authorization": f"Bearer {live_api.token}"}
    failures: list[str] = []
    calls = {"n": 0}
    statuses: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found: list[str] = []

            @given(case=operation.as_strategy(generation_mode=mode, headers=auth))
            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                _aim_at_real_ids(case, live_api, calls["n"])
                calls["n"] += 1
                try:
                    base = live_api.notify_url if operation.path in on_notify else live_api.url
                    response = case.call(base_url=base, session=session, allow_redirects=False)
                    key = f"{mode.value} {response.status_code}"
                    statuses[key] = statuses.get(key, 0) + 1
                    case.validate_response(response, checks=CHECKS)
                except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - every kind of check failure is reported below
                    if len(found) < 3:
                        found.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: "
                                     f"{type(e).__name__}: {str(e)[:1500]}")

            try:
                run()
            except Unsatisfiable:
                # Negative mode with nothing but the (fixed) token to break: the authz matrix covers that.
                assert mode is GenerationMode.NEGATIVE, operation.path
            failures += found
    print(f"\nschemathesis: {len(operations)} operations, {calls['n']} requests, {len(failures)} failures;"
          f" answers {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("bad", ["%00", "a" * 65, "..", "%2e%2e", "%E2%82%AC", "%ff%fe", "x%20y", "-" * 64 + "%0A"])
def test_malformed_path_ids_are_404(live_api, bad):
    """Ids that could never exist answer 404 (or 422), never 500, and never ask MongoDB odd questions."""
    paths = [
        ("GET", f"/api/chats/{bad}"), ("PATCH", f"/api/chats/{bad}"), ("DELETE", f"/api/chats/{bad}"),
        ("GET", f"/api/chats/{bad}/members"), ("POST", f"/api/chats/{bad}/join"),
        ("DELETE", f"/api/chats/{live_api.chat_id}/members/{bad}"),
        ("GET", f"/api/chats/{bad}/messages"), ("POST", f"/api/chats/{bad}/messages"),
        ("PATCH", f"/api/chats/{live_api.chat_id}/messages/{bad}"),
        ("DELETE", f"/api/chats/{live_api.chat_id}/messages/{bad}"),
        ("POST", f"/api/chats/{bad}/read"), ("POST", f"/api/chats/{bad}/typing"),
        ("GET", f"/api/files/{bad}"), ("GET", f"/api/search/messages?q=x&chat_id={bad}"),
    ]
    bodies = {"PATCH": {"content": "x", "name": "x"}, "POST": {"content": "x", "seq": 1}}
    for method, path in paths:
        body = bodies.get(method)
        if body is not None:
            body = {"content": "x"} if "messages" in path else {"seq": 1} if path.endswith("/read") else {}
            if method == "PATCH" and "messages" not in path:
                body = {"name": "x"}
        request = urllib.request.Request(
            live_api.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {live_api.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status, payload = reply.status, reply.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        assert status in (404, 422), (method, path, status, payload)
        assert json.loads(payload)["error"]["code"] in ("not_found", "validation_failed"), (method, path, payload)


def test_undecodable_query_is_422(live_api):
    request = urllib.request.Request(f"{live_api.url}/api/search/messages?q=%ff%fe",
                                     headers={"Authorization": f"Bearer {live_api.token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    assert json.loads(refused.value.read())["error"]["fields"] == {"q": "Search is not valid UTF-8"}
