"""Search: newest first across the caller's chats, as a brute force finds; only their chats; exact cursors."""

from __future__ import annotations

import datetime
import random
import uuid

import msgspec
import pytest

from app.schemas.messages import SearchQuery
from app.services.messages import MessageDraft
from app.services.paging import decode_cursor
from app.services.search import SearchService
from app.store import isoformat
from tests.support.plans import Statement, reads, traced_database

# Hundreds of signups: the hash's cost is not what these tests are about (tests/conftest.py).
pytestmark = [pytest.mark.gen_test(timeout=180), pytest.mark.usefixtures("cheap_passwords")]

VOCABULARY = ["alpha", "Beta", "gamma", "DELTA", "lunch", "report", "a.b", "axb", "ship", "it"]


def _matches(content: str, words: list[str]) -> bool:
    text = content.casefold()
    return all(word.casefold() in text for word in words)


async def brute_force(store, chat_ids, words: list[str]) -> list[str]:
    """Every live message of those chats holding every word, newest first (created_at ms, chat id, seq desc)."""
    found = []
    for chat_id in chat_ids:
        async for doc in store.messages.find({"chat_id": {"$eq": chat_id}}):
            if not doc.get("deleted") and _matches(doc.get("content", ""), words):
                found.append(doc)
    found.sort(key=lambda d: (isoformat(d["created_at"]), _Desc(d["chat_id"]), d["seq"]), reverse=True)
    return [d["_id"] for d in found]


class _Desc(str):
    """A string that sorts backwards, for the chat-id tie-break (ascending) inside a descending sort."""

    def __lt__(self, other):  # type: ignore[override]
        return str.__gt__(self, other)

    def __gt__(self, other):  # type: ignore[override]
        return str.__lt__(self, other)


async def _seed(world):
    """The caller in six chats of every kind, beside chats they must never see, with interleaved messages."""
    rng = random.Random(12)
    workspace = await world.workspace()
    caller = world.owners[workspace]
    people = [await world.user(workspace, fullname=f"Person {i}") for i in range(5)]
    elsewhere = await world.workspace()
    foreign = world.owners[elsewhere]
    foreigner = await world.user(elsewhere)
    mine = [
        await world.chat(caller, people[0], type="direct"),
        await world.chat(caller, people[0], people[1]),
        await world.chat(caller, people[1], type="private_channel"),
        await world.chat(caller, people[2], type="public_channel"),
        await world.chat(people[3], caller, people[4]),  # a group someone else made
        await world.chat(people[4], type="public_channel"),
    ]
    await world.services.chats.join(caller.identity, mine[-1])  # a public channel the caller joined
    others = [
        await world.chat(people[0], people[1], people[2]),  # same workspace, without the caller
        await world.chat(people[3], type="public_channel"),  # public, never joined
        await world.chat(foreign, foreigner, type="private_channel"),  # another workspace
    ]
    members = [[caller, people[0]], [caller, people[0], people[1]], [caller, people[1]], [caller, people[2]],
               [people[3], caller, people[4]], [people[4], caller]]
    senders = dict(zip(mine, members))
    senders |= {others[0]: people[:3], others[1]: [people[3]], others[2]: [foreign, foreigner]}
    sent: dict[str, list[dict]] = {chat: [] for chat in [*mine, *others]}
    chats = [*mine, *others]
    for i in range(420):
        chat = rng.choice(chats)
        words = rng.sample(VOCABULARY, rng.randint(1, 4))
        sent[chat].append(await world.send(chat, rng.choice(senders[chat]), f"msg {i}: " + " ".join(words)))
    # Deleted messages never come back; an edit is found by its new words only.
    for chat in mine[:4]:  # the caller owns these: any message may go
        for message in sent[chat][::7]:
            await world.delete_message(chat, caller, message["id"])
    edited = next(m for m in sent[mine[1]] if m["sender_id"] == caller.id and "alpha" not in m["content"].casefold())
    await world.edit(mine[1], caller, edited["id"], "now with ALPHA and zebra")
    return caller, mine, others


