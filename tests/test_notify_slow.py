"""A client that stops reading is disconnected at the buffer bound; everyone else keeps getting everything."""

import asyncio

import pytest

from app import events
from tests.support.api import wait_for
from tests.support.chats import events_of

pytestmark = pytest.mark.gen_test(timeout=60)

LIMIT = 64 * 1024
SENDS_AT_ONCE = 16


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "notify": {"max_pending_bytes": LIMIT}}


async def test_a_client_that_stops_reading_is_disconnected(world, sse, notify_app):
    ws = await world.workspace()
    ada, slow, fast = await world.user(ws), await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, slow, fast)
    await sse(slow.token, read=False, receive_buffer=4096)  # opens, then never reads
    reader = await sse(fast.token)
    await wait_for(lambda: notify_app.registry.online(slow.id) and notify_app.registry.online(fast.id))
    stream = next(iter(notify_app.registry.users[slow.id].streams))
    assert stream.max_unsent == LIMIT

    # Far more than the kernel's socket buffers (4 MB here) plus the bound can hold: ~9.6 MB in
    # the largest messages the api takes (4000 characters of 3 bytes each).
    content = "€" * 4000
    count = 800
    sent = []
    for _ in range(count // SENDS_AT_ONCE):  # a few at a time, as several tabs would send
        sent += await asyncio.gather(*(world.send(chat, ada, content) for _ in range(SENDS_AT_ONCE)))
    await reader.wait_count(count, events.MESSAGE_CREATED, timeout=40)
    published = [event.data["id"] for event in await events_of(world.bus, events.MESSAGE_CREATED, chat)]
    assert sorted(published) == sorted(m["id"] for m in sent)
    assert [f.data["id"] for f in reader.of(events.MESSAGE_CREATED)] == published
    await wait_for(lambda: not notify_app.registry.online(slow.id), message="slow stream dropped")
    assert notify_app.notify_metrics.slow_disconnects._value.get() == 1
    assert notify_app.registry.online(fast.id) and notify_app.registry.stream_count == 1
    # What the server still holds for the dropped client is nothing; the bound was never passed.
    assert not stream.socket_open()
