"""Fixtures of the fault scenarios: servers of the test's own, role processes, resuming SSE clients."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from app.events import EventBus, connect_nats
from app.store import Store, make_client
from tests.chat_helpers import create_chat
from tests.conftest import make_test_config
from tests.processes import RoleProcess
from tests.helpers import Api
from tests.sse_client import SSEClient

# Abandoned outbox entries and send claims are taken over after this long (the default is 5 s).
FAST_OUTBOX = {"FECHATTER_API_OUTBOX_GRACE_SECONDS": "1", "FECHATTER_API_OUTBOX_INTERVAL_SECONDS": "0.2"}


@pytest.fixture
def stack(tmp_path, key_files, own_nats, own_mongo, io_loop):
    """nats-server and nx-27017 of this test alone (files on disk: a restart keeps them), and its config."""

    async def build():
        nats, mongo = await asyncio.gather(own_nats(), own_mongo())
        config = make_test_config(tmp_path, mongo.uri, nats.url, key_files, mongo={"timeout_ms": 1000})
        return SimpleNamespace(nats=nats, mongo=mongo, config=config)

    return io_loop.run_sync(build)


@pytest.fixture
def roles(stack, role_processes):
    """`await roles("api", port=..., **env)` -> a started RoleProcess; every one is SIGKILLed afterwards."""

    async def start(role: str, *, port: int | None = None, **env: str) -> RoleProcess:
        return await role_processes(role, stack.config, port=port, **{**FAST_OUTBOX, **env})

    return start


@pytest.fixture
def observer(stack, io_loop):
    """The test's own view of MongoDB and the JetStream stream, to count what was stored and published."""

    async def build():
        client = make_client(stack.config.mongo.uri, 1000)
        nc = await connect_nats(stack.config.nats.url, name="fechatter-fault-observer")
        return SimpleNamespace(client=client, store=Store(client, stack.config.mongo.database),
                               bus=EventBus(nc, stack.config.nats))

    built = io_loop.run_sync(build)
    yield built

    async def close():
        await built.bus.close()
        await built.client.close()

    io_loop.run_sync(close)


async def team_chat(api: Api, size: int, name: str) -> tuple[list[dict], dict]:
    """`size` users of one workspace, the first its owner, and a group chat of them all named `name`."""
    owner = await api.signup(fullname="Owner", workspace=f"faults-{uuid.uuid4().hex[:8]}")
    code = owner["workspace"]["invite_code"]
    others = await asyncio.gather(*(api.signup(invite_code=code, fullname=f"User {i}") for i in range(size - 1)))
    return [owner, *others], await create_chat(api, owner, "group", others, name=name)


class ResumingClient:
    """An EventSource: reconnects whenever its stream ends, with the id of the last frame it saw."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.frames: list = []
        self.last_id: int | None = None
        self.connects = 0
        self.resyncs = 0
        self._current: SSEClient | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> "ResumingClient":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stopping:
            client = SSEClient(self.url, token=self.token, last_event_id=self.last_id)
            try:
                await client.open(timeout=5)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                client.close()
                await asyncio.sleep(0.1)  # the server is away: retry, as EventSource does
                continue
            if client.status != 200:
                await asyncio.sleep(0.2)
                continue
            self.connects += 1
            self._current = client
            client.on_frame(self.frames.append)
            await client.ended.wait()
            self._current = None
            if client.last_id is not None:
                self.last_id = client.last_id
            self.resyncs += len(client.of("resync"))
            client.close()

    def messages(self) -> list:
        return [frame for frame in self.frames if frame.event == "message.created"]

    async def stop(self) -> None:
        self._stopping = True
        if self._current is not None:
            self._current.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass


def delivery_counts(clients: list[ResumingClient], stored_ids: list[str]) -> dict:
    """delivered / duplicated / lost over every client, against the ids of the messages stored, in seq order."""
    expected = list(stored_ids)
    duplicated = lost = out_of_order = 0
    delivered = []
    for client in clients:
        got = [frame.data["id"] for frame in client.messages()]
        duplicated += len(got) - len(set(got))
        lost += len(set(expected) - set(got))
        unique = list(dict.fromkeys(got))
        if [i for i in unique if i in set(expected)] != [i for i in expected if i in set(unique)]:
            out_of_order += 1
        delivered.append(len(set(got) & set(expected)))
    return {"delivered_min": min(delivered) if delivered else 0, "deliveries": sum(delivered),
            "duplicated": duplicated, "lost": lost, "clients_out_of_order": out_of_order}