async def _all_pages(search, caller, q: str, limit: int, between=None, **extra):
    ids, pages, cursor = [], 0, None
    while True:
        page = await search.search(caller.identity, msgspec.convert({"q": q, "limit": limit, "cursor": cursor, **extra},
                                                                    SearchQuery))
        pages += 1
        ids += [m.id for m in page.messages]
        assert len(page.messages) <= limit
        if page.next_cursor is None:
            return ids, pages
        cursor = page.next_cursor
        if between is not None:
            await between(pages)
        assert pages < 500


async def test_search_newest_first_equals_a_brute_force_and_pages_complete_it(world, api):
    caller, mine, others = await _seed(world)
    store = world.store
    for q in ("alpha", "beta gamma", "GAMMA", "a.b", "zebra", "ship it", "nothing-matches-this"):
        words = q.split()
        expected = await brute_force(store, mine, words)
        # One request, as the HTTP API answers it.
        reply = await api.get(f"/api/search/messages?q={q.replace(' ', '+')}&limit=100", token=caller.token)
        assert reply.status == 200, reply.body
        assert [m["id"] for m in reply.body["messages"]] == expected[:100], q
        assert (reply.body["next_cursor"] is None) == (len(expected) <= 100)
        # Small pages: the concatenation is the same list, none twice, none missing.
        ids, pages = await _all_pages(world.services.search, caller, q, 7)
        assert ids == expected, q
        assert pages >= len(expected) // 7
    # Regex characters are literal: "a.b" never matches "axb".
    axb_only = await brute_force(store, mine, ["axb"])
    found, _ = await _all_pages(world.services.search, caller, "a.b", 50)
    assert found and set(axb_only) - set(await brute_force(store, mine, ["a.b"])) and not set(found) - set(
        await brute_force(store, mine, ["a.b"]))

    # Nothing from chats the caller is not in, even a public channel of the workspace; no deleted message.
    theirs = {doc["_id"] async for doc in store.messages.find({"chat_id": {"$in": others}})}
    everything, _ = await _all_pages(world.services.search, caller, "msg", 50)
    assert everything == await brute_force(store, mine, ["msg"]) and not theirs & set(everything)
    deleted = {doc["_id"] async for doc in store.messages.find({"deleted": True})}
    assert deleted and not deleted & set(everything)

    # chat_id scopes to one chat of the caller's; others are a 404, as before.
    scoped, _ = await _all_pages(world.services.search, caller, "beta", 5, chat_id=mine[3])
    assert scoped == await brute_force(store, [mine[3]], ["beta"])
    for chat in others:
        reply = await api.get(f"/api/search/messages?q=beta&chat_id={chat}", token=caller.token)
        assert reply.status == 404


async def test_a_small_budget_gives_short_pages_whose_cursors_resume_exactly(world):
    caller, mine, _ = await _seed(world)
    store = world.store
    expected = await brute_force(store, mine, ["alpha"])
    stingy = SearchService(store, world.deps.config, max_reads=2)
    ids, pages = await _all_pages(stingy, caller, "alpha", 10)
    assert ids == expected and pages > len(expected) // 10 + 1  # the budget, not the limit, cut pages

    # Rows change between pages: new messages are newer than the cursor (never in its continuation),
    # a deleted one that was not handed out yet is skipped, and nothing else is missing or repeated.
    before = await brute_force(store, mine, ["alpha"])
    owned = [(await store.messages.find_one({"_id": i}))["chat_id"] in mine[:4] for i in before]
    victim = before[max(i for i, ok in enumerate(owned) if ok)]  # an old one, far from page 2
    removed: list[str] = []
    added: list[str] = []

    async def churn(page: int) -> None:
        chat = mine[page % len(mine)]
        added.append((await world.send(chat, caller, f"alpha arrives after page {page}"))["id"])
        if page == 2:
            await world.delete_message((await store.messages.find_one({"_id": victim}))["chat_id"], caller, victim)
            removed.append(victim)

    ids, _ = await _all_pages(stingy, caller, "alpha", 6, between=churn)
    assert ids == [i for i in before if i not in removed]
    assert not set(added) & set(ids)


