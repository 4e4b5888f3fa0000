"""Fixtures: per-test config, database and stream on the session's real servers, and running roles."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import argon2
import pytest
from nats.js.errors import BucketNotFoundError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient

from app.auth import TokenVerifier, load_issuer
from app.config import load_config
from app.deps import Deps
from app.events import MESSAGE_CREATED, EventBus, connect_nats, presence_bucket
from app.metrics import Metrics
from app.store import Store, make_client
from tests.support.api import Api, wait_for

pytest_plugins = ["tests.servers", "tests.processes"]


@pytest.fixture(scope="session")
def key_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    key = Ed25519PrivateKey.generate()
    private, public = directory / "private.pem", directory / "public.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return SimpleNamespace(private=str(private), public=str(public))


def make_test_config(tmp_path, mongo_uri: str, nats_url: str, key_files, **sections):
    """A config of its own for one test: a fresh database, stream and subject prefix on shared servers."""
    name = uuid.uuid4().hex[:12]
    overrides = {
        "data_dir": str(tmp_path),
        "log_level": "warning",
        "mongo": {"uri": mongo_uri, "database": f"t_{name}", "timeout_ms": 2000},
        "nats": {"url": nats_url, "stream": f"T_{name}", "subject_prefix": f"t{name}"},
        "auth": {"private_key_file": key_files.private, "public_key_file": key_files.public},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            overrides.setdefault(section, {}).update(values)
        else:
            overrides[section] = values
    return load_config(env={}, overrides=overrides)


@pytest.fixture
def config_overrides():
    """Override in a test module to change config sections: {"limits": {"enabled": False}}."""
    return {"limits": {"enabled": False}}


@pytest.fixture
def config(tmp_path, mongo_uri, nats_url, key_files, config_overrides):
    return make_test_config(tmp_path, mongo_uri, nats_url, key_files, **config_overrides)


@dataclass(frozen=True)
class TestDeps(Deps):
    """The Deps main() would build, plus the MongoDB client the fixture drops the database with."""

    __test__ = False  # a fixture's value, not a test class for pytest to collect
    client: AsyncMongoClient = field(kw_only=True)


@pytest.fixture
def deps(io_loop, config):
    """The Deps for this test's database and stream (issuer and verifier both), dropped afterwards."""

    async def build():
        client = make_client(config.mongo.uri, config.mongo.timeout_ms)
        store = Store(client, config.mongo.database)
        await store.ensure_indexes()
        nc = await connect_nats(config.nats.url, name="fechatter-test")
        bus = EventBus(nc, config.nats)
        await bus.ensure_stream()
        issuer = load_issuer(config, development=False)
        return TestDeps(
            config=config, store=store, bus=bus, metrics=Metrics(),
            verifier=TokenVerifier(issuer.public_key, config.auth), issuer=issuer, client=client,
        )

    built = io_loop.run_sync(build)
    yield built

    async def teardown():
        for stream in (config.nats.stream, f"KV_{presence_bucket(config.nats.stream)}"):
            try:
                await built.bus.js.delete_stream(stream)
            except Exception:  # noqa: BLE001 - a test may have stopped NATS, or never made the bucket
                pass
        await built.bus.close()
        try:
            await built.client.drop_database(config.mongo.database)
        except Exception:  # noqa: BLE001 - a test may have stopped MongoDB
            pass
        await built.client.close()

    # Bounded, so a teardown that hangs fails this test instead of stalling the suite.
    io_loop.run_sync(teardown, timeout=60)


def _running(io_loop, part):
    """Fixture body: `part` started before the test and stopped after it (an app, a World)."""
    io_loop.run_sync(part.start, timeout=30)
    yield part
    io_loop.run_sync(part.stop, timeout=30)


@pytest.fixture
def app(io_loop, deps):
    """The api role's application; pytest-tornado serves it at base_url."""
    from roles.api import make_app

    yield from _running(io_loop, make_app(deps))


@pytest.fixture
def api(http_server, base_url, http_client):
    return Api(base_url, http_client)


@pytest.fixture
def notify_app(io_loop, deps):
    """The notify role's application on this test's stream and database, consuming from start."""
    from roles.notify import make_app as make_notify_app

    yield from _running(io_loop, make_notify_app(deps))


