"""Fixtures of the fault scenarios: servers of the test's own, role processes on them, an observer's view."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.events import EventBus, connect_nats
from app.store import Store, make_client
from tests.conftest import make_test_config
from tests.processes import RoleProcess

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
