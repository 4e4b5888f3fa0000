"""Send-path latency: 1,000 sequential POST /api/chats/{id}/messages against the api role on the embedded stack.

Starts nats-server, nx-27017 and `main.py --role=api` as processes on free ports
(bench.stack.FechatterStack, notify not started, rate limits off), signs up two users, creates a
direct chat and sends N messages one after the other on one keep-alive connection, each waiting
for its 201. Prints the median, p90, p99 and max latency in ms.

    .venv/bin/python -m bench.api_send_latency [--count 1000] [--warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics

from bench.common import HttpConnection, now, summarize_ms
from bench.stack import HOST, FechatterStack, workdir


async def run(count: int, warmup: int) -> dict:
    directory = workdir("api_send_latency")
    stack = FechatterStack(directory)
    conn = HttpConnection(HOST, stack.api_port)
    try:
        await stack.start(notify=False)
        await stack.seed(2)
        token, path = stack.owner["token"], f"/api/chats/{stack.chat_id}/messages"
        for i in range(warmup):
            status, body = await conn.request("POST", path, {"content": f"warm-up {i}"}, token=token)
            assert status == 201, body
        latencies = []
        for i in range(count):
            began = now()
            status, body = await conn.request("POST", path, {"content": f"message {i}"}, token=token, timeout=None)
            latencies.append(now() - began)
            assert status == 201, body
        assert body["seq"] == warmup + count
    finally:
        conn.close()
        await stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    summary = summarize_ms(latencies)
    return {
        "count": count,
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": summary["p90_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "mean_ms": statistics.fmean(latencies) * 1000,
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
