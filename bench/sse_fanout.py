"""SSE fan-out: N streams (members × tabs of one chat), M messages; Fechatter's notify role against the bare broadcaster.

For each system, in the same run: open N streams, then send M messages one at a time (each
waits until every stream has it), then a burst of B messages as fast as C senders can post.
Send → receive latency uses one clock: the sender stamps its send time into the message, every
receiver subtracts it from the time the frame arrived. For Fechatter a NATS subscriber beside
the notify role also notes when each event reached NATS, which splits the latency into the
api part (HTTP + MongoDB + JetStream publish) and the fan-out part (notify role to browsers).
Last, the bare send loop (bench.send_floor) over as many loopback sockets as there were streams,
with frames as large as Fechatter's message frames on the wire: server CPU per delivery against
the CPU of one bare `send` per frame, the issue-18 check (≤ 1.3×).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
from typing import Any

from bench import send_floor
from bench.common import (
    MARK, Profiler, check, cli, cpu_split, print_profile, print_table, raise_fd_limit, rss_bytes, saved,
    summarize_ms, now,
)
from bench.sse_load import LoadClient, request_bytes
from bench.stack import HOST, BareServer, FechatterStack, message_shaped, started, workdir

SETTLE_TIMEOUT = 120.0
CPU_LIMIT = 1.3  # issue 18: server CPU per delivery ≤ 1.3 × a bare send's per frame


def chunk_bytes(frame: bytes) -> int:
    """What one SSE frame takes on the socket as an HTTP/1.1 chunk: size line, frame, CRLF."""
    return len(b"%x\r\n" % len(frame)) + len(frame) + 2


async def probe_frame(system, timeout: float = 30) -> bytes | None:
    """Open one stream, send stamped message 0 and return the SSE frame that carries it, as every stream gets it.

    Runs before the load client's streams open (they never see this message 0; streams resume only
    with a Last-Event-ID). None when no stamped frame arrived in time.
    """
    path, headers = system.stream_targets(1)[0]
    reader, writer = await asyncio.open_connection(HOST, system.sse_port)
    try:
        writer.write(request_bytes(HOST, system.sse_port, path, headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            return None
        await system.send(0)
        deadline, text = now() + timeout, b""
        while now() < deadline:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), max(0.1, deadline - now()))
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return None
            text += (await asyncio.wait_for(reader.readexactly(size + 2), max(0.1, deadline - now())))[:-2]
            *frames, text = text.split(b"\n\n")
            for frame in frames:
                if MARK + b"0~" in frame:
                    return frame + b"\n\n"
        return None
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        return None
    finally:
        writer.close()


async def measure(system, client: LoadClient, *, streams: int, messages: int, burst: int, senders: int,
                  concurrency: int, pace: float = 0.0, observe: bool = False,
                  profile: bool = False) -> dict[str, Any]:
    """Open `streams` streams to `system` and fan out stamped messages; the system is already started."""
    rss_before = rss_bytes(system.sse_pid)
    opened = await client.open("127.0.0.1", system.sse_port, system.stream_targets(streams),
                               concurrency=concurrency)
    if opened["ok"] == 0:
        raise RuntimeError(f"{system.name}: no stream opened: {opened['errors']}")
    arrived: dict[int, float] = {}
    observer = await system.observe_events(lambda n, t: arrived.setdefault(n, t)) if observe else None
    try:
        # Message 0 warms up and settles: once it is on every stream, whatever the opening caused
        # (presence events, first-time code paths) has been delivered before it.
        await system.send(0)
        settled = await client.wait_complete(0, SETTLE_TIMEOUT)
        rss_open = rss_bytes(system.sse_pid)
        cpu_began = cpu_split(system.sse_pid)
        profiler = Profiler(system.sse_pid, f"profile-{system.name}") if profile else None
        if profiler:
            await profiler.start()
        sent: dict[int, float] = {}
        timeouts = 0
        for msg_no in range(1, messages + 1):
            sent[msg_no] = await system.send(msg_no)
            if not await client.wait_complete(msg_no, 30):
                timeouts += 1
            if pace:
                await asyncio.sleep(pace)
        burst_first = messages + 1
        burst_nos = list(range(burst_first, burst_first + burst))
        burst_began = now()
        if burst:
            queue = list(reversed(burst_nos))

            async def sender() -> None:
                conn = system.connection()
                try:
                    while queue:
                        msg_no = queue.pop()
                        sent[msg_no] = await system.send(msg_no, conn)
                finally:
                    conn.close()

            await asyncio.gather(*(sender() for _ in range(senders)))
            for msg_no in burst_nos:
                if not await client.wait_complete(msg_no, 60):
                    timeouts += 1
        rss_after = rss_bytes(system.sse_pid)
        cpu_user, cpu_system = (after - before for after, before in zip(cpu_split(system.sse_pid), cpu_began))
        profile_summary = await profiler.stop() if profiler else None
        receipts = await client.receipts(expected=list(range(1, burst_first + burst)))
    finally:
        if observer is not None:
            await observer.close()

    paced_latency, burst_latency, fanout_part = [], [], []
    burst_last = burst_began
    for msg_no, sent_at, received_at in zip(receipts.msg_nos, receipts.sent_ats, receipts.received_ats):
        if msg_no == 0:
            continue
        if msg_no < burst_first:
            paced_latency.append(received_at - sent_at)
            if msg_no in arrived:
                fanout_part.append(received_at - arrived[msg_no])
        else:
            burst_latency.append(received_at - sent_at)
            burst_last = max(burst_last, received_at)
    expected_deliveries = receipts.streams * (messages + burst)
    api_part = [arrived[n] - sent[n] for n in sent if n in arrived and n < burst_first]
    return {
        "system": system.name,
        "streams_requested": streams,
        "streams_open": opened["ok"],
        "open_failures": opened["errors"],
        "open_seconds": opened["seconds"],
        "settled": settled,
        "rss_before_mb": rss_before / 2**20,
        "rss_open_mb": rss_open / 2**20,
        "rss_after_mb": rss_after / 2**20,
        "rss_per_stream_kb": (rss_open - rss_before) / 1024 / max(1, opened["ok"]),
        "messages": messages,
        "latency": summarize_ms(paced_latency),
        "fanout_part": summarize_ms(fanout_part) if fanout_part else None,
        "api_part": summarize_ms(api_part) if api_part else None,
        "burst": burst,
        "burst_latency": summarize_ms(burst_latency),
        "burst_seconds": burst_last - burst_began,
        "deliveries_per_second": (len(burst_latency) / (burst_last - burst_began)) if burst_latency else 0.0,
        "expected_deliveries": expected_deliveries,
        "missing": receipts.missing,
        "duplicates": receipts.duplicates,
        "out_of_order": receipts.out_of_order,
        "closed_by_server": receipts.closed_after_open,
        "timeouts": timeouts,
        # CPU time of the SSE server process per delivery: immune to other processes taking the cores.
        "cpu_us_per_delivery": (cpu_user + cpu_system) * 1e6 / max(1, receipts.streams * (messages + burst)),
        "cpu_user_share": cpu_user / max(1e-9, cpu_user + cpu_system),
        "profile": profile_summary,
    }


async def run_system(system, args, *, observe: bool) -> dict[str, Any]:
    async with started(system, args.members, args.processes) as client:
        frame = await probe_frame(system)
        result = await measure(system, client, streams=args.members * args.tabs, messages=args.messages,
                               burst=args.burst, senders=args.senders, concurrency=args.concurrency,
                               observe=observe, profile=args.profile)
        return {**result, "message_frame_bytes": chunk_bytes(frame) if frame else None,
                "message_frame": frame.decode(errors="replace") if frame else None}


async def measure_floor(args, results: dict[str, Any]) -> dict[str, Any]:
    """The bare send loop over as many sockets as the run had streams, frames as large as Fechatter's message frames."""
    sizes = [results[name].get("message_frame_bytes") for name in ("fechatter", "bare") if name in results]
    size = next((s for s in sizes if s), None)
    if size is None:  # no probe answered: the bare broadcaster's frame of a message-shaped document
        size = chunk_bytes(b"id: 1\nevent: message.created\ndata: %s\n\n"
                           % json.dumps(message_shaped(1, now())).encode())
    streams = max((r["streams_open"] for r in results.values()), default=args.members * args.tabs)
    print(f"sse_fanout: bare send loop, {streams} loopback sockets, {size}-byte frames", flush=True)
    floor = await send_floor.measure(streams, size)
    print(f"  {send_floor.describe(floor)}", flush=True)
    return floor


