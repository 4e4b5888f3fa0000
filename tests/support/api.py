"""A small JSON client for a running role, never raising on error statuses, and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None


class Api:
    """JSON over HTTP against a running role, never raising on error statuses."""

    def __init__(self, base_url: str, client: AsyncHTTPClient | None = None):
        self.base_url = base_url.rstrip("/")
        self.client = client or AsyncHTTPClient()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 20,
    ) -> Reply:
        all_headers = {"Content-Type": "application/json"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        if raw is None and method in ("POST", "PUT", "PATCH"):
            raw = b""
        request = HTTPRequest(
            self.base_url + path, method=method, body=raw, headers=all_headers,
            request_timeout=timeout, allow_nonstandard_methods=True,
        )
        response = await self.client.fetch(request, raise_error=False)
        text = response.body or b""
        ctype = response.headers.get("Content-Type", "")
        parsed: Any = json.loads(text) if text and "json" in ctype else text
        return Reply(response.code, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    async def signup(self, *, workspace: str | None = None, invite_code: str | None = None,
                     fullname: str = "Test User", email: str | None = None,
                     password: str = "correct horse battery") -> dict[str, Any]:
        """A new user (in a new workspace unless an invite code is given); the auth answer plus `token`."""
        body: dict[str, Any] = {
            "fullname": fullname,
            "email": email or f"u{uuid.uuid4().hex[:10]}@example.com",
            "password": password,
        }
        if invite_code:
            body["invite_code"] = invite_code
        else:
            body["workspace"] = workspace or f"ws-{uuid.uuid4().hex[:10]}"
        reply = await self.post("/api/signup", body)
        assert reply.status == 201, reply.body
        return {**reply.body, "token": reply.body["access_token"], "id": reply.body["user"]["id"],
                "password": password}


async def wait_for(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0,
                   interval: float = 0.02, message: str = "condition") -> Any:
    """Poll until predicate() is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)
