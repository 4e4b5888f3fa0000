"""The notify role as its own process: SIGKILL and restart lose nothing, SIGTERM closes streams and exits 0."""

import signal

import pytest

from app import events

pytestmark = pytest.mark.gen_test(timeout=60)


async def test_sigkill_and_restart_loses_nothing(world, sse, role_process):
    ada, bob, chat = await world.pair()
    first = await role_process("notify")
    bob_stream = await sse(bob.token, url=first.url)
    seen = await world.send(chat, ada, "seen")
    await bob_stream.wait_for(lambda c: [f.data for f in c.of(events.MESSAGE_CREATED)] == [seen])
    last_id = bob_stream.last_id

    first.process.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    await bob_stream.wait_ended()
    missed = [await world.send(chat, ada, f"while down {i}") for i in range(50)]

    restarted = await role_process("notify", port=first.port)
    again = await sse(bob.token, url=restarted.url, last_event_id=last_id)
    await again.wait_count(50, events.MESSAGE_CREATED, timeout=20)
    live = await world.send(chat, ada, "live again")
    await again.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == live)
    assert [f.data for f in again.of(events.MESSAGE_CREATED)] == [*missed, live]
    assert not again.of(events.RESYNC)


async def test_sigterm_closes_streams_and_exits_zero(world, sse, role_process):
    ada, bob, chat = await world.pair()
    process = await role_process("notify")
    streams = [await sse(bob.token, url=process.url), await sse(ada.token, url=process.url)]
    last_id = await streams[0].wait_cursor()
    process.process.send_signal(signal.SIGTERM)
    for stream in streams:
        await stream.wait_ended(timeout=10)
    assert await process.wait(15) == 0
    missed = await world.send(chat, ada, "sent between processes")
    other = await role_process("notify")
    again = await sse(bob.token, url=other.url, last_event_id=last_id)
    await again.wait_count(1, events.MESSAGE_CREATED)
    assert [f.data for f in again.of(events.MESSAGE_CREATED)] == [missed]
