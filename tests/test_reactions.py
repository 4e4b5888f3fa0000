"""Reactions: idempotent PUT/DELETE, the aggregate on every page, events on every tab, the bounds, and the cost."""

from __future__ import annotations

import urllib.parse

import msgspec
import pytest

from app import events
from app.schemas.messages import MentionsQuery, MessageListQuery, SearchQuery
from app.services.reactions import MAX_EMOJI_PER_MESSAGE, is_emoji
from tests.support.api import wait_for
from tests.support.chats import create_chat, events_of, make_team

pytestmark = pytest.mark.gen_test(timeout=60)

# Twenty-one distinct emoji, of every shape: one past the bound.
EMOJI = ["👍", "👍🏽", "❤️", "❤", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "1️⃣", "#⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👩🏽‍💻", "🧑‍🤝‍🧑", "©️", "™",
         "🎉", "+1", "-1", "thumbs_up", "tada", "a", "eyes"]


def reaction_path(chat_id: str, message_id: str, emoji: str, *, raw: bool = False) -> str:
    segment = emoji if raw else urllib.parse.quote(emoji, safe="")
    return f"/api/chats/{chat_id}/messages/{message_id}/reactions/{segment}"


async def put(api, who, chat_id, message_id, emoji, **kw):
    return await api.call("PUT", reaction_path(chat_id, message_id, emoji, **kw), token=who["token"])


async def delete(api, who, chat_id, message_id, emoji):
    return await api.delete(reaction_path(chat_id, message_id, emoji), token=who["token"])


async def send(api, who, chat_id, content):
    reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": content}, token=who["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def listed(api, who, chat_id) -> dict[str, dict]:
    reply = await api.get(f"/api/chats/{chat_id}/messages", token=who["token"])
    assert reply.status == 200, reply.body
    return {m["id"]: m for m in reply.body["messages"]}


def fold(frames, message_id: str) -> dict[str, list[str]]:
    """A client's view of one message's reactions, from the events its stream got alone."""
    state: dict[str, list[str]] = {}
    for frame in frames:
        data = frame.data
        if data["message_id"] != message_id:
            continue
        users = state.setdefault(data["emoji"], [])
        if frame.event == events.REACTION_ADDED and data["user_id"] not in users:
            users.append(data["user_id"])
        elif frame.event == events.REACTION_REMOVED and data["user_id"] in users:
            users.remove(data["user_id"])
    return {emoji: users for emoji, users in state.items() if users}


def test_what_an_emoji_is():
    for good in EMOJI[:14] + ["🫶🏿", "🧔‍♂️", "👁️‍🗨️", "🇺🇳"]:
        assert is_emoji(good), good
    for bad in ["a", "1", "©", "\u200d", "👍\u200d", "\u200d👍", "👍👍", "🇫", "x👍", "👍 ", "\ufe0f", "🏽", "",
                "\u202e👍", "👍\ufe0f\ufe0f", "🏴\U000e0067", "👍" + "\u200d👍" * 8, "<", "\x00"]:
        assert not is_emoji(bad), repr(bad)