def report_floor(results: dict[str, Any], floor: dict[str, Any]) -> list[dict]:
    per_send = floor["cpu_us_per_send"]
    print(f"\n== server CPU per delivery / bare send per frame ({floor['sockets']:,} sockets, "
          f"{floor['frame_bytes']}-byte frames, {per_send:.2f} µs CPU per send, same run)")
    for name, label in (("fechatter", "fechatter"), ("bare", "bare broadcaster")):
        if name in results:
            ours = results[name]["cpu_us_per_delivery"]
            # /proc counts a process's CPU in clock ticks: over few deliveries a figure is that coarse.
            tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / max(1, results[name]["expected_deliveries"])
            print(f"{label:32} {ours:>8.2f} µs / {per_send:.2f} µs = {ours / per_send:.2f}×"
                  f"   (±{tick_us:.2f} µs: one clock tick over {results[name]['expected_deliveries']:,} deliveries)")
    checks = []
    if "fechatter" in results:
        ours = results["fechatter"]["cpu_us_per_delivery"]
        checks.append(check(
            "sse_fanout", ours / per_send <= CPU_LIMIT,
            f"server CPU per delivery at {results['fechatter']['streams_open']:,} streams: "
            f"{ours / per_send:.2f}× the bare send loop's per frame ({ours:.2f} / {per_send:.2f} µs; "
            f"limit {CPU_LIMIT}×)"))
    return checks


