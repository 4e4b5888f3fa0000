"""End to end: send → first delivery latency at 10 / 100 / 1,000 messages per second, against the bare broadcaster.

An open-loop sender: message k leaves at start + k / rate whatever happened to the earlier
ones, each on an idle keep-alive connection from a pool (a new one when all are busy, up to a
bound). The latency is send time (stamped into the message) → the first stream that shows it;
the p99 over all deliveries is given too. When a system cannot keep the rate, the achieved
rate says so and the latency includes the queue that builds up.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from typing import Any

from bench.common import HttpConnection, cli, print_table, raise_fd_limit, saved, summarize_ms, now
from bench.stack import BareServer, FechatterStack, started, workdir

MAX_CONNECTIONS = 64


async def send_at_rate(system, first_msg: int, rate: float, seconds: float) -> dict:
    count = max(1, int(rate * seconds))
    idle: list[HttpConnection] = []
    opened = 0
    in_flight: set[asyncio.Task] = set()
    gate = asyncio.Semaphore(MAX_CONNECTIONS)
    errors = 0

    async def send(msg_no: int) -> None:
        nonlocal opened, errors
        async with gate:
            if idle:
                conn = idle.pop()
            else:
                conn = system.connection()
                opened += 1
            try:
                await system.send(msg_no, conn)
            except Exception:  # noqa: BLE001 - counted; the message shows up as missing
                errors += 1
                conn.close()
                return
            idle.append(conn)

    began = now()
    for k in range(count):
        delay = began + k / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(first_msg + k))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.wait_for(asyncio.gather(*in_flight), 120)
    elapsed = now() - began
    for conn in idle:
        conn.close()
    return {"rate": rate, "sent": count, "errors": errors, "seconds": elapsed,
            "achieved_rate": count / elapsed, "connections": opened,
            "msg_nos": list(range(first_msg, first_msg + count))}


async def run_system(system, args) -> dict[str, Any]:
    async with started(system, args.members) as client:
        opened = await client.open("127.0.0.1", system.sse_port, system.stream_targets(args.members * args.tabs))
        await system.send(0)
        await client.wait_complete(0, 60)
        runs = []
        next_msg = 1
        for rate in args.rates:
            run = await send_at_rate(system, next_msg, rate, args.seconds)
            next_msg += run["sent"]
            await client.wait_complete(next_msg - 1, 60)
            runs.append(run)
            print(f"  {system.name}: {rate:g}/s asked, {run['achieved_rate']:.0f}/s sent", flush=True)
        receipts = await client.receipts(expected=list(range(1, next_msg)))
        first: dict[int, float] = {}
        every: dict[int, list[float]] = {}
        for msg_no, sent_at, received_at in zip(receipts.msg_nos, receipts.sent_ats, receipts.received_ats):
            latency = received_at - sent_at
            if msg_no not in first or latency < first[msg_no]:
                first[msg_no] = latency
            every.setdefault(msg_no, []).append(latency)
        for run in runs:
            nos = run.pop("msg_nos")
            run["first_delivery"] = summarize_ms([first[n] for n in nos if n in first])
            run["all_deliveries"] = summarize_ms([x for n in nos for x in every.get(n, ())])
            run["never_delivered"] = sum(1 for n in nos if n not in first)
        return {"system": system.name, "streams": opened["ok"], "runs": runs,
                "missing": receipts.missing, "duplicates": receipts.duplicates}


def report(ours: dict, base: dict) -> None:
    rows = []
    for o, b in zip(ours["runs"], base["runs"]):
        rate = f"{o['rate']:g}/s"
        rows += [
            (f"{rate} achieved rate", o["achieved_rate"], b["achieved_rate"]),
            (f"{rate} first delivery p50 (ms)", o["first_delivery"]["p50_ms"], b["first_delivery"]["p50_ms"]),
            (f"{rate} first delivery p99 (ms)", o["first_delivery"]["p99_ms"], b["first_delivery"]["p99_ms"]),
            (f"{rate} all deliveries p99 (ms)", o["all_deliveries"]["p99_ms"], b["all_deliveries"]["p99_ms"]),
        ]
    rows += [("missing deliveries", ours["missing"], base["missing"]),
             ("duplicate deliveries", ours["duplicates"], base["duplicates"])]
    print_table(f"e2e: {ours['streams']} streams, send → first delivery", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each rate is kept (default 4)")


async def run(args) -> dict[str, Any]:
    raise_fd_limit()
    directory = workdir("e2e")
    results: dict[str, Any] = {}
    try:
        print("e2e: bare broadcaster", flush=True)
        results["bare"] = await run_system(BareServer(directory), args)
        print("e2e: fechatter api + notify", flush=True)
        results["fechatter"] = await run_system(FechatterStack(directory / "fechatter"), args)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(results["fechatter"], results["bare"])
    return saved("e2e", args, results)


def main() -> None:
    cli(__doc__, add_arguments, run)


if __name__ == "__main__":
    main()