async def test_put_and_delete_are_idempotent_publish_once_and_show_on_the_listing(api, deps):
    t = await make_team(api)
    extra = await api.signup(invite_code=t.owner["workspace"]["invite_code"], fullname="Ed Extra")
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    beside = (await create_chat(api, t.member, "group", [t.owner, extra]))["id"]  # another chat of theirs
    first, second = await send(api, t.owner, group, "first"), await send(api, t.member, group, "second")
    elsewhere = await send(api, extra, beside, "beside")
    assert (await put(api, extra, beside, elsewhere["id"], "👀")).status == 204

    reply = await put(api, t.owner, group, first["id"], "👍")
    assert reply.status == 204 and reply.body == b""
    assert (await put(api, t.owner, group, first["id"], "👍")).status == 204  # again: nothing changes
    assert (await put(api, t.member, group, first["id"], "👍")).status == 204
    assert (await put(api, t.member, group, first["id"], "+1")).status == 204
    assert (await put(api, t.outsider, group, second["id"], "🎉")).status == 204
    # Another chat's message through this chat's path: not here.
    assert (await put(api, t.owner, group, elsewhere["id"], "👍")).status == 404

    by_member = await listed(api, t.member, group)
    assert by_member[first["id"]]["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True, "user_ids": [t.owner["id"], t.member["id"]]},
        {"emoji": "+1", "count": 1, "me": True, "user_ids": [t.member["id"]]},
    ]
    assert by_member[second["id"]]["reactions"] == [
        {"emoji": "🎉", "count": 1, "me": False, "user_ids": [t.outsider["id"]]}]
    assert by_member[first["id"]]["pinned"] is False
    by_owner = await listed(api, t.owner, group)
    assert [r["me"] for r in by_owner[first["id"]]["reactions"]] == [True, False]

    assert (await delete(api, t.owner, group, first["id"], "👍")).status == 204
    assert (await delete(api, t.owner, group, first["id"], "👍")).status == 204  # again: nothing changes
    assert (await delete(api, t.owner, group, first["id"], "🎉")).status == 204  # never added: nothing either
    assert (await listed(api, t.owner, group))[first["id"]]["reactions"] == [
        {"emoji": "👍", "count": 1, "me": False, "user_ids": [t.member["id"]]},
        {"emoji": "+1", "count": 1, "me": False, "user_ids": [t.member["id"]]},
    ]
    # Re-added, it goes last: the row is ordered by each emoji's first reaction.
    assert (await put(api, t.owner, group, first["id"], "👍")).status == 204
    assert (await delete(api, t.member, group, first["id"], "👍")).status == 204
    assert [r["emoji"] for r in (await listed(api, t.owner, group))[first["id"]]["reactions"]] == ["+1", "👍"]

    def data(who, message, emoji):
        return {"chat_id": group, "message_id": message["id"], "emoji": emoji, "user_id": who["id"]}

    removed = await wait_for(lambda: _with_count(events_of(deps.bus, events.REACTION_REMOVED, group), 2),
                             message="two reaction.removed")
    assert [e.data for e in removed] == [data(t.owner, first, "👍"), data(t.member, first, "👍")]
    added = await events_of(deps.bus, events.REACTION_ADDED, group)
    assert [e.data for e in added] == [data(t.owner, first, "👍"), data(t.member, first, "👍"),
                                       data(t.member, first, "+1"), data(t.outsider, second, "🎉"),
                                       data(t.owner, first, "👍")]
    assert {e.actor_id for e in added} == {t.owner["id"], t.member["id"], t.outsider["id"]}


async def _with_count(found, n):
    found = await found
    return found if len(found) >= n else None


async def test_two_tabs_of_one_user_see_the_same_reaction_state(world, sse):
    ws = await world.workspace()
    ada, bob, cy, dan = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy", "Dan")]
    chat = await world.chat(ada, bob, cy)
    other = await world.chat(bob, dan, type="private_channel")
    message = await world.send(chat, ada, "react to me")
    await world.send(other, dan, "not this one")
    tab1, tab2 = await sse(bob.token), await sse(bob.token, token_in_query=True)
    reactions = world.services.reactions
    await reactions.add(ada.identity, chat, message["id"], "👍")
    await reactions.add(bob.identity, chat, message["id"], "🎉")  # from tab 1
    await reactions.add(bob.identity, chat, message["id"], "🎉")  # from tab 2, the same: no event
    await reactions.add(cy.identity, chat, message["id"], "👍")
    await reactions.remove(bob.identity, chat, message["id"], "🎉")
    await reactions.add(bob.identity, chat, message["id"], "👍")
    await reactions.add(dan.identity, other, (await world.send(other, dan, "x"))["id"], "👍")  # Bob's other chat
    marker = await world.send(chat, cy, "marker")
    kinds = (events.REACTION_ADDED, events.REACTION_REMOVED)
    for tab in (tab1, tab2):
        await tab.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)), message="marker")
    assert [(f.id, f.event, f.data) for f in tab1.of(*kinds)] == [(f.id, f.event, f.data) for f in tab2.of(*kinds)]
    assert len(tab1.of(events.REACTION_ADDED)) == 5 and len(tab1.of(events.REACTION_REMOVED)) == 1
    page = await world.services.messages.list(bob.identity, chat, MessageListQuery())
    shown = next(m for m in page.messages if m.id == message["id"])
    expected = {r.emoji: r.user_ids for r in shown.reactions}
    assert fold(tab1.of(*kinds), message["id"]) == fold(tab2.of(*kinds), message["id"]) == expected
    assert expected == {"👍": [ada.id, cy.id, bob.id]}
    assert [r.me for r in shown.reactions] == [True]


