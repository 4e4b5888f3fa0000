"""Every statement the api and notify roles run on a collection, over a realistic HTTP workload, is an index read.

The roles run against an in-process nx-27017 (tests.support.plans.TracedWireServer) that records each SQL
statement with the command it ran for; each distinct shape is then explained with SQLite's EXPLAIN QUERY PLAN.
No list of shapes to keep up to date: whatever the code issues is what is checked.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import pytest
from PIL import Image

from app.services import membership
from app.services.migrations import migrate
from app.store import startup_timeout
from tests.support.api import wait_for
from tests.support.plans import TracedWireServer, audit, command_shape

pytestmark = pytest.mark.gen_test(timeout=240)

# Commands the driver sends without a time limit by design: connection handshakes and monitoring,
# and cleanup of sessions and cursors (none of them runs a query).
UNTIMED_COMMANDS = {"hello", "isMaster", "ismaster", "endSessions", "killCursors"}


@pytest.fixture(scope="module")
def traced():
    server = TracedWireServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mongo_uri(traced):
    """The roles of this module talk to the traced server (it overrides the session's MongoDB-wire server)."""
    return traced.uri


@pytest.fixture
def config_overrides():
    # A short store time limit, so the timeout test waits little; ample for any bounded command here.
    return {"limits": {"enabled": True, "signup_per_hour_per_ip": 100}, "mongo": {"timeout_ms": 1000}}


def _multipart(data: bytes, filename: str = "notes.txt", ctype: str = "text/plain") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


async def _ok(reply, *statuses):
    assert reply.status in (statuses or (200, 201, 204)), (reply.status, reply.body)
    return reply.body


class Workload:
    """A workspace with a dozen people, chats of every type and a few hundred messages, used as a team would."""

    def __init__(self, api, notify_api, sse):
        self.api, self.notify_api, self.sse = api, notify_api, sse

    async def call(self, method, path, body=None, *, who, expect=(200, 201, 204), **kw):
        reply = await self.api.call(method, path, body, token=who["token"], **kw)
        assert reply.status in expect, (method, path, reply.status, reply.body)
        return reply.body

    async def people(self):
        api = self.api
        self.owner = await api.signup(workspace=f"trace-{uuid.uuid4().hex[:8]}", fullname="Ada Owner")
        invite = self.owner["workspace"]["invite_code"]
        names = ["Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lou"]
        self.team = [self.owner] + [
            await api.signup(invite_code=invite, fullname=f"{name} Person") for name in names
        ]
        # Usernames given, taken and derived from a colliding email.
        def joining(fullname, email, **more):
            return {"fullname": fullname, "email": email, "password": "correct horse battery", "invite_code": invite,
                    **more}

        given = await api.post("/api/signup", joining("Named", f"n{uuid.uuid4().hex[:8]}@example.com",
                                                      username="named.person"))
        assert given.status == 201, given.body
        taken = await api.post("/api/signup", joining("Again", f"n{uuid.uuid4().hex[:8]}@example.com",
                                                      username="Named.Person"))
        assert taken.status == 409, taken.body
        for _ in range(2):
            reply = await api.post("/api/signup", joining("Same Local", f"same@{uuid.uuid4().hex[:8]}.example.com"))
            assert reply.status == 201, reply.body
        # Another workspace beside it: its documents lie in the same collections and must never be read.
        self.other = await api.signup(workspace=f"other-{uuid.uuid4().hex[:8]}", fullname="Zed Other")
        self.other_team = [self.other] + [
            await api.signup(invite_code=self.other["workspace"]["invite_code"], fullname=f"Other {i}")
            for i in range(3)
        ]

    async def accounts(self):
        api, ada = self.api, self.owner
        signin = await _ok(await api.post("/api/signin", {"email": ada["user"]["email"], "password": ada["password"]}))
        await _ok(await api.post("/api/signin", {"email": ada["user"]["email"], "password": "wrong password!"}), 401)
        await _ok(await api.post("/api/signin", {"email": "nobody@example.com", "password": "whatever at all"}), 401)
        rotated = await _ok(await api.post("/api/refresh", {"refresh_token": signin["refresh_token"]}))
        # A rotated token shown again revokes the family.
        await _ok(await api.post("/api/refresh", {"refresh_token": signin["refresh_token"]}), 401)
        await _ok(await api.post("/api/refresh", {"refresh_token": "no-such-token"}), 401)
        # The reuse ended every session of Ada's, her access token too: she signs in again.
        again = await _ok(await api.post("/api/signin", {"email": ada["user"]["email"], "password": ada["password"]}))
        ada["token"] = again["access_token"]
        await self.call("POST", "/api/logout", {"refresh_token": rotated["refresh_token"]}, who=ada)
        await self.call("POST", "/api/logout-all", who=self.team[11])
        await self.call("GET", "/api/users/me", who=ada)
        await self.call("GET", "/api/users", who=ada)
        # People (issue 16): a user, the directory by prefix, a profile change, a picture, a password change.
        await self.call("GET", "/api/users?q=bo&limit=5", who=ada)
        await self.call("GET", f"/api/users/{self.team[1]['id']}", who=ada)
        await self.call("PATCH", "/api/users/me", {"status_text": "tracing", "username": "ada.trace"}, who=ada)
        body, header = _multipart(_png(), "me.png", "image/png")
        me = await self.call("PUT", "/api/users/me/avatar", raw=body, headers={"Content-Type": header}, who=ada)
        await _ok(await api.get(me["avatar_url"] + "&size=64"))
        await self.call("GET", f"/api/users/{self.team[2]['id']}/avatar?size=64", who=ada)
        lou = self.team[10]
        await self.call("POST", "/api/users/me/password", {"current_password": lou["password"],
                                                          "new_password": "another long one"}, who=lou)
        lou["password"] = "another long one"
        lou["token"] = (await _ok(await api.post("/api/signin", {"email": lou["user"]["email"],
                                                                 "password": lou["password"]})))["access_token"]
        await self.call("GET", "/api/workspace", who=ada)
        await self.call("GET", "/api/workspace", who=self.team[3])

    async def chats(self):
        ada, bob, cy, dee = self.team[:4]
        call = self.call
        self.direct = (await call("POST", "/api/chats", {"type": "direct", "members": [bob["id"]]}, who=ada))["id"]
        await call("POST", "/api/chats", {"type": "direct", "members": [ada["id"]]}, who=bob)  # exists: 200
        self.group = (await call("POST", "/api/chats", {"type": "group", "members": [bob["id"], cy["id"], dee["id"]]},
                                 who=ada))["id"]
        self.public = (await call("POST", "/api/chats", {"type": "public_channel", "name": "lobby",
                                                          "members": [p["id"] for p in self.team[1:8]]}, who=ada))["id"]
        self.private = (await call("POST", "/api/chats", {"type": "private_channel", "name": "secret",
                                                           "members": [bob["id"]]}, who=ada))["id"]
        await call("POST", "/api/chats", {"type": "public_channel", "name": "lobby", "members": []}, who=bob,
                   expect=(409,))
        self.spare = (await call("POST", "/api/chats", {"type": "public_channel", "name": "spare", "members": []},
                                 who=cy))["id"]
        zed, *others = self.other_team
        self.other_chat = (await call("POST", "/api/chats", {"type": "group", "members": [o["id"] for o in others]},
                                      who=zed))["id"]

    async def messages(self):
        ada, bob, cy = self.team[:3]
        words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]

        async def send(chat, who, n, key=None):
            body = {"content": f"{words[n % 7]} message {n} in the history"}
            if key:
                body["idempotency_key"] = key
            return await self.call("POST", f"/api/chats/{chat}/messages", body, who=who)

        # A few hundred messages over several chats and both workspaces, sent as concurrent clients do.
        plan = [(self.public, self.team[n % 8], n) for n in range(160)]
        plan += [(self.group, self.team[n % 4], n) for n in range(90)]
        plan += [(self.direct, self.team[n % 2], n) for n in range(40)]
        plan += [(self.other_chat, self.other_team[n % 4], n) for n in range(90)]
        for start in range(0, len(plan), 8):
            await asyncio.gather(*(send(chat, who, n) for chat, who, n in plan[start:start + 8]))
        first = await send(self.group, ada, 1000, key="k-1")
        again = await send(self.group, ada, 1000, key="k-1")  # the same key: the first message, 200
        assert again["id"] == first["id"]
        await send(self.group, bob, 1001, key="k-1")  # another sender's key is their own
        self.last_group = await send(self.group, cy, 1002, key="k-2")
        # Mentions: members by name (one of them not in the chat), @channel, in several chats.
        names = [p["user"]["username"] for p in self.team]
        self.mentioning = []
        for n, (chat, who, whom) in enumerate([(self.public, cy, [1, 2]), (self.group, ada, [1, 9]),
                                                (self.public, bob, [0]), (self.direct, bob, [0])]):
            body = {"content": " ".join(f"@{names[i]}" for i in whom) + f" look at {n}"}
            self.mentioning.append(await self.call("POST", f"/api/chats/{chat}/messages", body, who=who))
        await self.call("POST", f"/api/chats/{self.public}/messages", {"content": "@channel heads up"}, who=cy)
        await self.call("POST", f"/api/chats/{self.group}/messages", {"content": "@here and @nobody"}, who=bob)

    async def reading(self):
        ada, bob, cy = self.team[:3]
        call = self.call
        for who in (ada, bob, cy, self.other):
            await call("GET", "/api/chats", who=who)
        await call("GET", f"/api/chats/{self.public}/messages", who=bob)
        await call("GET", f"/api/chats/{self.public}/messages?limit=20&before=100", who=bob)
        await call("GET", f"/api/chats/{self.public}/messages?limit=30&after=40", who=bob)
        await call("GET", f"/api/chats/{self.group}/messages?limit=200", who=cy)
        await call("GET", f"/api/chats/{self.group}", who=cy)
        await call("GET", f"/api/chats/{self.other_chat}", who=cy, expect=(404,))
        await call("POST", f"/api/chats/{self.public}/read", {"seq": 120}, who=bob)
        await call("POST", f"/api/chats/{self.group}/read", {"seq": self.last_group["seq"]}, who=ada)
        await call("GET", "/api/chats", who=bob)
        await call("GET", f"/api/chats/{self.group}/members", who=ada)
        await call("GET", f"/api/chats/{self.public}/members", who=bob)
        await call("GET", "/api/channels/public", who=self.team[9])
        page = await call("GET", "/api/mentions?limit=2", who=bob)
        await call("GET", f"/api/mentions?limit=2&before={page['next_cursor']}", who=bob)
        await call("GET", "/api/mentions", who=ada)
        await call("GET", "/api/search/messages?q=charlie", who=bob)
        await call("GET", f"/api/search/messages?q=delta&chat_id={self.public}&limit=5", who=bob)
        await call("POST", f"/api/chats/{self.group}/typing", who=bob)

    async def changes(self):
        ada, bob, cy, dee = self.team[:4]
        call = self.call
        page = await call("GET", f"/api/chats/{self.group}/messages?limit=10", who=ada)
        mine = next(m for m in page["messages"] if m["sender_id"] == ada["id"])
        await call("PATCH", f"/api/chats/{self.group}/messages/{mine['id']}", {"content": "edited"}, who=ada)
        await call("DELETE", f"/api/chats/{self.group}/messages/{mine['id']}", who=ada)
        await call("DELETE", f"/api/chats/{self.group}/messages/{self.last_group['id']}", who=bob, expect=(403,))
        names = [p["user"]["username"] for p in self.team]
        mentioned = self.mentioning[0]
        await call("PATCH", f"/api/chats/{self.public}/messages/{mentioned['id']}",
                   {"content": f"@{names[3]} instead, @channel"}, who=cy)
        await call("DELETE", f"/api/chats/{self.public}/messages/{mentioned['id']}", who=cy)
        await call("PATCH", f"/api/chats/{self.group}/settings", {"notify": "mentions"}, who=bob)
        await call("PATCH", f"/api/chats/{self.group}/settings", {"muted": True}, who=bob)
        await call("PATCH", f"/api/chats/{self.other_chat}/settings", {"muted": True}, who=bob, expect=(404,))
        await call("PATCH", f"/api/chats/{self.public}", {"description": "everyone"}, who=ada)
        await call("POST", f"/api/chats/{self.private}/members", {"user_ids": [cy["id"], dee["id"]]}, who=ada)
        await call("DELETE", f"/api/chats/{self.private}/members/{dee['id']}", who=ada)  # removed
        await call("DELETE", f"/api/chats/{self.private}/members/{cy['id']}", who=cy)  # leaves
        newcomer = self.team[10]
        await call("POST", f"/api/chats/{self.public}/join", who=newcomer)
        await call("POST", f"/api/chats/{self.public}/messages", {"content": "hello all"}, who=newcomer)
        await call("DELETE", f"/api/chats/{self.public}/members/{newcomer['id']}", who=newcomer)
        await call("DELETE", f"/api/chats/{self.spare}", who=cy)

    async def files(self):
        ada, bob = self.team[:2]
        body, header = _multipart(b"minutes of the meeting\n" * 40)
        up = await self.call("POST", "/api/files", raw=body, headers={"Content-Type": header}, who=ada)
        body, header = _multipart(b"\x89PNG\r\n\x1a\n" + bytes(200), "pic.png", "image/png")
        pic = await self.call("POST", "/api/files", raw=body, headers={"Content-Type": header}, who=bob)
        await self.call("POST", f"/api/chats/{self.group}/messages",
                        {"content": "see attached", "files": [up["id"], pic["id"]]}, who=ada)
        reply = await self.api.get(f"/api/files/{up['id']}", token=bob["token"])
        assert reply.status == 200
        reply = await self.api.get(f"/api/files/{up['id']}", token=self.other["token"])
        assert reply.status == 404

    async def notify(self, notify_app):
        ada, bob, cy = self.team[:3]
        streams = [await self.sse(who["token"], expect=200) for who in (ada, bob, cy, self.other)]
        await wait_for(lambda: all(notify_app.registry.streams_of(w["id"]) for w in (ada, bob, cy)),
                       message="streams open")
        for query in ("", f"?chat_id={self.group}", f"?workspace_id={ada['workspace']['id']}",
                      f"?chat_id={self.other_chat}"):
            reply = await self.notify_api.get(f"/api/online-users{query}", token=bob["token"])
            assert reply.status in (200, 404), reply.body
        for stream in streams:
            stream.close()


