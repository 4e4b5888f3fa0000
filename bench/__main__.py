"""`python -m bench` (`make bench`): every benchmark with modest defaults, each against its baseline in the same run.

Defaults take about 11 minutes on 2 cores (growth alone ~6). Scale up with the flags, e.g.
    python -m bench --only sse_fanout --fanout-members 200 --fanout-tabs 50 --messages 200
Each benchmark can also run alone: python -m bench.sse_fanout --help (and sse_capacity, api_send, e2e, growth).

sse_fanout, connect_storm and sse_capacity end with PASS/FAIL lines (issue 18's "Done when", each a
ratio measured in one run); all of them are repeated in a summary at the end.
capacity_19k (not in the default set: several minutes, 2 × 19,000 streams) is sse_capacity at
190 users × 100 tabs = 19,000 streams, the load clients split over at least 2 processes:
    python -m bench --only capacity_19k
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from bench import api_send, connect_storm, e2e, growth, signin_storm, sse_capacity, sse_fanout
from bench import webhooks as webhooks_bench
from bench import export as export_bench
from bench.common import raise_fd_limit

BENCHMARKS = ("sse_fanout", "connect_storm", "sse_capacity", "api_send", "e2e", "growth", "signin_storm", "export", "webhooks")
EXTRA = ("capacity_19k",)  # only with --only: minutes longer than the rest
CAPACITY_19K = {"members": 190, "tabs": 100}  # issue 18: one notify process holds 19,000 streams


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS + EXTRA,
                        help="run these benchmarks only (capacity_19k runs only when named here)")
    parser.add_argument("--processes", type=int, default=1, help="load-client processes (SSE benchmarks)")
    parser.add_argument("--concurrency", type=int, default=100, help="streams being opened at once")
    fan = parser.add_argument_group("sse_fanout")
    fan.add_argument("--fanout-members", type=int, default=100)
    fan.add_argument("--fanout-tabs", type=int, default=20, help="default 20: 2,000 streams")
    fan.add_argument("--messages", type=int, default=50, help="paced messages (default 50)")
    fan.add_argument("--burst", type=int, default=50, help="back-to-back messages (default 50)")
    fan.add_argument("--senders", type=int, default=4)
    fan.add_argument("--profile", action="store_true",
                     help="record the SSE servers with py-spy during sse_fanout (pip install '.[bench]')")
    cs = parser.add_argument_group("connect_storm")
    cs.add_argument("--storm-members", type=int, default=100)
    cs.add_argument("--storm-tabs", type=int, default=20, help="default 20: 2,000 streams")
    cs.add_argument("--storm-waves", type=int, default=4)
    cs.add_argument("--storm-per-wave", type=int, default=5, help="messages right after each wave")
    cap = parser.add_argument_group("sse_capacity")
    cap.add_argument("--capacity-members", type=int, default=100)
    cap.add_argument("--capacity-tabs", type=int, default=100, help="default 100: 10,000 streams")
    cap.add_argument("--steps", type=int, default=4)
    api = parser.add_argument_group("api_send")
    api.add_argument("--clients", type=int, default=8)
    api.add_argument("--api-messages", type=int, default=1000)
    api.add_argument("--mongo-memory", action="store_true")
    end = parser.add_argument_group("e2e")
    end.add_argument("--e2e-members", type=int, default=10)
    end.add_argument("--e2e-tabs", type=int, default=2)
    end.add_argument("--rates", type=float, nargs="+", default=[10, 100, 1000])
    end.add_argument("--seconds", type=float, default=4.0)
    grow = parser.add_argument_group("growth")
    grow.add_argument("--growth-messages", type=int, default=250_000, help="messages at the second measurement")
    grow.add_argument("--growth-small", type=int, default=2_000, help="messages at the first measurement")
    grow.add_argument("--growth-samples", type=int, default=60)
    storm = parser.add_argument_group("signin_storm")
    storm.add_argument("--storm-signins", type=int, default=16, help="connections signing in at once")
    dump = parser.add_argument_group("export")
    dump.add_argument("--export-messages", type=int, default=50_000,
                      help="messages at the second size (bench.export alone: 250,000 by default)")
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace) -> None:
    chosen = args.only or BENCHMARKS
    common = {"processes": args.processes, "concurrency": args.concurrency, "only": None}
    checks: list[dict] = []
    for name in chosen:
        began = time.monotonic()
        print(f"\n######## {name}", flush=True)
        result = None
        if name == "sse_fanout":
            result = await sse_fanout.run(argparse.Namespace(
                **common, members=args.fanout_members, tabs=args.fanout_tabs, messages=args.messages,
                burst=args.burst, senders=args.senders, keep=False, profile=args.profile))
        elif name == "connect_storm":
            result = await connect_storm.run(argparse.Namespace(
                **common, members=args.storm_members, tabs=args.storm_tabs, waves=args.storm_waves,
                per_wave=args.storm_per_wave))
        elif name == "sse_capacity":
            result = await sse_capacity.run(argparse.Namespace(
                **common, members=args.capacity_members, tabs=args.capacity_tabs, steps=args.steps))
        elif name == "capacity_19k":
            result = await sse_capacity.run(argparse.Namespace(
                **{**common, "processes": max(2, args.processes)}, **CAPACITY_19K, steps=args.steps,
                label="capacity_19k"))
        elif name == "api_send":
            await api_send.run(argparse.Namespace(
                clients=args.clients, messages=args.api_messages, warmup=20, mongo_memory=args.mongo_memory))
        elif name == "e2e":
            await e2e.run(argparse.Namespace(
                members=args.e2e_members, tabs=args.e2e_tabs, rates=args.rates, seconds=args.seconds))
        elif name == "growth":
            await growth.run(argparse.Namespace(
                messages=args.growth_messages, small=args.growth_small, quick=False, users=3_000,
                samples=args.growth_samples, warmup=10, seed=12, send=False))
        elif name == "signin_storm":
            storm_args = signin_storm.parse_args(["--signins", str(args.storm_signins)])
            await signin_storm.run_and_report(storm_args)
        elif name == "webhooks":
            await webhooks_bench.run_and_report(argparse.Namespace(webhooks=8, events=250))
        elif name == "export":
            await export_bench.run(argparse.Namespace(messages=args.export_messages, users=200, chats=40))
        print(f"######## {name} took {time.monotonic() - began:.0f}s", flush=True)
        if isinstance(result, dict):
            checks += result.get("checks", [])
    print_checks(checks)


def print_checks(checks: list[dict]) -> None:
    """The PASS/FAIL lines of every benchmark run, once more together."""
    if not checks:
        return
    passed = sum(c["passed"] for c in checks)
    print(f"\n######## checks: {passed} of {len(checks)} passed", flush=True)
    for c in checks:
        print(c["line"], flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The drivers' reconnect chatter at shutdown is not a result.
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    asyncio.run(run_all(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