async def test_a_reaction_by_a_non_member_is_404_and_changes_nothing(api, deps):
    t = await make_team(api)
    extra = await api.signup(invite_code=t.owner["workspace"]["invite_code"], fullname="Ed Extra")
    group = (await create_chat(api, t.owner, "group", [t.member, extra]))["id"]
    public = (await create_chat(api, t.owner, "public_channel", [t.member], name="lobby"))["id"]
    message = await send(api, t.member, group, "members only")
    announcement = await send(api, t.owner, public, "hello all")
    assert (await put(api, t.member, group, message["id"], "👍")).status == 204
    for who in (t.outsider, t.stranger):  # same workspace but not a member; another workspace
        for reply in (await put(api, who, group, message["id"], "👍"), await delete(api, who, group, message["id"], "👍")):
            assert reply.status == 404 and reply.body["error"]["code"] == "not_found", reply.body
    # A public channel they could join is visible: as for a send, they are told to join first.
    reply = await put(api, t.outsider, public, announcement["id"], "👍")
    assert reply.status == 403, reply.body
    # Ids that name nothing, and a deleted message (a tombstone shows nothing to react to): 404.
    for message_id in ("0" * 24, "not-an-id", "%00"):
        assert (await put(api, t.member, group, message_id, "%F0%9F%91%8D", raw=True)).status == 404
    assert (await api.delete(f"/api/chats/{group}/messages/{message['id']}", token=t.member["token"])).status == 204
    assert (await put(api, t.owner, group, message["id"], "🎉")).status == 404
    assert (await delete(api, t.member, group, message["id"], "👍")).status == 404
    added = await wait_for(lambda: _with_count(events_of(deps.bus, events.REACTION_ADDED), 1), message="the one")
    assert [e.data["user_id"] for e in added] == [t.member["id"]]
    assert await events_of(deps.bus, events.REACTION_REMOVED) == []


