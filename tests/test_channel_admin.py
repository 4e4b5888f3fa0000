"""Channel administration (contract section 15): roles and ownership, archive, topic, default channels,
system messages that are never unread."""

import pytest

from app import events
from app.schemas.chats import ChatUpdateIn
from app.services.chats import ensure_default_channels
from app.services.sequence import count_unread, unread_count
from tests.support.chats import events_of

pytestmark = pytest.mark.gen_test(timeout=60)


async def chats_of(api, user):
    reply = await api.get("/api/chats", token=user.token)
    assert reply.status == 200, reply.body
    return reply.body


async def messages_of(api, user, chat_id):
    reply = await api.get(f"/api/chats/{chat_id}/messages", token=user.token)
    assert reply.status == 200, reply.body
    return reply.body["messages"]


def systems(messages):
    return [(m["system"]["type"], m["sender_id"], m["system"]["user_ids"], m["system"].get("name"))
            for m in messages if m["kind"] == "system"]


async def general_of(api, user):
    return next(c for c in await chats_of(api, user) if c["name"] == "general")


async def test_a_workspace_is_made_with_general_and_joiners_join_every_default_channel(api, world):
    ws = await world.workspace()
    owner = world.owners[ws]
    general = await general_of(api, owner)
    assert general["type"] == "public_channel" and general["default"] is True and general["owner_id"] == owner.id
    assert (await api.post(f"/api/chats/{general['id']}/messages", {"content": "welcome all"},
                           token=owner.token)).status == 201
    bob = await world.user(ws, "Bob")
    random = await api.post("/api/chats", {"type": "public_channel", "name": "random"}, token=bob.token)
    private = await api.post("/api/chats", {"type": "private_channel", "name": "secret"}, token=owner.token)
    not_yet = await api.post("/api/chats", {"type": "public_channel", "name": "later"}, token=owner.token)
    # Only the workspace's owner chooses default channels, only public ones; a member need not manage it.
    path = f"/api/chats/{random.body['id']}"
    denied = await api.patch(path, {"default": True}, token=bob.token)
    assert denied.status == 403
    made = await api.patch(path, {"default": True}, token=owner.token)
    assert made.status == 200 and made.body["default"] is True
    wrong = await api.patch(f"/api/chats/{private.body['id']}", {"default": True}, token=owner.token)
    assert wrong.status == 422 and "default" in wrong.body["error"]["fields"]
    # Another workspace beside ours, with its own #general.
    other = await world.workspace()
    assert (await general_of(api, world.owners[other]))["id"] != general["id"]

    dave = await world.user(ws, "Dave")
    mine = {c["name"]: c for c in await chats_of(api, dave)}
    assert set(mine) == {"general", "random"}, mine  # not #later, not the other workspace's
    assert mine["general"]["unread_count"] == 0  # he starts caught up, the history before him is there
    history = await messages_of(api, dave, general["id"])
    assert [m["content"] for m in history if m["kind"] == "user"] == ["welcome all"]
    assert systems(history)[-1] == ("joined", dave.id, [dave.id], None)
    assert [m["seq"] for m in history] == list(range(1, len(history) + 1))
    assert not_yet.status == 201 and dave.id not in [m["user_id"] for m in (
        await api.get(f"/api/chats/{not_yet.body['id']}/members", token=owner.token)).body]

    # A default channel that stops being one is not joined by the next user.
    assert (await api.patch(path, {"default": False}, token=owner.token)).body["default"] is False
    erin = await world.user(ws, "Erin")
    assert {c["name"] for c in await chats_of(api, erin)} == {"general"}


