"""Cursor pages of members, users and public channels: no repeat and no gap while rows come and go."""

from __future__ import annotations

import asyncio
import base64
import datetime
import random
import zlib
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.auth import Identity, TokenIssuer
from app.schemas.accounts import UsersQuery
from app.schemas.common import PageQuery
from app.services import paging
from app.services.accounts import AccountService, backfill_user_name_keys
from app.services.chats import ChatService
from app.services.membership import ChatAccess
from app.services.people import PeopleService
from tests.support.chats import create_chat
from tests.support.plans import Statement, reads, traced_database

# Hundreds of signups: the hash's cost is not what these tests are about (tests/conftest.py).
pytestmark = [pytest.mark.gen_test(timeout=180), pytest.mark.usefixtures("cheap_passwords")]

FIRST_NAMES = ["Ada", "ada", "Alan", "ALICE", "Al", "Ál", "Bob", "bea", "Émile", "Zoë", "Straße", "Mia", "maria"]


async def _people(api, code: str, names: list[str]) -> list[dict]:
    found = []
    for start in range(0, len(names), 25):
        found += await asyncio.gather(*(api.signup(invite_code=code, fullname=n) for n in names[start:start + 25]))
    return found


def _names(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.choice(FIRST_NAMES)} {rng.choice(['Lovelace', 'turing', 'Hopper', 'x'])}{rng.randint(0, 9)}"
            for _ in range(n)]


async def _pages(api, path: str, key: str, token: str, limit: int, between=None) -> list[dict]:
    rows, cursor, n = [], None, 0
    while True:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        reply = await api.get(url, token=token)
        assert reply.status == 200, reply.body
        assert set(reply.body) == {key, "next_cursor"} and len(reply.body[key]) <= limit
        rows += reply.body[key]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return rows
        n += 1
        if between is not None:
            await between(n)
        assert n < 1000


async def test_members_pages_concatenate_while_members_come_and_go(api):
    owner = await api.signup(fullname="Olga Owner")
    code = owner["workspace"]["invite_code"]
    people = await _people(api, code, [f"Member {i}" for i in range(160)])
    # Joined in reverse id order, so join order (the unpaged answer's) differs from page order (user id).
    joiners = list(reversed(people[:150]))
    channel = await create_chat(api, owner, "public_channel", [], name="town-square")
    path = f"/api/chats/{channel['id']}/members"
    assert (await api.post(path, {"user_ids": [p["id"] for p in joiners]}, token=owner["token"])).status == 200
    await create_chat(api, people[150], "group", people[151:155])  # other chats' members beside these
    await create_chat(api, people[0], "private_channel", people[155:160], name="elsewhere")

    unpaged = await api.get(path, token=people[3]["token"])
    assert [m["user_id"] for m in unpaged.body] == [owner["id"], *[p["id"] for p in joiners]]
    assert "Link" not in unpaged.headers

    ids = sorted(m["user_id"] for m in unpaged.body)
    seen_removed = ids[5]
    unseen_removed = ids[-10]
    newcomers: list[str] = []

    async def churn(page: int) -> None:
        if page == 1:
            await api.delete(f"{path}/{seen_removed}", token=owner["token"])
            await api.delete(f"{path}/{unseen_removed}", token=owner["token"])
        if page <= 3:  # new users: larger ids than every member so far, so their rows lie ahead
            fresh = await api.signup(invite_code=code, fullname=f"Late {page}")
            await api.post(f"/api/chats/{channel['id']}/join", token=fresh["token"])
            newcomers.append(fresh["id"])

    rows = await _pages(api, path, "members", people[3]["token"], 23, between=churn)
    got = [m["user_id"] for m in rows]
    assert got == sorted(set(got))  # ascending user id: none twice
    final = {m["user_id"] for m in (await api.get(path, token=people[3]["token"])).body}
    assert set(got) == final | {seen_removed}  # nothing present throughout is missing
    assert set(newcomers) <= set(got) and unseen_removed not in got
    assert all(set(m) == {"user_id", "role", "joined_at"} for m in rows)

    # A page is still a 404 for anyone who may not see the chat.
    stranger = await api.signup(fullname="Sam Stranger")
    assert (await api.get(f"{path}?limit=5", token=stranger["token"])).status == 404


