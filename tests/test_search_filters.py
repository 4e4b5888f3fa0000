"""Search filters (from, has, after, before, chat_id) and highlights: as a brute force finds, paged exactly, bounded."""

from __future__ import annotations

import datetime
import random
import urllib.parse
from types import SimpleNamespace

import msgspec
import pytest

from app.schemas.messages import SearchQuery
from app.services.membership import user_chat_ids
from app.services.messages import MessageDraft
from app.services.search import MAX_READS, SearchService, highlights
from app.services.search_flags import backfill_search_flags, created_ms
from app.store import isoformat
from tests.support.plans import Statement, reads, traced_database

pytestmark = [pytest.mark.gen_test(timeout=180), pytest.mark.usefixtures("cheap_passwords")]

UTC = datetime.timezone.utc
# The imported history spans DAY0 .. DAY0 + 10 days, before every live send: a chat's created_at grows with
# its seq (search's assumption), so it is imported first, before any system line (a join) of now.
DAY0 = datetime.datetime.combine(datetime.date.today() - datetime.timedelta(days=12), datetime.time(), UTC)


def d(days: int, time: str = "") -> str:
    """The date (or date-time) `days` after DAY0, as the filters take it."""
    return (DAY0 + datetime.timedelta(days=days)).date().isoformat() + time
WORDS = ["release", "Lunch", "deploy", "report", "über", "ship"]


class _Desc(str):
    """A string that sorts backwards, for the chat-id tie-break (ascending) inside a descending sort."""

    def __lt__(self, other):  # type: ignore[override]
        return str.__gt__(self, other)


def _has(doc: dict, what: str) -> bool:
    text = (doc.get("content") or "").lower()
    return {"file": bool(doc.get("files")), "link": "https://" in text or "www." in text,
            "mention": bool(doc.get("mentions")) or bool(doc.get("mentions_all"))}[what]


def _day(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value).replace(tzinfo=UTC)


async def brute_force(store, chat_ids, q="", sender=None, has=None, after=None, before=None) -> list[str]:
    """Every live message of those chats passing every filter, newest first (created_at, chat id, seq desc);
    never a system line ("joined"…)."""
    words = q.casefold().split()
    found = []
    for chat_id in chat_ids:
        async for doc in store.messages.find({"chat_id": {"$eq": chat_id}}):
            created = doc["created_at"].replace(tzinfo=UTC) if doc["created_at"].tzinfo is None else doc["created_at"]
            text = doc.get("content", "").casefold()
            if (doc.get("deleted") or doc.get("gap") or doc.get("kind") == "system" or not all(w in text for w in words)
                    or (sender is not None and doc.get("sender_id") != sender)
                    or (has is not None and not _has(doc, has))
                    or (after is not None and created < _day(after))
                    or (before is not None and created >= _day(before))):
                continue
            found.append(doc)
    found.sort(key=lambda d: (isoformat(d["created_at"]), _Desc(d["chat_id"]), d["seq"]), reverse=True)
    return [d["_id"] for d in found]


