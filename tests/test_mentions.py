"""Mentions, mention counts, GET /api/mentions, per-chat settings, usernames, and posting that reads the chat."""

from __future__ import annotations

import random
import uuid

import pytest

from app import events
from app.services import mentions as mentions_module
from app.services.migrations import migrate
from app.store import new_id, utcnow
from tests.test_unread_counts import check

pytestmark = pytest.mark.gen_test(timeout=120)


async def team(world, *names, other_names=()):
    """A workspace whose users have the given usernames (also their fullnames), and a second one beside it."""
    ws = await world.workspace()
    users = [await world.user(ws, name.title(), username=name) for name in names]
    other_ws = await world.workspace()
    others = [await world.user(other_ws, name.title(), username=name) for name in other_names]
    return ws, users, others


async def summaries(world, user):
    return {chat.id: chat for chat in await world.services.chats.list_mine(user.identity)}


async def mention_counts(world, user):
    return {chat_id: chat.mention_count for chat_id, chat in (await summaries(world, user)).items()}


# -- what a message mentions ----------------------------------------------------------------------


async def test_only_members_are_mentioned_and_other_names_stay_text(world):
    _, (ada, bob, cy, dan), (eve_elsewhere,) = await team(world, "ada", "bob", "cy", "dan", other_names=("eve",))
    group = await world.chat(ada, bob, cy, type="group")
    await world.chat(ada, dan, type="direct")  # Dan shares a chat with Ada, but not this one
    sent = await world.send(group, ada, "hi @Bob and @dan, cc @cy. (@ada, @nobody, @eve, mail ada@example.com)")
    # Members only, in order, deduped, never the sender; a non-member's, an unknown and another workspace's
    # name are plain text, and so is an address.
    assert sent["mentions"] == [bob.id, cy.id] and sent["mentions_all"] is False
    again = await world.send(group, bob, "@cy @CY @cy- and @cy. again")
    assert again["mentions"] == [cy.id]
    # What the listing and the events carry is the same message.
    page = await world.services.messages.list(bob.identity, group, _query())
    assert [(m.mentions, m.mentions_all) for m in page.messages] == [([bob.id, cy.id], False), ([cy.id], False)]
    for word in ("@channel", "@here", "@Everyone!"):
        everyone = await world.send(group, cy, f"{word} standup")
        assert everyone["mentions_all"] is True and everyone["mentions"] == []
    plain = await world.send(group, cy, "no mention here: a@b.c, @@, @ alone, email@channel.com")
    assert (plain["mentions"], plain["mentions_all"]) == ([], False)
    assert eve_elsewhere.id not in sent["mentions"]


def _query(**fields):
    from app.schemas.messages import MessageListQuery

    return MessageListQuery(**fields)


async def test_a_channel_mention_counts_for_every_member_but_the_sender(world):
    _, (ada, bob, cy, dan, eve), _ = await team(world, "ada", "bob", "cy", "dan", "eve")
    channel = await world.chat(ada, bob, cy, dan, type="public_channel")
    quiet = await world.chat(bob, cy, eve, type="group")
    await world.send(quiet, eve, "nothing for anyone")
    await world.send(channel, ada, "@here standup in 5")
    await world.send(channel, ada, "and @everyone else too")
    for user in (bob, cy, dan):
        counts = await mention_counts(world, user)
        assert counts[channel] == 2, user.fullname
        assert counts.get(quiet, 0) == 0
    assert (await mention_counts(world, ada))[channel] == 0
    assert channel not in await mention_counts(world, eve)
    # A member who read past the first only counts the second.
    first_seq = (await world.store.chats.find_one({"_id": channel}))["last_seq"] - 1
    await world.read(channel, cy, first_seq)
    assert (await mention_counts(world, cy))[channel] == 1
    assert (await mention_counts(world, bob))[channel] == 2