def report(title: str, ours: dict, base: dict) -> None:
    rows = [
        ("streams open", ours["streams_open"], base["streams_open"]),
        ("time to open (s)", ours["open_seconds"], base["open_seconds"]),
        ("RSS per stream (KiB)", ours["rss_per_stream_kb"], base["rss_per_stream_kb"]),
        ("RSS with streams open (MiB)", ours["rss_open_mb"], base["rss_open_mb"]),
        ("send→receive p50 (ms)", ours["latency"]["p50_ms"], base["latency"]["p50_ms"]),
        ("send→receive p99 (ms)", ours["latency"]["p99_ms"], base["latency"]["p99_ms"]),
        ("send→receive max (ms)", ours["latency"]["max_ms"], base["latency"]["max_ms"]),
    ]
    if ours.get("fanout_part"):
        rows += [
            ("fan-out only p50 (ms)", ours["fanout_part"]["p50_ms"], base["latency"]["p50_ms"]),
            ("fan-out only p99 (ms)", ours["fanout_part"]["p99_ms"], base["latency"]["p99_ms"]),
        ]
    if ours.get("api_part"):
        rows.append(("api part (send→NATS) p50 (ms)", ours["api_part"]["p50_ms"], None))
    rows += [
        ("burst p99 (ms)", ours["burst_latency"]["p99_ms"], base["burst_latency"]["p99_ms"]),
        ("deliveries per second (burst)", ours["deliveries_per_second"], base["deliveries_per_second"]),
        ("server CPU per delivery (µs)", ours["cpu_us_per_delivery"], base["cpu_us_per_delivery"]),
        ("  of which user (Python) %", 100 * ours["cpu_user_share"], 100 * base["cpu_user_share"]),
        ("missing deliveries", ours["missing"], base["missing"]),
        ("duplicate deliveries", ours["duplicates"], base["duplicates"]),
        ("frames out of order", ours["out_of_order"], base["out_of_order"]),
        ("streams closed by server", ours["closed_by_server"], base["closed_by_server"]),
    ]
    print_table(title, rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=100, help="users in the chat (default 100)")
    parser.add_argument("--tabs", type=int, default=20, help="streams per user (default 20: 2,000 streams)")
    parser.add_argument("--messages", type=int, default=50, help="messages sent one at a time (default 50)")
    parser.add_argument("--burst", type=int, default=50, help="messages sent back to back afterwards (default 50)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders in the burst")
    parser.add_argument("--processes", type=int, default=1, help="load-client processes")
    parser.add_argument("--concurrency", type=int, default=100, help="streams being opened at once")
    parser.add_argument("--only", choices=("fechatter", "bare"), help="measure one system only")
    parser.add_argument("--keep", action="store_true", help="keep the servers' working directory (logs)")
    parser.add_argument("--profile", action="store_true",
                        help="record each SSE server with py-spy during the messages (pip install '.[bench]')")


async def run(args) -> dict[str, Any]:
    raise_fd_limit()
    directory = workdir("fanout")
    results: dict[str, Any] = {}
    try:
        if args.only != "fechatter":
            print(f"sse_fanout: bare broadcaster, {args.members * args.tabs} streams", flush=True)
            results["bare"] = await run_system(BareServer(directory), args, observe=False)
        if args.only != "bare":
            print(f"sse_fanout: fechatter notify, {args.members} members × {args.tabs} tabs", flush=True)
            results["fechatter"] = await run_system(FechatterStack(directory / "fechatter"), args, observe=True)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"working directory kept: {directory}")
    floor = await measure_floor(args, results) if results else None
    if "bare" in results and "fechatter" in results:
        report(f"sse_fanout: {args.members} members × {args.tabs} tabs = {args.members * args.tabs} streams, "
               f"{args.messages} paced + {args.burst} burst messages", results["fechatter"], results["bare"])
    else:
        for name, result in results.items():
            print(name, {k: v for k, v in result.items() if k != "profile"})
    for result in results.values():
        print_profile(result.get("profile"))
    checks = report_floor(results, floor) if floor else []
    return saved("sse_fanout", args, {**results, "send_floor": floor, "checks": checks})


def main() -> None:
    cli(__doc__, add_arguments, run)


if __name__ == "__main__":
    main()
