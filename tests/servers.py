"""pytest plugin: a real nats-server and a MongoDB-wire server for the tests (load with pytest_plugins)."""

import asyncio
import os

import pytest

from app.embedded import MongoWireServer, NatsServer


def _start_blocking(server):
    # Session fixtures are set up outside any test's event loop; the server outlives this loop.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(server.start())
    finally:
        loop.close()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    """One nats-server with JetStream for the whole session."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    try:
        _start_blocking(server)
        yield server
    finally:
        server.terminate()


@pytest.fixture(scope="session")
def nats_url(nats_server):
    return nats_server.url


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    """FECHATTER_TEST_MONGO_URI (a real MongoDB) if set, else one in-memory nx-27017 for the session."""
    uri = os.environ.get("FECHATTER_TEST_MONGO_URI")
    if uri:
        yield uri
        return
    server = MongoWireServer(tmp_path_factory.mktemp("mongo"), memory=True)
    try:
        _start_blocking(server)
        yield server.uri
    finally:
        server.terminate()


def _server_factory(server_class, directory):
    started = []

    async def start(**kwargs):
        server = server_class(directory / f"{server_class.name}-{len(started)}", **kwargs)
        started.append(server)
        await server.start()
        return server

    return start, started


@pytest.fixture
def own_nats(tmp_path):
    """`await own_nats()` -> a started NatsServer of this test alone, free to kill and restart."""
    start, started = _server_factory(NatsServer, tmp_path)
    yield start
    for server in started:
        server.terminate()


@pytest.fixture
def own_mongo(tmp_path):
    """`await own_mongo()` -> a started MongoWireServer (files on disk, so a restart keeps data); memory=True for none."""
    start, started = _server_factory(MongoWireServer, tmp_path)
    yield start
    for server in started:
        server.terminate()


_leftovers_key = pytest.StashKey[list]()


def pytest_sessionfinish(session):
    """Last line of defence: servers left running by a broken fixture are killed, and the run fails."""
    import psutil

    leftovers = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "nats-server" or "nx_27017" in " ".join(child.cmdline()):
                leftovers.append(child)
        except psutil.Error:
            continue
    for child in leftovers:
        child.kill()
    psutil.wait_procs(leftovers, timeout=5)
    session.config.stash[_leftovers_key] = [child.pid for child in leftovers]
    if leftovers and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    pids = config.stash.get(_leftovers_key, [])
    if pids:
        terminalreporter.write_sep("=", f"servers left running after the session, killed: pids {pids}", red=True)