async def _seed(world):
    """The caller (Bob) in five chats of every kind beside chats he is not in; ten days of imported history
    (files, links), then live sends with mentions and links, some deleted, one edited."""
    rng = random.Random(17)
    workspace = await world.workspace()
    owner = world.owners[workspace]
    alice = await world.user(workspace, "Alice", username="alice")
    bob = await world.user(workspace, "Bob", username="bob")
    cy = await world.user(workspace, "Cy", username="cy")
    dan = await world.user(workspace, "Dan", username="dan")
    elsewhere = await world.workspace()
    foreigner = await world.user(elsewhere, "Eve")
    mine = [
        await world.chat(alice, bob, type="direct"),
        await world.chat(alice, bob, cy),
        await world.chat(bob, alice, dan, type="private_channel"),
        await world.chat(owner, alice, cy, type="public_channel"),
        await world.chat(cy, bob, dan),
    ]
    others = [
        await world.chat(alice, cy, dan),
        await world.chat(dan, alice, type="public_channel"),  # public, never joined
        await world.chat(world.owners[elsewhere], foreigner, type="private_channel"),
    ]
    members = {mine[0]: [alice, bob], mine[1]: [alice, bob, cy], mine[2]: [bob, alice, dan],
               mine[3]: [owner, alice, cy, bob], mine[4]: [cy, bob, dan], others[0]: [alice, cy, dan],
               others[1]: [dan, alice], others[2]: [world.owners[elsewhere], foreigner]}

    def content(i: int) -> str:
        words = rng.sample(WORDS, rng.randint(1, 3))
        link = rng.choice(["", "", "", " see https://example.com/r/%d" % i, " www.example.org"])
        return f"m{i} " + " ".join(words) + link

    # History as an import writes it, first: created_at grows with seq in each chat, spread over ten days.
    for n, chat in enumerate(members):
        drafts = []
        for i in range(40):
            at = DAY0 + datetime.timedelta(hours=6 * i + n, minutes=rng.randint(0, 50), seconds=rng.randint(0, 59),
                                           milliseconds=rng.randint(0, 999))
            files = [f"file{n}x{i}"] if rng.random() < 0.15 else []
            drafts.append(MessageDraft(sender_id=rng.choice(members[chat]).id, content=content(i), files=files,
                                       created_at=at))
        await world.services.messages.append_many(
            {"_id": chat, "workspace_id": elsewhere if chat == others[2] else workspace}, drafts)
    await world.services.chats.join(bob.identity, mine[3])  # a public channel he joined
    # Live sends: mentions resolved against the chat's members.
    sent: dict[str, list[dict]] = {chat: [] for chat in members}
    for i in range(90):
        chat = rng.choice(list(members))
        sender = rng.choice(members[chat])
        names = [u for u in members[chat] if u is not sender and u.fullname in ("Alice", "Bob", "Cy", "Dan")]
        mention = f" @{rng.choice(names).fullname.lower()}" if names and rng.random() < 0.3 else ""
        mention = " @here" if not mention and rng.random() < 0.05 else mention
        sent[chat].append(await world.send(chat, sender, content(100 + i) + mention))
    # Deleted messages never come back (some with links and mentions): by each chat's owner.
    for chat, manager in ((mine[0], alice), (mine[1], alice), (mine[2], bob)):
        for message in sent[chat][::4]:
            await world.delete_message(chat, manager, message["id"])
    # An edit is found by what it says now: a link added, a link and a mention removed.
    gaining = await world.send(mine[1], alice, "plain release words")
    await world.edit(mine[1], alice, gaining["id"], "release notes at https://example.com/notes")
    losing = await world.send(mine[2], alice, "release notes www.example.org/notes for @bob")
    await world.edit(mine[2], alice, losing["id"], "release notes, link removed")
    # Bob's chats also hold the workspace's #general, where sign-ups post their joins.
    scope = list(await user_chat_ids(world.store, bob.id))
    assert set(mine) < set(scope) and not set(others) & set(scope)
    return {"alice": alice, "bob": bob, "cy": cy, "dan": dan}, mine, scope, others


def _query(**fields) -> SearchQuery:
    return msgspec.convert({k: v for k, v in fields.items() if v is not None}, SearchQuery)


async def _all_pages(search, caller, limit: int, **fields) -> list[str]:
    ids, cursor = [], None
    for _ in range(500):
        page = await search.search(caller.identity, _query(limit=limit, cursor=cursor, **fields))
        assert len(page.messages) <= limit
        ids += [m.id for m in page.messages]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    raise AssertionError("no end")


def _combos(people):
    alice, cy = people["alice"].id, people["cy"].id
    return [
        {"sender": alice}, {"has": "link"}, {"has": "mention"}, {"has": "file"},
        {"after": d(4)}, {"before": d(3)}, {"after": d(2), "before": d(5)},
        {"q": "release", "sender": alice}, {"q": "release", "has": "link"},
        {"sender": alice, "has": "link"}, {"sender": cy, "has": "mention"},
        {"q": "lunch", "sender": alice, "has": "link", "after": d(1)},
        {"has": "file", "before": d(7), "after": d(1, "T12:00:00")},
        {"q": "über", "after": d(9)},
        {"after": d(7), "before": d(1)},  # an empty range: nothing, no error
    ]


def _fields(combo: dict) -> dict:
    return {"q": combo.get("q", ""), "from": combo.get("sender"), "has": combo.get("has"),
            "after": combo.get("after"), "before": combo.get("before"), "chat_id": combo.get("chat_id")}


