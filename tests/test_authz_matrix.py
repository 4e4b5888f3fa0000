"""Authorization matrix: every authenticated route of both roles x every kind of caller, against one table."""

import base64
import json
import uuid

import pytest

from tests.support.chats import create_chat, make_team
from tests.support.api import Api

pytestmark = pytest.mark.gen_test(timeout=120)

CALLERS = ("owner", "admin", "member", "nonmember", "stranger", "no_token", "expired", "tampered")
BAD_TOKENS = (401, 401, 401)

# The chat under test is a private channel: owner created it, admin and member belong, nonmember is in
# the same workspace but not the channel, stranger is in another workspace.
# {name}: a resource of the shared world; {fresh_*}: made anew for each call (the call destroys it).
# route: (role, method, path, body), then the status for owner, admin, member, nonmember, stranger,
# and for no token, an expired token and a tampered token.
MATRIX = [
    (("api", "GET", "/api/users/me", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "GET", "/api/users", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    # People (contract section 10): anyone of the workspace sees anyone of it; another workspace nobody.
    (("api", "GET", "/api/users/{extra}", None), 200, 200, 200, 200, 404, *BAD_TOKENS),
    (("api", "GET", "/api/users/{extra}/avatar?size=64", None), 200, 200, 200, 200, 404, *BAD_TOKENS),
    (("api", "PATCH", "/api/users/me", {"status_text": "{unique}"}), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "POST", "/api/users/me/password", {"current_password": "not the password", "new_password": "long enough"}),
     422, 422, 422, 422, 422, *BAD_TOKENS),
    (("api", "GET", "/api/workspace", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "POST", "/api/logout", {"refresh_token": "not-one-of-yours"}), 204, 204, 204, 204, 204, *BAD_TOKENS),
    (("api", "POST", "/api/logout-all", None), 204, 204, 204, 204, 204, *BAD_TOKENS),
    (("api", "GET", "/api/chats", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "POST", "/api/chats", {"type": "private_channel", "name": "{unique}"}),
     201, 201, 201, 201, 201, *BAD_TOKENS),
    (("api", "GET", "/api/channels/public", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "GET", "/api/chats/{chat}", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("api", "PATCH", "/api/chats/{chat}", {"description": "{unique}"}), 200, 200, 403, 404, 404, *BAD_TOKENS),
    (("api", "DELETE", "/api/chats/{fresh_chat}", None), 204, 403, 403, 404, 404, *BAD_TOKENS),
    (("api", "GET", "/api/chats/{chat}/members", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{chat}/members", {"user_ids": ["{extra}"]}), 200, 200, 403, 404, 404, *BAD_TOKENS),
    (("api", "DELETE", "/api/chats/{chat}/members/{fresh_victim}", None), 204, 204, 403, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{chat}/join", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    # Channel administration (contract section 15): roles are the owner's, archiving the managers'.
    (("api", "PATCH", "/api/chats/{chat}/members/{fresh_victim}", {"role": "admin"}),
     200, 403, 403, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{fresh_chat}/archive", None), 200, 200, 403, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{fresh_chat}/unarchive", None), 200, 200, 403, 404, 404, *BAD_TOKENS),
    (("api", "GET", "/api/chats/{chat}/messages", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{chat}/messages", {"content": "hi"}), 201, 201, 201, 404, 404, *BAD_TOKENS),
    (("api", "PATCH", "/api/chats/{chat}/messages/{member_message}", {"content": "edited"}),
     403, 403, 200, 404, 404, *BAD_TOKENS),
    (("api", "DELETE", "/api/chats/{chat}/messages/{fresh_member_message}", None),
     204, 204, 204, 404, 404, *BAD_TOKENS),
    (("api", "DELETE", "/api/chats/{chat}/messages/{fresh_owner_message}", None),
     204, 204, 403, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{chat}/read", {"seq": 1}), 204, 204, 204, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/chats/{chat}/typing", None), 204, 204, 204, 404, 404, *BAD_TOKENS),
    (("api", "PATCH", "/api/chats/{chat}/settings", {"notify": "mentions"}), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("api", "GET", "/api/mentions?limit=5", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("api", "GET", "/api/search/messages?q=hello&chat_id={chat}", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("api", "POST", "/api/files", "{upload}"), 201, 201, 201, 201, 201, *BAD_TOKENS),
    (("api", "GET", "/api/files/{file}", None), 200, 200, 200, 200, 404, *BAD_TOKENS),
    (("notify", "GET", "/events", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("notify", "GET", "/api/online-users", None), 200, 200, 200, 200, 200, *BAD_TOKENS),
    (("notify", "GET", "/api/online-users?chat_id={chat}", None), 200, 200, 200, 404, 404, *BAD_TOKENS),
    (("notify", "GET", "/api/online-users?workspace_id={workspace}", None), 200, 200, 200, 200, 404, *BAD_TOKENS),
    # Public by design: counts only, no names or ids.
    (("notify", "GET", "/api/sse/health", None), 200, 200, 200, 200, 200, 200, 200, 200),
]

BOUNDARY = "authzboundary"
UPLOAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
          f"Content-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--\r\n").encode()


def tampered(token: str, user_id: str) -> str:
    """The token's own signature over claims that now name someone else."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = user_id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


class World:
    def __init__(self, api, deps):
        self.api, self.deps = api, deps

    async def build(self):
        api = self.api
        t = await make_team(api)
        self.owner, self.member, self.nonmember, self.stranger = t.owner, t.member, t.outsider, t.stranger
        code = t.owner["workspace"]["invite_code"]
        self.admin = await api.signup(invite_code=code, fullname="Ada Admin")
        self.extra = await api.signup(invite_code=code, fullname="Eve Extra")
        self.victim = await api.signup(invite_code=code, fullname="Vic Victim")
        self.chat = await self.private_chat()
        first = await api.post(f"/api/chats/{self.chat}/messages", {"content": "hello"}, token=self.member["token"])
        self.member_message = first.body["id"]
        upload = await api.post("/api/files", raw=UPLOAD, token=self.owner["token"],
                                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        self.file = upload.body["id"]
        issuer = self.deps.issuer
        owner_id, workspace = self.owner["id"], self.owner["workspace"]["id"]
        self.tokens = {
            "owner": self.owner["token"], "admin": self.admin["token"], "member": self.member["token"],
            "nonmember": self.nonmember["token"], "stranger": self.stranger["token"], "no_token": None,
            "expired": issuer.issue(owner_id, workspace, ttl=-60),
            "tampered": tampered(self.member["token"], owner_id),
        }

    async def private_chat(self) -> str:
        chat = await create_chat(self.api, self.owner, "private_channel", [self.admin, self.member],
                                 name=f"secret-{uuid.uuid4().hex[:8]}")
        # No route promotes a member: the admin is made in the store, as an operator would.
        await self.deps.store.members.update_one({"chat_id": chat["id"], "user_id": self.admin["id"]},
                                                 {"$set": {"role": "admin"}})
        return chat["id"]

    async def value(self, name: str) -> str:
        api, chat = self.api, self.chat
        if name == "unique":
            return f"n-{uuid.uuid4().hex[:10]}"
        if name == "fresh_chat":
            return await self.private_chat()
        if name == "fresh_victim":
            added = await api.post(f"/api/chats/{chat}/members", {"user_ids": [self.victim["id"]]},
                                   token=self.owner["token"])
            assert added.status == 200, added.body
            return self.victim["id"]
        if name in ("fresh_member_message", "fresh_owner_message"):
            sender = self.member if name == "fresh_member_message" else self.owner
            sent = await api.post(f"/api/chats/{chat}/messages", {"content": "to delete"}, token=sender["token"])
            return sent.body["id"]
        if name == "workspace":
            return self.owner["workspace"]["id"]
        return {"chat": chat, "extra": self.extra["id"], "member_message": self.member_message,
                "file": self.file}[name]

    async def fill(self, text: str) -> str:
        while "{" in text:
            start = text.index("{")
            end = text.index("}", start)
            text = text[:start] + await self.value(text[start + 1:end]) + text[end + 1:]
        return text


async def _fill_body(world, body):
    if isinstance(body, dict):
        return {k: await _fill_body(world, v) for k, v in body.items()}
    if isinstance(body, list):
        return [await _fill_body(world, v) for v in body]
    if isinstance(body, str):
        return await world.fill(body)
    return body


async def test_authorization_matrix(api, deps, notify_url, sse):
    world = World(api, deps)
    await world.build()
    notify = Api(notify_url, api.client)
    mismatches, table = [], []
    for (role, method, path, body), *expected in MATRIX:
        assert len(expected) == len(CALLERS)
        row = []
        for caller, want in zip(CALLERS, expected):
            token = world.tokens[caller]
            url = await world.fill(path)
            if (role, path) == ("notify", "/events"):
                stream = await sse(token, url=notify_url)
                got = stream.status
                stream.close()
            elif body == "{upload}":
                got = (await api.post(url, raw=UPLOAD, token=token,
                                      headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})).status
            else:
                client = api if role == "api" else notify
                got = (await client.call(method, url, await _fill_body(world, body), token=token)).status
            row.append(got)
            if path == "/api/logout-all" and got == 204:  # it ended the caller's sessions: sign in anew
                identity = world.deps.verifier.verify(token)
                world.tokens[caller] = world.deps.issuer.issue(identity.user_id, identity.workspace_id)
                for person in (world.owner, world.admin, world.member, world.nonmember, world.stranger):
                    if person["token"] == token:
                        person["token"] = world.tokens[caller]
            if got != want:
                mismatches.append(f"{method} {path} as {caller}: {got}, expected {want}")
        table.append(f"{method:6} {path:55} " + " ".join(f"{s:>3}" for s in row))
    print("\n" + " " * 63 + " ".join(c[:3] for c in CALLERS) + "\n" + "\n".join(table))
    assert not mismatches, "\n".join(mismatches)


async def test_public_routes_ignore_bad_tokens(api, deps):
    """Signup and signin need no token, and a stale one in the header does not get in their way."""
    stale = deps.issuer.issue("nobody", "nowhere", ttl=-60)
    user = await api.signup()
    signin = await api.post("/api/signin", {"email": user["user"]["email"], "password": user["password"]},
                            token=stale)
    assert signin.status == 200
    refreshed = await api.post("/api/refresh", {"refresh_token": signin.body["refresh_token"]}, token=stale)
    assert refreshed.status == 200


@pytest.mark.parametrize("config_overrides", [{"notify": {"cors_origins": ["https://chat.example.com"]}}])
async def test_notify_cors_origins_are_exactly_the_configured_ones(api, deps, notify_url, config):
    """In production the notify role answers browsers of the configured origins and of no other."""
    user = await api.signup()
    notify = Api(notify_url, api.client)
    for origin, allowed in (("https://chat.example.com", True), ("https://chat.example.com.evil.io", False),
                            (f"http://localhost:{config.api.port}", False), ("null", False)):
        reply = await notify.get("/api/online-users", token=user["token"], headers={"Origin": origin})
        assert reply.status == 200
        assert (reply.headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin
        preflight = await notify.call("OPTIONS", "/events", headers={"Origin": origin,
                                                                     "Access-Control-Request-Method": "GET"})
        assert (preflight.headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin


def test_cors_origins_from_the_environment():
    from app.config import load_config

    config = load_config(env={"FECHATTER_NOTIFY_CORS_ORIGINS": "https://a.example.com, https://b.example.com"})
    assert config.notify.cors_origins == ["https://a.example.com", "https://b.example.com"]