async def test_users_pages_and_prefixes_while_people_sign_up(api):
    rng = random.Random(7)
    owner = await api.signup(fullname="Olga Owner")
    code = owner["workspace"]["invite_code"]
    await _people(api, code, _names(rng, 190))
    other = await api.signup(fullname="Ada Elsewhere")
    await _people(api, other["workspace"]["invite_code"], _names(rng, 20))
    token = owner["token"]

    def key(user: dict) -> tuple[str, str]:
        return (user["fullname"].casefold(), user["id"])

    start = (await api.get("/api/users", token=token)).body
    assert len(start) == 191
    assert [u["id"] for u in start] == [u["id"] for u in sorted(start, key=lambda u: (u["fullname"], u["id"]))]
    late: list[dict] = []

    async def churn(page: int) -> None:
        if page <= 4:  # some sort before the cursor, some after
            late.extend(await _people(api, code, [f"Aaron {page}", f"Zed {page}"]))

    rows = await _pages(api, "/api/users", "users", token, 31, between=churn)
    assert [key(u) for u in rows] == sorted({key(u) for u in rows})  # name order, none twice
    assert {u["id"] for u in start} <= {u["id"] for u in rows}  # none missing
    assert {u["id"] for u in late if u["user"]["fullname"].startswith("Zed")} <= {u["id"] for u in rows}
    everyone = (await api.get("/api/users", token=token)).body
    assert {u["id"] for u in rows} <= {u["id"] for u in everyone} and other["id"] not in {u["id"] for u in rows}

    for q in ("al", "AL", "Ál", "ada l", "strass", "zz", "émile"):
        expected = sorted((u for u in everyone if u["fullname"].casefold().startswith(q.casefold())), key=key)
        paged = await _pages(api, f"/api/users?q={quote(q)}", "users", token, 4)
        assert [u["id"] for u in paged] == [u["id"] for u in expected], q
        unpaged = (await api.get(f"/api/users?q={quote(q)}", token=token)).body
        assert [u["id"] for u in unpaged] == [u["id"] for u in sorted(expected, key=lambda u: (u["fullname"], u["id"]))]
    assert len((await api.get("/api/users?q=%20", token=token)).body) == len(everyone)


async def test_public_channel_pages_skip_the_callers_own(api):
    rng = random.Random(3)
    owner = await api.signup(fullname="Olga Owner")
    code = owner["workspace"]["invite_code"]
    caller, *others = await _people(api, code, ["Caller", "P1", "P2"])
    channels = []
    for i in range(45):
        creator = caller if i % 3 == 0 else rng.choice([owner, *others])
        name = f"{rng.choice(['Ops', 'dev', 'Ünï'])}-{i}"
        channels.append(await create_chat(api, creator, "public_channel", [], name=name))
    for chat in channels[1::4]:
        await api.post(f"/api/chats/{chat['id']}/join", token=caller["token"])
    await create_chat(api, owner, "private_channel", [], name="secret")
    stranger = await api.signup(fullname="Sam Stranger")
    await create_chat(api, stranger, "public_channel", [], name="ops-elsewhere")

    mine = {c["id"] for c in channels[::3]} | {c["id"] for c in channels[1::4]}

    def brute() -> list[str]:
        return [c["id"] for c in sorted(channels, key=lambda c: c["name"].casefold()) if c["id"] not in mine]

    unpaged = (await api.get("/api/channels/public", token=caller["token"])).body
    assert [c["id"] for c in unpaged] == brute()

    async def churn(page: int) -> None:
        if page <= 2:
            channels.append(await create_chat(api, owner, "public_channel", [], name=f"zz-late-{page}"))

    rows = await _pages(api, "/api/channels/public", "channels", caller["token"], 4, between=churn)
    assert [c["id"] for c in rows] == brute()  # the late ones are in too
    assert all(c["type"] == "public_channel" for c in rows)