async def test_counts_follow_edits_deletes_and_reads(world):
    _, (ada, bob, cy, dan), _ = await team(world, "ada", "bob", "cy", "dan")
    group = await world.chat(ada, bob, cy, dan, type="group")
    message = await world.send(group, ada, "hello")
    assert (await mention_counts(world, bob))[group] == 0
    edited = await world.edit(group, ada, message["id"], "hello @bob")
    assert edited["mentions"] == [bob.id]
    assert ((await mention_counts(world, bob))[group], (await mention_counts(world, cy))[group]) == (1, 0)
    await world.edit(group, ada, message["id"], "hello @cy")  # Bob's mention removed, Cy's added
    assert ((await mention_counts(world, bob))[group], (await mention_counts(world, cy))[group]) == (0, 1)
    await world.edit(group, ada, message["id"], "hello @everyone")
    assert [(await mention_counts(world, u))[group] for u in (ada, bob, cy, dan)] == [0, 1, 1, 1]
    await world.edit(group, ada, message["id"], "hello @cy @bob")  # all removed, two direct
    assert [(await mention_counts(world, u))[group] for u in (ada, bob, cy, dan)] == [0, 1, 1, 0]
    await world.delete_message(group, ada, message["id"])
    assert [(await mention_counts(world, u))[group] for u in (ada, bob, cy, dan)] == [0, 0, 0, 0]
    # Reads: a mention at or below the mark stops counting.
    first = await world.send(group, cy, "@bob one")
    await world.send(group, cy, "@bob two")
    assert (await mention_counts(world, bob))[group] == 2
    await world.read(group, bob, first["seq"])
    assert (await mention_counts(world, bob))[group] == 1
    member = await world.store.members.find_one({"chat_id": {"$eq": group}, "user_id": {"$eq": bob.id}})
    assert all(seq > first["seq"] for seq in member["mention_seqs"])  # pruned by the read
    # Posting reads the chat: Bob's own message moves his mark past the second.
    await world.send(group, bob, "on it")
    assert (await mention_counts(world, bob))[group] == 0
    # A deleted @channel message stops counting too.
    everyone = await world.send(group, dan, "@channel lunch?")
    assert (await mention_counts(world, ada))[group] == 1
    await world.delete_message(group, dan, everyone["id"])
    assert (await mention_counts(world, ada))[group] == 0


async def test_own_messages_never_count_not_even_after_coming_back(world):
    _, (ada, bob, cy), _ = await team(world, "ada", "bob", "cy")
    channel = await world.chat(ada, bob, cy, type="public_channel")
    await world.send(channel, bob, "@channel from bob, @bob himself")
    assert (await mention_counts(world, bob))[channel] == 0
    # Bob leaves and comes back: his mark starts at 0, his own @channel message still never counts.
    await world.remove(channel, bob, bob)
    await world.send(channel, ada, "@here while bob was away")
    await world.services.chats.join(bob.identity, channel)
    summary = (await summaries(world, bob))[channel]
    assert summary.last_read_seq == 0 and summary.mention_count == 1 and summary.unread_count == 1


async def brute_force(store, user_id, truth):
    """{chat_id: messages above the user's mark, not deleted, not theirs, mentioning them}, from every message;
    `truth` is what each message id mentions as the test wrote it ({user ids} or "all")."""
    counts = {}
    async for member in store.members.find({"user_id": {"$eq": user_id}}):
        mark = member.get("last_read_seq", 0)
        messages = await store.messages.find({"chat_id": {"$eq": member["chat_id"]}}).to_list()
        counts[member["chat_id"]] = sum(
            1 for doc in messages
            if doc["seq"] > mark and not doc.get("deleted") and doc.get("sender_id") != user_id
            and (truth.get(doc["_id"]) == "all" or user_id in (truth.get(doc["_id"]) or ()))
        )
    return counts


