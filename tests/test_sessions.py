"""logout-all ends every session at once: access tokens on both roles, open streams on every notify process."""

import pytest

from app import events
from app.services.sessions import VALID_AFTER_FIELD, SessionCutoffs
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)


async def _people(api):
    ada = await api.signup(fullname="Ada")
    code = ada["workspace"]["invite_code"]
    bob = await api.signup(invite_code=code, fullname="Bob")
    cy = await api.signup(invite_code=code, fullname="Cy")
    return ada, bob, cy


async def _chat(api, owner, other) -> str:
    reply = await api.post("/api/chats", {"type": "direct", "members": [other["id"]]}, token=owner["token"])
    assert reply.status == 201, reply.body
    return reply.body["id"]


async def test_logout_all_ends_tokens_and_streams_on_both_roles(app, api, notify_api, sse, deps):
    ada, bob, cy = await _people(api)
    ada_chat, bob_chat = await _chat(api, ada, cy), await _chat(api, bob, cy)
    ada_tabs = [await sse(ada["token"], expect=200), await sse(ada["token"], token_in_query=True, expect=200)]
    bob_tab = await sse(bob["token"], expect=200)
    for tab in (*ada_tabs, bob_tab):
        await tab.wait_cursor()
    assert (await notify_api.get("/api/online-users", token=ada["token"])).status == 200

    assert (await api.post("/api/logout-all", token=ada["token"])).status == 204

    # The api: the old access token is refused at once, with the usual 401 a client refreshes on.
    me = await api.get("/api/users/me", token=ada["token"])
    assert me.status == 401 and me.error_code == "unauthorized" and "ended" in me.body["error"]["message"]
    assert (await api.post(f"/api/chats/{ada_chat}/messages", {"content": "x"}, token=ada["token"])).status == 401
    assert (await api.post("/api/refresh", {"refresh_token": ada["refresh_token"]})).status == 401
    stored = await deps.store.users.find_one({"_id": ada["id"]})
    assert isinstance(stored[VALID_AFTER_FIELD], float)  # a number, not a datetime the embedded server stringifies

    # The notify role: both of Ada's streams end, Bob's stays open and keeps receiving.
    for tab in ada_tabs:
        await tab.wait_ended()
    assert not bob_tab.ended.is_set()
    sent = await api.post(f"/api/chats/{bob_chat}/messages", {"content": "still here"}, token=cy["token"])
    assert sent.status == 201
    await bob_tab.wait_for(lambda c: [f.data["id"] for f in c.of(events.MESSAGE_CREATED)] == [sent.body["id"]])
    assert all(f.event != events.SESSIONS_REVOKED for tab in (*ada_tabs, bob_tab) for f in tab.events)
    reopened = await sse(ada["token"])
    assert reopened.status == 401 and reopened.body["error"]["code"] == "unauthorized"
    assert (await notify_api.get("/api/online-users", token=ada["token"])).status == 401

    # A new sign-in works on both roles, straight away.
    again = await api.post("/api/signin", {"email": ada["user"]["email"], "password": ada["password"]})
    assert again.status == 200
    token = again.body["access_token"]
    assert (await api.get("/api/users/me", token=token)).status == 200
    assert (await api.post(f"/api/chats/{ada_chat}/messages", {"content": "back"}, token=token)).status == 201
    fresh = await sse(token, expect=200)
    await fresh.wait_cursor()
    # Bob never signed out: his token still works everywhere.
    assert (await api.get("/api/users/me", token=bob["token"])).status == 200


async def test_the_check_costs_one_read_per_user_not_per_request(app, api):
    ada, bob, _ = await _people(api)
    sessions: SessionCutoffs = app.settings["services"].sessions
    before = sessions.reads
    for _ in range(20):
        assert (await api.get("/api/users/me", token=ada["token"])).status == 200
        assert (await api.get("/api/users/me", token=bob["token"])).status == 200
    assert sessions.reads - before <= 2  # once per user while the cache holds (auth.session_cache_seconds)


async def test_every_api_process_hears_a_logout_all(app, api, deps):
    ada, _, _ = await _people(api)
    other = SessionCutoffs(deps.store, ttl=3600, bus=deps.bus)  # another api process's cache, never re-read
    await other.start()
    try:
        identity = deps.verifier.verify(ada["token"])
        assert await other.live(identity)
        reads = other.reads
        assert (await api.post("/api/logout-all", token=ada["token"])).status == 204
        await wait_for(lambda: not other.live_now(identity), message="the sessions.revoked event")
        assert not await other.live(identity) and other.reads == reads  # from the event, not a read
    finally:
        await other.stop()


async def test_a_notify_process_started_after_the_logout_reads_it_on_open(app, api, deps, sse_at):
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    from roles.notify import make_app as make_notify_app

    ada, bob, _ = await _people(api)
    assert (await api.post("/api/logout-all", token=ada["token"])).status == 204
    await deps.bus.js.purge_stream(deps.config.nats.stream)  # the event is gone: only the user document knows
    notify = make_notify_app(deps)
    await notify.start()
    sock, port = bind_unused_port()
    server = HTTPServer(notify)
    server.add_sockets([sock])
    try:
        refused = await sse_at(f"http://127.0.0.1:{port}", ada["token"])
        assert refused.status == 401
        ok = await sse_at(f"http://127.0.0.1:{port}", bob["token"], expect=200)
        await ok.wait_cursor()
    finally:
        server.stop()
        await notify.stop()


async def test_a_reused_refresh_token_ends_the_access_tokens_too(app, api, sse):
    ada, _, _ = await _people(api)
    rotated = await api.post("/api/refresh", {"refresh_token": ada["refresh_token"]})
    assert rotated.status == 200
    thief = rotated.body["access_token"]  # say the thief rotated first and holds this pair
    tab = await sse(thief, expect=200)
    await tab.wait_cursor()
    reused = await api.post("/api/refresh", {"refresh_token": ada["refresh_token"]})
    assert reused.status == 401 and reused.error_code == "refresh_token_reused"
    assert (await api.get("/api/users/me", token=thief)).status == 401
    assert (await api.get("/api/users/me", token=ada["token"])).status == 401
    await tab.wait_ended()
    assert (await api.post("/api/refresh", {"refresh_token": rotated.body["refresh_token"]})).status == 401
