"""An SSE load client: thousands of streams per process on raw asyncio protocols, each frame timed on arrival.

Run as a worker (`python -m bench.sse_load --worker`) it takes JSON-line commands on stdin and
answers on stdout; `LoadClient` spreads streams over such workers and gathers their results.
Run on its own (`python -m bench.sse_load --port N --streams 500`) it holds streams to a server
and prints what arrived, for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

from bench.common import MARK, now, raise_fd_limit
from tests.support.sse_wire import Dechunker, FrameSplitter, frame_id

# A worker that hears nothing from its parent for this long exits on its own.
WORKER_IDLE_SECONDS = 900.0
_LINGER_RESET = struct.pack("ii", 1, 0)


class SSEStream(asyncio.Protocol):
    """One text/event-stream over HTTP/1.1 (chunked or not): frames parsed, stamped frames recorded."""

    __slots__ = (
        "owner", "index", "request", "transport", "opened", "head", "status", "dechunker", "splitter",
        "seen", "frames", "last_id", "out_of_order", "closed", "epoch",
    )

    def __init__(self, owner: "Worker", index: int, request: bytes):
        self.owner = owner
        self.index = index
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future = owner.loop.create_future()
        self.head = b""
        self.status = 0
        self.dechunker: Dechunker | None = None
        self.splitter = FrameSplitter()
        self.seen = bytearray()  # receipts per message number
        self.frames = 0
        self.last_id = -1
        self.out_of_order = 0
        self.closed = False
        self.epoch = owner.epoch  # which open command opened it

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received_at = now()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].decode("latin-1"), self.head[end + 4:]
            self.head = b""
            lines = head.split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            if any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower() for line in lines[1:]):
                self.dechunker = Dechunker()
            if self.status != 200:
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"HTTP {self.status}"))
                self.transport.close()
                return
            if not self.opened.done():
                self.opened.set_result(self)
        if self.dechunker is not None:
            data = self.dechunker.feed(data)
        if not data:
            return
        text, spans = self.splitter.feed(data)
        for start, end in spans:
            self._frame(text, start, end, received_at)

    def _frame(self, text: bytes, start: int, end: int, received_at: float) -> None:
        self.frames += 1
        number = frame_id(text, start, end)
        if number is not None:
            # A coalesced presence frame may repeat the id of the frame before it: only a decrease is out of order.
            if number < self.last_id:
                self.out_of_order += 1
            self.last_id = number
        mark = text.find(MARK, start, end)
        if mark < 0:
            return
        sep = text.find(b"~", mark + 3, end)
        tail = text.find(b"~", sep + 1, end)
        msg_no = int(text[mark + 3:sep])
        sent_at = float(text[sep + 1:tail])
        seen = self.seen
        if msg_no >= len(seen):
            seen.extend(bytes(msg_no + 1 - len(seen)))
        count = seen[msg_no]
        if count < 255:
            seen[msg_no] = count + 1
        self.owner.record(msg_no, sent_at, received_at, first=count == 0)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the response"))
        self.owner.stream_closed(self)

    def abort(self) -> None:
        """Close with a reset, so the client side leaves no TIME_WAIT port behind after 10,000 streams."""
        if self.transport is not None and not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass
            self.transport.close()


def request_bytes(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream", "Cache-Control: no-cache"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Worker:
    """The streams of one process, and what arrived on them."""

    loop: asyncio.AbstractEventLoop
    emit: Any = None  # callback(dict) for progress events
    streams: list[SSEStream] = field(default_factory=list)
    msg_nos: array = field(default_factory=lambda: array("i"))
    sent_ats: array = field(default_factory=lambda: array("d"))
    received_ats: array = field(default_factory=lambda: array("d"))
    first_count: dict[int, int] = field(default_factory=dict)
    complete: set[int] = field(default_factory=set)
    open_failures: dict[str, int] = field(default_factory=dict)
    closed_after_open: int = 0
    epoch: int = 0

    @property
    def live(self) -> int:
        return sum(1 for s in self.streams if not s.closed)

    def record(self, msg_no: int, sent_at: float, received_at: float, first: bool) -> None:
        self.msg_nos.append(msg_no)
        self.sent_ats.append(sent_at)
        self.received_ats.append(received_at)
        if first:
            count = self.first_count.get(msg_no, 0) + 1
            self.first_count[msg_no] = count
            if count >= len(self.streams) - self.closed_after_open:
                self._complete(msg_no, received_at)

    def _complete(self, msg_no: int, at: float) -> None:
        if msg_no not in self.complete:
            self.complete.add(msg_no)
            if self.emit:
                self.emit({"event": "complete", "msg": msg_no, "at": at})

    def stream_closed(self, stream: SSEStream) -> None:
        if stream.opened.done() and not stream.opened.exception():
            self.closed_after_open += 1
            expected = len(self.streams) - self.closed_after_open
            for msg_no, count in self.first_count.items():
                if count >= expected:
                    self._complete(msg_no, now())

    async def open(self, host: str, port: int, targets: list[list], concurrency: int, timeout: float) -> dict:
        """Open every target ([path, headers]); returns counts and how long it took."""
        began = now()
        self.epoch += 1
        already, failures_before = len(self.streams), sum(self.open_failures.values())
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, path: str, headers: dict) -> None:
            async with gate:
                stream = SSEStream(self, index, request_bytes(host, port, path, headers))
                try:
                    await asyncio.wait_for(self.loop.create_connection(lambda: stream, host, port), timeout)
                    await asyncio.wait_for(stream.opened, timeout)
                except Exception as e:  # noqa: BLE001 - counted and reported, never fatal
                    key = type(e).__name__ + (f": {e}" if isinstance(e, ConnectionError) else "")
                    self.open_failures[key] = self.open_failures.get(key, 0) + 1
                    stream.abort()
                    return
                self.streams.append(stream)

        await asyncio.gather(*(one(i, path, headers) for i, (path, headers) in enumerate(targets)))
        return {"ok": len(self.streams) - already, "failed": sum(self.open_failures.values()) - failures_before,
                "errors": self.open_failures, "seconds": now() - began}

    def report(self, expected: list) -> dict:
        """Receipts as packed arrays, and per-stream missing/duplicate counts for the expected messages.

        An expected item is a message number (due on every stream), or [message number, n]: due on
        the streams opened by the first n open commands only (the others opened after it was sent).
        """
        expected = [item if isinstance(item, list) else [item, None] for item in expected]
        missing = duplicates = 0
        for stream in self.streams:
            seen = stream.seen
            for msg_no, epoch in expected:
                if epoch is not None and stream.epoch > epoch:
                    continue
                count = seen[msg_no] if msg_no < len(seen) else 0
                if count == 0:
                    missing += 1
                elif count > 1:
                    duplicates += count - 1
        return {
            "streams": len(self.streams),
            "live": self.live,
            "closed_after_open": self.closed_after_open,
            "missing": missing,
            "duplicates": duplicates,
            "out_of_order": sum(s.out_of_order for s in self.streams),
            "frames": sum(s.frames for s in self.streams),
            "msg_nos": base64.b64encode(self.msg_nos.tobytes()).decode(),
            "sent_ats": base64.b64encode(self.sent_ats.tobytes()).decode(),
            "received_ats": base64.b64encode(self.received_ats.tobytes()).decode(),
        }

    def reset(self) -> None:
        """Forget receipts (between phases); streams stay open."""
        self.msg_nos, self.sent_ats, self.received_ats = array("i"), array("d"), array("d")
        self.first_count.clear()
        self.complete.clear()
        for stream in self.streams:
            stream.seen = bytearray()

    def close(self) -> None:
        for stream in self.streams:
            stream.abort()


async def worker_main() -> None:
    """Serve JSON-line commands from stdin until `close`, end of input, or a long silence."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def emit(message: dict) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    worker = Worker(loop, emit)
    try:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), WORKER_IDLE_SECONDS)
            except asyncio.TimeoutError:
                break
            if not line:
                break
            command = json.loads(line)
            name = command["cmd"]
            if name == "open":
                result = await worker.open(command["host"], command["port"], command["targets"],
                                           command.get("concurrency", 100), command.get("timeout", 30))
                emit({"event": "opened", **result})
            elif name == "report":
                emit({"event": "report", **worker.report(command["expected"])})
            elif name == "reset":
                worker.reset()
                emit({"event": "reset"})
            elif name == "close":
                break
    finally:
        worker.close()
        await asyncio.sleep(0)  # let the transports close


