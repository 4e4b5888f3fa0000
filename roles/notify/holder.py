"""An open event stream after its response head: its socket, what waits to be written, and whom it is for."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Protocol

from app import events
from roles.notify.frames import event_frame, http_chunk
from roles.notify.registry import KEEPALIVE_SLICES, Registry

if TYPE_CHECKING:
    from app.services.presence import Presence
    from roles.notify.metrics import NotifyMetrics
    from roles.notify.window import ReplayWindow

log = logging.getLogger("fechatter.notify.stream")

# The chunked response's last chunk: the stream ends cleanly and the client reconnects and resumes.
LAST_CHUNK = b"0\r\n\r\n"
# An ending stream's unsent bytes get this long to leave before the socket is closed anyway.
END_DRAIN_SECONDS = 5.0
# A client has nothing to say on an event stream: what it sends anyway is read in pieces this big and dropped.
DISCARD_READ_BYTES = 4096


class StreamOwner(Protocol):
    """What an open stream reports to: the notify application."""

    registry: Registry
    presence: Presence
    window: ReplayWindow
    notify_metrics: NotifyMetrics
    stream_passes: LoopPasses


class LoopPasses:
    """Counts passes of the event loop in which streams are written, so a stream written to again in
    the same pass joins its later frames into one send at the pass's end (one send per burst)."""

    __slots__ = ("number", "joined", "_scheduled")

    def __init__(self) -> None:
        self.number = 0
        self.joined: list[OpenStream] = []
        self._scheduled = False

    def current(self) -> int:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._end)
        return self.number

    def _end(self) -> None:
        self._scheduled = False
        self.number += 1
        joined, self.joined = self.joined, []
        for stream in joined:
            stream.send_joined()


