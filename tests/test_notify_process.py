"""The notify role as its own process: SIGKILL and restart lose nothing, SIGTERM closes streams and exits 0."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from tornado.testing import bind_unused_port

from app import events
from tests.helpers import Api, wait_for
from tests.notify_helpers import World

pytestmark = pytest.mark.gen_test(timeout=60)

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    sock, port = bind_unused_port()
    sock.close()
    return port


class NotifyProcess:
    """`main.py --role=notify` on this test's servers, database and stream."""

    def __init__(self, config, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "FECHATTER_DATA_DIR": config.data_dir,
            "FECHATTER_LOG_LEVEL": "warning",
            "FECHATTER_MONGO_URI": config.mongo.uri,
            "FECHATTER_MONGO_DATABASE": config.mongo.database,
            "FECHATTER_NATS_URL": config.nats.url,
            "FECHATTER_NATS_STREAM": config.nats.stream,
            "FECHATTER_NATS_SUBJECT_PREFIX": config.nats.subject_prefix,
            "FECHATTER_AUTH_PUBLIC_KEY_FILE": config.auth.public_key_file,
            "FECHATTER_LIMITS_ENABLED": "false",
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> "NotifyProcess":
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--role=notify", f"--port={self.port}", cwd=ROOT, env=self.env,
        )
        api = Api(self.url)

        async def healthy():
            assert self.process.returncode is None, "notify exited at start"
            try:
                return (await api.get("/health", timeout=1)).status == 200
            except OSError:
                return False

        await wait_for(healthy, timeout=30, interval=0.1, message="notify process up")
        return self

    def kill(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()


@pytest.fixture
def notify_process(config):
    started = []

    async def start(port: int | None = None) -> NotifyProcess:
        process = NotifyProcess(config, port or free_port())
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def world(deps):
    return World(deps)


async def test_sigkill_and_restart_loses_nothing(world, sse, notify_process):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, bob)
    first = await notify_process()
    bob_stream = await sse(bob.token, url=first.url)
    seen = await world.send(chat, ada, "seen")
    await bob_stream.wait_for(lambda c: [f.data for f in c.of(events.MESSAGE_CREATED)] == [seen])
    last_id = bob_stream.last_id

    first.process.send_signal(signal.SIGKILL)
    assert await first.process.wait() == -signal.SIGKILL
    await bob_stream.wait_ended()
    missed = [await world.send(chat, ada, f"while down {i}") for i in range(50)]

    restarted = await notify_process(first.port)
    again = await sse(bob.token, url=restarted.url, last_event_id=last_id)
    await again.wait_count(50, events.MESSAGE_CREATED, timeout=20)
    live = await world.send(chat, ada, "live again")
    await again.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == live)
    assert [f.data for f in again.of(events.MESSAGE_CREATED)] == [*missed, live]
    assert not again.of(events.RESYNC)


async def test_sigterm_closes_streams_and_exits_zero(world, sse, notify_process):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada, bob)
    process = await notify_process()
    streams = [await sse(bob.token, url=process.url), await sse(ada.token, url=process.url)]
    await streams[0].wait_for(lambda c: c.last_id is not None, message="cursor")
    last_id = streams[0].last_id
    process.process.send_signal(signal.SIGTERM)
    for stream in streams:
        await stream.wait_ended(timeout=10)
    assert await asyncio.wait_for(process.process.wait(), 15) == 0
    missed = await world.send(chat, ada, "sent between processes")
    other = await notify_process()
    again = await sse(bob.token, url=other.url, last_event_id=last_id)
    await again.wait_count(1, events.MESSAGE_CREATED)
    assert [f.data for f in again.of(events.MESSAGE_CREATED)] == [missed]