async def test_mention_counts_are_exact_through_a_random_workload(world):
    _, people, (stranger,) = await team(world, "ada", "bob", "cy", "dan", "eve", other_names=("fay",))
    ada, bob, cy, dan, eve = people
    chats = {
        await world.chat(ada, bob, cy, dan, type="group"): [ada, bob, cy, dan],
        await world.chat(bob, ada, eve, type="private_channel"): [bob, ada, eve],
        await world.chat(cy, ada, bob, cy, dan, eve, type="public_channel"): [cy, ada, bob, dan, eve],
        await world.chat(dan, eve, type="direct"): [dan, eve],
    }
    names = {u.id: n for u, n in zip(people, ("ada", "bob", "cy", "dan", "eve"))}
    rng = random.Random(14)
    truth: dict[str, object] = {}
    sent: list[tuple[str, dict, object]] = []

    def compose(chat_id, sender):
        members = chats[chat_id]
        others = [u for u in people if u not in members]
        roll = rng.random()
        if roll < 0.15:
            return "@here please look", "all"
        picked = rng.sample(members, k=rng.randint(0, min(3, len(members))))
        text = " ".join(f"@{names[u.id]}{rng.choice(['', ',', '.', '!'])}" for u in picked)
        if others and rng.random() < 0.3:
            text += f" and @{names[rng.choice(others).id]}"  # a non-member: plain text
        return f"{text} note {rng.randint(0, 999)}", {u.id for u in picked if u is not sender}

    for i in range(80):
        chat_id = rng.choice(list(chats))
        sender = rng.choice(chats[chat_id])
        content, mentioned = compose(chat_id, sender)
        message = await world.send(chat_id, sender, content)
        truth[message["id"]] = mentioned
        sent.append((chat_id, message, sender))
        if i % 9 == 4:  # an edit that changes who is mentioned
            chat_id, message, sender = rng.choice(sent)
            if message["id"] in truth and truth[message["id"]] is not None:
                content, mentioned = compose(chat_id, sender)
                await world.edit(chat_id, sender, message["id"], content)
                truth[message["id"]] = mentioned
        if i % 11 == 6:
            chat_id, message, sender = rng.choice(sent)
            await world.delete_message(chat_id, sender, message["id"])
            truth[message["id"]] = None
        if i % 7 == 3:
            reader = rng.choice(chats[chat_id])
            last = (await world.store.chats.find_one({"_id": chat_id}))["last_seq"]
            await world.read(chat_id, reader, rng.randint(1, last))
    totals = []
    for user in people:
        expected = await brute_force(world.store, user.id, truth)
        assert await mention_counts(world, user) == expected, user.fullname
        totals.append(sum(expected.values()))
    assert sum(totals) >= 5 and sum(1 for t in totals if t) >= 3, totals  # the workload left counts to check
    await check(world, *people)  # unread counts stay exact beside them
    # What GET /api/mentions lists is what the counts come from, over every message, newest first.
    for user in people:
        listed = await _all_mentions(world, user, limit=4)
        expected = [message["id"] for chat_id, message, _ in sorted(sent, key=lambda s: s[1]["id"], reverse=True)
                    if message["sender_id"] != user.id and user in chats[chat_id]
                    and (truth.get(message["id"]) == "all" or user.id in (truth.get(message["id"]) or ()))]
        assert listed == expected, user.fullname
        assert len(listed) >= 5, (user.fullname, len(listed))
    assert await _all_mentions(world, stranger, limit=5) == []


async def _all_mentions(world, user, limit):
    from app.schemas.messages import MentionsQuery

    ids, before = [], None
    for _ in range(100):
        page = await world.services.mentions.list(user.identity, MentionsQuery(limit=limit, before=before))
        assert len(page.messages) <= limit
        ids += [m.id for m in page.messages]
        if page.next_cursor is None:
            return ids
        before = page.next_cursor
    raise AssertionError("the cursor never ended")


async def test_the_channel_mentions_a_chat_keeps_are_bounded(world, monkeypatch):
    monkeypatch.setattr(mentions_module, "MENTION_ALL_MAX", 6)
    _, (ada, bob), _ = await team(world, "ada", "bob")
    group = await world.chat(ada, bob, type="private_channel")
    everyone = [await world.send(group, ada, f"@channel {i}") for i in range(15)]
    chat = await world.store.chats.find_one({"_id": group})
    assert len(chat["mention_all_seqs"]) <= 6 and len(chat["mention_all_ids"]) <= 6
    assert max(chat["mention_all_seqs"]) == everyone[-1]["seq"] and everyone[-1]["id"] in chat["mention_all_ids"]
    # Far behind, Bob counts at most what the chat keeps; the newest are always among them.
    assert 3 <= (await mention_counts(world, bob))[group] <= 6
    listed = await _all_mentions(world, bob, limit=10)
    assert listed[:3] == [m["id"] for m in everyone[::-1][:3]]