async def test_the_query_is_checked_and_cursors_are_its_own(world, api, config):
    caller, mine, _ = await _seed(world)
    token = caller.token
    first = await api.get("/api/search/messages?q=alpha&limit=2", token=token)
    assert first.status == 200 and first.body["next_cursor"]
    cursor = first.body["next_cursor"]
    garbage = ["x", "!!!", "a" * 300, cursor[:-3], cursor + "AA", "eyJ4IjoxfQ", "ag", "z" + cursor]
    for bad in garbage:
        reply = await api.get(f"/api/search/messages?q=alpha&cursor={bad}", token=token)
        assert reply.status == 422 and "cursor" in reply.body["error"]["fields"], (bad, reply.body)
    # A cursor of another search (other words, another chat) is refused, not misapplied.
    for other in ("q=beta", f"q=alpha&chat_id={mine[0]}"):
        reply = await api.get(f"/api/search/messages?{other}&cursor={cursor}", token=token)
        assert reply.status == 422 and "cursor" in reply.body["error"]["fields"]
    # A members cursor is not a search cursor.
    members = await api.get(f"/api/chats/{mine[1]}/members?limit=1", token=token)
    reply = await api.get(f"/api/search/messages?q=alpha&cursor={members.body['next_cursor']}", token=token)
    assert reply.status == 422
    too_long = "q" * (config.limits.search_query_max_chars + 1)
    for query in ("", "?q=", "?q=%20", "?q=%00", f"?q={too_long}", "?q=x&limit=0", "?q=x&limit=101", "?q=x&cursor="):
        reply = await api.get(f"/api/search/messages{query}", token=token)
        assert reply.status == 422, (query, reply.body)
    for odd in ("(", "[a-", "%5C", "*+?", "%E2%9C%93", "zzq%0Aqzz"):
        reply = await api.get(f"/api/search/messages?q={odd}", token=token)
        assert reply.status == 200 and reply.body["messages"] == [], odd


@pytest.mark.parametrize("chat_count", [6, 70])
async def test_every_read_of_a_search_is_a_range_of_the_chat_seq_index(chat_count):
    """On the embedded server: the windows and the bound look-ups, as the service sends them, are index ranges.

    70 chats: the caller's chats come by recent activity (two pages of the workspace's chats), not by _id."""
    async with traced_database("search_plans") as database:
        server, name, store, db = database.server, database.name, database.store, database.db
        start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        chats = [f"c{i:02d}" for i in range(chat_count)]
        # As sends leave a chat: its last message (served form, created_at a string) and activity time.
        db.chats.insert_many([{"_id": c, "workspace_id": "w", "type": "group", "last_seq": 400,
                               "last_message": {"seq": 400, "created_at": (
                                   start + datetime.timedelta(seconds=400 * 6 + i)).isoformat()},
                               "last_message_at": start + datetime.timedelta(seconds=400 * 6 + i)}
                              for i, c in enumerate(chats)])
        db.members.insert_many([{"_id": f"m{c}", "chat_id": c, "user_id": "u", "workspace_id": "w"} for c in chats])
        db.messages.insert_many(
            [{"_id": f"{c}-{s}", "chat_id": c, "seq": s, "sender_id": "u", "deleted": s % 9 == 0,
              "content": "needle" if s % 97 == 0 else f"hay {s}",
              "created_at": start + datetime.timedelta(seconds=s * 6 + i)}
             for i, c in enumerate(chats) for s in range(1, 401)]  # fmt: skip
        )

        class _Config:
            class limits:  # noqa: N801 - the shape of Config.limits
                search_query_max_chars = 200

        from app.auth import Identity

        caller = Identity(user_id="u", workspace_id="w", expires_at=0)
        search = SearchService(store, _Config, max_reads=200)  # 70 chats each newer than every match: all read
        with server.trace(name) as trace:
            page = await search.search(caller, SearchQuery(q="needle", limit=5))
            more = await search.search(caller, SearchQuery(q="needle", limit=5, cursor=page.next_cursor))
        assert len(page.messages) == 5 and page.next_cursor and more.messages
        expected = sorted(((s * 6 + i, c, s) for i, c in enumerate(chats) for s in range(97, 401, 97) if s % 9),
                          reverse=True)
        assert [(m.chat_id, m.seq) for m in [*page.messages, *more.messages]] == [(c, s) for _, c, s in expected[:10]]
        windows = 0
        for traced in trace.statements:
            for collection in ("messages", "chats", "members"):
                if not reads(traced.sql, collection):
                    continue
                statement = Statement(traced.sql, server.query_plan(name, traced.sql))
                assert not statement.scans and not statement.sorts, statement.sql + "\n" + "\n".join(statement.plan)
                if collection == "messages":
                    assert any("idx_messages_chat_id_seq" in row for row in statement.plan), statement.plan
                    windows += 1
        assert windows >= 4


