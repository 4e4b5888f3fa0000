"""SSE clients for the tests on raw asyncio sockets: one that can stop reading or be dropped, one that resumes like EventSource."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from tests.support.sse_wire import Dechunker, Fields, FrameSplitter, parse_frame


@dataclass
class Frame:
    id: int | None
    event: str
    data: Any
    received_at: float = field(default=0.0)


class SSEClient:
    """GET /events over HTTP/1.1 (chunked), frames collected in `events`, `last_id` as EventSource keeps it."""

    def __init__(self, base_url: str, *, token: str | None = None, token_in_query: bool = False,
                 last_event_id: int | str | None = None, resume_in_query: bool = False,
                 headers: dict[str, str] | None = None, receive_buffer: int | None = None,
                 read: bool = True, path: str = "/events"):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token, self.token_in_query = token, token_in_query
        self.last_event_id, self.resume_in_query = last_event_id, resume_in_query
        self.extra_headers = headers or {}
        self.receive_buffer = receive_buffer
        self.read = read
        self.path = path
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body: Any = None
        self.events: list[Frame] = []
        self.last_id: int | None = None
        self.retry_ms: int | None = None
        self.pings = 0
        self.ended = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._listeners: list[Callable[[Frame], None]] = []
        self._splitter = FrameSplitter()

    def request_bytes(self) -> bytes:
        query: dict[str, str] = {}
        headers = {"Host": f"{self.host}:{self.port}", "Accept": "text/event-stream", **self.extra_headers}
        if self.token and self.token_in_query:
            query["access_token"] = self.token
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id is not None:
            if self.resume_in_query:
                query["last_event_id"] = str(self.last_event_id)
            else:
                headers["Last-Event-ID"] = str(self.last_event_id)
        target = self.path + ("?" + urlencode(query) if query else "")
        lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        return "\r\n".join(lines).encode()

    async def open(self, timeout: float = 15.0) -> "SSEClient":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.receive_buffer:
            # Set before connecting so the advertised TCP window stays this small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
        self._writer = writer
        writer.write(self.request_bytes())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        if self.status != 200 or not self.headers.get("content-type", "").startswith("text/event-stream"):
            length = int(self.headers.get("content-length", "0"))
            raw = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
            self.body = json.loads(raw) if raw and "json" in self.headers.get("content-type", "") else raw
            self.close()
            return self
        if self.read:
            self._task = asyncio.get_running_loop().create_task(self._read(reader))
        else:
            # Leave the bytes in the socket: the kernel's window fills and the server must buffer.
            writer.transport.pause_reading()
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        # Chunked while the stream is open; a stream that ends at once may come with a Content-Length.
        dechunker = Dechunker() if self.headers.get("transfer-encoding", "").lower() == "chunked" else None
        length = None if dechunker or "content-length" not in self.headers else int(self.headers["content-length"])
        try:
            while length is None or length > 0:
                data = await reader.read(65536)
                if not data:
                    break
                if length is not None:
                    length -= len(data)
                self._feed(dechunker.feed(data) if dechunker else data)
                if dechunker and dechunker.ended:
                    break
        except (ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.ended.set()

    def _feed(self, data: bytes) -> None:
        buffer, spans = self._splitter.feed(data)
        for start, end in spans:
            self._frame(parse_frame(buffer[start:end]))

    def _frame(self, fields: Fields) -> None:
        if fields.retry is not None:
            self.retry_ms = fields.retry
        if fields.id is not None:
            self.last_id = int(fields.id) if fields.id else None
        if fields.comment:
            self.pings += 1
        if fields.data is not None:
            data = json.loads(fields.data)
            # notify coalesces a tick's presence changes into {users: [...]}: one Frame each, as the UI reads them.
            many = fields.event == "presence" and isinstance(data, dict) and isinstance(data.get("users"), list)
            for one in data["users"] if many else [data]:
                frame = Frame(self.last_id, fields.event, one, time.monotonic())
                self.events.append(frame)
                for listener in self._listeners:
                    listener(frame)

    def on_frame(self, listener: Callable[[Frame], None]) -> None:
        self._listeners.append(listener)

    def of(self, *types: str) -> list[Frame]:
        return [frame for frame in self.events if frame.event in types]

    async def wait_for(self, predicate: Callable[["SSEClient"], Any], timeout: float = 10.0,
                       message: str = "frames") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {message}; got {[(f.id, f.event) for f in self.events]}"
                )
            await asyncio.sleep(0.01)

    async def wait_count(self, count: int, *types: str, timeout: float = 10.0) -> list[Frame]:
        await self.wait_for(lambda c: len(c.of(*types) if types else c.events) >= count, timeout,
                            f"{count} {types or 'events'}")
        return self.of(*types) if types else self.events

    async def wait_cursor(self) -> int:
        """The id to resume from, which even a stream that has seen no event yet is given."""
        await self.wait_for(lambda c: c.last_id is not None, message="cursor")
        return self.last_id

    async def wait_ended(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.ended.set()

    async def aclose(self) -> None:
        """close(), then let the reading task finish its cancellation before the loop goes away."""
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class ResumingClient:
    """An EventSource: reconnects whenever its stream ends, with the id of the last frame it saw."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.frames: list = []
        self.last_id: int | None = None
        self.connects = 0
        self.resyncs = 0
        self._current: SSEClient | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> "ResumingClient":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stopping:
            client = SSEClient(self.url, token=self.token, last_event_id=self.last_id)
            try:
                await client.open(timeout=5)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                client.close()
                await asyncio.sleep(0.1)  # the server is away: retry, as EventSource does
                continue
            if client.status != 200:
                await asyncio.sleep(0.2)
                continue
            self.connects += 1
            self._current = client
            client.on_frame(self.frames.append)
            await client.ended.wait()
            self._current = None
            if client.last_id is not None:
                self.last_id = client.last_id
            self.resyncs += len(client.of("resync"))
            client.close()

    def messages(self) -> list:
        return [frame for frame in self.frames if frame.event == "message.created"]

    async def stop(self) -> None:
        self._stopping = True
        if self._current is not None:
            self._current.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass


def delivery_counts(clients: list[ResumingClient], stored_ids: list[str]) -> dict:
    """delivered / duplicated / lost over every client, against the ids of the messages stored, in seq order."""
    expected = list(stored_ids)
    duplicated = lost = out_of_order = 0
    delivered = []
    for client in clients:
        got = [frame.data["id"] for frame in client.messages()]
        duplicated += len(got) - len(set(got))
        lost += len(set(expected) - set(got))
        unique = list(dict.fromkeys(got))
        if [i for i in unique if i in set(expected)] != [i for i in expected if i in set(unique)]:
            out_of_order += 1
        delivered.append(len(set(got) & set(expected)))
    return {"delivered_min": min(delivered) if delivered else 0, "deliveries": sum(delivered),
            "duplicated": duplicated, "lost": lost, "clients_out_of_order": out_of_order}