# -- GET /api/mentions ------------------------------------------------------------------------------


async def test_get_mentions_newest_first_with_its_cursor_and_only_the_callers(world, api):
    _, (ada, bob, cy), (zed,) = await team(world, "ada", "bob", "cy", other_names=("bob",))
    group = await world.chat(ada, bob, cy, type="group")
    channel = await world.chat(cy, ada, bob, type="public_channel")
    other = await world.chat(ada, cy, type="direct")  # Bob is not in it
    expected = []
    for i in range(6):
        expected.append(await world.send(group, ada, f"@bob item {i}"))
        await world.send(group, cy, f"@ada not for bob {i}")
        await world.send(other, ada, f"@bob is not here {i}")  # not a member: plain text
        if i % 2:
            expected.append(await world.send(channel, cy, f"@channel update {i}"))
    mine = await world.send(group, bob, "@channel mine")  # his own: never listed
    gone = await world.send(group, cy, "@bob soon deleted")
    await world.delete_message(group, cy, gone["id"])
    expected.reverse()

    pages, cursor = [], None
    while True:
        query = "?limit=3" + (f"&before={cursor}" if cursor else "")
        reply = await api.get(f"/api/mentions{query}", token=bob.token)
        assert reply.status == 200, reply.body
        pages.append([m["id"] for m in reply.body["messages"]])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 3]
    assert [mid for page in pages for mid in page] == [m["id"] for m in expected]
    first = (await api.get("/api/mentions?limit=1", token=bob.token)).body["messages"][0]
    assert first == expected[0]  # the message as every other route serves it
    # Others see only theirs (Cy's own @channel messages are not); another workspace's Bob sees nothing.
    cy_ids = [m["id"] for m in (await api.get("/api/mentions?limit=100", token=cy.token)).body["messages"]]
    assert cy_ids == [mine["id"]]
    ada_ids = [m["id"] for m in (await api.get("/api/mentions?limit=100", token=ada.token)).body["messages"]]
    assert len(ada_ids) == 6 + 3 + 1 and ada_ids[0] == mine["id"] and ada_ids == sorted(ada_ids, reverse=True)
    assert (await api.get("/api/mentions", token=zed.token)).body == {"messages": [], "next_cursor": None}
    # Leaving a chat takes its mentions away.
    await world.remove(channel, bob, bob)
    after = (await api.get("/api/mentions?limit=100", token=bob.token)).body["messages"]
    assert [m["id"] for m in after] == [m["id"] for m in expected if m["chat_id"] != channel]
    for bad in ("?limit=0", "?limit=101", "?before=not%20an%20id", "?limit=x"):
        reply = await api.get(f"/api/mentions{bad}", token=bob.token)
        assert reply.status in (400, 422), (bad, reply.status)
    assert (await api.get("/api/mentions")).status == 401


# -- settings ---------------------------------------------------------------------------------------


