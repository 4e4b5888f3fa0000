"""Sends during a sign-in storm: sends/s and send p50/p99 alone, then while N clients sign in back to back.

Starts the embedded stack and `main.py --role=api` as bench/api_send_latency.py does (rate limits
off), signs up two users and a direct chat, then runs `--senders` connections sending messages for
`--seconds`: first alone, then with `--signins` connections each signing in again and again
(argon2 on every one). Prints both, the ratio, and the sign-ins/s the storm reached. The hashing
bound is the api's config; `--hash-concurrency 64 --hash-parallelism 4` is the unbounded
behaviour before issue 13.

    .venv/bin/python -m bench.signin_storm [--signins 16] [--senders 4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import EmbeddedStack  # noqa: E402
from app.processes import free_port  # noqa: E402
from bench.api_send_latency import Connection, percentile, wait_ready  # noqa: E402
from bench.stack import write_key_pair  # noqa: E402

PASSWORD = "bench password"


async def _sender(port: int, path: str, token: str, stop: asyncio.Event, latencies: list[float]) -> None:
    conn = Connection("127.0.0.1", port)
    await conn.open()
    try:
        i = 0
        while not stop.is_set():
            began = time.perf_counter()
            status, body = await conn.request("POST", path, {"content": f"storm {i}"}, token=token)
            assert status == 201, body
            latencies.append((time.perf_counter() - began) * 1000)
            i += 1
    finally:
        conn.close()


async def _signer(port: int, email: str, stop: asyncio.Event, done: list[int]) -> None:
    conn = Connection("127.0.0.1", port)
    await conn.open()
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
    if signers:
        await asyncio.sleep(0.5)  # the storm under way before sends are measured
    signed[0] = 0
    began = time.perf_counter()
    sending = [asyncio.ensure_future(_sender(port, path, token, stop, latencies)) for _ in range(senders)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*sending, *signers)
    elapsed = time.perf_counter() - began
    return {
        "sends_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "signins_per_s": signed[0] / elapsed,
    }


async def run(args: argparse.Namespace) -> dict:
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
        if args.hash_concurrency is not None:
            env["FECHATTER_AUTH_PASSWORD_HASH_CONCURRENCY"] = str(args.hash_concurrency)
        if args.hash_parallelism is not None:
            env["FECHATTER_AUTH_PASSWORD_HASH_PARALLELISM"] = str(args.hash_parallelism)
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--role=api", f"--port={port}"], cwd=ROOT, env=env,
        )
        conn = Connection("127.0.0.1", port)
        try:
            await wait_ready(port, process)
            await conn.open()
            status, owner = await conn.request("POST", "/api/signup", {
                "fullname": "Bench Owner", "email": "owner@bench.example", "password": PASSWORD,
                "workspace": "bench"})
            assert status == 201, owner
            status, member = await conn.request("POST", "/api/signup", {
                "fullname": "Bench Member", "email": "member@bench.example", "password": PASSWORD,
                "invite_code": owner["workspace"]["invite_code"]})
            assert status == 201, member
            token = owner["access_token"]
            status, chat = await conn.request(
                "POST", "/api/chats", {"type": "direct", "members": [member["user"]["id"]]}, token=token)
            assert status == 201, chat
            path = f"/api/chats/{chat['id']}/messages"
            await _phase(port, path, token, args.senders, 0, "", 1.0)  # warm-up
            alone = await _phase(port, path, token, args.senders, 0, "", args.seconds)
            storm = await _phase(port, path, token, args.senders, args.signins, "member@bench.example", args.seconds)
        finally:
            conn.close()
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            await stack.stop()
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
    report(args, await run(args))


def main() -> None:
    asyncio.run(run_and_report(parse_args()))


if __name__ == "__main__":
    main()
