"""Resume with Last-Event-ID: everything missed, in order, none twice; resync past the window."""

import pytest

from app import events
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=30)


@pytest.fixture
def config_overrides():
    # A small window by count, so "older than the window" needs only a few events.
    return {"limits": {"enabled": False}, "notify": {"replay_max_events": 120}}


def messages(client):
    """What people wrote: not the system lines (joined, added…, contract section 15)."""
    return [f.data for f in client.of(events.MESSAGE_CREATED) if f.data.get("kind") != "system"]


@pytest.mark.parametrize("in_query", [False, True])
async def test_reconnect_gets_exactly_the_50_missed(world, sse, resume_point, notify_app, in_query):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, bob)
    other_chat = await world.chat(ada, await world.user(ws))
    _, last_id = await resume_point(chat, ada, bob, "before")
    await wait_for(lambda: notify_app.registry.stream_count == 0, message="stream gone")

    missed = []
    for i in range(50):
        missed.append(await world.send(chat, ada, f"missed {i}"))
        await world.send(other_chat, ada, f"not bob's {i}")
    again = await sse(bob.token, last_event_id=last_id, resume_in_query=in_query)
    await again.wait_count(50, events.MESSAGE_CREATED)
    live = await world.send(chat, ada, "live")
    await again.wait_for(lambda c: messages(c)[-1:] == [live])
    assert messages(again) == [*missed, live]
    ids = [f.id for f in again.events]
    assert ids == sorted(set(ids)) and ids[0] > last_id
    assert not again.of(events.RESYNC)


async def test_replay_rebuilds_membership_at_the_resume_point(world, sse, resume_point):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    leaving, joining = await world.chat(ada, bob), await world.chat(ada)
    _, resume_from = await resume_point(leaving, ada, bob, "seen live")

    in_leaving = await world.send(leaving, ada, "missed while still a member")
    await world.remove(leaving, bob, ada)
    await world.send(leaving, ada, "after bob left")
    await world.send(joining, ada, "before bob joined")
    await world.add(joining, bob, ada)
    in_joining = await world.send(joining, ada, "after bob joined")

    again = await sse(bob.token, last_event_id=resume_from)
    await again.wait_count(2, events.MESSAGE_CREATED)
    marker = await world.send(joining, ada, "marker")
    await again.wait_for(lambda c: messages(c)[-1:] == [marker])
    assert messages(again) == [in_leaving, in_joining, marker]
    # The "removed" line goes to those who stay; the "added" one to Bob too, right after he joined.
    assert [f.event for f in again.events] == [
        events.MESSAGE_CREATED, events.MEMBER_LEFT, events.MEMBER_JOINED,
        events.MESSAGE_CREATED, events.MESSAGE_CREATED, events.MESSAGE_CREATED,
    ]


async def test_resume_older_than_window_or_unknown_gets_one_resync(world, sse, notify_app):
    ada, bob, chat = await world.pair()
    first = await world.send(chat, ada, "first")
    bob_stream = await sse(bob.token)
    await world.send(chat, ada, "second")
    await bob_stream.wait_count(1, events.MESSAGE_CREATED)
    old_id = bob_stream.last_id
    bob_stream.close()
    for i in range(130):  # more than replay_max_events
        await world.send(chat, ada, f"flood {i}")
    await wait_for(lambda: notify_app.window.floor > old_id, message="window moved past the old id")

    for resume, reason in [(old_id, "too_old"), ("garbage", "unknown"), (10**9, "unknown")]:
        client = await sse(bob.token, last_event_id=resume)
        await client.wait_count(1, events.RESYNC, timeout=15)
        live = await world.send(chat, ada, f"live after {resume}")
        await client.wait_for(lambda c: messages(c)[-1:] == [live])
        assert [f.event for f in client.events] == [events.RESYNC, events.MESSAGE_CREATED], resume
        assert client.events[0].data == {"reason": reason}
        # The resync carries the current cursor, so the next reconnect resumes from there.
        assert old_id < client.events[0].id < client.events[1].id
        client.close()
        # Resuming from the resync's id is a normal resume again.
        after = await sse(bob.token, last_event_id=client.events[0].id)
        await after.wait_count(1, events.MESSAGE_CREATED)
        assert messages(after) == [live] and not after.of(events.RESYNC)
        after.close()
        # What was sent before the window's floor is never replayed.
        assert all(f.data.get("id") != first["id"] for f in client.events + after.events), resume


async def test_fresh_stream_gets_a_cursor_to_resume_from(world, sse):
    """A stream that has seen no event yet still knows where it started, so nothing sent while it
    reconnects is lost."""
    ada, bob, chat = await world.pair()
    bob_stream = await sse(bob.token)
    start = await bob_stream.wait_cursor()
    bob_stream.close()
    missed = await world.send(chat, ada, "while reconnecting")
    again = await sse(bob.token, last_event_id=start)
    await again.wait_count(1, events.MESSAGE_CREATED)
    assert messages(again) == [missed]


async def test_replay_larger_than_the_buffer_bound_is_paged(world, sse, notify_app, config):
    ada, bob, chat = await world.pair()
    bob_stream = await sse(bob.token)
    start = await bob_stream.wait_cursor()
    bob_stream.close()
    big = "x" * 3000
    sent = [await world.send(chat, ada, big + str(i)) for i in range(100)]  # ~300 KB missed
    notify_app.settings["config"].notify.max_pending_bytes = 64 * 1024
    received, resume, pages = [], start, 0
    while len(received) < len(sent):
        page = await sse(bob.token, last_event_id=resume)
        pages += 1
        # A page too big for the bound ends the stream; the last one fits and the stream stays open.
        await page.wait_for(lambda c, have=len(received): c.ended.is_set() or have + len(messages(c)) == len(sent))
        assert page.events, "a page makes progress"
        received += messages(page)
        resume = page.last_id
        assert pages < 20
    assert received == sent and pages > 1
    assert not page.ended.is_set()