async def test_settings_are_per_user_and_only_for_members(world, api):
    ws, (ada, bob, cy), (zed,) = await team(world, "ada", "bob", "cy", other_names=("zed",))
    group = await world.chat(ada, bob, cy, type="group")
    channel = await world.chat(ada, bob, type="public_channel")
    direct = await world.chat(ada, cy, type="direct")
    for chat in (group, channel, direct):
        summary = (await summaries(world, ada))[chat]
        assert (summary.notify, summary.muted) == ("all", False)
    reply = await api.patch(f"/api/chats/{group}/settings", {"notify": "mentions"}, token=bob.token)
    assert (reply.status, reply.body) == (200, {"chat_id": group, "notify": "mentions", "muted": False})
    reply = await api.patch(f"/api/chats/{group}/settings", {"muted": True}, token=bob.token)
    assert reply.body == {"chat_id": group, "notify": "mentions", "muted": True}
    reply = await api.patch(f"/api/chats/{channel}/settings", {"notify": "none", "muted": False}, token=bob.token)
    assert reply.body == {"chat_id": channel, "notify": "none", "muted": False}
    listed = {c["id"]: c for c in (await api.get("/api/chats", token=bob.token)).body}
    assert {k: (listed[k]["notify"], listed[k]["muted"]) for k in (group, channel)} == {
        group: ("mentions", True), channel: ("none", False)}
    # Nobody else's settings moved.
    for user in (ada, cy):
        for chat_id, summary in (await summaries(world, user)).items():
            assert (summary.notify, summary.muted) == ("all", False), (user.fullname, chat_id)
    # Not a member (a direct chat of others, a public channel not joined, another workspace's chat): 404.
    assert (await api.patch(f"/api/chats/{direct}/settings", {"muted": True}, token=bob.token)).status == 404
    assert (await api.patch(f"/api/chats/{channel}/settings", {"muted": True}, token=cy.token)).status == 404
    assert (await api.patch(f"/api/chats/{group}/settings", {"muted": True}, token=zed.token)).status == 404
    assert (await api.patch(f"/api/chats/{new_id()}/settings", {"muted": True}, token=bob.token)).status == 404
    for bad in ({}, {"notify": "loud"}, {"muted": "yes"}, {"muted": True, "colour": "red"}, {"notify": None}):
        reply = await api.patch(f"/api/chats/{group}/settings", bad, token=bob.token)
        assert reply.status == 422 and reply.error_code == "validation_failed", (bad, reply.body)
    assert (await api.patch(f"/api/chats/{group}/settings", {"muted": True})).status == 401


async def test_the_settings_event_reaches_only_the_users_own_streams(world, api, sse):
    _, (ada, bob, cy), _ = await team(world, "ada", "bob", "cy")
    group = await world.chat(ada, bob, cy, type="group")
    bob1, bob2 = await sse(bob.token), await sse(bob.token, token_in_query=True)
    ada1, cy1 = await sse(ada.token), await sse(cy.token)
    reply = await api.patch(f"/api/chats/{group}/settings", {"notify": "none", "muted": True}, token=bob.token)
    assert reply.status == 200
    for stream in (bob1, bob2):
        frames = await stream.wait_count(1, events.CHAT_SETTINGS)
        assert [f.data for f in frames] == [{"chat_id": group, "notify": "none", "muted": True}]
    # A marker published after it reaches everyone: what Ada and Cy would have had came before it.
    marker = await world.send(group, ada, "marker")
    for stream in (ada1, cy1, bob1):
        await stream.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)), message="marker")
    assert ada1.of(events.CHAT_SETTINGS) == [] and cy1.of(events.CHAT_SETTINGS) == []
    # And a stream that resumes from before it gets it replayed, still only Bob's.
    bob3 = await sse(bob.token, last_event_id=str(bob1.events[0].id - 1))
    await bob3.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)), message="replay")
    assert [f.data["notify"] for f in bob3.of(events.CHAT_SETTINGS)] == ["none"]
    ada2 = await sse(ada.token, last_event_id=str(bob1.events[0].id - 1))
    await ada2.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)), message="replay")
    assert ada2.of(events.CHAT_SETTINGS) == []


# -- posting reads the chat -------------------------------------------------------------------------