@pytest.fixture
def notify_url(io_loop, notify_app):
    """The notify role served on a free port of its own (the api keeps pytest-tornado's base_url)."""
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    server = HTTPServer(notify_app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()
    io_loop.run_sync(lambda: asyncio.wait_for(server.close_all_connections(), 5))


@pytest.fixture
def sse_at(io_loop):
    """`await sse_at(url, token, expect=None, **kwargs)` -> an open tests.support.sse.SSEClient, closed afterwards.

    `expect` is the status the stream must answer with (asserted, with the body in the message).
    """
    from tests.support.sse import SSEClient

    clients = []

    async def open_stream(url, token=None, *, expect=None, **kwargs):
        client = SSEClient(url, token=token, **kwargs)
        clients.append(client)
        await client.open()
        assert expect is None or client.status == expect, (client.status, client.body)
        return client

    yield open_stream

    async def close_all():
        await asyncio.gather(*(client.aclose() for client in clients))

    io_loop.run_sync(close_all)


@pytest.fixture
def sse(sse_at, notify_url):
    """`await sse(token, last_event_id=..., url=None, ...)` -> an open SSEClient on the notify role (or `url`)."""

    async def open_stream(token=None, *, url=None, **kwargs):
        return await sse_at(url or notify_url, token, **kwargs)

    return open_stream


@pytest.fixture
def notify_api(notify_url, http_client):
    """JSON calls to the notify role served at notify_url."""
    return Api(notify_url, http_client)


@pytest.fixture
def world(io_loop, deps):
    """A tests.support.world.World on this test's deps: made through the api's services, published by its outbox."""
    from tests.support.world import World

    yield from _running(io_loop, World(deps))


@pytest.fixture
def resume_point(world, sse):
    """`await resume_point(chat, sender, reader, content="seen")` -> (message, id): `reader`'s stream sees
    `sender`'s one message in `chat` live, then closes; the id is the one it would resume from."""

    async def seen(chat, sender, reader, content="seen"):
        stream = await sse(reader.token)
        message = await world.send(chat, sender, content)
        await stream.wait_for(lambda c: [f.data for f in c.of(MESSAGE_CREATED)] == [message],
                              message=f"{content!r} on {reader.fullname}'s stream")
        stream.close()
        return message, stream.last_id

    return seen


@pytest.fixture(autouse=True)
def cheap_passwords(request, monkeypatch):
    """argon2 at its lowest cost in every in-process test (the library's cost takes ~0.25 s of CPU per hash, and
    the suite signs up thousands of users; the hash is not under test). A module about hashing itself keeps the
    real cost with `pytestmark = pytest.mark.real_passwords`. Role processes get the same cost from
    tests/processes.py (role_env)."""
    if request.node.get_closest_marker("real_passwords"):
        return
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    monkeypatch.setattr("app.auth.PasswordHasher", lambda: cheap)


@pytest.fixture
def role_process(config, role_processes):
    """`await role_process(role, *args, port=None, **env)` -> `main.py --role=role` answering /health/ready
    on this test's servers, database and stream."""

    async def start(role: str, *args: str, port: int | None = None, **env: str):
        return await role_processes(role, config, args=args, port=port, ready_path="/health/ready", **env)

    return start


@pytest.fixture
def presence_kv(io_loop, deps, config):
    """`await presence_kv()` -> the presence bucket as notify processes share it; removed after the test."""
    bucket = presence_bucket(config.nats.stream)

    async def opened():
        # The notify processes make the bucket as they start: on a loaded machine a test may ask first.
        async def bucket_or_none():
            try:
                return await deps.bus.js.key_value(bucket)
            except BucketNotFoundError:
                return None

        return await wait_for(bucket_or_none, timeout=15, message=f"the presence bucket {bucket}")

    yield opened

    async def remove():
        try:
            await deps.bus.js.delete_key_value(bucket)
        except Exception:  # noqa: BLE001 - never created when the test failed early
            pass

    io_loop.run_sync(remove)


@pytest.fixture
def frozen_window(request):
    """The rate limiters' clock stopped 1 s into the next hour, for the test's api (`app`) and, when the
    test has one, notify (`notify_app`): every fixed window (10 s, 1 min, 1 h) started 1 s before, so no
    run straddles two windows, and it is ahead of real time, so the purge never deletes one meanwhile."""
    instant = (int(time.time()) // 3600 + 1) * 3600 + 1.0

    def clock() -> float:
        return instant

    request.getfixturevalue("app").settings["services"].limiter.clock = clock
    if "notify_app" in request.fixturenames:
        request.getfixturevalue("notify_app").stream_opens.clock = clock
    return instant