async def test_roles_ownership_transfer_and_the_owner_must_transfer_before_leaving(api, world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    chat_id = await world.chat(ada, bob, cy, type="private_channel", name="plans")
    direct = await world.chat(ada, bob, type="direct")
    members = f"/api/chats/{chat_id}/members"

    assert (await api.patch(f"{members}/{cy.id}", {"role": "admin"}, token=bob.token)).status == 403
    made = await api.patch(f"{members}/{bob.id}", {"role": "admin"}, token=ada.token)
    assert made.status == 200 and made.body["user_id"] == bob.id and made.body["role"] == "admin"
    # An admin is still not the owner: roles are the owner's alone.
    assert (await api.patch(f"{members}/{cy.id}", {"role": "admin"}, token=bob.token)).status == 403
    bad = await api.patch(f"{members}/{cy.id}", {"role": "king"}, token=ada.token)
    assert bad.status == 422 and "role" in bad.body["error"]["fields"]
    assert (await api.patch(f"{members}/000000000000000000000000", {"role": "admin"}, token=ada.token)).status == 404
    outsider = await world.user(ws, "Otto")
    assert (await api.patch(f"{members}/{cy.id}", {"role": "admin"}, token=outsider.token)).status == 404
    dm = await api.patch(f"/api/chats/{direct}/members/{bob.id}", {"role": "admin"}, token=ada.token)
    assert dm.status == 422
    # A direct chat shows no owner: two people alike.
    assert {m["role"] for m in (await api.get(f"/api/chats/{direct}/members", token=bob.token)).body} == {"member"}

    leave = await api.delete(f"{members}/{ada.id}", token=ada.token)
    assert leave.status == 409 and leave.error_code == "owner_must_transfer"
    demote = await api.patch(f"{members}/{ada.id}", {"role": "member"}, token=ada.token)
    assert demote.status == 409 and demote.error_code == "owner_must_transfer"

    moved = await api.patch(f"{members}/{cy.id}", {"role": "owner"}, token=ada.token)
    assert moved.status == 200 and moved.body["role"] == "owner"
    roles = {m["user_id"]: m["role"] for m in (await api.get(members, token=ada.token)).body}
    assert roles == {ada.id: "admin", bob.id: "admin", cy.id: "owner"}
    assert (await api.get(f"/api/chats/{chat_id}", token=bob.token)).body["owner_id"] == cy.id
    updated = await events_of(world.bus, events.MEMBER_UPDATED, chat_id)
    assert [e.data for e in updated][-1] == {"chat_id": chat_id, "user_id": cy.id, "role": "owner",
                                             "owner_id": cy.id, "previous_owner_id": ada.id}
    assert (await api.patch(f"{members}/{bob.id}", {"role": "member"}, token=ada.token)).status == 403  # not owner

    assert (await api.delete(f"{members}/{ada.id}", token=ada.token)).status == 204
    assert (await api.delete(f"{members}/{cy.id}", token=bob.token)).status == 403  # the owner is not removed
    assert (await api.delete(f"{members}/{bob.id}", token=cy.token)).status == 204
    lines = systems(await messages_of(api, cy, chat_id))
    assert lines == [("left", ada.id, [ada.id], None), ("removed", cy.id, [bob.id], None)]
    # The owner alone may still delete the chat.
    assert (await api.delete(f"/api/chats/{chat_id}", token=cy.token)).status == 204


async def test_an_archived_chat_is_read_only_and_listed_last(api, world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat_id = await world.chat(ada, bob, type="public_channel", name="old-project")
    quiet = await world.chat(ada, bob)
    sent = await world.send(chat_id, bob, "before the archive")
    await world.send(quiet, bob, "elsewhere")

    assert (await api.post(f"/api/chats/{chat_id}/archive", token=bob.token)).status == 403  # a plain member
    done = await api.post(f"/api/chats/{chat_id}/archive", token=ada.token)
    assert done.status == 200 and done.body["archived"] is True
    assert (await api.post(f"/api/chats/{chat_id}/archive", token=ada.token)).body["archived"] is True  # again

    base = f"/api/chats/{chat_id}"
    refused = [
        await api.post(f"{base}/messages", {"content": "after"}, token=bob.token),
        await api.patch(f"{base}/messages/{sent['id']}", {"content": "edited"}, token=bob.token),
        await api.delete(f"{base}/messages/{sent['id']}", token=bob.token),
        await api.post(f"{base}/typing", token=bob.token),
        await api.patch(base, {"name": "renamed"}, token=ada.token),
        await api.patch(base, {"topic": "a topic"}, token=ada.token),
    ]
    assert [(r.status, r.error_code) for r in refused] == [(403, "chat_archived")] * len(refused)
    cy = await world.user(ws, "Cy")
    assert (await api.post(f"{base}/join", token=cy.token)).error_code == "chat_archived"
    assert (await api.post(f"{base}/members", {"user_ids": [cy.id]}, token=ada.token)).error_code == "chat_archived"
    # Still readable; the archive line is the newest activity, and yet the chat is listed last.
    listed = await chats_of(api, bob)
    assert listed[-1]["id"] == chat_id and listed[-1]["archived"] is True
    assert [c["archived"] for c in listed[:-1]] == [False] * (len(listed) - 1)
    assert systems(await messages_of(api, bob, chat_id)) == [("archived", ada.id, [], None)]

    back = await api.post(f"{base}/unarchive", token=ada.token)
    assert back.status == 200 and back.body["archived"] is False
    assert (await api.post(f"{base}/messages", {"content": "after"}, token=bob.token)).status == 201
    assert (await api.post(f"{base}/join", token=cy.token)).status == 200
    assert [t for t, *_ in systems(await messages_of(api, bob, chat_id))] == ["archived", "unarchived", "joined"]
    direct = await world.chat(ada, bob, type="direct")
    assert (await api.post(f"/api/chats/{direct}/archive", token=ada.token)).status == 422


async def test_topic_and_rename_add_system_lines_with_one_event_each(api, world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat_id = await world.chat(ada, bob, type="public_channel", name="design")
    await world.send(chat_id, bob, "hi")
    base = f"/api/chats/{chat_id}"
    too_long = await api.patch(base, {"topic": "x" * 251}, token=ada.token)
    assert too_long.status == 422 and "topic" in too_long.body["error"]["fields"]
    assert (await api.patch(base, {"topic": "ship it"}, token=bob.token)).status == 403
    topic = await api.patch(base, {"topic": "  Q3 launch  "}, token=ada.token)
    assert topic.status == 200 and topic.body["topic"] == "Q3 launch"
    renamed = await api.patch(base, {"name": "design-team"}, token=ada.token)
    assert renamed.body["name"] == "design-team"
    assert (await api.patch(base, {"description": "no line for this"}, token=ada.token)).status == 200
    assert (await api.get(base, token=bob.token)).body["topic"] == "Q3 launch"

    messages = await messages_of(api, bob, chat_id)
    assert [(m["seq"], m["kind"]) for m in messages] == [(1, "user"), (2, "system"), (3, "system")]
    assert systems(messages) == [("topic", ada.id, [], "Q3 launch"), ("renamed", ada.id, [], "design-team")]
    assert messages[2]["content"] == "renamed the channel to #design-team"
    created = await events_of(world.bus, events.MESSAGE_CREATED, chat_id)
    assert [e.data["seq"] for e in created] == [1, 2, 3]  # one event per message, none twice
    # A system line cannot be edited or deleted, even by its actor.
    line = messages[2]["id"]
    assert (await api.patch(f"{base}/messages/{line}", {"content": "x"}, token=ada.token)).status == 403
    assert (await api.delete(f"{base}/messages/{line}", token=ada.token)).status == 403


async def test_system_messages_are_never_unread(api, world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    chat_id = await world.chat(ada, bob, type="public_channel", name="team")
    first = await world.send(chat_id, ada, "one")
    await world.read(chat_id, bob, first["seq"])
    # Joins, adds, removals, renames and topics by others: none of them is unread for Bob.
    assert (await api.post(f"/api/chats/{chat_id}/join", token=cy.token)).status == 200
    assert (await api.delete(f"/api/chats/{chat_id}/members/{cy.id}", token=ada.token)).status == 204
    assert (await api.post(f"/api/chats/{chat_id}/members", {"user_ids": [cy.id]}, token=ada.token)).status == 200
    assert (await api.patch(f"/api/chats/{chat_id}", {"name": "team-2", "topic": "t"}, token=ada.token)).status == 200
    assert (await api.delete(f"/api/chats/{chat_id}/members/{cy.id}", token=cy.token)).status == 204
    summary = next(c for c in await chats_of(api, bob) if c["id"] == chat_id)
    assert summary["unread_count"] == 0 and summary["last_message"]["kind"] == "system"
    await world.send(chat_id, ada, "two")
    summary = next(c for c in await chats_of(api, bob) if c["id"] == chat_id)
    assert summary["unread_count"] == 1
    # The slow path (a mark below the deleted floor) counts the same way.
    chat = await world.store.chats.find_one({"_id": chat_id})
    member = await world.store.members.find_one({"chat_id": {"$eq": chat_id}, "user_id": {"$eq": bob.id}})
    assert unread_count(chat, member) == await count_unread(world.store, chat, member, bob.id) == 1
    # A read mark onto a system line is an ordinary read.
    line = next(m for m in reversed(await messages_of(api, bob, chat_id)) if m["kind"] == "system")
    assert (await api.post(f"/api/chats/{chat_id}/read", {"seq": line["seq"]}, token=bob.token)).status == 204
    assert next(c for c in await chats_of(api, bob) if c["id"] == chat_id)["unread_count"] == 1
    # The actor's own lines move their mark: Ada has nothing unread.
    assert next(c for c in await chats_of(api, ada) if c["id"] == chat_id)["unread_count"] == 0


async def test_chat_list_and_send_cost_the_same_store_commands(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat_ids = [await world.chat(ada, bob, type="public_channel", name=f"c{i}") for i in range(6)]
    for i, chat_id in enumerate(chat_ids):
        await world.send(chat_id, bob, f"m{i}")
    archived = chat_ids[0]
    await world.services.chats.set_archived(ada.identity, archived, True)
    await world.services.chats.update(ada.identity, chat_ids[1], ChatUpdateIn(name="renamed", topic="new"))
    async with world.counting() as (counted, commands):
        listed = await counted.services.chats.list_mine(ada.identity)
        reads = [(name, target) for name, target in commands.issued() if name in ("find", "aggregate", "count",
                                                                                 "getMore")]
        assert reads == [("find", "members"), ("find", "chats")], reads
        assert listed[-1].id == archived and len(listed) == 7  # six and #general
        await counted.send(chat_ids[1], bob, "after the system lines")
        assert commands.issued() == [("find", "members"), ("findAndModify", "chats"), ("findAndModify", "members"),
                                     ("insert", "outbox"), ("insert", "messages")]


async def test_start_up_gives_older_workspaces_a_general(api, world):
    store = world.store
    ws = await world.workspace()
    bob = await world.user(ws, "Bob")
    owner = world.owners[ws]
    general = await general_of(api, owner)
    # A workspace as an older version left it: no default channels, no #general.
    await api.delete(f"/api/chats/{general['id']}", token=owner.token)
    await store.workspaces.update_one({"_id": ws}, {"$unset": {"default_chat_ids": ""}})
    # And one that had a public #general of its own already.
    ws2 = await world.workspace()
    kept = await general_of(api, world.owners[ws2])
    await store.workspaces.update_one({"_id": ws2}, {"$unset": {"default_chat_ids": ""}})
    await store.chats.update_one({"_id": kept["id"]}, {"$unset": {"default": ""}})

    assert await ensure_default_channels(store) == 2
    assert await ensure_default_channels(store) == 0  # idempotent
    made = await general_of(api, bob)
    assert made["default"] is True and made["owner_id"] == owner.id and made["member_count"] == 2
    assert {c["name"] for c in await chats_of(api, owner)} == {"general"}
    assert (await general_of(api, world.owners[ws2]))["id"] == kept["id"]
    assert (await store.workspaces.find_one({"_id": ws2}))["default_chat_ids"] == [kept["id"]]
    # Users who join later join it.
    dave = await world.user(ws, "Dave")
    assert (await general_of(api, dave))["id"] == made["id"]


async def test_openapi_documents_the_admin_routes(api):
    paths = (await api.get("/api/openapi.json")).body["paths"]
    assert "patch" in paths["/api/chats/{chat_id}/members/{user_id}"]
    assert "post" in paths["/api/chats/{chat_id}/archive"] and "post" in paths["/api/chats/{chat_id}/unarchive"]
