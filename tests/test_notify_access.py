"""Who may open a stream and see who is online; presence; limits; CORS; tokens never in access logs."""

import logging
import time

import pytest

from app import events
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=30)


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": True, "streams_per_user": 3}, "notify": {"keepalive_seconds": 0.3}}


async def test_stream_needs_a_valid_token(world, sse, deps):
    ws = await world.workspace()
    ada = await world.user(ws)
    for token in (None, "not-a-jwt", world.token(ada, ttl=-5)):
        client = await sse(token)
        assert client.status == 401 and client.body["error"]["code"] == "unauthorized", token
    expired = await sse(world.token(ada, ttl=-5))
    assert "expired" in expired.body["error"]["message"]
    ok = await sse(ada.token, token_in_query=True)
    assert ok.status == 200 and ok.headers["content-type"].startswith("text/event-stream")


async def test_streams_per_user_limit(world, sse, notify_app):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    tabs = [await sse(ada.token) for _ in range(3)]
    assert [t.status for t in tabs] == [200, 200, 200]
    refused = await sse(ada.token)
    assert refused.status == 429 and refused.body["error"]["code"] == "too_many_streams"
    assert int(refused.headers["retry-after"]) > 0
    assert (await sse(bob.token)).status == 200  # per user, not global
    tabs[0].close()
    await wait_for(lambda: notify_app.registry.streams_of(ada.id) == 2, message="tab closed")
    assert (await sse(ada.token)).status == 200


async def test_expired_token_ends_the_stream(world, sse):
    ada, bob, chat = await world.pair()
    short = await sse(world.token(bob, ttl=2))
    long = await sse(bob.token)
    started = time.monotonic()
    await short.wait_ended(timeout=10)
    # exp is whole seconds, so a 2 s token may lapse a little over 1 s after the stream opened: not at once, though.
    assert 0.5 < time.monotonic() - started < 5
    message = await world.send(chat, ada, "after expiry")
    await long.wait_for(lambda c: [f.data for f in c.of(events.MESSAGE_CREATED)] == [message])
    assert short.of(events.MESSAGE_CREATED) == []


async def test_presence_online_offline_to_those_sharing_a_chat(world, sse, notify_app):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    # Cy in another workspace: in this one everybody shares its #general (contract section 15).
    cy = await world.user(await world.workspace())
    await world.chat(ada, bob)
    ada_stream, cy_stream = await sse(ada.token), await sse(cy.token)
    bob1 = await sse(bob.token)
    bob2 = await sse(bob.token)
    online = await ada_stream.wait_count(1, events.PRESENCE)
    assert {k: v for k, v in online[0].data.items() if k != "revision"} == {"user_id": bob.id, "status": "online"}
    assert isinstance(online[0].data["revision"], int) and online[0].data["revision"] > 0
    bob1.close()
    bob2.close()
    await ada_stream.wait_count(2, events.PRESENCE)
    assert [f.data["status"] for f in ada_stream.of(events.PRESENCE)] == ["online", "offline"]
    assert ada_stream.of(events.PRESENCE)[1].data["revision"] > online[0].data["revision"]
    # Cy shares no chat with Bob; Bob's second tab made no second "online"; nobody hears their own.
    assert cy_stream.of(events.PRESENCE) == []
    assert all(f.data["user_id"] == bob.id for f in ada_stream.of(events.PRESENCE))


async def test_online_users_is_scoped_to_what_the_caller_may_see(world, sse, notify_api):
    ws, other_ws = await world.workspace(), await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    cy, dan = await world.user(ws, "Cy"), await world.user(ws, "Dan")
    eve = await world.user(other_ws, "Eve")
    chat = await world.chat(ada, bob)
    cy_chat = await world.chat(cy, dan)
    for user in (bob, cy, eve):
        await sse(user.token)

    in_chat = await notify_api.get(f"/api/online-users?chat_id={chat}", token=ada.token)
    assert in_chat.status == 200 and in_chat.body == {"users": [{"id": bob.id, "fullname": "Bob"}]}
    # Everyone who shares a chat with Ada: Bob, and through the workspace's #general Cy too.
    mine = await notify_api.get("/api/online-users", token=ada.token)
    assert [u["fullname"] for u in mine.body["users"]] == ["Bob", "Cy"]
    workspace = await notify_api.get(f"/api/online-users?workspace_id={ws}", token=ada.token)
    assert [u["fullname"] for u in workspace.body["users"]] == ["Bob", "Cy"]
    # Outsiders: a chat they are not in, another workspace, an unknown chat all look the same.
    for path in (f"?chat_id={cy_chat}", f"?workspace_id={other_ws}", "?chat_id=nope"):
        refused = await notify_api.get("/api/online-users" + path, token=ada.token)
        assert refused.status == 404 and refused.error_code == "not_found", path
    assert (await notify_api.get(f"/api/online-users?chat_id={chat}", token=eve.token)).status == 404
    assert (await notify_api.get("/api/online-users")).status == 401
    eve_view = await notify_api.get("/api/online-users", token=eve.token)
    # Only her own workspace's #general: herself, nobody of Ada's workspace.
    assert eve_view.body == {"users": [{"id": eve.id, "fullname": "Eve"}]}