async def test_each_filter_alone_and_combined_equals_a_brute_force_and_pages_complete_it(world, api):
    people, mine, scope_all, others = await _seed(world)
    bob, store = people["bob"], world.store
    stingy = SearchService(store, world.deps.config, max_reads=2)
    combos = _combos(people) + [{"has": "link", "chat_id": mine[1]}, {"sender": people["alice"].id,
                                                                        "chat_id": mine[3]}]
    nonempty = 0
    for combo in combos:
        scope = [combo["chat_id"]] if "chat_id" in combo else scope_all
        expected = await brute_force(store, scope, combo.get("q", ""), combo.get("sender"), combo.get("has"),
                                     combo.get("after"), combo.get("before"))
        nonempty += bool(expected)
        params = urllib.parse.urlencode({k: v for k, v in _fields(combo).items() if v is not None} | {"limit": 100})
        reply = await api.get(f"/api/search/messages?{params}", token=bob.token)
        assert reply.status == 200, (combo, reply.body)
        assert [m["id"] for m in reply.body["messages"]] == expected[:100], combo
        assert all("highlights" in m for m in reply.body["messages"])
        for limit in (7, 100):
            assert await _all_pages(world.services.search, bob, limit, **_fields(combo)) == expected, (combo, limit)
        assert await _all_pages(stingy, bob, 5, **_fields(combo)) == expected, (combo, "a budget of 2 reads")
    assert nonempty >= len(combos) - 2  # the data is shaped so that the filters find things
    # Bob's join of the public channel is a line from him, never a hit of from=bob.
    joins = [doc["_id"] async for doc in store.messages.find({"sender_id": {"$eq": bob.id}, "kind": {"$eq": "system"}})]
    found = await _all_pages(world.services.search, bob, 50, **{"from": bob.id})
    assert joins and found and not set(joins) & set(found)
    # The filters narrow what the caller may see, never widen it: another chat's sender, another chat.
    theirs = {doc["_id"] async for doc in store.messages.find({"chat_id": {"$in": others}})}
    for has in ("link", "mention", "file"):
        found = await _all_pages(world.services.search, bob, 50, has=has)
        assert found and not theirs & set(found)
    for chat in others:
        reply = await api.get(f"/api/search/messages?has=link&chat_id={chat}", token=bob.token)
        assert reply.status == 404


async def test_a_filtered_search_costs_what_an_unfiltered_one_costs(world):
    """A fixed set of store commands, whatever the filters: the caller's chat ids, their chats, windows within
    the read budget, the page's marks; and the same again after others' chats grew tenfold."""
    people, _, _, others = await _seed(world)
    bob = people["bob"]
    queries = [{"q": "release"}] + [_fields(c) for c in _combos(people)]
    counts: dict[int, list[int]] = {}
    for round_ in range(2):
        async with world.counting() as (counted, commands):
            for n, fields in enumerate(queries):
                commands.issued()
                await counted.services.search.search(bob.identity, _query(limit=20, **fields))
                issued = commands.issued()
                kinds = {c for c in issued}
                assert kinds <= {("distinct", "members"), ("find", "chats"), ("find", "messages"),
                                 ("find", "message_marks")}, issued
                # The chats' documents once; none for a time range that is empty: it is known read out.
                assert issued.count(("distinct", "members")) == 1 and issued.count(("find", "chats")) <= 1
                assert issued.count(("find", "message_marks")) <= 1
                assert issued.count(("find", "messages")) <= MAX_READS
                counts.setdefault(n, []).append(len(issued))
        if round_ == 0:
            for chat in others[:2]:
                await world.services.messages.append_many(
                    {"_id": chat, "workspace_id": bob.workspace_id},
                    [MessageDraft(sender_id=people["alice"].id, content=f"release lunch https://x.io/{i} @bob")
                     for i in range(400)])
    assert all(a == b for a, b in counts.values()), counts
    print("filtered search store commands:", {str(queries[n]): c[0] for n, c in counts.items()})