async def test_an_unpaged_answer_is_bounded_and_links_to_the_rest(api, monkeypatch):
    monkeypatch.setattr(paging, "UNPAGED_MAX", 25)
    owner = await api.signup(fullname="Olga Owner")
    people = await _people(api, owner["workspace"]["invite_code"], [f"Ann {i:02d}" for i in range(60)])
    # Joined in the reverse of user id order: the unpaged answer's join order is not its page's key order.
    channel = await create_chat(api, owner, "private_channel", people[::-1], name="big")
    routes = ((f"/api/chats/{channel['id']}/members", "members", "user_id"), ("/api/users?q=ann", "users", "id"))
    for path, items, key in routes:
        first = await api.get(path, token=owner["token"])
        assert first.status == 200 and len(first.body) == 25
        link = first.headers["Link"]
        assert link.endswith('>; rel="next"') and "limit=200" in link and "cursor=" in link
        rest = await api.get(link[1:link.index(">")], token=owner["token"])
        assert rest.status == 200 and rest.body["next_cursor"] is None
        got = [row[key] for row in first.body] + [row[key] for row in rest.body[items]]
        expected = [owner["id"], *[p["id"] for p in people]] if key == "user_id" else [p["id"] for p in people]
        assert sorted(got) == sorted(expected) and len(got) == len(set(got))


async def test_bad_limits_and_cursors_are_422_and_never_5xx(api):
    owner = await api.signup(fullname="Olga Owner")
    people = await _people(api, owner["workspace"]["invite_code"], ["Bo", "Cy", "Di"])
    chat = await create_chat(api, owner, "group", people)
    await create_chat(api, owner, "public_channel", [], name="a")
    await create_chat(api, people[0], "public_channel", [], name="b")
    await create_chat(api, people[0], "public_channel", [], name="c")
    routes = [f"/api/chats/{chat['id']}/members", "/api/users", "/api/channels/public"]
    cursors = {}
    for route in routes:
        reply = await api.get(f"{route}?limit=1", token=owner["token"])
        assert reply.status == 200 and reply.body["next_cursor"], (route, reply.body)
        cursors[route] = reply.body["next_cursor"]
    bomb = base64.urlsafe_b64encode(b"z" + zlib.compress(b'["users","' + b"a" * 2_000_000 + b'"]')).decode().rstrip("=")
    forged_id = base64.urlsafe_b64encode(b'j["members","not an id!"]').decode().rstrip("=")
    for route in routes:
        for limit in ("0", "201", "-1", "abc", "1.5", ""):
            reply = await api.get(f"{route}?limit={limit}", token=owner["token"])
            assert reply.status == 422 and "limit" in reply.body["error"]["fields"], (route, limit, reply.body)
        others = [c for r, c in cursors.items() if r != route]
        for cursor in ["x", "!!!", "=", "eyJ4IjoxfQ", cursors[route][:-2], cursors[route] + "AA", bomb, forged_id,
                       "A" * 20000, *others]:
            reply = await api.get(f"{route}?limit=5&cursor={quote(cursor)}", token=owner["token"])
            assert reply.status == 422 and "cursor" in reply.body["error"]["fields"], (route, cursor[:40], reply.body)
            reply = await api.get(f"{route}?cursor={quote(cursor)}", token=owner["token"])  # a cursor alone pages too
            assert reply.status == 422, (route, cursor[:40])
        assert (await api.get(f"{route}?cursor={cursors[route]}", token=owner["token"])).status == 200
    assert (await api.get("/api/users?q=" + "a" * 101, token=owner["token"])).status == 422
    assert (await api.get("/api/users?q=%00%01", token=owner["token"])).status == 200


