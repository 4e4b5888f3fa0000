"""A small SSE test client on a raw asyncio socket: parses frames, can stop reading, can be dropped."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit


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
        self._text = ""
        try:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.strip().split(b";")[0], 16)
                    if size == 0:
                        break
                    chunk = await reader.readexactly(size + 2)
                    self._feed(chunk[:-2])
            elif "content-length" in self.headers:
                self._feed(await reader.readexactly(int(self.headers["content-length"])))
            else:
                while chunk := await reader.read(65536):
                    self._feed(chunk)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.ended.set()

    def _feed(self, data: bytes) -> None:
        self._text += data.decode()
        while "\n\n" in self._text:
            block, self._text = self._text.split("\n\n", 1)
            self._frame(block)

    def _frame(self, block: str) -> None:
        fields: dict[str, str] = {}
        comment = False
        for line in block.split("\n"):
            if line.startswith(":"):
                comment = True
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "retry" in fields:
            self.retry_ms = int(fields["retry"])
        if "id" in fields:
            self.last_id = int(fields["id"]) if fields["id"] else None
        if comment and not fields:
            self.pings += 1
        if "data" in fields:
            frame = Frame(self.last_id, fields.get("event", "message"), json.loads(fields["data"]), time.monotonic())
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