async def test_posting_marks_the_chat_read_and_tells_the_senders_other_tabs(world, sse):
    _, (ada, bob, cy), _ = await team(world, "ada", "bob", "cy")
    group = await world.chat(ada, bob, cy, type="group")
    elsewhere = await world.chat(bob, cy, type="direct")
    for i in range(3):
        await world.send(group, bob, f"from bob {i}")
    await world.send(elsewhere, cy, "not ada's")
    assert (await summaries(world, ada))[group].unread_count == 3
    ada1, ada2, bob1 = await sse(ada.token), await sse(ada.token), await sse(bob.token)
    mine = await world.send(group, ada, "read them all")
    summary = (await summaries(world, ada))[group]
    assert (summary.unread_count, summary.last_read_seq) == (0, mine["seq"])
    for stream in (ada1, ada2):
        frames = await stream.wait_count(1, events.READ)
        assert [f.data for f in frames] == [{"chat_id": group, "user_id": ada.id, "seq": mine["seq"]}]
        assert [f.event for f in stream.events if f.event != events.PRESENCE] == [events.MESSAGE_CREATED, events.READ]
    # A second message with nothing unread before it moves the mark without an event: no badge to clear.
    second = await world.send(group, ada, "and one more")
    assert (await summaries(world, ada))[group].last_read_seq == second["seq"]
    # Cy still counts them; Bob hears Ada's messages but not her read mark.
    assert (await summaries(world, cy))[group].unread_count == 5
    marker = await world.send(group, cy, "marker")
    for stream in (bob1, ada1, ada2):
        await stream.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)), message="marker")
    assert bob1.of(events.READ) == []
    assert len(ada1.of(events.READ)) == len(ada2.of(events.READ)) == 1
    assert (await summaries(world, bob))[group].unread_count == 3  # Ada's two and Cy's, not his own
    assert (await summaries(world, cy))[group].unread_count == 0  # Cy posted


