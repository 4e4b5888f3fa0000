"""GET /events: opens a browser tab's Server-Sent Events stream and hands it to an OpenStream."""

from __future__ import annotations

import asyncio
import socket
import time

from tornado.iostream import StreamClosedError

from app.errors import APIError, DependencyUnavailable
from app.web import RETRY_AFTER_SECONDS
from roles.notify.frames import cursor_frame, resync_frame, retry_frame
from roles.notify.handlers import NotifyHandler
from roles.notify.holder import OpenStream
from roles.notify.registry import TooManyStreams, UserEntry


# How long an open waits for the replay window to fill after a start, and for an id this process
# has not consumed yet (another process may be a little ahead).
READY_WAIT_SECONDS = 10.0
AHEAD_WAIT_SECONDS = 2.0


class EventStreamHandler(NotifyHandler):
    """Authenticates, sends the response head, then detaches: the open stream is an OpenStream.

    Tornado's per-request objects (handler, request, connection, IOStream, their futures and the
    handler's coroutine) are what most of a stream's memory was; once the head is out nothing of
    them is needed, so the connection is detached and only its socket is kept (roles/notify/holder.py).
    """

    def initialize(self) -> None:
        self.user_id = ""
        self.closed = False

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
            if not self.closed:
                # The head goes out through Tornado (headers, chunked framing) before the detach.
                self.set_header("Content-Type", "text/event-stream; charset=utf-8")
                self.set_header("Cache-Control", "no-store")
                self.set_header("X-Accel-Buffering", "no")  # proxies must not hold frames back
                self.write(retry_frame(self.config.notify.retry_ms))
                await self.flush()
        except StreamClosedError:
            self.closed = True
        except BaseException:
            app.registry.abandon(entry)
            raise
        if self.closed:  # the client left while we waited
            app.registry.abandon(entry)
            return
        if not app.sessions.live_now(identity):
            # A logout-all consumed while this open awaited: with no await from here to registration,
            # the consumer either saw this stream or this check sees its instant. The head is out, so
            # the refusal is the stream's end; the client's reconnect is answered 401.
            app.registry.abandon(entry)
            self.finish()
            return
        self._attach(entry, resume, identity.issued_at, identity.expires_at)

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

    def _attach(self, entry: UserEntry, resume: int | str | None, issued_at: float, expires_at: float) -> None:
        # No await from here to the first send: nothing the consumer handles can fall between replay and live.
        app = self.application
        window = app.window
        limit = self.config.notify.max_pending_bytes
        window.trim(time.time())
        frames: list[bytes] = []
        if isinstance(resume, int) and window.covers(resume):
            frames = window.replay(entry.user_id, entry.chats, resume, max_bytes=limit)
            app.notify_metrics.resumes.inc()
        elif resume is not None:
            reason = "too_old" if isinstance(resume, int) and resume < (window.floor or 0) else "unknown"
            frames = [resync_frame(window.last_seq, reason)]
            app.notify_metrics.resyncs.inc()
        sock = self._detach_socket()
        if sock is None:  # the client left as the head went out
            app.registry.abandon(entry)
            return
        stream = OpenStream(app, sock, entry.user_id, issued_at, chunked=self.request.version == "HTTP/1.1",
                            max_unsent=limit)
        self.application.log_request(self)  # the access line of a stream is written at its open
        if sum(map(len, frames)) > limit:
            # More missed than one stream may buffer: send a bounded page and end; the client resumes
            # from its last id and gets the next page, so the server never holds more than the limit.
            page = frames[:-1]  # replay() stopped at the frame that passed the limit
            app.registry.abandon(entry)
            stream.end_with(page)
            app.notify_metrics.events_delivered.inc(len(page))
            return
        first = app.registry.register(entry, stream)
        stream.registered = True
        stream.start([*frames, cursor_frame(window.last_seq)], expires_at - time.time())
        if frames:
            app.notify_metrics.events_delivered.inc(len(frames))
        if first and not stream.closed:
            app.presence.changed(entry)

    def _detach_socket(self) -> socket.socket | None:
        """The connection's socket, duplicated, with Tornado's IOStream closed: the IOStream's buffers,
        futures and loop registration go with it, the TCP connection stays open on the duplicate."""
        iostream = self.detach()
        if iostream.closed():
            return None
        try:
            sock = iostream.socket.dup()
        except OSError:
            sock = None
        iostream.close()
        return sock

    def on_connection_close(self) -> None:
        self.closed = True
