"""log_format: json: every line a JSON object with the access fields, the request id of the answer, and no token."""

from __future__ import annotations

import json
import re

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.support.api import Api, wait_for

pytestmark = pytest.mark.gen_test(timeout=60)


async def test_json_lines_parse_carry_the_access_fields_and_never_a_token(role_process):
    api_process = await role_process("api", FECHATTER_LOG_LEVEL="info", FECHATTER_LOG_FORMAT="json")
    api = Api(api_process.url)
    ada = await api.signup(fullname="Ada Lovelace")
    bob = await api.signup(fullname="Bob Babbage", invite_code=ada["workspace"]["invite_code"])
    cy = await api.signup(fullname="Cy Clerk", invite_code=ada["workspace"]["invite_code"])
    chat = await api.post("/api/chats", {"type": "group", "name": "logs", "members": [bob["id"], cy["id"]]},
                          token=ada["token"])
    assert chat.status == 201
    client = AsyncHTTPClient()
    # Tokens in every place a careless logger would copy them from: the header, the query, a bad path.
    listed = await client.fetch(HTTPRequest(f"{api_process.url}/api/chats?access_token={ada['token']}",
                                            headers={"Authorization": f"Bearer {ada['token']}",
                                                     "X-Request-Id": "trace-json-1"}))
    assert listed.headers["X-Request-Id"] == "trace-json-1"
    missing = await client.fetch(f"{api_process.url}/api/nowhere/{bob['refresh_token']}", raise_error=False)
    assert missing.code == 404
    missing_rid = json.loads(missing.body)["error"]["request_id"]
    assert missing.headers["X-Request-Id"] == missing_rid

    def lines():
        return [line for line in api_process.log_path.read_text().splitlines() if line.strip()]

    def has_both():
        text = "\n".join(lines())
        return "trace-json-1" in text and missing_rid in text
    await wait_for(has_both, timeout=10, message="both access lines in the log")
    api_process.stop()

    records = [json.loads(line) for line in lines()]  # every line parses
    secrets = [ada["token"], bob["token"], ada["refresh_token"], bob["refresh_token"], ada["password"]]
    for line in lines():
        for secret in secrets:
            assert secret not in line, line
    assert not [line for line in lines() if re.search(r"eyJ[A-Za-z0-9_-]+\.", line)]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    access = [r for r in records if r["logger"] == "fechatter.access"]
    by_id = {r["request_id"]: r for r in access}
    listed_line, missing_line = by_id["trace-json-1"], by_id[missing_rid]
    assert listed_line["status"] == 200 and listed_line["method"] == "GET" and listed_line["path"] == "/api/chats"
    assert listed_line["user_id"] == ada["id"] and listed_line["duration_ms"] >= 0
    assert missing_line["status"] == 404 and missing_line["level"] == "WARNING" and missing_line["user_id"] is None
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r["time"]) for r in records)
    signups = [r for r in access if r["path"] == "/api/signup"]
    assert len(signups) == 3 and all(r["status"] == 201 and len(r["request_id"]) == 32 for r in signups)
