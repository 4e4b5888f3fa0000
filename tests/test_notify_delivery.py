"""Live delivery: every tab of every member gets each event once, in order; nobody else gets anything."""

import pytest

from app import events
from tests.helpers import wait_for
from tests.notify_helpers import World

pytestmark = pytest.mark.gen_test


@pytest.fixture
def world(deps):
    return World(deps)


async def test_every_tab_of_every_member_and_no_one_else(world, sse, notify_app):
    ws, other_ws = await world.workspace(), await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    outsider = await world.user(other_ws, "Eve")
    chat = await world.chat(ada, bob, cy)
    ada1, ada2 = await sse(ada.token), await sse(ada.token, token_in_query=True)
    bob1 = await sse(bob.token)
    cy_nonmember_chat = await world.chat(cy, await world.user(ws, "Dan"))  # cy's other chat
    eve = await sse(outsider.token)
    # Cy is a member but has no stream; a second user of the workspace outside the chat has one.
    bystander = await world.user(ws, "Bystander")
    by = await sse(bystander.token)
    assert ada1.status == ada2.status == bob1.status == eve.status == by.status == 200
    assert ada1.retry_ms == notify_app.settings["config"].notify.retry_ms

    sent = [await world.send(chat, ada, f"hello {i}") for i in range(5)]
    for client in (ada1, ada2, bob1):
        frames = await client.wait_count(5, events.MESSAGE_CREATED)
        assert [f.data for f in frames] == sent
        ids = [f.id for f in frames]
        assert ids == sorted(ids) and len(set(ids)) == 5
    # Same event, same id on every stream.
    assert [f.id for f in ada1.of(events.MESSAGE_CREATED)] == [f.id for f in bob1.of(events.MESSAGE_CREATED)]
    await world.send(cy_nonmember_chat, cy, "not for ada")
    marker = await world.send(chat, bob, "last")
    await ada1.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == marker, message="marker")
    assert all(f.data["chat_id"] == chat for f in ada1.of(events.MESSAGE_CREATED))
    assert eve.events == [] and by.events == []
