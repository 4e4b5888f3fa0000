"""A client that stops reading is disconnected at the buffer bound; everyone else keeps getting everything."""

import pytest

from app import events
from tests.helpers import wait_for
from tests.notify_helpers import World

pytestmark = pytest.mark.gen_test(timeout=60)

LIMIT = 64 * 1024


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "notify": {"max_pending_bytes": LIMIT}}


async def test_a_client_that_stops_reading_is_disconnected(deps, sse, notify_app):
    world = World(deps)
    ws = await world.workspace()
    ada, slow, fast = await world.user(ws), await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, slow, fast)
    await sse(slow.token, read=False, receive_buffer=4096)  # opens, then never reads
    reader = await sse(fast.token)
    await wait_for(lambda: notify_app.registry.online(slow.id) and notify_app.registry.online(fast.id))
    handler = next(iter(notify_app.registry.users[slow.id].streams))
    assert handler.request.connection.stream.max_write_buffer_size == LIMIT

    # Far more than the kernel's socket buffers (4 MB here) plus the bound can hold.
    content = "y" * 32_000
    count = 300
    for i in range(count):
        await world.publish(events.MESSAGE_CREATED, {"id": str(i), "chat_id": chat, "content": content},
                            chat, ada)
    await reader.wait_count(count, events.MESSAGE_CREATED, timeout=40)
    assert [f.data["id"] for f in reader.of(events.MESSAGE_CREATED)] == [str(i) for i in range(count)]
    await wait_for(lambda: not notify_app.registry.online(slow.id), message="slow stream dropped")
    assert notify_app.notify_metrics.slow_disconnects._value.get() == 1
    assert notify_app.registry.online(fast.id) and notify_app.registry.stream_count == 1
    # What the server still holds for the dropped client is nothing; the bound was never passed.
    assert handler.request.connection.stream.closed()
