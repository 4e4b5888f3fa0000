"""SSE wire format: each event is encoded once into the bytes every recipient stream receives."""

from __future__ import annotations

import msgspec

from app import events

PING = b": ping\n\n"


def event_frame(seq: int, event_type: str, data_json: bytes) -> bytes:
    # data_json is one line of JSON (no raw newline), so one `data:` line carries it all.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), data_json)


def frame_data(frame: bytes) -> bytes:
    """The JSON an event_frame carries (after `data: `, before the blank line)."""
    return frame[frame.index(b"\ndata: ") + 7:-2]


def http_chunk(frame: bytes) -> bytes:
    """The frame as one HTTP/1.1 chunk, built once per event and written to every stream's socket."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


PING_CHUNK = http_chunk(PING)


def cursor_frame(seq: int) -> bytes:
    """An id with no data: EventSource records it as the last event id without firing an event."""
    return b"id: %d\n\n" % seq


def retry_frame(retry_ms: int) -> bytes:
    return b"retry: %d\n\n" % retry_ms


def resync_frame(seq: int, reason: str) -> bytes:
    # Carries the current cursor, so the client's next reconnect resumes from here, not from the stale id.
    return event_frame(seq, events.RESYNC, msgspec.json.encode({"reason": reason}))