async def test_users_stored_before_name_keys_get_them_at_start(api, deps):
    owner = await api.signup(fullname="Olga Owner")
    await _people(api, owner["workspace"]["invite_code"], ["zoe", "Yann", "xavier", "Will"])
    old = await deps.store.users.find({"workspace_id": {"$eq": owner["user"]["workspace_id"]}}).to_list()
    for doc in old[1:]:
        await deps.store.users.update_one({"_id": doc["_id"]}, {"$unset": {"name_key": ""}})
    assert len((await api.get("/api/users", token=owner["token"])).body) == 1  # invisible until migrated
    assert await backfill_user_name_keys(deps.store) >= 4
    assert await backfill_user_name_keys(deps.store) == 0  # idempotent
    rows = (await api.get("/api/users?limit=2", token=owner["token"])).body["users"]
    assert [u["fullname"] for u in rows] == ["Olga Owner", "Will"]
    assert [u["fullname"] for u in (await api.get("/api/users", token=owner["token"])).body] == [
        "Olga Owner", "Will", "Yann", "xavier", "zoe"]


async def test_each_page_is_one_index_range():
    """On the embedded server: the reads of a members, users and public-channels page, as the services send them."""
    async with traced_database("paging_plans") as database:
        server, name, store, db = database.server, database.name, database.store, database.db
        now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        db.users.insert_many([
            {"_id": f"u{i:04d}", "workspace_id": f"w{i % 2}", "fullname": f"N{i % 50}", "email": f"{i}@x.io",
             "name_key": paging.sort_key(f"N{i % 50}", f"u{i:04d}")} for i in range(600)
        ])
        db.chats.insert_many([{"_id": f"c{i:03d}", "workspace_id": f"w{i % 2}", "owner_id": "u0000",
                               "type": "public_channel" if i % 3 else "group", "name": f"ch{i}", "name_key": f"ch{i}",
                               "description": "", "created_at": now, "updated_at": now} for i in range(300)])
        db.members.insert_many([
            {"_id": f"m{c}-{u}", "chat_id": f"c{c:03d}", "user_id": f"u{u:04d}", "workspace_id": "w0",
             "role": "member", "joined_at": now} for c in range(0, 6, 2) for u in range(0, 600, 2)
        ])
        caller = Identity(user_id="u0000", workspace_id="w0", expires_at=0)
        issuer = TokenIssuer(Ed25519PrivateKey.generate(),
                             SimpleNamespace(issuer="t", audience="t", access_token_ttl_seconds=60))  # type: ignore[arg-type]
        people = PeopleService(store, None, AccountService(store, issuer, None, None, None, None))  # type: ignore[arg-type]
        chats = ChatService(store, None, ChatAccess(store), limiter=None, limits=None, mentions=None)  # type: ignore[arg-type]
        with server.trace(name) as trace:
            page = await chats._member_page("c000", PageQuery(limit=100))
            await chats._member_page("c000", PageQuery(limit=100, cursor=page.next_cursor))
            users = await people.users(caller, UsersQuery(limit=50))
            await people.users(caller, UsersQuery(limit=50, cursor=users.next_cursor))
            await people.users(caller, UsersQuery(limit=20, q="n1"))
            await chats.list_public(caller, PageQuery(limit=20))
        assert len(page.items) == 100 and len(users.items) == 50
        checked = 0
        for traced in trace.statements:
            for collection in ("users", "members", "chats"):
                if reads(traced.sql, collection) and ("name_key" in traced.sql or "user_id" in traced.sql):
                    statement = Statement(traced.sql, server.query_plan(name, traced.sql))
                    if "joined_at" in traced.sql:
                        continue  # chat_out's member list of each channel: ChatService.member_ids, not a page
                    assert not statement.scans and not statement.sorts, statement.sql + "\n" + "\n".join(statement.plan)
                    checked += 1
        assert checked >= 6
