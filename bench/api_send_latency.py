"""Send-path latency: 1,000 sequential POST /api/chats/{id}/messages against the api role on the embedded stack.

Starts nats-server and nx-27017 (app.embedded.EmbeddedStack) under a temporary data_dir, runs
`main.py --role=api` as a child process on a free port against them (rate limits off), signs up
two users, creates a direct chat and sends N messages one after the other on one keep-alive
connection, each waiting for its 201. Prints the median, p90, p99 and max latency in ms.

    .venv/bin/python -m bench.api_send_latency [--count 1000] [--warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import EmbeddedStack  # noqa: E402
from app.processes import free_port  # noqa: E402
from bench.stack import write_key_pair  # noqa: E402


class Connection:
    """HTTP/1.1 on one keep-alive socket: the latency measured is the server's, not a connect's."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(data) if data else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the api role exited with {process.returncode}")
        try:
            conn = Connection("127.0.0.1", port)
            await conn.open()
            status, _ = await conn.request("GET", "/health/ready")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the api role did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def run(count: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fechatter-bench-") as tmp:
        data_dir = Path(tmp)
        stack = EmbeddedStack(data_dir / "stack")
        await stack.start()
        private, public = write_key_pair(data_dir)
        port = free_port()
        env = {
            **os.environ,
            "FECHATTER_DATA_DIR": str(data_dir),
            "FECHATTER_LOG_LEVEL": "warning",
            "FECHATTER_MONGO_URI": stack.mongo_uri,
            "FECHATTER_NATS_URL": stack.nats_url,
            "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(private),
            "FECHATTER_AUTH_PUBLIC_KEY_FILE": str(public),
            "FECHATTER_LIMITS_ENABLED": "false",
        }
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--role=api", f"--port={port}"], cwd=ROOT, env=env,
        )
        conn = Connection("127.0.0.1", port)
        try:
            await wait_ready(port, process)
            await conn.open()
            status, owner = await conn.request("POST", "/api/signup", {
                "fullname": "Bench Owner", "email": "owner@bench.example", "password": "bench password",
                "workspace": "bench"})
            assert status == 201, owner
            status, member = await conn.request("POST", "/api/signup", {
                "fullname": "Bench Member", "email": "member@bench.example", "password": "bench password",
                "invite_code": owner["workspace"]["invite_code"]})
            assert status == 201, member
            token = owner["access_token"]
            status, chat = await conn.request(
                "POST", "/api/chats", {"type": "direct", "members": [member["user"]["id"]]}, token=token)
            assert status == 201, chat
            path = f"/api/chats/{chat['id']}/messages"
            for i in range(warmup):
                status, body = await conn.request("POST", path, {"content": f"warm-up {i}"}, token=token)
                assert status == 201, body
            latencies = []
            for i in range(count):
                began = time.perf_counter()
                status, body = await conn.request("POST", path, {"content": f"message {i}"}, token=token)
                latencies.append((time.perf_counter() - began) * 1000)
                assert status == 201, body
            assert body["seq"] == warmup + count
        finally:
            conn.close()
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            await stack.stop()
    return {
        "count": count,
        "median_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(args.count, args.warmup))
    print(f"{result['count']} sequential sends on the embedded stack (nx-27017 + nats-server), one keep-alive connection:")
    print(f"  median {result['median_ms']:.2f} ms   p90 {result['p90_ms']:.2f} ms   "
          f"p99 {result['p99_ms']:.2f} ms   max {result['max_ms']:.2f} ms   mean {result['mean_ms']:.2f} ms")


if __name__ == "__main__":
    main()