async def test_every_statement_on_a_collection_is_an_index_read(traced, deps, app, api, notify_app, notify_api,
                                                                  sse, io_loop):
    database = deps.config.mongo.database
    store = deps.store
    work = Workload(api, notify_api, sse)
    with traced.trace(database) as startup:
        # Start-up work is the one allowlisted thing, as main.py runs it before a role serves:
        # Store.ensure_indexes (index builds) and migrate (counters built once over existing
        # documents). Traced here (so the phase is explicit) and not audited.
        await store.ensure_indexes()
        with startup_timeout():
            await migrate(store)
    with traced.trace(database) as trace:
        await work.people()
        await work.accounts()
        await work.chats()
        await work.messages()
        await work.reading()
        await work.changes()
        await work.files()
        await work.notify(notify_app)
        # The notify role's query for other processes' online users, both ways it reads.
        team = [p["id"] for p in work.team]
        chats = [work.group, work.public, work.direct, work.private]
        assert await membership.members_among(store, [work.group], team) == set(team[:4])
        assert await membership.members_among(store, chats, team[:3]) == set(team[:3])
        # The drainer's pass over what the outbox holds, and the purge of ended rate-limit windows.
        await app.settings["services"].outbox.drain_once()
        assert await app.settings["services"].limiter.purge_once(now=time.time() + 7200) > 0
    assert startup.statements, "the start-up trace saw nothing: is the trace attached to the right database?"

    reports = audit(traced, trace)
    shapes = {report.shape for report in reports}
    # The workload reached the collections it is meant to exercise.
    for expected in ("members", "messages", "chats", "users", "outbox", "refresh_tokens", "rate_limits", "mentions"):
        assert any(f" {expected} " in f"{shape} " for shape in shapes), (expected, sorted(shapes))
    # Every command the roles sent carries a server time limit (CSOT: what is left of mongo.timeout_ms).
    untimed = sorted({command_shape(c) for c in trace.commands
                      if next(iter(c)) not in UNTIMED_COMMANDS and "maxTimeMS" not in c})
    assert not untimed, "commands sent without maxTimeMS:\n  " + "\n  ".join(untimed)

    # Known and bounded by ONE chat's membership, not the database: the full member list of
    # GET /api/chats/{id} and of chat events is sorted by join time in a temporary B-tree (paged
    # clients use GET .../members?limit=, an index range). Listed here so it stays visible.
    bounded_by_one_chat = {"find members filter={chat_id: {$eq: str}} sort={joined_at: int, _id: int} "
                           "projection={user_id: int}"}
    offenders = [report for report in reports if report.problems and report.shape not in bounded_by_one_chat]
    if offenders:
        pytest.fail(
            f"{len(offenders)} of {len(reports)} command shapes are not index reads:\n\n"
            + "\n\n".join(f"{report}\n  problems:\n    " + "\n    ".join(report.problems) for report in offenders),
            pytrace=False,
        )


async def test_a_command_past_the_time_limit_is_a_503_json_answer(traced, deps, app, api):
    """The store stalls (its database lock held, as by a long command before): 503 within the limit, then 200."""
    user = await api.signup()
    assert (await api.get("/api/chats", token=user["token"])).status == 200
    limit = deps.config.mongo.timeout_ms / 1000
    lock = traced.handler._lock_for(deps.config.mongo.database)
    lock.acquire()
    try:
        started = time.monotonic()
        reply = await api.get("/api/chats", token=user["token"])
        waited = time.monotonic() - started
    finally:
        lock.release()
    assert reply.status == 503, reply.body
    assert reply.body["error"]["code"] == "mongodb_unavailable" and int(reply.headers["Retry-After"]) > 0
    assert limit * 0.9 <= waited < limit + 2, waited  # it gave up at the limit, not at a socket timeout
    assert (await api.get("/api/chats", token=user["token"])).status == 200