async def test_a_send_costs_a_fixed_number_of_store_commands_with_and_without_mentions(world):
    """No "@": as before mentions. A direct mention adds its user read, its membership read, the members'
    counter update and its mention document; @channel adds one update of the chat."""
    _, (ada, bob, cy), _ = await team(world, "ada", "bob", "cy")
    chat_ids = [await world.chat(ada, bob, cy, type=kind) for kind in ("group", "public_channel", "private_channel")]
    for i in range(30):
        await world.send(chat_ids[i % 3], [ada, bob, cy][i // 3 % 3], f"@bob @cy history {i}")  # each chat by each of them
    base = [("find", "members"), ("findAndModify", "chats"), ("findAndModify", "members"), ("insert", "outbox"),
            ("insert", "messages")]
    async with world.counting() as (counted, commands):
        for chat_id in chat_ids:
            commands.issued()
            await counted.send(chat_id, ada, "no mention at all")
            assert commands.issued() == base
            await counted.send(chat_id, ada, "thanks @bob!")
            assert sorted(commands.issued()) == sorted(base + [("find", "users"), ("find", "members"),
                                                               ("update", "members"), ("insert", "mentions")])
            await counted.send(chat_id, ada, "@bob and @cy, see @dan")  # two members, one unknown name
            assert sorted(commands.issued()) == sorted(base + [("find", "users")] * 3 + [("find", "members")] * 2
                                                       + [("update", "members"), ("insert", "mentions")])
            await counted.send(chat_id, ada, "@here")
            assert sorted(commands.issued()) == sorted(base + [("findAndModify", "chats")])


# -- usernames --------------------------------------------------------------------------------------


async def _signup(api, **fields):
    body = {"fullname": "Some One", "password": "correct horse battery", **fields}
    body.setdefault("email", f"u{uuid.uuid4().hex[:10]}@example.com")
    return await api.post("/api/signup", body)


async def test_usernames_are_derived_unique_per_workspace_and_numbered_on_collision(api):
    owner = await _signup(api, email=f"Sam.O-K+{uuid.uuid4().hex[:4]}@example.com", workspace=f"w-{uuid.uuid4().hex}")
    assert owner.status == 201
    local = owner.body["user"]["email"].split("@")[0]
    assert owner.body["user"]["username"] == local.replace("+", "")  # lower-cased, "+" dropped
    invite = owner.body["workspace"]["invite_code"]
    names = []
    for _ in range(3):
        reply = await _signup(api, email=f"sam@{uuid.uuid4().hex[:6]}.example.com", invite_code=invite)
        names.append(reply.body["user"]["username"])
    assert names == ["sam", "sam2", "sam3"]
    # Another workspace has its own "sam".
    other = await _signup(api, email=f"sam@{uuid.uuid4().hex[:6]}.example.com", workspace=f"w-{uuid.uuid4().hex}")
    assert other.body["user"]["username"] == "sam"
    # Nothing usable in the local part; a reserved word; a long one.
    assert (await _signup(api, email=f"+++@{uuid.uuid4().hex[:6]}.example.com", invite_code=invite)
            ).body["user"]["username"] == "user"
    assert (await _signup(api, email=f"here@{uuid.uuid4().hex[:6]}.example.com", invite_code=invite)
            ).body["user"]["username"] == "here2"
    long_local = "a" * 40
    first = (await _signup(api, email=f"{long_local}@{uuid.uuid4().hex[:6]}.example.com", invite_code=invite))
    second = (await _signup(api, email=f"{long_local}@{uuid.uuid4().hex[:6]}.example.com", invite_code=invite))
    assert first.body["user"]["username"] == "a" * 32 and second.body["user"]["username"] == "a" * 28 + "2"
    # Given at signup: lower-cased, unique case-insensitively, validated.
    given = await _signup(api, invite_code=invite, username="Grace.H")
    assert given.status == 201 and given.body["user"]["username"] == "grace.h"
    taken = await _signup(api, invite_code=invite, username="GRACE.h")
    assert (taken.status, taken.error_code) == (409, "username_taken")
    assert (await _signup(api, invite_code=invite, username="sam2")).status == 409
    for bad in ("bad name", "", "x" * 33, "émile", "channel", "Everyone"):
        reply = await _signup(api, invite_code=invite, username=bad)
        assert reply.status == 422, (bad, reply.body)
    assert (await _signup(api, workspace=f"w-{uuid.uuid4().hex}", username="sam")).status == 201  # its own workspace
    # In every user payload.
    token = owner.body["access_token"]
    me = (await api.get("/api/users/me", token=token)).body
    assert me["username"] == owner.body["user"]["username"]
    listed = (await api.get("/api/users", token=token)).body
    assert sorted(u["username"] for u in listed) == sorted(
        [owner.body["user"]["username"], "sam", "sam2", "sam3", "user", "here2", "a" * 32, "a" * 28 + "2", "grace.h"])
    paged = (await api.get("/api/users?limit=2", token=token)).body
    assert all(u["username"] for u in paged["users"])


async def test_existing_users_get_a_username_at_start_once(world, deps):
    store = deps.store
    ws = await world.workspace()
    await world.user(ws, "Kept", username="kim")
    now = utcnow()
    old = [{"_id": new_id(), "workspace_id": ws, "fullname": f"Old {i}", "email": email, "password_hash": "x",
            "created_at": now} for i, email in enumerate(["kim@a.example", "Kim@b.example", "lee@c.example",
                                                          "here@d.example"])]
    await store.users.insert_many(old)
    other_ws = await world.workspace()
    elsewhere = {"_id": new_id(), "workspace_id": other_ws, "fullname": "Kim", "email": "kim@e.example",
                 "password_hash": "x", "created_at": now}
    await store.users.insert_one(elsewhere)
    done = await migrate(store)
    assert done["usernames"] == 5
    got = {doc["_id"]: doc["username"] async for doc in store.users.find({"_id": {"$in": [u["_id"] for u in old]}})}
    assert [got[u["_id"]] for u in old] == ["kim2", "kim3", "lee", "here2"]
    assert (await store.users.find_one({"_id": elsewhere["_id"]}))["username"] == "kim"
    assert (await migrate(store))["usernames"] == 0  # idempotent
    # A migrated user is mentionable.
    chat = await world.chat(world.owners[ws], await world.user(ws, "New", username="newbie"))
    await world.services.chats.add_members(world.owners[ws].identity, chat, _members([old[2]["_id"]]))
    sent = await world.send(chat, world.owners[ws], "@lee welcome")
    assert sent["mentions"] == [old[2]["_id"]]


def _members(user_ids):
    from app.schemas.chats import MembersAddIn

    return MembersAddIn(user_ids=user_ids)
