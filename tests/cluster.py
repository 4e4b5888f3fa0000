"""A real 3-node NATS JetStream cluster on loopback for the tests (fixture `nats_cluster`)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from nats import connect as nats_connect

from app.embedded import NatsServer
from app.processes import free_port


class ClusterNode(NatsServer):
    """One nats-server of a cluster: client port, route port and monitoring port of its own, all on loopback."""

    def __init__(self, directory, *, server_name: str, cluster_port: int, routes: list[str], http_port: int):
        super().__init__(directory, port=free_port())
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.routes = routes

    def _command(self) -> list[str]:
        return super()._command() + [
            "--server_name", self.server_name,
            "--cluster_name", "fechatter-test",
            "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
            "--routes", ",".join(self.routes),
            "--http_port", str(self.http_port),
        ]  # fmt: skip

    async def _ping(self, timeout: float) -> None:
        # A node alone answers no JetStream API until the cluster has a meta leader: the TCP connect suffices.
        nc = await nats_connect(self.url, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=0)
        await nc.close()


class NatsCluster:
    """Three nats-servers routed to each other; `url` is the seed list of all three for clients."""

    def __init__(self, directory, size: int = 3):
        cluster_ports = [free_port() for _ in range(size)]
        routes = [f"nats://127.0.0.1:{port}" for port in cluster_ports]
        self.nodes = [
            ClusterNode(directory / f"nats-{i + 1}", server_name=f"nats-{i + 1}", cluster_port=cluster_ports[i],
                        routes=[r for j, r in enumerate(routes) if j != i], http_port=free_port())
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, server_name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.server_name == server_name)

    async def start(self, timeout: float = 30) -> None:
        await asyncio.gather(*(node.start(timeout) for node in self.nodes))
        await self.wait_jetstream(timeout)

    async def wait_jetstream(self, timeout: float = 30) -> None:
        """Until JetStream answers through every running node (the cluster has a meta leader)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue
            while True:
                try:
                    nc = await nats_connect(node.url, connect_timeout=1, allow_reconnect=False,
                                            max_reconnect_attempts=0)
                    try:
                        await nc.jetstream(timeout=1).account_info()
                    finally:
                        await nc.close()
                    break
                except Exception:  # noqa: BLE001 - not ready yet
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

    async def stream_leader(self, stream: str, timeout: float = 15) -> str:
        """The server_name of the stream's current leader."""

        async def ask(node: ClusterNode) -> str | None:
            nc = await nats_connect(node.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
            try:
                info = await nc.jetstream(timeout=1).stream_info(stream)
            finally:
                await nc.close()
            return info.cluster.leader if info.cluster else None

        return await self._first_answer(ask, f"stream {stream} has no leader", timeout)

    async def meta_leader(self, timeout: float = 15) -> str:
        """The server_name of the JetStream meta leader (the node that places new consumers), from /jsz."""

        async def ask(node: ClusterNode) -> str | None:
            data = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{node.http_port}/jsz")
            return (data.get("meta_cluster") or {}).get("leader")

        return await self._first_answer(ask, "no JetStream meta leader", timeout)

    async def _first_answer(self, ask, failure: str, timeout: float) -> str:
        """The first answer of `ask(node)` from any running node, asked again until `timeout` (an election)."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if not node.running:
                    continue
                try:
                    answer = await ask(node)
                except Exception:  # noqa: BLE001 - an election under way, or the node is going
                    continue
                if answer:
                    return answer
            if time.monotonic() > deadline:
                raise TimeoutError(failure)
            await asyncio.sleep(0.1)  # polling an election with a deadline, not synchronisation

    def terminate(self) -> None:
        for node in self.nodes:
            node.terminate()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return json.loads(reply.read())


@pytest.fixture
def nats_cluster(tmp_path):
    """A started 3-node JetStream cluster of this test alone (`.url`, `.nodes`, `.stream_leader(name)`)."""
    cluster = NatsCluster(tmp_path / "cluster")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cluster.start())
    finally:
        loop.close()
    try:
        yield cluster
    finally:
        cluster.terminate()
