"""The bare send loop: the CPU one loopback `send` of a frame costs, over as many sockets as the run has streams.

Two child processes: a drain that accepts N connections and reads everything they carry (so no
kernel buffer ever fills), and a sender that connects N non-blocking sockets and runs the plain
loop `for s in socks: s.send(frame)` for R rounds after one warm-up round. Only the sender's CPU
(user + system, getrusage of its own process around the timed rounds) is counted, divided by the
sends that completed (a send refused with EAGAIN is counted apart, never as a send). The sockets
have TCP_NODELAY, so every send puts its frame on the wire now, as a delivery to an idle stream
does; with Nagle on (--nagle) the kernel holds some frames until an ACK and sends them outside
the timed loop, which makes the floor look cheaper than it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import selectors
import socket
import sys
import time
from typing import Any

HOST = "127.0.0.1"
DEFAULT_SENDS = 200_000  # sends to time in all: rounds = this / sockets, at least MIN_ROUNDS
MIN_ROUNDS = 5


def rounds_for(sockets: int, sends: int = DEFAULT_SENDS) -> int:
    return max(MIN_ROUNDS, math.ceil(sends / max(1, sockets)))


def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def drain_main(sockets: int, timeout: float) -> None:
    """Accept `sockets` connections, read them until each ends; print the port, then 'accepted', then the bytes read."""
    from bench.common import raise_fd_limit

    raise_fd_limit()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(min(sockets, 65535))
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    emit({"event": "listening", "port": listener.getsockname()[1]})
    accepted = ended = received = 0
    deadline = time.monotonic() + timeout
    while ended < sockets and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            if sock is listener:
                while accepted < sockets:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
                    accepted += 1
                    if accepted == sockets:
                        emit({"event": "accepted", "sockets": accepted})
                continue
            while True:
                try:
                    data = sock.recv(1 << 18)
                except BlockingIOError:
                    break
                except ConnectionError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    ended += 1
                    break
                received += len(data)
    emit({"event": "done", "received": received, "ended": ended})


def send_main(port: int, sockets: int, frame_size: int, rounds: int, nodelay: bool = True) -> None:
    """Connect `sockets` sockets to the drain, wait for 'go' on stdin, time the send loop, print the result."""
    from bench.common import raise_fd_limit

    raise_fd_limit()
    socks = []
    for _ in range(sockets):
        sock = socket.create_connection((HOST, port))
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    emit({"event": "connected", "sockets": len(socks)})
    sys.stdin.readline()  # the drain has accepted every connection
    frame = b"x" * frame_size

    def loop(times: int) -> tuple[int, int]:
        sent = refused = 0
        for _ in range(times):
            for s in socks:
                try:
                    s.send(frame)
                    sent += 1
                except BlockingIOError:
                    refused += 1
        return sent, refused

    loop(1)  # warm-up: first segments on each connection, caches
    began_usage, began = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    sent, refused = loop(rounds)
    wall, usage = time.monotonic() - began, resource.getrusage(resource.RUSAGE_SELF)
    user, system = usage.ru_utime - began_usage.ru_utime, usage.ru_stime - began_usage.ru_stime
    emit({
        "event": "result", "sockets": len(socks), "frame_bytes": frame_size, "rounds": rounds, "nodelay": nodelay,
        "sends": sent, "refused": refused, "bytes_sent": (sent + sockets) * frame_size,  # warm-up included
        "cpu_user_s": user, "cpu_system_s": system, "wall_s": wall,
        "cpu_us_per_send": (user + system) * 1e6 / max(1, sent),
        "wall_us_per_send": wall * 1e6 / max(1, sent),
    })
    for s in socks:
        s.close()


async def _child(*args: str) -> asyncio.subprocess.Process:
    from app.processes import die_with_parent_hook
    from bench.common import ROOT

    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.send_floor", *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent_hook())


async def _reply(proc: asyncio.subprocess.Process, event: str, timeout: float) -> dict:
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"send_floor child {proc.pid} exited before '{event}'")
        message = json.loads(line)
        if message.get("event") == event:
            return message


async def measure(sockets: int, frame_size: int, rounds: int | None = None, *, nagle: bool = False,
                  timeout: float = 300) -> dict[str, Any]:
    """The bare send loop over `sockets` loopback connections with frames of `frame_size` bytes."""
    rounds = rounds or rounds_for(sockets)
    drain = await _child("--drain", "--sockets", str(sockets), "--timeout", str(timeout))
    sender = None
    try:
        port = (await _reply(drain, "listening", 30))["port"]
        sender = await _child("--port", str(port), "--sockets", str(sockets), "--frame-size", str(frame_size),
                              "--rounds", str(rounds), *(["--nagle"] if nagle else []))
        await _reply(sender, "connected", timeout)
        await _reply(drain, "accepted", timeout)
        sender.stdin.write(b"go\n")
        await sender.stdin.drain()
        result = await _reply(sender, "result", timeout)
        done = await _reply(drain, "done", timeout)
        result["bytes_received"] = done["received"]
        return result
    finally:
        for proc in (sender, drain):
            if proc is not None and proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


def describe(result: dict[str, Any]) -> str:
    return (f"bare send loop: {result['sends']:,} sends of {result['frame_bytes']} B over {result['sockets']:,} "
            f"loopback sockets{'' if result['nodelay'] else ' (Nagle on)'}: {result['cpu_us_per_send']:.2f} µs CPU per send "
            f"(user {result['cpu_user_s'] * 1e6 / max(1, result['sends']):.2f}, "
            f"system {result['cpu_system_s'] * 1e6 / max(1, result['sends']):.2f}; "
            f"wall {result['wall_us_per_send']:.2f}), "
            f"{result['refused']:,} refused (EAGAIN), {result['bytes_received']:,} of {result['bytes_sent']:,} B drained")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000, help="connected sockets (default 2,000)")
    parser.add_argument("--frame-size", type=int, default=350, help="bytes per send (default 350)")
    parser.add_argument("--rounds", type=int, help=f"sends per socket (default {DEFAULT_SENDS:,} in all)")
    parser.add_argument("--nagle", action="store_true",
                        help="leave Nagle on: the kernel then holds some frames until an ACK and sends them "
                             "outside the timed send() (by default TCP_NODELAY: every send puts its frame on the wire)")
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain_main(args.sockets, args.timeout)
    elif args.port:
        send_main(args.port, args.sockets, args.frame_size, args.rounds or rounds_for(args.sockets), not args.nagle)
    else:
        print(describe(asyncio.run(measure(args.sockets, args.frame_size, args.rounds, nagle=args.nagle))))


if __name__ == "__main__":
    main()
