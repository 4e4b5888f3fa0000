"""notify.presence_max_members: a chat with more members connected gets no presence pushes; a small one still does."""

import pytest

from app import events

pytestmark = pytest.mark.gen_test(timeout=30)

LIMIT = 3


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "notify": {"presence_max_members": LIMIT}}


def changes_of(stream, user_id: str) -> list[str]:
    """The presence statuses a stream heard for one user (a coalesced frame carries {users: [...]})."""
    return [u["status"] for f in stream.of(events.PRESENCE) for u in f.data.get("users", [f.data])
            if u["user_id"] == user_id]


async def test_a_large_chat_gets_no_presence_a_small_one_does(world, sse, notify_app):
    assert notify_app.settings["config"].notify.presence_max_members == LIMIT
    ws, other_ws = await world.workspace(), await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    crowd = [await world.user(ws, f"Crowd {i}") for i in range(LIMIT)]
    # Another workspace with its own small chat: its presence is not this test's business, nor affected.
    eve, fay = await world.user(other_ws, "Eve"), await world.user(other_ws, "Fay")
    await world.chat(eve, fay)
    # Bob shares only the workspace's #general (LIMIT + 1 members connected: too large) with the crowd,
    # and a small chat with Ada.
    await world.chat(ada, bob, type="direct")
    big = await world.chat(ada, *crowd)
    ada_stream = await sse(ada.token)
    crowd_streams = [await sse(user.token) for user in crowd]
    eve_stream = await sse(eve.token)
    await sse(fay.token)
    await eve_stream.wait_for(lambda c: changes_of(c, fay.id) == ["online"], message="Fay online to Eve")

    await sse(bob.token)
    await ada_stream.wait_for(lambda c: changes_of(c, bob.id) == ["online"], message="Bob online to Ada")
    # A durable marker after it: by the time the crowd has it, a presence frame for Bob would have come too.
    marker = await world.send(big, ada, "after bob came online")
    for stream in crowd_streams:
        await stream.wait_for(lambda c: any(f.data == marker for f in c.of(events.MESSAGE_CREATED)),
                              message="the marker")
        assert changes_of(stream, bob.id) == []
    assert changes_of(eve_stream, bob.id) == []
