"""Unread counts, last messages and member counts kept at write time, checked against the messages themselves."""

import asyncio
import random

import pytest

from app.schemas.chats import DIRECT, GROUP
from app.services import sequence as sequence_module
from app.services.messages import MessageDraft
from app.services.migrations import migrate
from app.store import new_id, utcnow

pytestmark = pytest.mark.gen_test(timeout=120)


async def brute_force(store, user_id):
    """{chat_id: others' non-deleted messages above the user's mark}, from every message of every chat of theirs."""
    counts = {}
    async for member in store.members.find({"user_id": {"$eq": user_id}}):
        mark = member.get("last_read_seq", 0)
        messages = await store.messages.find({"chat_id": {"$eq": member["chat_id"]}}).to_list()
        counts[member["chat_id"]] = sum(
            1 for doc in messages if doc["seq"] > mark and not doc.get("deleted") and doc.get("sender_id") != user_id
            and doc.get("kind") != "system"  # joined, renamed…: never unread (contract section 15)
        )
    return counts


async def check(world, *users):
    """Every user's chat list against the brute force: unread counts, last messages, member counts."""
    store = world.store
    for user in users:
        listed = await world.services.chats.list_mine(user.identity)
        expected = await brute_force(store, user.id)
        assert {chat.id: chat.unread_count for chat in listed} == expected, user.fullname
        for chat in listed:
            last = await store.messages.find_one({"chat_id": {"$eq": chat.id}}, sort=[("seq", -1)])
            if last is None:
                assert chat.last_message is None
            else:
                got = chat.last_message
                assert (got.id, got.seq, got.content, got.deleted, got.edited_at is not None) == (
                    last["_id"], last["seq"], last["content"], bool(last["deleted"]), last["edited_at"] is not None
                ), chat.id
            members = await store.members.find({"chat_id": {"$eq": chat.id}}).to_list()
            assert chat.member_count == len(members)
            if chat.type in (DIRECT, GROUP):
                assert sorted(chat.members) == sorted(doc["user_id"] for doc in members)
            else:
                assert chat.members == []
    return {user.id: await brute_force(store, user.id) for user in users}