async def test_twenty_distinct_emoji_at_most(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    message = await send(api, t.owner, group, "react away")
    for i, emoji in enumerate(EMOJI[:MAX_EMOJI_PER_MESSAGE]):
        who = [t.owner, t.member, t.outsider][i % 3]
        assert (await put(api, who, group, message["id"], emoji)).status == 204, emoji
    reply = await put(api, t.member, group, message["id"], EMOJI[MAX_EMOJI_PER_MESSAGE])
    assert reply.status == 422 and reply.body["error"]["code"] == "too_many_reactions", reply.body
    assert "emoji" in reply.body["error"]["fields"]
    # One more reactor on an emoji it carries is no new emoji.
    assert (await put(api, t.member, group, message["id"], EMOJI[0])).status == 204
    shown = (await listed(api, t.member, group))[message["id"]]["reactions"]
    assert [r["emoji"] for r in shown] == EMOJI[:MAX_EMOJI_PER_MESSAGE]
    assert shown[0]["count"] == 2 and sum(r["count"] for r in shown) == MAX_EMOJI_PER_MESSAGE + 1
    # An emoji that nobody carries any more frees its place.
    assert (await delete(api, t.member, group, message["id"], EMOJI[1])).status == 204
    assert (await put(api, t.owner, group, message["id"], EMOJI[MAX_EMOJI_PER_MESSAGE])).status == 204
    added = await wait_for(lambda: _with_count(events_of(deps.bus, events.REACTION_ADDED, group), 22),
                           message="22 reaction.added")
    assert EMOJI[MAX_EMOJI_PER_MESSAGE] in {e.data["emoji"] for e in added[-1:]} and len(added) == 22


async def test_odd_emoji_path_segments_are_refused_never_a_5xx(api):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    message = await send(api, t.owner, group, "paths")
    for good in EMOJI[:14] + ["+1", "thumbs_up", "x" * 32]:
        assert (await put(api, t.member, group, message["id"], good)).status == 204, good
        assert (await delete(api, t.member, group, message["id"], good)).status == 204, good
    refused = ["a b", "👍👍", "\u200d", "<script>", "Thumbs", "x" * 33, "👍\u200d", "\u202e", "..", "é", "%",
               "\x00", "\t", "👍/", "\ufeff", "a%b"]
    for bad in refused:
        reply = await put(api, t.member, group, message["id"], bad)  # percent-encoded: "/" is %2F
        assert reply.status == 422 and reply.body["error"]["fields"].keys() == {"emoji"}, (bad, reply.body)
    for raw in ("%F0%9F", "%ff%fe", "%2e%2e", "%2F", "%zz", "%", "%25", "%E2%80%8D"):
        reply = await put(api, t.member, group, message["id"], raw, raw=True)
        assert reply.status in (404, 422) and reply.body["error"]["code"] in ("not_found", "validation_failed"), \
            (raw, reply.status, reply.body)
    assert (await listed(api, t.member, group))[message["id"]]["reactions"] == []


async def test_a_page_with_reactions_costs_what_a_plain_page_costs(world):
    ws = await world.workspace()
    people = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy", "Dee")]
    ada = people[0]
    reacted, plain = await world.chat(*people), await world.chat(*people)
    for chat in (reacted, plain):
        for i in range(50):
            sent = await world.send(chat, people[i % 4], f"message {i}")
            if chat == reacted:
                for j, who in enumerate(people[: 1 + i % 4]):
                    await world.services.reactions.add(who.identity, chat, sent["id"], ["👍", "🎉", "eyes"][(i + j) % 3])
                if i % 10 == 0:
                    await world.services.pins.pin(ada.identity, chat, sent["id"])
    async with world.counting() as (counted, commands):
        costs = {}
        for chat in (reacted, plain):
            commands.issued()
            page = await counted.services.messages.list(ada.identity, chat, MessageListQuery(limit=50))
            costs[chat] = sorted(commands.issued())
            assert len(page.messages) == 50
            if chat == reacted:
                assert all(m.reactions for m in page.messages) and sum(m.pinned for m in page.messages) == 5
                assert {len(m.reactions) for m in page.messages} == {1, 2, 3}
            else:
                assert not any(m.reactions or m.pinned for m in page.messages)
        assert costs[reacted] == costs[plain]
        assert costs[plain].count(("find", "message_marks")) == 1, costs[plain]
        # The decoration alone is one read however many messages and reactions the page holds.
        page = await counted.services.messages.list(ada.identity, reacted, MessageListQuery(limit=50))
        commands.issued()
        await counted.services.marks.decorate(page.messages, people[1].id)
        assert commands.issued() == [("find", "message_marks")]
        await counted.services.marks.decorate([m for m in page.messages if False], ada.id)
        assert commands.issued() == []


async def test_search_and_mentions_pages_carry_reactions(world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name, username=name.lower()) for name in ("Ada", "Bob", "Cy")]
    chats = [await world.chat(ada, bob, cy), await world.chat(ada, bob, type="private_channel")]
    sent = [await world.send(chat, ada, f"@bob look at the walrus {i}") for i, chat in enumerate(chats)]
    await world.send(chats[0], cy, "nothing to see")
    await world.services.reactions.add(cy.identity, chats[0], sent[0]["id"], "👀")
    await world.services.reactions.add(bob.identity, chats[1], sent[1]["id"], "eyes")
    await world.services.pins.pin(bob.identity, chats[1], sent[1]["id"])
    found = await world.services.search.search(bob.identity, msgspec.convert({"q": "walrus"}, SearchQuery))
    mentioned = await world.services.mentions.list(bob.identity, MentionsQuery())
    for page in (found.messages, mentioned.messages):
        by_id = {m.id: m for m in page}
        assert set(by_id) == {m["id"] for m in sent}
        assert [(r.emoji, r.count, r.me, r.user_ids) for r in by_id[sent[0]["id"]].reactions] == [("👀", 1, False, [cy.id])]
        assert [(r.emoji, r.me) for r in by_id[sent[1]["id"]].reactions] == [("eyes", True)]
        assert (by_id[sent[0]["id"]].pinned, by_id[sent[1]["id"]].pinned) == (False, True)