async def test_highlights_mark_every_occurrence_in_code_points(world, api):
    cases = [
        ("Alpha alphabet ALPHA", ["alpha"], [[0, 5], [6, 11], [15, 20]]),
        ("aaaa", ["aa"], [[0, 4]]),  # overlapping occurrences merge
        ("abc", ["ab", "bc"], [[0, 3]]),
        ("ship it, SHIP IT", ["ship", "it"], [[0, 4], [5, 7], [9, 13], [14, 16]]),
        ("😀 Über ünïcode über", ["über", "ünï"], [[2, 6], [7, 10], [15, 19]]),
        ("日本語のテキスト 日本", ["日本"], [[0, 2], [9, 11]]),
        ("a.b axb", ["a.b"], [[0, 3]]),
        ("nothing here", ["zzz"], []),
    ]
    for content, words, expected in cases:
        assert highlights(content, words) == expected, content
    # Through the API: the spans are code-point slices of what it serves, each one of the words in any case.
    workspace = await world.workspace()
    owner = world.owners[workspace]
    ada = await world.user(workspace, "Ada")
    chat = await world.chat(owner, ada)
    await world.send(chat, ada, "lunch first")
    sent = await world.send(chat, ada, "😀😀 Über LUNCH, über lunch; lunchtime 🍱 Lunch")
    reply = await api.get("/api/search/messages?" + urllib.parse.urlencode({"q": "lunch ÜBER"}), token=owner.token)
    assert reply.status == 200
    hit = next(m for m in reply.body["messages"] if m["id"] == sent["id"])
    text = hit["content"]
    assert [text[a:b].casefold() for a, b in hit["highlights"]] == ["über", "lunch", "über", "lunch", "lunch",
                                                                   "lunch"]
    assert hit["highlights"][0] == [3, 7]  # two emoji before it: 3 code points, 5 UTF-16 units
    # A search by filters alone highlights nothing.
    reply = await api.get(f"/api/search/messages?from={ada.id}", token=owner.token)
    assert reply.status == 200 and sent["id"] in [m["id"] for m in reply.body["messages"]]
    assert all(m["highlights"] == [] and m["sender_id"] == ada.id for m in reply.body["messages"])


async def test_bad_filter_values_are_422_never_5xx(world, api):
    workspace = await world.workspace()
    owner = world.owners[workspace]
    ada = await world.user(workspace, "Ada")
    chat = await world.chat(owner, ada)
    await world.send(chat, ada, "release https://example.com")
    token = owner.token
    bad = [
        ({"q": ""}, "q"), ({}, "q"), ({"q": "  "}, "q"), ({"has": "files"}, "has"), ({"has": ""}, "has"),
        ({"from": "a b"}, "from"), ({"from": "x" * 65}, "from"), ({"from": ""}, "from"),
        ({"after": "2026-13-01"}, "after"), ({"after": "yesterday"}, "after"), ({"before": "2026-02-30"}, "before"),
        ({"after": ""}, "after"), ({"before": "9999-12-31T23:59:59-23:59"}, "before"),
        ({"after": "0001-01-01T00:00:00+14:00"}, "after"), ({"after": "2026-01-01T25:00"}, "after"),
        ({"before": "2026-01-01" + "0" * 40}, "before"), ({"after": "2026-01-01", "q": "x" * 2000}, "q"),
    ]
    for params, field in bad:
        reply = await api.get("/api/search/messages?" + urllib.parse.urlencode(params), token=token)
        assert reply.status == 422, (params, reply.status, reply.body)
        assert field in reply.body["error"]["fields"], (params, reply.body)
    # Filters alone need no words; the far past and future are valid instants.
    good = [{"has": "link"}, {"from": ada.id}, {"after": "2026-01-01"}, {"before": "9999-12-31"},
            {"after": "0001-01-01", "q": "release"}, {"before": "2099-01-01T10:00:00.123456+05:30"},
            {"from": "nobody-with-this-id", "has": "mention"}]
    for params in good:
        reply = await api.get("/api/search/messages?" + urllib.parse.urlencode(params), token=token)
        assert reply.status == 200, (params, reply.body)
    # A cursor of another search (another filter) is refused, not misapplied.
    for i in range(4):
        await world.send(chat, ada, f"release {i} www.example.org")
    first = await api.get("/api/search/messages?has=link&limit=2", token=token)
    cursor = first.body["next_cursor"]
    assert cursor
    for other in ("has=mention", f"has=link&from={ada.id}", "has=link&after=2026-01-01", "has=link&before=2099-01-01",
                  "has=link&q=release", "q=release"):
        reply = await api.get(f"/api/search/messages?{other}&cursor={cursor}", token=token)
        assert reply.status == 422 and "cursor" in reply.body["error"]["fields"], other
    again = await api.get(f"/api/search/messages?has=link&limit=2&cursor={cursor}", token=token)
    assert again.status == 200 and again.body["messages"]


