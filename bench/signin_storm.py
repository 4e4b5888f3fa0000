"""Sends during a sign-in storm: sends/s and send p50/p99 alone, then while N clients sign in back to back.

Starts the embedded stack and `main.py --role=api` (bench.stack.FechatterStack, notify not started,
rate limits off), signs up two users and a direct chat, then runs `--senders` connections sending
messages for `--seconds`: first alone, then with `--signins` connections each signing in again and
again (argon2 on every one). Prints both, the ratio, and the sign-ins/s the storm reached. The
hashing bound is the api's config; `--hash-concurrency 64 --hash-parallelism 4` is the unbounded
behaviour before issue 13.

    .venv/bin/python -m bench.signin_storm [--signins 16] [--senders 4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil

from bench.common import HttpConnection, now, saved, summarize_ms
from bench.stack import HOST, PASSWORD, FechatterStack, workdir
from tests.support.api import wait_for


async def _sender(port: int, path: str, token: str, stop: asyncio.Event, latencies: list[float]) -> None:
    conn = HttpConnection(HOST, port)
    try:
        i = 0
        while not stop.is_set():
            began = now()
            status, body = await conn.request("POST", path, {"content": f"storm {i}"}, token=token, timeout=None)
            assert status == 201, body
            latencies.append(now() - began)
            i += 1
    finally:
        conn.close()


async def _signer(port: int, email: str, stop: asyncio.Event, done: list[int]) -> None:
    conn = HttpConnection(HOST, port)
    try:
        while not stop.is_set():
            status, body = await conn.request("POST", "/api/signin", {"email": email, "password": PASSWORD})
            assert status == 200, body
            done[0] += 1
    finally:
        conn.close()


async def _phase(port: int, path: str, token: str, senders: int, signins: int, email: str, seconds: float) -> dict:
    stop = asyncio.Event()
    latencies: list[float] = []
    signed = [0]
    signers = [asyncio.ensure_future(_signer(port, email, stop, signed)) for _ in range(signins)]
    if signers:  # the storm under way before sends are measured
        await wait_for(lambda: signed[0] >= signins or any(s.done() for s in signers), timeout=60,
                       message=f"{signins} sign-ins")
    signed[0] = 0
    began = now()
    sending = [asyncio.ensure_future(_sender(port, path, token, stop, latencies)) for _ in range(senders)]
    await asyncio.sleep(seconds)  # the measurement's length
    stop.set()
    await asyncio.gather(*sending, *signers)
    elapsed = now() - began
    summary = summarize_ms(latencies)
    return {
        "sends_per_s": len(latencies) / elapsed,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "signins_per_s": signed[0] / elapsed,
    }


async def run(args: argparse.Namespace) -> dict:
    env = {}
    if args.hash_concurrency is not None:
        env["FECHATTER_AUTH_PASSWORD_HASH_CONCURRENCY"] = str(args.hash_concurrency)
    if args.hash_parallelism is not None:
        env["FECHATTER_AUTH_PASSWORD_HASH_PARALLELISM"] = str(args.hash_parallelism)
    directory = workdir("signin_storm")
    stack = FechatterStack(directory, env=env)
    try:
        await stack.start(notify=False)
        await stack.seed(2)
        owner, member = stack.users
        port, token, path = stack.api_port, owner["token"], f"/api/chats/{stack.chat_id}/messages"
        await _phase(port, path, token, args.senders, 0, "", 1.0)  # warm-up
        alone = await _phase(port, path, token, args.senders, 0, "", args.seconds)
        storm = await _phase(port, path, token, args.senders, args.signins, member["email"], args.seconds)
    finally:
        await stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {"alone": alone, "storm": storm}


def report(args: argparse.Namespace, result: dict) -> None:
    alone, storm = result["alone"], result["storm"]
    print(f"sends on {args.senders} connections for {args.seconds:g}s, {os.cpu_count()} cores; "
          f"storm = {args.signins} connections signing in back to back")
    for name, r in (("alone", alone), ("storm", storm)):
        extra = f"   sign-ins {r['signins_per_s']:.1f}/s" if name == "storm" else ""
        print(f"  {name:6} {r['sends_per_s']:7.1f} sends/s   p50 {r['p50_ms']:7.2f} ms   "
              f"p99 {r['p99_ms']:7.2f} ms{extra}")
    print(f"  storm/alone: sends/s x{storm['sends_per_s'] / alone['sends_per_s']:.2f}   "
          f"p50 x{storm['p50_ms'] / alone['p50_ms']:.2f}   p99 x{storm['p99_ms'] / alone['p99_ms']:.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signins", type=int, default=16, help="connections signing in at once")
    parser.add_argument("--senders", type=int, default=4, help="connections sending messages")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--hash-concurrency", type=int, default=None, help="auth.password_hash_concurrency")
    parser.add_argument("--hash-parallelism", type=int, default=None, help="auth.password_hash_parallelism")
    return parser.parse_args(argv)


async def run_and_report(args: argparse.Namespace) -> None:
    report(args, saved("signin_storm", args, await run(args)))


def main() -> None:
    asyncio.run(run_and_report(parse_args()))


if __name__ == "__main__":
    main()
