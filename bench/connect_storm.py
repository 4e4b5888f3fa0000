"""Connect storm: N users × T tabs open their streams in waves while messages flow; notify against the bare broadcaster.

Every team's 9 a.m.: each wave opens one more tab of every user, and right after it opens (while
the presence of users coming online is still being fanned out) a few stamped messages are sent,
each waiting until every stream open so far has it. Send → receive p99 over all of them, against
the bare broadcaster's in the same run (it has no presence: the floor); 0 missing is required.
Ends with the issue-18 check: p99 ≤ 1.5 × the floor's, every stream open, 0 missing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from collections import Counter
from typing import Any

from bench.common import (
    check, cli, cpu_seconds, now, print_table, raise_fd_limit, ratio, rss_bytes, saved, summarize_ms,
)
from bench.sse_load import LoadClient
from bench.stack import BareServer, FechatterStack, started, workdir

OPEN_RETRIES = 3  # a refused open (a 503 on a loaded machine) is tried again, as a browser's EventSource would
RETRY_AFTER_SECONDS = 1.0
P99_LIMIT = 1.5  # issue 18: send → receive p99 ≤ 1.5 × the floor's, 0 missing


async def measure(system, client: LoadClient, *, members: int, tabs: int, waves: int, per_wave: int,
                  concurrency: int, timeout: float = 60) -> dict[str, Any]:
    # stream_targets spreads streams round-robin over users: each wave is the next tabs of every user.
    targets = system.stream_targets(members * tabs)
    bounds = [round(len(targets) * (i + 1) / waves) for i in range(waves)]
    rss_before = rss_bytes(system.sse_pid)
    cpu_before = cpu_seconds(system.sse_pid)
    expected, timeouts, opened_total, open_seconds, lo, msg_no = [], 0, 0, 0.0, 0, 0
    open_errors: dict[str, int] = {}
    commands = retried = 0  # the load client's open commands so far (its epochs), and streams opened again
    for wave, hi in enumerate(bounds, start=1):
        wave_targets, wave_began = targets[lo:hi], now()
        opened = await client.open("127.0.0.1", system.sse_port, wave_targets, concurrency=concurrency)
        commands += 1
        lo = hi
        opened_total += opened["ok"]
        open_errors = opened["errors"]  # cumulative per load client
        failed = opened["failed"]
        for _ in range(OPEN_RETRIES):  # as an EventSource does after a refusal: again, after Retry-After
            if not failed:
                break
            print(f"  wave {wave}: {failed} streams refused ({opened['errors']}); opening them again", flush=True)
            await asyncio.sleep(RETRY_AFTER_SECONDS)
            # Every target of a wave is alike (the next tab of a user): which ones failed does not matter.
            opened = await client.open("127.0.0.1", system.sse_port, wave_targets[:failed], concurrency=concurrency)
            commands += 1
            retried += failed
            opened_total += opened["ok"]
            open_errors = opened["errors"]
            failed = opened["failed"]
        open_seconds += now() - wave_began  # the retries' waits included
        for _ in range(per_wave):
            msg_no += 1
            await system.send(msg_no)
            expected.append([msg_no, commands])  # due on the streams opened so far
            if not await client.wait_complete(msg_no, timeout):
                timeouts += 1
    cpu = cpu_seconds(system.sse_pid) - cpu_before
    receipts = await client.receipts(expected=expected)
    latency = [received - sent for sent, received in zip(receipts.sent_ats, receipts.received_ats)]
    return {
        "system": system.name, "streams_open": opened_total, "open_seconds": open_seconds,
        "rss_per_stream_kb": (rss_bytes(system.sse_pid) - rss_before) / 1024 / max(1, opened_total),
        "latency": summarize_ms(latency), "messages": msg_no, "missing": receipts.missing,
        "duplicates": receipts.duplicates, "out_of_order": receipts.out_of_order,
        "closed_by_server": receipts.closed_after_open, "timeouts": timeouts, "cpu_seconds": cpu,
        "open_errors": open_errors, "open_retried": retried,
    }


async def run_system(system, args) -> dict[str, Any]:
    async with started(system, args.members, args.processes) as client:
        return await measure(system, client, members=args.members, tabs=args.tabs, waves=args.waves,
                             per_wave=args.per_wave, concurrency=args.concurrency)


def report(args, ours: dict, base: dict) -> None:
    print_table(f"connect_storm: {args.members} users × {args.tabs} tabs = {args.members * args.tabs} streams "
                f"in {args.waves} waves, {args.per_wave} messages after each", [
        ("streams open", ours["streams_open"], base["streams_open"]),
        ("time to open all (s)", ours["open_seconds"], base["open_seconds"]),
        ("streams opened again after a refusal", ours["open_retried"], base["open_retried"]),
        ("send→receive p50 (ms)", ours["latency"]["p50_ms"], base["latency"]["p50_ms"]),
        ("send→receive p99 (ms)", ours["latency"]["p99_ms"], base["latency"]["p99_ms"]),
        ("send→receive max (ms)", ours["latency"]["max_ms"], base["latency"]["max_ms"]),
        ("server CPU during the storm (s)", ours["cpu_seconds"], base["cpu_seconds"]),
        ("missing deliveries", ours["missing"], base["missing"]),
        ("duplicate deliveries", ours["duplicates"], base["duplicates"]),
        ("frames out of order", ours["out_of_order"], base["out_of_order"]),
        ("streams closed by server", ours["closed_by_server"], base["closed_by_server"]),
    ])


def verdicts(args, ours: dict, base: dict) -> list[dict]:
    wanted = args.members * args.tabs
    p99, floor_p99 = ours["latency"]["p99_ms"], base["latency"]["p99_ms"]
    r = ratio(p99, floor_p99)
    passed = r <= P99_LIMIT and ours["missing"] == 0 and ours["streams_open"] >= wanted
    return [check("connect_storm", passed,
                  f"send→receive p99 at {ours['streams_open']:,} of {wanted:,} streams ({args.members} users): "
                  f"{r:.2f}× the floor's ({p99:.1f} / {floor_p99:.1f} ms; limit {P99_LIMIT}×), "
                  f"missing {ours['missing']:,} (limit 0)")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=100, help="users in the chat (default 100)")
    parser.add_argument("--tabs", type=int, default=20, help="streams per user (default 20: 2,000 streams)")
    parser.add_argument("--waves", type=int, default=4, help="open the streams in this many waves")
    parser.add_argument("--per-wave", type=int, default=5, help="messages sent right after each wave")
    parser.add_argument("--processes", type=int, default=1, help="load-client processes")
    parser.add_argument("--concurrency", type=int, default=100, help="streams being opened at once")
    parser.add_argument("--only", choices=("fechatter", "bare"))


async def run(args) -> dict[str, Any]:
    raise_fd_limit()
    directory = workdir("storm")
    results: dict[str, Any] = {}
    try:
        if args.only != "fechatter":
            print(f"connect_storm: bare broadcaster, {args.members * args.tabs} streams", flush=True)
            results["bare"] = await run_system(BareServer(directory), args)
        if args.only != "bare":
            print(f"connect_storm: fechatter notify, {args.members} users × {args.tabs} tabs", flush=True)
            results["fechatter"] = await run_system(FechatterStack(directory / "fechatter"), args)
    finally:
        failed = sum(sum(r.get("open_errors", {}).values()) for r in results.values())
        if failed:  # why the server refused them, before its logs go
            log = directory / "fechatter" / "notify.log"
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            reasons = Counter(line.split(": ", 2)[-1] for line in lines if "WARNING" in line or "ERROR" in line)
            print(f"  notify.log warnings/errors: {dict(reasons.most_common(5))}", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
    checks = []
    if len(results) == 2:
        report(args, results["fechatter"], results["bare"])
        checks = verdicts(args, results["fechatter"], results["bare"])
    else:
        for name, result in results.items():
            print(name, result)
    return saved("connect_storm", args, {**results, "checks": checks})


def main() -> None:
    cli(__doc__, add_arguments, run)


if __name__ == "__main__":
    main()