def test_every_shape_reactions_and_pins_send_is_an_index_read():
    """The embedded server's plans of each command these routes and the page decoration send (a scan fails)."""
    import datetime
    import uuid

    from pymongo import MongoClient

    from tests.support.plans import PlanProbe, TracedWireServer, with_app_indexes

    server = TracedWireServer().start()
    client = MongoClient(server.uri, tz_aware=True)
    try:
        name = f"rx_{uuid.uuid4().hex[:8]}"
        with_app_indexes(server.uri, name)
        db, probe = client[name], PlanProbe(client, server)
        now = datetime.datetime.now(datetime.timezone.utc)
        db.messages.insert_many([{"_id": f"m{c}-{s}", "chat_id": f"c{c}", "seq": s} for c in range(4) for s in range(1, 80)])
        db.reactions.insert_many([{"_id": f"m{c}-{s} u{u} x", "chat_id": f"c{c}", "message_id": f"m{c}-{s}", "emoji": "x",
                                   "user_id": f"u{u}", "created_at": now} for c in range(4) for s in range(1, 80)
                                  for u in range(3)])
        db.pins.insert_many([{"_id": f"m{c}-{s}", "chat_id": f"c{c}", "message_id": f"m{c}-{s}", "user_id": "u1",
                              "pinned_at": now, "rank": f"{10**6 - s:07d}:m{c}-{s}"} for c in range(4) for s in range(1, 80, 4)])
        db.message_marks.insert_many([{"_id": f"m{c}-{s}", "chat_id": f"c{c}", "reactions": ["x u0", "x u1"]}
                                      for c in range(4) for s in range(1, 80)])
        page = [f"m{c}-{s}" for c in (1, 2) for s in range(10, 35)]
        commands = [
            {"find": "message_marks", "filter": {"_id": {"$in": page}}},
            {"find": "message_marks", "filter": {"_id": "m1-3"}, "limit": 1},
            {"update": "message_marks", "updates": [{"q": {"_id": "m1-3"}, "u": {"$addToSet": {"reactions": "y u2"}}}]},
            {"update": "message_marks", "updates": [{"q": {"_id": "m1-3"}, "u": {"$pull": {"reactions": "y u2"}}}]},
            {"update": "message_marks", "updates": [{"q": {"_id": "m1-3"}, "u": {"$unset": {"pinned_by": ""}}}]},
            {"findAndModify": "message_marks", "query": {"_id": "m1-3"}, "update": {"$addToSet": {"reactions": "z u1"}},
             "new": True},
            {"delete": "reactions", "deletes": [{"q": {"_id": "m1-3 u1 x"}, "limit": 1}]},
            {"delete": "pins", "deletes": [{"q": {"_id": "m1-5"}, "limit": 1}]},
            {"find": "reactions", "filter": {"_id": "m1-3 u1 x"}, "projection": {"_id": 1}, "limit": 1},
            {"find": "messages", "filter": {"_id": "m1-3", "chat_id": {"$eq": "c1"}}, "limit": 1},
            {"find": "messages", "filter": {"_id": {"$in": page[:10]}, "chat_id": {"$eq": "c1"}}},
            {"find": "pins", "filter": {"chat_id": {"$eq": "c1"}}, "sort": {"rank": 1}, "limit": 51},
            {"find": "pins", "filter": {"chat_id": {"$eq": "c1"}, "rank": {"$gt": "0999970"}}, "sort": {"rank": 1},
             "limit": 51},
        ]
        for command in commands:
            probe.plan(db, command).assert_indexed()
        assert len(list(db.message_marks.find({"_id": {"$in": page}}))) == 50
    finally:
        client.close()
        server.stop()