class OpenStream:
    """One browser tab's event stream once its head is sent, without Tornado's per-request objects.

    The handler detaches the connection and hands over a duplicate of its socket; from here a frame
    is one `send` straight from the fan-out when the socket has room, and only bytes the kernel did
    not take wait here (at most `max_unsent`, past which the client is too slow and is dropped).
    A reader callback notices the client leaving; nothing else runs per stream while it is idle.
    """

    __slots__ = ("user_id", "issued_at", "keepalive_slice", "wrote", "closed", "registered",
                 "_owner", "_passes", "_sock", "_fd", "_chunked", "max_unsent", "_unsent", "_pass", "_joined",
                 "_ephemeral", "_expiry", "_ending", "__weakref__")

    def __init__(self, owner: StreamOwner, sock: socket.socket, user_id: str, issued_at: float, *,
                 chunked: bool, max_unsent: int):
        self.user_id = user_id
        self.issued_at = issued_at
        # Keepalive bookkeeping: which tick visits this stream, and whether it was written to since.
        self.keepalive_slice = (id(self) >> 4) % KEEPALIVE_SLICES
        self.wrote = False
        self.closed = False
        self.registered = False
        self._owner = owner
        self._passes = owner.stream_passes
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        # HTTP/1.0 has no chunked encoding: its frames go bare and the response ends with the connection.
        self._chunked = chunked
        self.max_unsent = max_unsent
        self._unsent: bytearray | None = None
        self._pass = -1
        self._joined: list[bytes] | None = None
        # Presence changes waiting for the registry's next tick, by the user they are about.
        self._ephemeral: dict[str, bytes] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._ending = False
        sock.setblocking(False)
        # Frames are small and each should leave now: Nagle would hold one behind an unacknowledged other.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def socket_open(self) -> bool:
        """Whether the server still holds the connection (False once the client left or was dropped)."""
        return self._sock is not None

    # -- writing ---------------------------------------------------------------------------------

    def start(self, frames: list[bytes], expires_in: float | None) -> None:
        """The frames that open the stream (replay, cursor), in one send, and the token's end in `expires_in` s."""
        self.wrote = True
        self._send(b"".join(map(http_chunk, frames)) if self._chunked else b"".join(frames))
        if expires_in is not None and not self.closed:
            self._expiry = asyncio.get_running_loop().call_later(max(0.0, expires_in), self.end)

    def send(self, frame: bytes, chunk: bytes | None = None) -> None:
        """Called by the fan-out for every frame; never awaits, never raises.

        `chunk` is the frame already framed as an HTTP chunk, once for all streams.
        """
        if self.closed:
            return
        self.wrote = True
        data = (chunk or http_chunk(frame)) if self._chunked else frame
        passes = self._passes
        number = passes.current()
        if self._pass != number:
            # The first frame of a pass of the loop goes at once.
            self._pass = number
            self._send(data)
            return
        # The consumer handles every event that arrived together in one pass: the rest of a burst
        # goes in one more send when the pass ends.
        joined = self._joined
        if joined is None:
            self._joined = [data]
            passes.joined.append(self)
        else:
            joined.append(data)

    def send_joined(self) -> None:
        joined, self._joined = self._joined, None
        if joined and not self.closed:
            self._send(joined[0] if len(joined) == 1 else b"".join(joined))

    def defer_presence(self, user_id: str, data: bytes) -> None:
        """A presence change, written by the registry's next tick after this tick's durable frames;
        a newer change of the same user replaces an older one still waiting."""
        if self.closed:
            return
        pending = self._ephemeral
        if pending is None:
            pending = self._ephemeral = {}
            self._owner.registry.mark_dirty(self)
        pending.pop(user_id, None)
        pending[user_id] = data

    def flush_ephemeral(self, built: dict) -> None:
        """Writes the waiting presence changes as one `presence` frame.

        One change keeps the single shape `{user_id, status, revision}`; several become
        `{"users": [...]}`. The frame's id is the last event consumed, so a client's last id never
        goes back past a durable frame written before it. `built` caches frames across streams.
        """
        pending, self._ephemeral = self._ephemeral, None
        if not pending or self.closed:
            return
        changes = tuple(pending.values())
        chunk = built.get(changes)
        if chunk is None:
            data = changes[0] if len(changes) == 1 else b'{"users":[%b]}' % b",".join(changes)
            frame = event_frame(self._owner.window.last_seq, events.PRESENCE, data)
            chunk = built[changes] = (frame, http_chunk(frame))
        self.send(*chunk)

    def _send(self, data: bytes) -> None:
        unsent = self._unsent
        if unsent is not None:  # the kernel's buffer is full: wait behind what is already waiting
            unsent += data
            if len(unsent) > self.max_unsent and not self._ending:
                self._lost(slow=True)
            return
        if self._sock is None:
            return
        sent = self._send_now(self._sock, data)
        if sent is not None and sent < len(data):
            self._unsent = bytearray(memoryview(data)[sent:])
            asyncio.get_running_loop().add_writer(self._fd, self._drain)

    def _send_now(self, sock: socket.socket, data: bytes | bytearray) -> int | None:
        """What the kernel took of `data` (0 when its buffer is full); None when the client is gone."""
        try:
            return sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:  # reset, broken pipe: the client is gone
            self._lost()
            return None

    def _drain(self) -> None:
        unsent, sock = self._unsent, self._sock
        if unsent is None or sock is None:
            return
        sent = self._send_now(sock, unsent)
        if not sent:
            return
        del unsent[:sent]
        if not unsent:
            self._unsent = None
            asyncio.get_running_loop().remove_writer(self._fd)
            if self._ending:
                self._close_socket()

    # -- ending ----------------------------------------------------------------------------------

    def end(self) -> None:
        """Ends the stream cleanly (token expired, signed out, shutdown); the client reconnects and resumes."""
        if self.closed:
            return
        joined, self._joined = self._joined, None
        self.closed = True
        self._release()
        self._finish(b"".join(joined) if joined else b"")

    def end_with(self, frames: list[bytes]) -> None:
        """Sends `frames` and ends: a replay page larger than one stream may buffer (the client resumes
        from its last id and gets the next page)."""
        self.closed = True
        self._finish(b"".join(map(http_chunk, frames)) if self._chunked else b"".join(frames))

    def _finish(self, data: bytes) -> None:
        self._ending = True
        if self._chunked:
            data += LAST_CHUNK
        self._send(data)
        if self._unsent is None:
            self._close_socket()
        elif self._sock is not None:
            asyncio.get_running_loop().call_later(END_DRAIN_SECONDS, self._close_socket)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(DISCARD_READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client closed its end
            self.closed = True
            self._release()
            self._close_socket()

    def _lost(self, slow: bool = False) -> None:
        """The client is gone or too slow; called from the write path, where the fan-out may be walking
        the registry's sets, so the registry hears of it on the next pass."""
        self.closed = True
        self._ephemeral = None
        self._joined = None
        asyncio.get_running_loop().call_soon(self._drop, slow)

    def _drop(self, slow: bool) -> None:
        if slow and self._sock is not None:
            self._owner.notify_metrics.slow_disconnects.inc()
            log.info("stream of %s closed: client too slow to read", self.user_id)
        self._release()
        self._close_socket()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        self._unsent = None
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        loop.remove_writer(self._fd)
        sock.close()

    def _release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.registered:
            self.registered = False
            owner = self._owner
            gone = owner.registry.unregister(self)
            if gone is not None:
                owner.presence.changed(gone)
