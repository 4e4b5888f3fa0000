"""GET /events: one long-lived Server-Sent Events response per browser tab."""

from __future__ import annotations

import asyncio
import logging
import time

from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from app import events
from app.errors import APIError, DependencyUnavailable
from app.web import RETRY_AFTER_SECONDS
from roles.notify.frames import cursor_frame, event_frame, http_chunk, resync_frame, retry_frame
from roles.notify.handlers import NotifyHandler
from roles.notify.registry import KEEPALIVE_SLICES, TooManyStreams, UserEntry

log = logging.getLogger("fechatter.notify.stream")


# How long an open waits for the replay window to fill after a start, and for an id this process
# has not consumed yet (another process may be a little ahead).
READY_WAIT_SECONDS = 10.0
AHEAD_WAIT_SECONDS = 2.0


class EventStreamHandler(NotifyHandler):
    """Registered with the connection registry while open; the consumer writes frames straight into it.

    In the style of jupyterhub's progress handler: write, flush, and the connection closing ends the
    request. Nothing runs per stream while it is idle: keepalive is one timer for all streams, and
    frames are written by the consumer without awaiting each stream in turn.
    """

    def initialize(self) -> None:
        self.user_id = ""
        self.issued_at = 0.0
        self.closed = False
        self._entry: UserEntry | None = None
        self._registered = False
        self._done: asyncio.Future[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._socket: IOStream | None = None
        # Chunks written during this pass of the event loop, sent together at its end (one send per burst).
        self._out: list[bytes] | None = None
        # Keepalive bookkeeping: which tick visits this stream, and whether it was written to since.
        self.keepalive_slice = (id(self) >> 4) % KEEPALIVE_SLICES
        self.wrote = False
        # Presence changes waiting for the registry's next tick, by the user they are about.
        self._ephemeral: dict[str, bytes] | None = None

    async def get(self) -> None:
        app = self.application
        identity = await self.require_live_user()  # one indexed read of the user, then cached
        app.stream_opens.hit(f"opens:user:{identity.user_id}", what="stream opens",
                             limit=self.config.limits.stream_opens_per_minute_per_user, window=60)
        if app.stopping:
            raise APIError(503, "shutting_down", "this notify process is shutting down; reconnect",
                           headers={"Retry-After": "1"})
        resume = self._resume_point()
        if not app.consumer.ready.is_set():
            try:
                await asyncio.wait_for(app.consumer.ready.wait(), READY_WAIT_SECONDS)
            except asyncio.TimeoutError:
                raise DependencyUnavailable("nats") from None
        self.user_id = identity.user_id
        if identity.is_bot:  # a bot's stream delivers events but never counts as online
            app.presence.bots.add(identity.user_id)
        limits = self.config.limits
        try:
            entry = await app.registry.acquire(
                identity.user_id, identity.workspace_id, limits.streams_per_user if limits.enabled else None
            )
        except TooManyStreams:
            raise APIError(429, "too_many_streams",
                           f"at most {limits.streams_per_user} streams per user; close another tab",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        try:
            if isinstance(resume, int) and resume > app.window.last_seq:
                await app.consumer.wait_for_seq(resume, AHEAD_WAIT_SECONDS)
        except BaseException:
            app.registry.abandon(entry)
            raise
        if self.closed:  # the client left while we waited
            app.registry.abandon(entry)
            return
        if not app.sessions.live_now(identity):
            # A logout-all consumed while this open awaited: with no await from here to registration,
            # the consumer either saw this stream or this check sees its instant.
            app.registry.abandon(entry)
            raise APIError(401, "unauthorized", "this session has ended (signed out everywhere); sign in again",
                           headers={"WWW-Authenticate": "Bearer"})
        self.issued_at = identity.issued_at
        self._done = asyncio.get_running_loop().create_future()
        self._open(entry, resume, identity.expires_at)
        await self._done

    def _resume_point(self) -> int | str | None:
        """The last id the client saw: an int, None for a fresh stream, or a string that is no id of ours.

        An id is a JetStream stream sequence (uint64): up to 19 ASCII digits, read as bytes because
        str.isdigit() takes '²', '①', Arabic-Indic and fullwidth digits, which int() then refuses.
        Anything else is an unknown id, answered with a `resync` frame rather than a 4xx: an
        EventSource shows no error body and would just stop reconnecting. Undecodable query values
        are unknown ids too.
        """
        header = self.request.headers.get("Last-Event-ID")
        if header is not None:
            raw = header.encode("latin-1", "replace")  # Tornado decodes header bytes as latin-1
        else:
            values = self.request.query_arguments.get("last_event_id")
            if not values:
                return None
            raw = values[-1]
        raw = raw.strip(b" \t")
        if not raw:
            return None
        if raw.isdigit() and len(raw) < 20:  # bytes.isdigit(): ASCII digits only
            return int(raw)
        return raw.decode("utf-8", "replace")[:64]

    def _open(self, entry: UserEntry, resume: int | str | None, expires_at: float) -> None:
        # No await from here to the flush: nothing the consumer handles can fall between replay and live.
        app = self.application
        window = app.window
        limit = self.config.notify.max_pending_bytes
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # proxies must not hold frames back
        self.write(retry_frame(self.config.notify.retry_ms))
        window.trim(time.time())
        frames: list[bytes] = []
        if isinstance(resume, int) and window.covers(resume):
            frames = window.replay(entry.user_id, entry.chats, resume, max_bytes=limit)
            app.notify_metrics.resumes.inc()
        elif resume is not None:
            reason = "too_old" if isinstance(resume, int) and resume < (window.floor or 0) else "unknown"
            frames = [resync_frame(window.last_seq, reason)]
            app.notify_metrics.resyncs.inc()
        size = sum(map(len, frames))
        if size > limit:
            # More missed than one stream may buffer: send a bounded page and end; the client resumes
            # from its last id and gets the next page, so the server never holds more than the limit.
            page = frames[:-1]  # replay() stopped at the frame that passed the limit
            for frame in page:
                self.write(frame)
            app.notify_metrics.events_delivered.inc(len(page))
            app.registry.abandon(entry)
            self.closed = True
            self.finish()  # on_finish resolves _done
            return
        self._entry = entry
        first = app.registry.register(entry, self)
        self._registered = True
        for frame in frames:
            self.write(frame)
        self.write(cursor_frame(window.last_seq))
        self.flush()
        if frames:
            app.notify_metrics.events_delivered.inc(len(frames))
        # From here on the stream may buffer at most `limit` unsent bytes; past that the client is too slow.
        self.request.connection.stream.max_write_buffer_size = limit
        if self.request.version == "HTTP/1.1":
            # Tornado chunks an HTTP/1.1 response that has no Content-Length, as this one.
            self._socket = self.request.connection.stream
        if first:
            app.presence.changed(entry)
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, expires_at - time.time()), self.end)

    def send(self, frame: bytes, chunk: bytes | None = None) -> None:
        """Called by the fan-out for every frame; never awaits, never raises.

        The headers went out in _open, so the frame goes straight to the socket's buffer, already
        framed as an HTTP chunk by the caller once for all streams: RequestHandler.write/flush would
        re-frame it and make two futures per stream per event, most of the fan-out's cost.
        """
        if self.closed:
            return
        self._write(frame, chunk)

    def defer_presence(self, user_id: str, data: bytes) -> None:
        """A presence change, written by the registry's next tick after this tick's durable frames;
        a newer change of the same user replaces an older one still waiting."""
        if self.closed:
            return
        pending = self._ephemeral
        if pending is None:
            pending = self._ephemeral = {}
            self.application.registry.mark_dirty(self)
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
            frame = event_frame(self.application.window.last_seq, events.PRESENCE, data)
            chunk = built[changes] = (frame, http_chunk(frame))
        self._write(*chunk)

    def _write(self, frame: bytes, chunk: bytes | None) -> None:
        self.wrote = True
        if self._socket is None:  # HTTP/1.0 has no chunked encoding: let Tornado frame it
            self._out_write(frame)
            return
        # The first frame of a pass of the loop goes at once; the consumer handles every event
        # that arrived together in one pass, so the rest of a burst is joined into one more send.
        if chunk is None:
            chunk = http_chunk(frame)
        out = self._out
        if out is None:
            self._out = []
            asyncio.get_running_loop().call_soon(self._send_out)
            self._out_write(chunk)
        else:
            out.append(chunk)

    def _send_out(self) -> None:
        out, self._out = self._out, None
        if out and not self._finished and not self._socket.closed():
            self._out_write(out[0] if len(out) == 1 else b"".join(out))

    def _out_write(self, data: bytes) -> None:
        if self.closed and self._finished:
            return
        try:
            if self._socket is None:
                self.write(data)
                self.flush()
            else:
                self._socket.write(data)
        except StreamBufferFullError:
            self.closed = True
            # Not now: the fan-out is iterating over the registry's sets.
            asyncio.get_running_loop().call_soon(self._drop_slow)
        except StreamClosedError:
            self.closed = True
            asyncio.get_running_loop().call_soon(self._release)

    def _drop_slow(self) -> None:
        self.application.notify_metrics.slow_disconnects.inc()
        log.info("stream of %s closed: client too slow to read", self.user_id)
        self._release()
        self.request.connection.close()

    def end(self) -> None:
        """Ends the stream cleanly (token expired, shutdown); the client reconnects and resumes."""
        if self.closed:
            return
        self.closed = True
        self._release()
        if self._out:  # what this pass queued goes before the response's end
            self._send_out()
        if not self._finished:
            try:
                self.finish()
            except StreamBufferFullError:  # no room even for the last chunk: just close
                self.request.connection.close()

    def on_connection_close(self) -> None:
        self.closed = True
        self._release()

    def on_finish(self) -> None:
        self.closed = True
        self._release()

    def _release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._registered:
            self._registered = False
            gone = self.application.registry.unregister(self)
            if gone is not None:
                self.application.presence.changed(gone)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