async def test_sse_health_and_metrics(world, sse, notify_api):
    ada, bob, chat = await world.pair()
    await sse(ada.token)
    await sse(ada.token)
    bob_stream = await sse(bob.token)
    health = await notify_api.get("/api/sse/health")
    assert health.body == {"status": "healthy", "service": "notify", "transport": "sse",
                           "connected_users": 2, "connections": 3, "active_chats": 2}  # and their #general
    await world.send(chat, ada, "counted")
    await bob_stream.wait_count(1, events.MESSAGE_CREATED)
    metrics = (await notify_api.get("/metrics")).body.decode()
    assert "fechatter_notify_open_streams 3.0" in metrics
    assert "fechatter_notify_users_online 2.0" in metrics
    assert "fechatter_notify_events_delivered_total" in metrics
    assert "fechatter_notify_delivery_seconds_count" in metrics
    for path, role in (("/health", "notify"),):
        assert (await notify_api.get(path)).body == {"status": "ok", "role": role}
    assert (await notify_api.get("/health/ready")).status == 200


async def test_cors_for_the_api_origin(notify_api, config, world):
    ws = await world.workspace()
    ada = await world.user(ws)
    origin = f"http://localhost:{config.api.port}"
    preflight = await notify_api.call("OPTIONS", "/api/online-users", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = await notify_api.get("/api/online-users", token=ada.token, headers={"Origin": origin})
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    denied = await notify_api.get("/api/online-users", token=ada.token, headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    unauthorized = await notify_api.get("/api/online-users", headers={"Origin": origin})
    assert unauthorized.status == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == origin


async def test_access_log_never_contains_the_token(world, sse, caplog):
    ws = await world.workspace()
    ada = await world.user(ws)
    with caplog.at_level(logging.INFO, logger="fechatter.access"):
        stream = await sse(ada.token, token_in_query=True, last_event_id="0", resume_in_query=True)
        stream.close()
        await wait_for(lambda: any("/events" in r.getMessage() for r in caplog.records), message="access log")
        refused = await sse("bogus." + ada.token, token_in_query=True)
        assert refused.status == 401
        await wait_for(lambda: sum("/events" in r.getMessage() for r in caplog.records) >= 2, message="2 lines")
    lines = [r.getMessage() for r in caplog.records if "/events" in r.getMessage()]
    assert all("access_token=[redacted]" in line for line in lines), lines
    assert not any(ada.token in line or ada.token[-20:] in line for line in lines)


async def test_keepalive_pings_every_interval(world, sse):
    ws = await world.workspace()
    ada = await world.user(ws)
    stream = await sse(ada.token)
    started = time.monotonic()
    await stream.wait_for(lambda c: c.pings >= 3, message="3 pings")
    # 0.3 s apart: three pings take at least 0.6 s and, with one timer for all streams, not much more.
    assert 0.55 < time.monotonic() - started < 3


async def test_an_older_presence_announcement_is_not_delivered(world, sse, notify_app):
    """Two processes may publish one user's changes out of order; the record's revision wins."""
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, bob)
    ada_stream = await sse(ada.token)

    async def announce(status, revision):
        await world.bus.announce_presence(bob.id, status, revision, workspace_id=ws, chat_ids=[chat])

    await announce("online", 7)
    await announce("offline", 5)  # made before the one above, published after it
    await announce("offline", 9)

    def changes(c):  # the changes of one tick come in one frame: {users: [...]} (notify coalesces them)
        return [(u["status"], u["revision"]) for f in c.of(events.PRESENCE) for u in f.data.get("users", [f.data])]

    await ada_stream.wait_for(lambda c: ("offline", 9) in changes(c), message="the newest presence")
    marker = await world.send(chat, bob, "after the announcements")
    await ada_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED), message="the marker")
    # Coalesced in one tick, only the newest change of a user is sent; never the older revision 5.
    assert changes(ada_stream) in ([("online", 7), ("offline", 9)], [("offline", 9)])
    assert ada_stream.of(events.MESSAGE_CREATED)[0].data == marker
