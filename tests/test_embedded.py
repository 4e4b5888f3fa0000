"""The embedded stack: real child servers that answer, stop cleanly, restart with their data and never outlive us."""

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import psutil
import pytest
from pymongo import AsyncMongoClient

from app.embedded import EmbeddedStack

REPO = Path(__file__).resolve().parents[1]


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def gone(process: psutil.Process) -> bool:
    # An orphan may stay a zombie for a while if nobody reaps it: it runs no code any more.
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def listening_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


async def mongo_ping(uri):
    client = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return await client.admin.command("ping")
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_stack_starts_real_servers_that_answer(tmp_path):
    stack = EmbeddedStack(tmp_path / "data")
    await stack.start()
    try:
        assert (await mongo_ping(stack.mongo_uri))["ok"] == 1

        nc = await nats.connect(stack.nats_url)
        try:
            account = await nc.jetstream().account_info()
        finally:
            await nc.close()
        assert account.streams == 0

        # The pids we hold are the servers themselves, listening on the advertised ports.
        assert psutil.Process(stack.nats.pid).name() == "nats-server"
        assert stack.nats.port in listening_ports(stack.nats.pid)
        assert "nx_27017" in " ".join(psutil.Process(stack.mongo.pid).cmdline())
        assert stack.mongo.port in listening_ports(stack.mongo.pid)
    finally:
        await stack.stop()


@pytest.mark.gen_test(timeout=30)
async def test_stop_leaves_no_process(tmp_path):
    stack = EmbeddedStack(tmp_path / "data")
    await stack.start()
    processes = [psutil.Process(stack.nats.pid), psutil.Process(stack.mongo.pid)]
    assert not any(gone(p) for p in processes)

    await stack.stop()

    assert all(gone(p) for p in processes)
    assert not stack.nats.running and not stack.mongo.running


@pytest.mark.gen_test(timeout=30)
async def test_data_dir_is_created_and_only_the_asked_servers_start(tmp_path):
    data_dir = tmp_path / "not" / "there"
    stack = EmbeddedStack(data_dir, nats=False)
    await stack.start()
    try:
        assert stack.nats_url is None
        assert (await mongo_ping(stack.mongo_uri))["ok"] == 1
        assert (data_dir / "mongo" / "nx-27017.log").is_file()
        assert not (data_dir / "nats").exists()
    finally:
        await stack.stop()


CHILD = """
import asyncio, json, sys
from app.embedded import EmbeddedStack

async def main():
    stack = EmbeddedStack(sys.argv[1])
    await stack.start()
    print(json.dumps({"nats": stack.nats.pid, "mongo": stack.mongo.pid}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_servers_die_with_a_killed_parent(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "data")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    servers = []
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready, "the child python did not start its stack within 30 s"
        pids = json.loads(parent.stdout.readline())
        servers = [psutil.Process(pids["nats"]), psutil.Process(pids["mongo"])]
        assert servers[0].name() == "nats-server"
        assert "nx_27017" in " ".join(servers[1].cmdline())
        assert all(s.ppid() == parent.pid for s in servers)

        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

        wait_until(lambda: all(gone(s) for s in servers), 10, "the servers to die with their parent")
    finally:
        parent.kill()
        parent.wait()
        for server in servers:
            if not gone(server):
                server.kill()


@pytest.mark.gen_test(timeout=30)
async def test_nats_restart_on_same_port_keeps_jetstream_data(own_nats):
    server = await own_nats()
    port, first_pid = server.port, server.pid
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await js.add_stream(name="KEPT", subjects=["kept.>"])
    ack = await js.publish("kept.1", b"before the crash")
    await nc.close()

    await server.restart()  # graceful
    server.kill()  # and a crash
    assert not server.running
    await server.restart()

    assert server.port == port and server.pid != first_pid
    nc = await nats.connect(server.url)
    try:
        message = await nc.jetstream().get_msg("KEPT", ack.seq)
    finally:
        await nc.close()
    assert message.data == b"before the crash"


@pytest.mark.gen_test(timeout=30)
async def test_mongo_restart_on_same_port_keeps_documents(own_mongo):
    server = await own_mongo()
    port = server.port
    client = AsyncMongoClient(server.uri)
    await client.fechatter.things.insert_one({"_id": "a", "n": 1})
    await client.close()

    server.kill()
    await server.restart()

    assert server.port == port
    client = AsyncMongoClient(server.uri, serverSelectionTimeoutMS=5000)
    try:
        assert await client.fechatter.things.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    finally:
        await client.close()