def test_a_cursor_of_a_thousand_chats_fits_in_a_url_and_reads_back():
    # Chats by position among the caller's sorted chat ids: a bit for each one read out, a few bytes for the rest.
    from app.services.search import CURSOR_MAX_CHARS, _Cursor, _Scan, _State

    chat_ids = sorted(f"{i:08x}{uuid.uuid4().hex[:16]}" for i in range(1000))
    scans = {c: _Scan(c, 0, 0, True, top=5000, touched=True) for c in chat_ids}
    rng = random.Random(5)
    states = {c: _State(0, 0, True) for c in chat_ids[:880]}
    states |= {c: _State(rng.randint(1, 5000), 1_700_000_000_000 - rng.randint(0, 10**8), rng.random() < 0.5)
               for c in chat_ids[880:]}
    last = (-1_700_000_000_000, chat_ids[3], -42)
    cursor = SearchService._cursor("digest", last, dict(states), chat_ids, scans)
    assert len(cursor) <= CURSOR_MAX_CHARS
    back = SearchService._states(decode_cursor("search", cursor, _Cursor), chat_ids)
    assert back == states
    # The caller joined or left a chat since: the positions mean nothing, so no state is kept (a slower, same answer).
    assert SearchService._states(decode_cursor("search", cursor, _Cursor), chat_ids[1:]) == {}


async def test_a_caller_in_many_chats_finds_what_a_brute_force_finds(world):
    """Past ACTIVITY_FROM chats, where each chat starts comes from the workspace's chats by activity, a page at a
    time: beside chats of the same workspace the caller is not in, with busy and quiet chats as sends leave them."""
    from app.services.search import ACTIVITY_FROM

    rng = random.Random(7)
    workspace = await world.workspace()
    caller = world.owners[workspace]
    a, b = await world.user(workspace), await world.user(workspace)
    mine = [await world.chat(caller, a, b) for _ in range(60)]
    theirs = [await world.chat(a, b, type="private_channel") for _ in range(40)]
    assert len(mine) > ACTIVITY_FROM
    chats = mine + theirs
    weights = [1 / (i + 1) for i in range(len(chats))]  # a few busy chats, a long quiet tail
    rng.shuffle(weights)
    # Written as sends write them (MessageService.append_many), in rounds so the chats' activity interleaves.
    for round_ in range(9):
        batches: dict[str, list[MessageDraft]] = {}
        for i in range(100):
            words = ["alpha", "beta", "gamma", "rare"] if rng.random() < 0.05 else ["alpha", "beta", "gamma"]
            chat = rng.choices(chats, weights)[0]
            sender = rng.choice([a, b, caller] if chat in mine else [a, b])
            batches.setdefault(chat, []).append(MessageDraft(
                sender_id=sender.id, content=f"m{round_}.{i} " + " ".join(rng.sample(words, rng.randint(1, 2)))))
        for chat, drafts in batches.items():
            await world.services.messages.append_many({"_id": chat, "workspace_id": caller.identity.workspace_id},
                                                      drafts)
    store = world.store
    stingy = SearchService(store, world.deps.config, max_reads=3)
    for q in ("alpha", "rare", "beta gamma", "nothing-matches-this"):
        expected = await brute_force(store, mine, q.split())
        for limit in (7, 100):
            ids, _ = await _all_pages(world.services.search, caller, q, limit)
            assert ids == expected, (q, limit)
        ids, _ = await _all_pages(stingy, caller, q, 10)
        assert ids == expected, (q, "a budget of 3 reads")
