"""The text/event-stream wire read incrementally (chunked body, frames, fields): one parser for tests and benchmarks."""

from __future__ import annotations

from typing import NamedTuple

# Only the standard library: the benchmarks import this module without the tests' dependencies.


class Dechunker:
    """HTTP/1.1 `Transfer-Encoding: chunked`, decoded as bytes arrive; `ended` once the last chunk is read."""

    __slots__ = ("_raw", "_left", "_skip", "ended")

    def __init__(self) -> None:
        self._raw = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._skip = 0  # bytes of the CRLF after a chunk's data still to come
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes that `data` completes (possibly none)."""
        if self.ended:
            return b""
        buf = self._raw + data if self._raw else data
        out = []
        pos, n = 0, len(buf)
        while pos < n:
            if self._skip:
                k = min(self._skip, n - pos)
                pos += k
                self._skip -= k
            elif self._left:
                k = min(self._left, n - pos)
                out.append(buf[pos:pos + k])
                pos += k
                self._left -= k
                if not self._left:
                    self._skip = 2
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:  # the server ended the response
                    self.ended = True
                    pos = n
                    break
                self._left = size
        self._raw = buf[pos:]
        return out[0] if len(out) == 1 else b"".join(out)


class FrameSplitter:
    """Cuts a body into frames at blank lines, keeping an unfinished frame for the next feed.

    `feed` answers the buffer and the (start, end) of each frame in it, so a hot reader can look
    into frames without copying them out.
    """

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
        text = self._rest + data if self._rest else data
        spans = []
        start = 0
        while (end := text.find(b"\n\n", start)) >= 0:
            spans.append((start, end))
            start = end + 2
        self._rest = text[start:]
        return text, spans


class Fields(NamedTuple):
    """One frame's fields as EventSource reads them; `id` is None when the frame names none."""

    id: str | None
    event: str
    data: str | None
    retry: int | None
    comment: bool  # a frame of comment lines only (a keepalive)


def parse_frame(block: bytes) -> Fields:
    """The fields of one frame (without its blank line); several `data:` lines join with newlines."""
    frame_id = data = retry = None
    event = "message"
    comments = fields = 0
    for line in block.decode().split("\n"):
        if line.startswith(":"):
            comments += 1
            continue
        fields += 1
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id":
            frame_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data = value if data is None else f"{data}\n{value}"
        elif name == "retry" and value.isdigit():
            retry = int(value)
    return Fields(frame_id, event, data, retry, comments > 0 and fields == 0)


def frame_id(buffer: bytes, start: int, end: int) -> int | None:
    """The numeric id of the frame buffer[start:end] when its first line is `id:` (how notify writes frames)."""
    if not buffer.startswith(b"id:", start):
        return None
    eol = buffer.find(b"\n", start, end)
    try:
        return int(buffer[start + 3:eol if eol >= 0 else end])
    except ValueError:
        return None