@dataclass
class Receipts:
    """Every stamped frame received across workers."""

    msg_nos: array
    sent_ats: array
    received_ats: array
    streams: int
    missing: int
    duplicates: int
    out_of_order: int
    closed_after_open: int
    frames: int


class LoadClient:
    """Streams spread over worker processes; the parent only sends commands and gathers results."""

    def __init__(self, processes: int = 1):
        self.processes = processes
        self.workers: list[asyncio.subprocess.Process] = []
        self.replies: list[asyncio.Queue] = []
        self.readers: list[asyncio.Task] = []
        self.completions: dict[int, int] = {}
        self.last_complete_at: dict[int, float] = {}
        self._changed = asyncio.Event()

    async def start(self) -> None:
        from bench.common import ROOT
        from app.processes import die_with_parent_hook

        for _ in range(self.processes):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.sse_load", "--worker", cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 28,
                preexec_fn=die_with_parent_hook(),
            )
            queue: asyncio.Queue = asyncio.Queue()
            self.workers.append(proc)
            self.replies.append(queue)
            self.readers.append(asyncio.create_task(self._read(proc, queue)))

    async def _read(self, proc, queue: asyncio.Queue) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                await queue.put({"event": "exited"})
                self._changed.set()
                return
            message = json.loads(line)
            if message["event"] == "complete":
                msg_no = message["msg"]
                self.completions[msg_no] = self.completions.get(msg_no, 0) + 1
                self.last_complete_at[msg_no] = max(self.last_complete_at.get(msg_no, 0.0), message["at"])
                self._changed.set()
            else:
                await queue.put(message)

    async def _ask_all(self, commands: list[dict], timeout: float) -> list[dict]:
        for proc, command in zip(self.workers, commands):
            proc.stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.gather(*(proc.stdin.drain() for proc in self.workers))
        replies = await asyncio.wait_for(asyncio.gather(*(q.get() for q in self.replies)), timeout)
        for reply in replies:
            if reply["event"] == "exited":
                raise RuntimeError("a load-client worker exited unexpectedly")
        return replies

    async def open(self, host: str, port: int, targets: list[tuple[str, dict]], *,
                   concurrency: int = 100, timeout: float = 30) -> dict:
        """Open the targets, spread round-robin over the workers; returns totals."""
        began = now()
        share = [targets[i::self.processes] for i in range(self.processes)]
        per_worker = max(1, concurrency // self.processes)
        commands = [{"cmd": "open", "host": host, "port": port, "targets": [list(t) for t in part],
                     "concurrency": per_worker, "timeout": timeout} for part in share]
        replies = await self._ask_all(commands, timeout=timeout * (len(targets) // per_worker + 2))
        errors: dict[str, int] = {}
        for reply in replies:
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
        return {"ok": sum(r["ok"] for r in replies), "failed": sum(r["failed"] for r in replies),
                "errors": errors, "seconds": now() - began}

    async def wait_complete(self, msg_no: int, timeout: float) -> bool:
        """True once every worker saw msg_no on all its open streams; False after timeout."""
        deadline = now() + timeout
        while self.completions.get(msg_no, 0) < len(self.workers):
            remaining = deadline - now()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def receipts(self, expected: list[int], timeout: float = 120) -> Receipts:
        replies = await self._ask_all([{"cmd": "report", "expected": expected}] * len(self.workers), timeout)
        msg_nos, sent_ats, received_ats = array("i"), array("d"), array("d")
        for reply in replies:
            msg_nos.frombytes(base64.b64decode(reply["msg_nos"]))
            sent_ats.frombytes(base64.b64decode(reply["sent_ats"]))
            received_ats.frombytes(base64.b64decode(reply["received_ats"]))
        return Receipts(
            msg_nos, sent_ats, received_ats,
            streams=sum(r["streams"] for r in replies),
            missing=sum(r["missing"] for r in replies),
            duplicates=sum(r["duplicates"] for r in replies),
            out_of_order=sum(r["out_of_order"] for r in replies),
            closed_after_open=sum(r["closed_after_open"] for r in replies),
            frames=sum(r["frames"] for r in replies),
        )

    async def reset(self) -> None:
        await self._ask_all([{"cmd": "reset"}] * len(self.workers), timeout=60)
        self.completions.clear()
        self.last_complete_at.clear()

    async def close(self, timeout: float = 30) -> None:
        for proc in self.workers:
            if proc.returncode is None and proc.stdin and not proc.stdin.is_closing():
                try:
                    proc.stdin.write(b'{"cmd": "close"}\n')
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for proc in self.workers:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self.readers:
            task.cancel()
        self.workers.clear()

    async def __aenter__(self) -> "LoadClient":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


async def look(args) -> None:
    """Hold streams for a while and print what arrived on them."""
    async with LoadClient(args.processes) as client:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        opened = await client.open(args.host, args.port, [(args.path, headers)] * args.streams,
                                   concurrency=args.concurrency)
        print(f"opened {opened['ok']} streams in {opened['seconds']:.2f}s; failed {opened['failed']} {opened['errors']}")
        await asyncio.sleep(args.seconds)
        receipts = await client.receipts(expected=[])
        print(f"stamped frames {len(receipts.msg_nos)}, all frames {receipts.frames}, "
              f"streams closed by the server {receipts.closed_after_open}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help="serve JSON-line commands (used by LoadClient)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/events")
    parser.add_argument("--token")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to hold the streams (max 600)")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main())
        return
    if not args.port:
        parser.error("--port is required")
    args.seconds = min(args.seconds, 600.0)
    raise_fd_limit()
    asyncio.run(look(args))


if __name__ == "__main__":
    main()
