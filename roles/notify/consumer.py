"""Reads every event from JetStream in order, keeps the replay window and fans each frame out to streams."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict

import msgspec

from app import events
from app.events import Delivery, EventBus, decode_delivery
from app.services import delivery
from app.services.sessions import SessionCutoffs
from roles.notify.frames import event_frame, frame_data, http_chunk
from roles.notify.metrics import NotifyMetrics
from roles.notify.registry import Registry
from roles.notify.window import ReplayWindow, WindowEntry

log = logging.getLogger("fechatter.notify.consumer")

PRESENCE_REVISIONS_KEPT = 100_000


class EventConsumer:
    """One JetStream ordered consumer per process; a frame's id is the event's stream sequence.

    It starts `replay_window_seconds` in the past so the window is full before any stream opens: a
    restarted process can serve resumes at once, and old events are never delivered as live ones.
    """

    def __init__(self, bus: EventBus, window: ReplayWindow, registry: Registry, metrics: NotifyMetrics,
                 sessions: SessionCutoffs):
        self.bus = bus
        self.sessions = sessions
        self.window = window
        self.registry = registry
        self.metrics = metrics
        self.ready = asyncio.Event()
        self._catch_up_to = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._subscriptions: list = []
        self._second_bus: EventBus | None = None
        self.resets = 0
        # user -> newest presence revision seen; races last seconds, so the most recent users suffice.
        self._presence_revisions: OrderedDict[str, int] = OrderedDict()
        chat_members = registry.chat_members
        self._members_of = lambda chat_id: chat_members.get(chat_id, delivery.NOBODY)

    async def start(self) -> None:
        self.ready = asyncio.Event()
        start_time = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
            seconds=self.window.max_age
        )
        last_seq, last_time = await self.bus.last_sequence()
        if last_time is None or last_time < start_time:
            # Nothing recent: the window is empty and covers exactly the current end of the stream.
            self.window.start_at(last_seq)
            self.ready.set()
        else:
            self._catch_up_to = last_seq
        # On a cluster, two ordered consumers, each read through its own connection and placed on that
        # connection's node, the two on different nodes: one node lost, the other path goes on delivering
        # while the first is re-created (which waits for an election when that node was the meta leader).
        # Each event is handled once: the second copy has a seq already seen.
        await self._unsubscribe()  # a start tried again after NATS was unavailable
        self._subscriptions = [await self.bus.subscribe_ordered(self._on_message, start_time=start_time,
                                                                on_reset=self._on_reset)]
        if self.bus.config.replicas > 1:
            self._second_bus = await self.bus.second_connection(f"{self.bus.nc.options.get('name')}-second")
            self._subscriptions.append(await self._second_bus.subscribe_ordered(
                self._on_message, start_time=start_time, on_reset=self._on_reset))

    def _on_reset(self) -> None:
        self.resets += 1  # the watch (app.events.OrderedWatch) logs it

    def stalled(self) -> str | None:
        """A reason for /health/ready when the consumer has heard nothing (no event, no heartbeat) for
        nats.stall_seconds: re-creating it has not worked, so this process delivers nothing."""
        heard = [EventBus.heard_at(subscription) for subscription in self._subscriptions]
        heard_at = max((at for at in heard if at is not None), default=None)
        if heard_at is None:
            return None
        silent = time.monotonic() - heard_at
        if silent > self.bus.config.stall_seconds:
            return f"event consumer silent for {silent:.0f} s"
        return None

    async def stop(self) -> None:
        await self._unsubscribe()
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    async def _unsubscribe(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await EventBus.unsubscribe(subscription)
        second, self._second_bus = self._second_bus, None
        if second is not None:
            await second.close()

    async def wait_for_seq(self, seq: int, timeout: float) -> bool:
        """True once the event `seq` has been consumed here, False after `timeout`."""
        if self.window.last_seq >= seq:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiters = [(s, w) for s, w in self._waiters if w is not waiter]

    async def _on_message(self, msg) -> None:
        # Everything here is synchronous: the window, membership and every stream's buffer change
        # together between two awaits, which is what lets a stream register and replay atomically.
        try:
            metadata = msg.metadata
        except Exception:  # noqa: BLE001 - not a JetStream message at all
            log.warning("not a stream message on %s; ignored", getattr(msg, "subject", None))
            return
        seq = metadata.sequence.stream
        if seq <= self.window.last_seq:
            return  # a redelivery after the ordered consumer re-created itself
        stored_at = metadata.timestamp.timestamp()
        try:
            entry = self._entry(seq, stored_at, decode_delivery(msg.data))
        except Exception:  # noqa: BLE001 - one malformed event must not stop delivery of the rest
            log.exception("event %d is not an envelope we can read; skipped", seq)
            entry = WindowEntry(seq, stored_at, "", b"")  # holds its place: delivered to nobody
        self.metrics.events_consumed.inc()
        self.metrics.consumer_lag.set(getattr(metadata, "num_pending", 0) or 0)
        self.window.append(entry)
        if entry.changes and entry.changes_first:
            self.registry.apply(entry.changes)
        delivered = self.fan_out(entry)
        if entry.changes and not entry.changes_first:
            self.registry.apply(entry.changes)
        if delivered:
            self.metrics.events_delivered.inc(delivered)
        if self.ready.is_set():
            self.metrics.delivery_seconds.observe(max(0.0, time.time() - stored_at))
        elif seq >= self._catch_up_to:
            self.ready.set()
        if self._waiters:
            for waiting_for, waiter in self._waiters:
                if waiting_for <= seq and not waiter.done():
                    waiter.set_result(None)

    def fan_out(self, entry: WindowEntry) -> int:
        """Writes the event's one frame to every stream it is for; no await, no lookup outside memory.

        Presence waits for the registry's tick, coalesced per stream, so it never delays a durable frame."""
        targets = delivery.recipients(entry, self._members_of)
        if not targets:  # a chat nobody here is in: no chunk to build
            return 0
        streams = self.registry.streams_for(targets)
        frame = entry.frame
        if entry.type == events.PRESENCE and entry.subject is not None:
            subject, data = entry.subject, frame_data(frame)
            for stream in streams:
                stream.defer_presence(subject, data)
        else:
            chunk = http_chunk(frame)
            for stream in streams:
                stream.send(frame, chunk)
        return len(streams)

    def _end_sessions(self, user_id: str | None, data: bytes) -> None:
        """logout-all: this process's streams of the user opened with an older token end now (the
        client's reconnect with that token is refused); streams of a newer sign-in stay."""
        valid_after = self.sessions.on_event(user_id, data)
        user = self.registry.users.get(user_id) if valid_after is not None else None
        if user is None:
            return
        for stream in list(user.streams):  # end() unregisters: not while iterating the set itself
            if stream.issued_at < valid_after:
                stream.end()

    def _stale_presence(self, user_id: str | None, data: bytes) -> bool:
        """Two processes may announce one user's changes a moment apart and land out of order on the
        stream; the presence record's revision says which is newer, so an older one is not delivered."""
        revision = msgspec.json.decode(data).get("revision")
        if not user_id or not isinstance(revision, int):
            return False
        revisions = self._presence_revisions
        if revisions.get(user_id, -1) >= revision:
            return True
        revisions[user_id] = revision
        revisions.move_to_end(user_id)
        if len(revisions) > PRESENCE_REVISIONS_KEPT:
            revisions.popitem(last=False)
        return False

    def _entry(self, seq: int, stored_at: float, event: Delivery) -> WindowEntry:
        data = bytes(event.data)
        if event.type == events.SESSIONS_REVOKED:
            self._end_sessions(event.user_id, data)
            return WindowEntry(seq, stored_at, "", b"")  # holds its place: a frame for nobody
        if b"\n" in data or b"\r" in data:
            # Pretty-printed JSON from some other publisher: an SSE data line must be one line.
            data = msgspec.json.encode(msgspec.json.decode(data))
        if events.is_personal(event.type, event.chat_id):
            # One user's own event: their streams alone, whatever else the envelope names.
            return WindowEntry(seq, stored_at, event.type, event_frame(seq, event.type, data),
                               recipients=(event.user_id,) if event.user_id else None)
        if event.type == events.USER_UPDATED:  # the members of the user's chats, and the user's own tabs
            return WindowEntry(seq, stored_at, event.type, event_frame(seq, event.type, data),
                               subject=event.user_id, chat_ids=tuple(event.chat_ids or ()),
                               recipients=tuple(event.recipients) if event.recipients else None)
        if event.type in events.USER_EVENTS:  # presence
            if self._stale_presence(event.user_id, data):
                return WindowEntry(seq, stored_at, event.type, b"")  # holds its place: delivered to nobody
            # A chat too large for per-user pushes is left out; its members ask GET /api/online-users.
            return WindowEntry(seq, stored_at, event.type, event_frame(seq, event.type, data),
                               subject=event.user_id, chat_ids=self.registry.presence_chats(event.chat_ids or ()))
        chat_id = event.chat_id
        recipients = tuple(event.recipients) if event.recipients else None
        changes, changes_first = delivery.membership_changes(
            event.type, chat_id, data, recipients or (), self._members_of)
        return WindowEntry(seq, stored_at, event.type, event_frame(seq, event.type, data), chat_id=chat_id,
                           recipients=recipients, changes=changes, changes_first=changes_first)