async def test_exact_counts_across_chats_with_own_deleted_read_and_gap_messages(world):
    ws = await world.workspace()
    ada, bob, cy, dan = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy", "Dan")]
    group = await world.chat(ada, bob, cy, type="group")
    direct = await world.chat(ada, bob, type="direct")
    private = await world.chat(bob, ada, type="private_channel")
    public = await world.chat(cy, ada, bob, type="public_channel")
    # Another workspace's busy chat beside ours.
    other_ws = await world.workspace()
    eve, fay = await world.user(other_ws, "Eve"), await world.user(other_ws, "Fay")
    elsewhere = await world.chat(eve, fay, type="direct")

    rng = random.Random(12)
    chats = {group: [ada, bob, cy], direct: [ada, bob], private: [ada, bob], public: [ada, bob, cy]}
    sent = {chat_id: [] for chat_id in chats}
    for i in range(60):
        chat_id = rng.choice(list(chats))
        sender = rng.choice(chats[chat_id])
        sent[chat_id].append(await world.send(chat_id, sender, f"m{i} from {sender.fullname}"))
        await world.send(elsewhere, rng.choice([eve, fay]), f"noise {i}")
    # Several chats behind at once, own messages among them; no one has read anything.
    await check(world, ada, bob, cy)

    # Reads: marks moved in some chats, to a message of one's own or of others.
    await world.read(group, ada, sent[group][len(sent[group]) // 2]["seq"])
    await world.read(direct, bob, sent[direct][-1]["seq"])
    await world.read(public, cy, sent[public][3]["seq"])
    await check(world, ada, bob, cy)

    # Deletions above and below the marks, of one's own and (by the owner) of others' messages.
    ada_mark = sent[group][len(sent[group]) // 2]["seq"]
    below = next(m for m in sent[group] if m["seq"] < ada_mark)
    above = [m for m in sent[group] if m["seq"] > ada_mark][:3]
    await world.delete_message(group, ada, below["id"])  # ada owns the group: anyone's message
    for message in above:
        await world.delete_message(group, ada, message["id"])
    own_direct = next(m for m in sent[direct] if m["sender_id"] == ada.id)
    await world.delete_message(direct, ada, own_direct["id"])
    await world.delete_message(group, ada, above[0]["id"])  # again: counted once
    # The last message edited, then deleted.
    last_public = sent[public][-1]
    sender = next(u for u in chats[public] if u.id == last_public["sender_id"])
    await world.edit(public, sender, last_public["id"], "edited last")
    await check(world, ada, bob, cy)
    await world.delete_message(public, sender, last_public["id"])
    await check(world, ada, bob, cy)

    # A gap: a send died after its take; the listing (or the drainer) fills it with a tombstone.
    seq = await world.services.sequence.take(private, ws)
    assert await world.services.sequence.fill_gap(private, seq)
    await check(world, ada, bob)
    await world.send(private, ada, "after the gap")
    # A late joiner of the public channel starts caught up (contract section 15: their mark is on the line
    # saying they joined), the history there to read; what comes after counts.
    await world.services.chats.join(dan.identity, public)
    counts = await check(world, ada, bob, cy, dan)
    assert counts[dan.id][public] == 0
    await world.send(public, cy, "after dan joined")
    counts = await check(world, ada, bob, cy, dan)
    assert counts[dan.id][public] == 1
    # Two users in the same chats see different counts.
    assert counts[ada.id] != counts[bob.id]

    # Reading to the end clears it; then others' messages count again and one's own never.
    await world.read(group, bob, (await world.store.chats.find_one({"_id": group}))["last_seq"])
    await world.send(group, bob, "mine")
    await world.send(group, cy, "theirs")
    counts = await check(world, ada, bob, cy)
    assert counts[bob.id][group] == 1
    # Leaving and being re-added keeps member counts right.
    await world.remove(private, ada, bob)
    await check(world, ada, bob)
    await world.add(private, ada, bob)
    await check(world, ada, bob)


async def test_the_deleted_floor_and_the_own_seqs_cap_keep_counts_exact(world, monkeypatch):
    monkeypatch.setattr(sequence_module, "DELETED_SEQS_MAX", 4)
    monkeypatch.setattr(sequence_module, "OWN_SEQS_MAX", 3)
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    group = await world.chat(ada, bob, cy, type="group")
    messages = []
    for i in range(30):
        messages.append(await world.send(group, [ada, bob, cy][i % 3], f"m{i}"))
    await world.read(group, cy, messages[2]["seq"])
    # Twelve deletions: the floor rises past cy's mark, so cy's count is the one `count` of the range.
    for message in messages[5:17]:
        await world.delete_message(group, ada, message["id"])
    chat = await world.store.chats.find_one({"_id": group})
    assert chat["deleted_floor"] > messages[2]["seq"] and len(chat["deleted_seqs"]) <= 4
    assert chat["deleted_total"] == 12
    # Bob has sent 10 messages without reading: past the cap his mark moved to his own message.
    bob_member = await world.store.members.find_one({"chat_id": {"$eq": group}, "user_id": {"$eq": bob.id}})
    assert bob_member["last_read_seq"] > 0 and len(bob_member["own_seqs"]) <= 3
    await check(world, ada, bob, cy)
    await world.read(group, ada, messages[20]["seq"])
    await world.delete_message(group, ada, messages[25]["id"])
    await check(world, ada, bob, cy)


async def test_concurrent_sends_reads_and_deletes_leave_exact_counts(world):
    ws = await world.workspace()
    users = [await world.user(ws, f"U{i}") for i in range(4)]
    chats = [await world.chat(users[0], *users[1:], type="group"),
             await world.chat(users[1], users[0], users[2], type="private_channel")]
    members = {chats[0]: users, chats[1]: [users[1], users[0], users[2]]}

    async def chatter(user, rounds):
        rng = random.Random(user.id)
        for i in range(rounds):
            chat_id = rng.choice([c for c in chats if user in members[c]])
            message = await world.send(chat_id, user, f"{user.fullname} {i}")
            if i % 4 == 3:
                await world.read(chat_id, user, message["seq"] - rng.randint(0, 3))
            if i % 5 == 4:
                await world.delete_message(chat_id, user, message["id"])

    await asyncio.gather(*(chatter(user, 15) for user in users))
    await check(world, *users)


async def test_the_chat_list_reads_two_queries_whatever_the_number_of_chats(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat_ids = [await world.chat(ada, bob, type="private_channel") for _ in range(25)]
    for chat_id in chat_ids[::2]:
        await world.send(chat_id, bob, "hello")
    async with world.counting() as (counted, commands):
        listed = await counted.services.chats.list_mine(ada.identity)
        reads = [(name, target) for name, target in commands.issued()
                 if name in ("find", "aggregate", "count", "getMore")]
    assert len(listed) == 26 and sum(chat.unread_count for chat in listed) == 13  # and the workspace's #general
    assert reads == [("find", "members"), ("find", "chats")], reads


async def test_a_send_and_a_read_keep_the_counters_with_a_fixed_number_of_store_commands(world):
    """The send path before counters was a membership read, the $inc, the outbox entry and the insert
    (+ a share of a batched outbox delete); counters add the sender's membership update, nothing else
    (since issue 14 a findAndModify: it moves the sender's mark to the message and tells where from)."""
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    chat_ids = [await world.chat(ada, bob, cy, type=kind) for kind in ("group", "public_channel", "private_channel")]
    for i in range(60):  # history in every chat, by everyone
        await world.send(chat_ids[i % 3], [ada, bob, cy][i // 3 % 3], f"before {i}")
    async with world.counting() as (counted, commands):
        for chat_id in chat_ids:
            commands.issued()
            sent = await counted.send(chat_id, ada, "counted")
            assert commands.issued() == [("find", "members"), ("findAndModify", "chats"),
                                         ("findAndModify", "members"), ("insert", "outbox"), ("insert", "messages")]
            await counted.read(chat_id, bob, sent["seq"])
            assert sorted(commands.issued()) == [("find", "chats"), ("find", "members"), ("insert", "outbox"),
                                                 ("update", "members")]
    await check(world, ada, bob, cy)


async def test_append_many_writes_what_sends_write_and_keeps_the_counters(world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    group = await world.chat(ada, bob, cy, type="group")
    sent = await world.send(group, ada, "by send")
    chat = await world.store.chats.find_one({"_id": group})
    drafts = [MessageDraft(sender_id=[ada, bob][i % 2].id, content=f"bulk {i}") for i in range(40)]
    out = await world.services.messages.append_many(chat, drafts)
    assert [m.seq for m in out] == list(range(2, 42))
    by_send = await world.store.messages.find_one({"_id": sent["id"]})
    by_bulk = await world.store.messages.find_one({"_id": out[0].id})
    assert set(by_send) == set(by_bulk) and by_bulk["ord"] == 2
    chat = await world.store.chats.find_one({"_id": group})
    assert chat["last_seq"] == chat["msg_count"] == 41
    counts = await check(world, ada, bob, cy)
    assert counts[cy.id][group] == 41
    # Posting reads the chat: Cy's mark moves to the message, Ada's and Bob's counts gain it.
    await world.send(group, cy, "after the bulk")
    after = await check(world, ada, bob, cy)
    assert after[cy.id][group] == 0
    assert (after[ada.id][group], after[bob.id][group]) == (counts[ada.id][group] + 1, counts[bob.id][group] + 1)


async def test_migration_builds_the_counters_of_chats_written_before_them(world, deps):
    """Documents exactly as the code before counters wrote them; then the start-up migration."""
    store = deps.store
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    now = utcnow()
    chats = {}
    for type_, people in (("group", [ada, bob, cy]), ("private_channel", [ada, bob]), ("direct", [ada, bob])):
        chat_id = new_id()
        chats[chat_id] = people
        doc = {"_id": chat_id, "workspace_id": ws, "type": type_, "name": None if type_ != "private_channel" else
               f"old-{chat_id}", "description": "", "owner_id": ada.id, "last_seq": 0, "last_message_at": now,
               "created_at": now, "updated_at": now}
        if type_ == "direct":
            doc["direct_key"] = ":".join(sorted([ada.id, bob.id]))
        elif type_ == "private_channel":
            doc["name_key"] = doc["name"].casefold()
        await store.members.insert_many([
            {"_id": new_id(), "chat_id": chat_id, "user_id": u.id, "workspace_id": ws,
             "role": "owner" if u is ada else "member", "last_read_seq": 0, "joined_at": now}
            for u in people
        ])
        await store.chats.insert_one(doc)
        rng = random.Random(chat_id)
        for seq in range(1, 21):
            await store.messages.insert_one({
                "_id": new_id(), "chat_id": chat_id, "seq": seq, "sender_id": rng.choice(people).id,
                "content": f"old {seq}", "files": [], "reply_to": None, "created_at": now, "edited_at": None,
                "deleted": seq % 7 == 0, "version": new_id(),
            })
        await store.messages.insert_one({
            "_id": new_id(), "chat_id": chat_id, "seq": 21, "sender_id": None, "content": "", "files": [],
            "reply_to": None, "created_at": now, "edited_at": None, "deleted": True, "gap": True,
        })
        await store.chats.update_one({"_id": chat_id}, {"$set": {"last_seq": 21}})
        await store.members.update_one({"chat_id": {"$eq": chat_id}, "user_id": {"$eq": bob.id}},
                                       {"$set": {"last_read_seq": 9}})

    assert (await migrate(store))["chats"] == 3
    assert await migrate(store) == {"chats": 0, "members": 0, "users": 0, "mentions": 0, "usernames": 0}  # idempotent
    await check(world, ada, bob, cy)
    # And it goes on right with the new code: sends, reads, deletes.
    group = next(chat_id for chat_id, people in chats.items() if len(people) == 3)
    message = await world.send(group, cy, "new")
    await world.read(group, bob, 15)
    await world.delete_message(group, cy, message["id"])
    await world.send(group, bob, "newer")
    await check(world, ada, bob, cy)
