"""SSE capacity: open streams in steps until 10,000 are held by one notify process, against the bare broadcaster.

At each step: the time to open that step's streams, the server's RSS, and one fan-out of a
stamped message to every stream open so far (send → receive p50/p99/max, the last delivery).
The RSS per stream is (RSS at the step − RSS before any stream) / streams. Ends with the issue-18
checks at the last step: RSS per stream ≤ 8 KiB (absolute, every stream open), and the fan-out to
all p99 ≤ 1.2 × the bare broadcaster's at the same count, 0 missing, 0 duplicate. `--label
capacity_19k --members 190 --tabs 100 --processes 2` is the 19,000-stream run (one process may
hold 20,000 fds: the load clients must be split, and the server's room is checked first).
"""

from __future__ import annotations

import argparse
import math
import shutil
from typing import Any

import psutil

from bench.common import check, cli, print_table, raise_fd_limit, ratio, rss_bytes, saved, summarize_ms
from bench.sse_load import LoadClient
from bench.stack import BareServer, FechatterStack, started, workdir

RSS_LIMIT_KIB = 8.0  # issue 18: ≤ 8 KiB RSS per stream (absolute)
P99_LIMIT = 1.2  # issue 18: fan-out to all p99 ≤ 1.2 × the bare broadcaster's at the same count
FD_MARGIN = 64  # fds a process needs beside its streams (listeners, epoll, NATS, logs, pipes)


def fd_room(pid: int) -> tuple[int, int]:
    """(soft limit of open files, fds open now) of a process."""
    proc = psutil.Process(pid)
    return proc.rlimit(psutil.RLIMIT_NOFILE)[0], proc.num_fds()


async def measure(system, client: LoadClient, *, streams: int, steps: int, concurrency: int,
                  fanout_timeout: float = 120) -> dict[str, Any]:
    targets = system.stream_targets(streams)
    rss_before = rss_bytes(system.sse_pid)
    bounds = [round(streams * (i + 1) / steps) for i in range(steps)]
    rows = []
    opened_total, lo = 0, 0
    for step, hi in enumerate(bounds, start=1):
        opened = await client.open("127.0.0.1", system.sse_port, targets[lo:hi], concurrency=concurrency)
        lo = hi
        opened_total += opened["ok"]
        sent_at = await system.send(step)
        complete = await client.wait_complete(step, fanout_timeout)
        rows.append({
            "streams": opened_total, "failed": opened["failed"], "errors": opened["errors"],
            "open_seconds": opened["seconds"], "open_per_second": opened["ok"] / max(opened["seconds"], 1e-9),
            "rss_mb": rss_bytes(system.sse_pid) / 2**20, "complete": complete,
            "last_delivery_ms": (client.last_complete_at.get(step, float("nan")) - sent_at) * 1000,
        })
        print(f"  {system.name}: {opened_total} streams open, RSS {rows[-1]['rss_mb']:.1f} MiB, "
              f"fan-out to all in {rows[-1]['last_delivery_ms']:.1f} ms", flush=True)
    # Message k was sent after step k's streams opened: due on the streams of steps 1..k.
    receipts = await client.receipts(expected=[[k, k] for k in range(1, steps + 1)])
    by_step: dict[int, list[float]] = {}
    for msg_no, sent_at, received_at in zip(receipts.msg_nos, receipts.sent_ats, receipts.received_ats):
        by_step.setdefault(msg_no, []).append(received_at - sent_at)
    for step, row in enumerate(rows, start=1):
        row["fanout"] = summarize_ms(by_step.get(step, []))
        row["rss_per_stream_kb"] = (row["rss_mb"] * 2**20 - rss_before) / 1024 / max(1, row["streams"])
    return {
        "system": system.name, "rss_before_mb": rss_before / 2**20, "steps": rows,
        "open_seconds": sum(r["open_seconds"] for r in rows),
        "missing": receipts.missing, "duplicates": receipts.duplicates,
        "closed_by_server": receipts.closed_after_open,
    }


async def run_system(system, args) -> dict[str, Any]:
    async with started(system, args.members, args.processes) as client:
        limit, in_use = fd_room(system.sse_pid)
        result = await measure(system, client, streams=args.members * args.tabs, steps=args.steps,
                               concurrency=args.concurrency)
        return {**result, "fd_limit": limit, "fds_before": in_use}


