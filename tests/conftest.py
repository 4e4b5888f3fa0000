"""Fixtures: per-test config, database and stream on the session's real servers, and running roles."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.auth import load_issuer, TokenVerifier
from app.config import load_config
from app.events import EventBus, connect_nats, presence_bucket
from app.metrics import Metrics
from app.store import Store, make_client
from tests.helpers import Api

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


@pytest.fixture
def deps(io_loop, config):
    """Store and EventBus for this test's database and stream, dropped afterwards."""

    async def build():
        client = make_client(config.mongo.uri, config.mongo.timeout_ms)
        store = Store(client, config.mongo.database)
        await store.ensure_indexes()
        nc = await connect_nats(config.nats.url, name="fechatter-test")
        bus = EventBus(nc, config.nats)
        await bus.ensure_stream()
        issuer = load_issuer(config, development=False)
        return SimpleNamespace(
            client=client, store=store, bus=bus, issuer=issuer,
            verifier=TokenVerifier(issuer.public_key, config.auth), metrics=Metrics(),
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

    io_loop.run_sync(teardown)


@pytest.fixture
def app(io_loop, config, deps):
    """The api role's application; pytest-tornado serves it at base_url."""
    from roles.api import make_app

    api = make_app(config, deps.store, deps.bus, deps.issuer, deps.metrics)
    io_loop.run_sync(api.start)
    yield api
    io_loop.run_sync(api.stop)


@pytest.fixture
def api(http_server, base_url, http_client):
    return Api(base_url, http_client)


@pytest.fixture
def notify_app(io_loop, config, deps):
    """The notify role's application on this test's stream and database, consuming from start."""
    from roles.notify import make_app as make_notify_app

    notify = make_notify_app(config, deps.store, deps.bus, deps.verifier, deps.metrics)
    io_loop.run_sync(notify.start)
    yield notify
    io_loop.run_sync(notify.stop)


@pytest.fixture
def notify_url(io_loop, notify_app):
    """The notify role served on a free port of its own (the api keeps pytest-tornado's base_url)."""
    import asyncio

    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    server = HTTPServer(notify_app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()
    io_loop.run_sync(lambda: asyncio.wait_for(server.close_all_connections(), 5))


@pytest.fixture
def sse(io_loop, notify_url):
    """`await sse(token, last_event_id=..., ...)` -> an open tests.sse_client.SSEClient, closed afterwards."""
    from tests.sse_client import SSEClient

    clients = []

    async def open_stream(token=None, *, url=None, **kwargs):
        client = SSEClient(url or notify_url, token=token, **kwargs)
        clients.append(client)
        return await client.open()

    yield open_stream

    async def close_all():
        await asyncio.gather(*(client.aclose() for client in clients))

    io_loop.run_sync(close_all)