async def test_old_messages_get_their_flags_by_an_idempotent_backfill(world):
    """Messages stored before the flags (no has_* fields, the chat unmarked) are found after the backfill."""
    workspace = await world.workspace()
    owner = world.owners[workspace]
    ada = await world.user(workspace, "Ada")
    chat = await world.chat(owner, ada)
    for i in range(5):
        await world.send(chat, ada, f"fresh {i}")
    store = world.store
    await backfill_search_flags(store)  # every chat so far is marked
    now = datetime.datetime.now(UTC)
    old = [{"_id": f"old{chat}{i}", "chat_id": chat, "seq": 100 + i, "sender_id": ada.id,
            "content": f"old {i}" + (" https://example.com" if i % 3 == 0 else ""),
            "files": ["f1"] if i % 4 == 1 else [], "mentions": [owner.id] if i % 5 == 2 else [],
            "mentions_all": False, "deleted": False, "created_at": now, "edited_at": None, "reply_to": None}
           for i in range(12)]
    await store.messages.insert_many(old)
    await store.chats.update_one({"_id": chat}, {"$set": {"last_seq": 111}, "$unset": {"search_flags": ""}})
    assert await backfill_search_flags(store) == 12
    assert await backfill_search_flags(store) == 0  # the chat is marked: nothing read again
    for has, expected in (("link", {0, 3, 6, 9}), ("file", {1, 5, 9}), ("mention", {2, 7})):
        found = await _all_pages(world.services.search, owner, 50, has=has)
        assert {int(i.removeprefix(f"old{chat}")) for i in found if i.startswith("old")} == expected, has


async def test_filtered_windows_are_ranges_of_the_chat_seq_index():
    """On the embedded server: with sender, flag and time conditions the window is still a (chat_id, seq) range."""
    async with traced_database("search_filter_plans") as database:
        server, name, store, db = database.server, database.name, database.store, database.db
        start = datetime.datetime(2024, 1, 1, tzinfo=UTC)
        chats = [f"c{i:02d}" for i in range(6)]
        db.chats.insert_many([{"_id": c, "workspace_id": "w", "type": "group", "last_seq": 300,
                               "last_message": {"seq": 300, "created_at": (
                                   start + datetime.timedelta(minutes=300 * 10 + i)).isoformat()},
                               "last_message_at": start + datetime.timedelta(minutes=300 * 10 + i)}
                              for i, c in enumerate(chats)])
        db.members.insert_many([{"_id": f"m{c}", "chat_id": c, "user_id": "u", "workspace_id": "w"} for c in chats])
        db.messages.insert_many(
            [{"_id": f"{c}-{s}", "chat_id": c, "seq": s, "sender_id": f"s{s % 3}", "deleted": s % 11 == 0,
              "content": f"needle {s}" if s % 5 == 0 else f"hay {s}", "has_link": s % 7 == 0,
              "has_file": False, "has_mention": s % 2 == 0,
              "created_at": start + datetime.timedelta(minutes=s * 10 + i, milliseconds=s),
              "created_ms": created_ms(start + datetime.timedelta(minutes=s * 10 + i, milliseconds=s))}
             for i, c in enumerate(chats) for s in range(1, 301)]  # fmt: skip
        )

        class _Config:
            class limits:  # noqa: N801 - the shape of Config.limits
                search_query_max_chars = 200

        from app.auth import Identity

        caller = Identity(user_id="u", workspace_id="w", expires_at=0)
        search = SearchService(store, _Config, max_reads=200)
        after, before = start + datetime.timedelta(minutes=800), start + datetime.timedelta(minutes=2500)
        query = {"q": "needle", "from": "s1", "has": "link", "after": after.isoformat(), "before": before.isoformat()}
        with server.trace(name) as trace:
            got = await _all_pages(search, SimpleNamespace(identity=caller), 3, **query)
        expected = sorted(((s * 10 + i, c, s) for i, c in enumerate(chats) for s in range(1, 301)
                           if s % 5 == 0 and s % 3 == 1 and s % 7 == 0 and s % 11
                           and after <= start + datetime.timedelta(minutes=s * 10 + i, milliseconds=s) < before),
                          reverse=True)
        assert got == [f"{c}-{s}" for _, c, s in expected] and got
        windows = 0
        for traced in trace.statements:
            if not reads(traced.sql, "messages"):
                continue
            statement = Statement(traced.sql, server.query_plan(name, traced.sql))
            assert not statement.scans and not statement.sorts, statement.sql + "\n" + "\n".join(statement.plan)
            assert any("idx_messages_chat_id_seq" in row for row in statement.plan), statement.plan
            windows += 1
        assert windows >= 6