def verdicts(label: str, wanted: int, ours: dict, base: dict) -> list[dict]:
    last_o, last_b = ours["steps"][-1], base["steps"][-1]
    held = f"{last_o['streams']:,} of {wanted:,} open"
    checks = [
        check(label, min(r["fd_limit"] - r["fds_before"] for r in (ours, base)) >= wanted,
              f"server fds: limit {ours['fd_limit']:,}, {ours['fds_before']} open before the streams, "
              f"room for {ours['fd_limit'] - ours['fds_before']:,} (needs {wanted:,}; "
              f"bare broadcaster's room {base['fd_limit'] - base['fds_before']:,})"),
        check(label, last_o["rss_per_stream_kb"] <= RSS_LIMIT_KIB and last_o["streams"] >= wanted,
              f"RSS per stream at {last_o['streams']:,}: {last_o['rss_per_stream_kb']:.1f} KiB "
              f"(limit {RSS_LIMIT_KIB}; {held}; bare {last_b['rss_per_stream_kb']:.1f})"),
    ]
    p99, floor_p99 = last_o["fanout"]["p99_ms"], last_b["fanout"]["p99_ms"]
    r = ratio(p99, floor_p99)
    checks.append(check(
        label, r <= P99_LIMIT and ours["missing"] == 0 and ours["duplicates"] == 0 and last_o["complete"],
        f"fan-out to all p99 at {last_o['streams']:,}: {r:.2f}× the bare broadcaster's at {last_b['streams']:,} "
        f"({p99:.1f} / {floor_p99:.1f} ms; limit {P99_LIMIT}×), missing {ours['missing']:,}, "
        f"duplicate {ours['duplicates']:,} (limit 0 each)"))
    return checks


def report(ours: dict, base: dict) -> None:
    last_o, last_b = ours["steps"][-1], base["steps"][-1]
    print_table(f"sse_capacity: {last_o['streams']:,} streams held by one notify process", [
        ("streams open", last_o["streams"], last_b["streams"]),
        ("time to open all (s)", ours["open_seconds"], base["open_seconds"]),
        ("RSS (MiB)", last_o["rss_mb"], last_b["rss_mb"]),
        ("RSS per stream (KiB)", last_o["rss_per_stream_kb"], last_b["rss_per_stream_kb"]),
        ("fan-out to all: p50 (ms)", last_o["fanout"]["p50_ms"], last_b["fanout"]["p50_ms"]),
        ("fan-out to all: p99 (ms)", last_o["fanout"]["p99_ms"], last_b["fanout"]["p99_ms"]),
        ("fan-out to all: last (ms)", last_o["last_delivery_ms"], last_b["last_delivery_ms"]),
        ("missing deliveries", ours["missing"], base["missing"]),
        ("duplicate deliveries", ours["duplicates"], base["duplicates"]),
        ("streams closed by server", ours["closed_by_server"], base["closed_by_server"]),
    ])
    print(f"\n{'streams':>8} {'RSS/stream KiB':>16} {'(bare)':>8} {'fan-out p99 ms':>15} {'(bare)':>8}"
          f" {'open/s':>8} {'(bare)':>8}")
    for o, b in zip(ours["steps"], base["steps"]):
        print(f"{o['streams']:>8,} {o['rss_per_stream_kb']:>16.1f} {b['rss_per_stream_kb']:>8.1f}"
              f" {o['fanout']['p99_ms']:>15.1f} {b['fanout']['p99_ms']:>8.1f}"
              f" {o['open_per_second']:>8.0f} {b['open_per_second']:>8.0f}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=100, help="users in the chat (default 100)")
    parser.add_argument("--tabs", type=int, default=100, help="streams per user (default 100: 10,000 streams)")
    parser.add_argument("--steps", type=int, default=4, help="open the streams in this many steps")
    parser.add_argument("--processes", type=int, default=1, help="load-client processes")
    parser.add_argument("--concurrency", type=int, default=100, help="streams being opened at once")
    parser.add_argument("--only", choices=("fechatter", "bare"))
    parser.add_argument("--label", default="sse_capacity",
                        help="name on the PASS/FAIL lines and the saved result (capacity_19k for the 19,000 run)")


async def run(args) -> dict[str, Any]:
    label = getattr(args, "label", None) or "sse_capacity"
    streams, limit = args.members * args.tabs, raise_fd_limit()
    per_client = math.ceil(streams / args.processes)
    if per_client + FD_MARGIN > limit:
        raise SystemExit(f"{label}: {per_client:,} streams per load-client process would pass the open-file "
                         f"limit {limit:,}: use --processes {math.ceil(streams / (limit - FD_MARGIN))} or more")
    directory = workdir("capacity")
    results: dict[str, Any] = {}
    try:
        if args.only != "fechatter":
            print(f"{label}: bare broadcaster, {args.members * args.tabs} streams", flush=True)
            results["bare"] = await run_system(BareServer(directory), args)
        if args.only != "bare":
            print(f"{label}: fechatter notify, {args.members} members × {args.tabs} tabs", flush=True)
            results["fechatter"] = await run_system(FechatterStack(directory / "fechatter"), args)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    checks = []
    if len(results) == 2:
        report(results["fechatter"], results["bare"])
        checks = verdicts(label, streams, results["fechatter"], results["bare"])
    return saved(label, args, {**results, "checks": checks})


def main() -> None:
    cli(__doc__, add_arguments, run)


if __name__ == "__main__":
    main()
