"""NATS JetStream events: the one module that names the stream, its subjects and the event envelope."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any, Awaitable, Callable

import msgspec
import nats
from nats.aio.client import Client as NATS
import nats.errors
import nats.js.errors
from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from app.config import NatsConfig
from app.store import isoformat, new_id, utcnow

log = logging.getLogger("fechatter.events")

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_DELETED = "message.deleted"
CHAT_CREATED = "chat.created"
CHAT_UPDATED = "chat.updated"
CHAT_DELETED = "chat.deleted"
MEMBER_JOINED = "member.joined"
MEMBER_LEFT = "member.left"
# A member's role changed: data {chat_id, user_id, role}, and for a transfer of ownership also
# {owner_id, previous_owner_id} (the previous owner is an admin now).
MEMBER_UPDATED = "member.updated"
# A member added or removed one reaction: data {chat_id, message_id, emoji, user_id} (app.services.reactions).
REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"
# A member pinned or unpinned a message: data {chat_id, message_id, user_id}.
MESSAGE_PINNED = "message.pinned"
MESSAGE_UNPINNED = "message.unpinned"
# A thread's root changed by a reply sent or deleted: data {chat_id, message_id (the root), reply_count,
# last_reply_at}, so a client keeps the root's "N replies" current without refetching it.
THREAD_UPDATED = "thread.updated"
TYPING = "typing"
READ = "read"
PRESENCE = "presence"
# A user's access tokens issued before data.valid_after stop counting (logout-all): the notify
# role closes those streams, the api forgets its cached instant. Never delivered as a frame.
SESSIONS_REVOKED = "sessions.revoked"
# A user's public payload changed (profile, username, avatar): data is the user. One event on the user's own
# subject with `chat_ids` (their chats) and `recipients` [the user]: the members of those chats and the user's
# own tabs get it, once each, however many chats they share; never one event per chat.
USER_UPDATED = "user.updated"
# A member changed their own settings of a chat (notify level, muted): data {chat_id, notify, muted}.
CHAT_SETTINGS = "chat.settings"
# Made by the notify role for one stream, never published.
RESYNC = "resync"

CHAT_EVENTS = frozenset(
    {
        MESSAGE_CREATED,
        MESSAGE_UPDATED,
        MESSAGE_DELETED,
        CHAT_CREATED,
        CHAT_UPDATED,
        CHAT_DELETED,
        MEMBER_JOINED,
        MEMBER_LEFT,
        MEMBER_UPDATED,
        REACTION_ADDED,
        REACTION_REMOVED,
        MESSAGE_PINNED,
        MESSAGE_UNPINNED,
        THREAD_UPDATED,
        TYPING,
        READ,
    }
)
USER_EVENTS = frozenset({PRESENCE, SESSIONS_REVOKED, USER_UPDATED})
# A user's own events, for that user's streams alone (every tab of theirs, on every notify process), never
# for a chat's members: the settings they changed, and the read mark a send of theirs moved (their other
# tabs clear the badge; nobody else needs it). Made by `personal_event`: routed by `user_id` on a user
# subject, with the user as the only recipient and no `chat_id` (the chat is named in `data`).
PERSONAL_EVENTS = frozenset({CHAT_SETTINGS, READ})

# The one classification of NATS failures. Failures that mean "NATS (or the JetStream leader of the
# stream) is not there right now": a node lost, an election under way, a reconnect. The event stays in
# the outbox and leaves once JetStream answers again; a request never fails for one of these.
UNAVAILABLE_ERRORS = (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoServersError,
    NoRespondersError,  # no JetStream leader answers the subject (yet)
    StaleConnectionError,
    OutboundBufferLimitError,
    NoStreamResponseError,  # the publish reached a node, but no stream leader acknowledged it
    ServiceUnavailableError,  # JetStream's 503 "temporarily unavailable" during an election
    NatsTimeoutError,
    asyncio.TimeoutError,
    TimeoutError,
)
# Every error a NATS or JetStream call may raise; for a stored change any of them only delays its event.
NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, *UNAVAILABLE_ERRORS)


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means NATS is away for now (retry later) rather than a request NATS refuses."""
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    # A JetStream API error with a 5xx code (503 during an election, 504 a timeout inside the cluster).
    return isinstance(error, nats.js.errors.APIError) and (error.code or 0) >= 500


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The envelope of every event on the stream; `data` is what an SSE frame carries."""

    id: str
    type: str
    ts: str
    workspace_id: str | None = None
    chat_id: str | None = None
    # The user a user-scoped event is about (presence), or whose own a personal event is.
    user_id: str | None = None
    actor_id: str | None = None
    # Everyone the event is for, when membership alone cannot tell (a removed member, a deleted chat).
    recipients: list[str] | None = None
    # The chats of the user a presence event is about, so any notify process can find who shares one.
    chat_ids: list[str] | None = None
    data: dict[str, Any] = {}


def make_event(
    type: str,
    data: dict[str, Any],
    *,
    chat_id: str | None = None,
    workspace_id: str | None = None,
    user_id: str | None = None,
    actor_id: str | None = None,
    recipients: list[str] | None = None,
    chat_ids: list[str] | None = None,
    event_id: str | None = None,
) -> Event:
    if is_personal(type, chat_id):
        if not user_id or recipients != [user_id]:
            raise ValueError(f"a personal {type} is for its user_id alone: made by personal_event")
    elif type not in CHAT_EVENTS and type not in USER_EVENTS:
        raise ValueError(f"unknown event type {type!r}")
    elif type in CHAT_EVENTS and not chat_id:
        raise ValueError(f"{type} needs a chat_id")
    return Event(
        id=event_id or new_id(),
        type=type,
        ts=isoformat(utcnow()),
        workspace_id=workspace_id,
        chat_id=chat_id,
        user_id=user_id,
        actor_id=actor_id,
        recipients=recipients,
        chat_ids=chat_ids,
        data=data,
    )


def personal_event(type: str, data: dict[str, Any], *, user_id: str, workspace_id: str | None = None,
                   event_id: str | None = None) -> Event:
    """An event of PERSONAL_EVENTS for `user_id`'s own streams."""
    if type not in PERSONAL_EVENTS:
        raise ValueError(f"{type!r} is not a personal event")
    return make_event(type, data, workspace_id=workspace_id, user_id=user_id, actor_id=user_id,
                      recipients=[user_id], event_id=event_id)


def is_personal(event_type: str, chat_id: str | None) -> bool:
    """A personal event's envelope: its type is one of PERSONAL_EVENTS and it names no chat."""
    return chat_id is None and event_type in PERSONAL_EVENTS


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)

# Events that change who is in a chat; the notify role keeps its membership map current from them.
MEMBERSHIP_EVENTS = frozenset({CHAT_CREATED, CHAT_DELETED, MEMBER_JOINED, MEMBER_LEFT})


class Delivery(msgspec.Struct, kw_only=True):
    """What the notify role reads of an envelope: the routing fields, with `data` left as its JSON bytes."""

    type: str
    chat_id: str | None = None
    user_id: str | None = None
    recipients: list[str] | None = None
    chat_ids: list[str] | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


_delivery_decoder = msgspec.json.Decoder(Delivery)


def decode_delivery(payload: bytes) -> Delivery:
    """Decodes routing only: `data` goes into the SSE frame as published, never re-encoded."""
    return _delivery_decoder.decode(payload)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event:
    return _decoder.decode(payload)


class Subjects:
    """Subjects under one prefix: `<prefix>.chat.<chat_id>.<type>` and `<prefix>.user.<user_id>.<type>`."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.all = f"{prefix}.>"

    def for_event(self, event: Event) -> str:
        if event.type in USER_EVENTS or is_personal(event.type, event.chat_id):
            return f"{self.prefix}.user.{event.user_id}.{event.type}"
        return f"{self.prefix}.chat.{event.chat_id}.{event.type}"


def presence_bucket(stream: str) -> str:
    """The KV bucket of presence: one per event stream, so stacks sharing a NATS never see each other's users."""
    return f"{stream}_PRESENCE"


def presence_event_id(user_id: str, status: str, revision: int) -> str:
    """Nats-Msg-Id of a presence change: the KV revision that made it, so a re-publish is dropped."""
    return f"presence-{user_id}-{status}-{revision}"


# How often a re-created consumer that landed on another node than its connection's is placed again.
PLACEMENT_TRIES = 8


async def when_available(start: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0,
                         interval: float = 0.25) -> Any:
    """`start()`, tried again while JetStream answers "unavailable" (a new or recovering cluster has not
    elected the leader of a stream yet: seconds), up to `timeout`; a process starting then waits rather than exit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await start()
        except UNAVAILABLE_ERRORS as e:
            if loop.time() > deadline:
                raise
            log.info("%s not available yet (%s); trying again", what, e.__class__.__name__)
            await asyncio.sleep(interval)  # a back-off, not synchronisation


async def connect_nats(url: str, name: str, connect_timeout: float = 10.0, *, in_order: bool = False) -> NATS:
    """Connect, retrying until connect_timeout; once connected, reconnect forever.

    `in_order`: try the servers in the order given (else in a random order, which spreads clients)."""

    async def on_error(e: Exception) -> None:
        log.warning("NATS error: %s", e)

    async def on_disconnected() -> None:
        log.warning("NATS disconnected")

    async def on_reconnected() -> None:
        log.info("NATS reconnected")

    deadline = asyncio.get_running_loop().time() + connect_timeout
    while True:
        try:
            return await nats.connect(
                # "nats://a:4222,nats://b:4222": the seed list of a cluster (the client learns the rest).
                [server.strip() for server in url.split(",") if server.strip()],
                name=name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                dont_randomize=in_order,
            )
        except (NoServersError, OSError, NatsTimeoutError, asyncio.TimeoutError) as e:
            if asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"cannot connect to NATS at {url}: {e}") from None
            await asyncio.sleep(0.2)


class EventBus:
    """Publishes envelopes to the JetStream stream and lets the notify role read it in order."""

    def __init__(self, nc: NATS, config: NatsConfig):
        self.nc = nc
        self.config = config
        self.js = nc.jetstream(timeout=config.publish_timeout_seconds)
        self.subjects = Subjects(config.subject_prefix)
        self.stream = config.stream

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def second_connection(self, name: str) -> "EventBus":
        """Another connection to the cluster, to another node when there is one: a second reader whose
        path (connection and consumer) shares no node with the first. Close it with close()."""
        here = self.nc.connected_url.netloc if self.nc.connected_url else None
        servers = {f"nats://{server.netloc}": None for server in self.nc.servers}
        ordered = sorted(servers, key=lambda url: url.endswith(f"//{here}"))  # this node last
        return EventBus(await connect_nats(",".join(ordered), name, in_order=True), self.config)

    async def ensure_stream(self) -> None:
        stream_config = js_api.StreamConfig(
            name=self.stream,
            subjects=[self.subjects.all],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            max_age=self.config.stream_max_age_seconds,
            duplicate_window=self.config.duplicate_window_seconds,
            num_replicas=self.config.replicas,
        )
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(stream_config)
        else:
            await self.js.update_stream(stream_config)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raises unless NATS and the stream answer."""
        if not self.nc.is_connected:
            raise ConnectionError("NATS is not connected")
        await self.js.stream_info(self.stream)

    async def last_sequence(self) -> tuple[int, datetime.datetime | None]:
        """The stream's last sequence and when it was stored (None for an empty stream)."""
        info = await self.js.stream_info(self.stream)
        last = info.state.last_seq
        if not last:
            return 0, None
        try:
            message = await self.js.get_msg(self.stream, seq=last)
        except NotFoundError:  # removed by the age limit in between: as good as older than any window
            return last, None
        return last, message.time

    async def first_seq_since(self, when: datetime.datetime) -> int:
        """The sequence of the first event stored at or after `when` (the next one, if none is yet)."""
        info = await self.js.add_consumer(
            self.stream,
            js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
                opt_start_time=when.isoformat(),
                ack_policy=js_api.AckPolicy.NONE,
                filter_subject=self.subjects.all,
                inactive_threshold=30,
            ),
        )
        try:
            # A pull consumer that never pulls: the server has placed it just before `when`.
            return info.delivered.stream_seq + 1
        finally:
            await self.js.delete_consumer(self.stream, info.name)

    async def publish(self, event: Event) -> int:
        """Publish and wait for JetStream's ack; returns the stream sequence. Raises when NATS is away."""
        return await self.publish_encoded(self.subjects.for_event(event), event.id, encode_event(event))

    async def announce_presence(self, user_id: str, status: str, revision: int, *, workspace_id: str,
                                chat_ids: list[str]) -> int:
        """Publishes a user's online/offline change; the KV revision that made it orders it and dedupes it."""
        return await self.publish(make_event(
            PRESENCE, {"user_id": user_id, "status": status, "revision": revision},
            user_id=user_id, workspace_id=workspace_id, chat_ids=chat_ids,
            event_id=presence_event_id(user_id, status, revision),
        ))

    async def publish_encoded(self, subject: str, event_id: str, payload: bytes) -> int:
        if not self.nc.is_connected:
            # nats-py would buffer it and wait the whole publish timeout: fail fast instead.
            raise ConnectionClosedError()
        # Nats-Msg-Id lets JetStream drop a re-publish of the same event (outbox retries).
        ack = await self.js.publish(
            subject,
            payload,
            timeout=self.config.publish_timeout_seconds,
            headers={"Nats-Msg-Id": event_id},
        )
        return ack.seq

    async def subscribe_ordered(
        self,
        callback: Callable[[Any], Awaitable[None]],
        *,
        start_seq: int | None = None,
        start_time: datetime.datetime | None = None,
        on_reset: Callable[[], None] | None = None,
    ):
        """An ordered push consumer over every subject, kept alive by an OrderedWatch."""
        kwargs: dict[str, Any] = {}
        if start_time is not None:
            # Never subscribe by start time: after a NATS restart nats-py re-creates the ordered consumer
            # by start sequence but keeps the start time, which the server refuses (err 10094) for ever.
            start_seq = await self.first_seq_since(start_time)
        if start_seq is not None:
            kwargs["deliver_policy"] = js_api.DeliverPolicy.BY_START_SEQUENCE
            kwargs["config"] = js_api.ConsumerConfig(opt_start_seq=start_seq)
        else:
            kwargs["deliver_policy"] = js_api.DeliverPolicy.NEW
        jsis: list[Any] = []

        async def on_message(msg) -> None:
            if jsis:
                try:
                    # nats-py never tracks it and would re-create a reset consumer from seq 1.
                    jsis[0]._sseq = msg.metadata.sequence.stream
                except Exception:  # noqa: BLE001 - not a stream message: the callback says so
                    pass
            await callback(msg)

        subscription = await self.js.subscribe(
            self.subjects.all, stream=self.stream, cb=on_message, ordered_consumer=True,
            idle_heartbeat=self.config.heartbeat_seconds, **kwargs
        )
        jsi = subscription._sub._jsi
        jsis.append(jsi)
        if start_seq is not None and not jsi._sseq:
            jsi._sseq = start_seq - 1
        jsi.fechatter_watch = OrderedWatch(self, jsi, "event consumer", on_reset=on_reset)
        await jsi.fechatter_watch.place(subscription._consumer)
        return subscription

    def node(self) -> str | None:
        """The server_name of the node this connection is connected to (from its INFO)."""
        info = getattr(self.nc, "_server_info", None) or {}
        return info.get("server_name")

    @staticmethod
    def heard_at(subscription: Any) -> float | None:
        """time.monotonic() of the last event or heartbeat of a `subscribe_ordered` subscription."""
        jsi = getattr(getattr(subscription, "_sub", None), "_jsi", None)
        watch = getattr(jsi, "fechatter_watch", None)
        return watch.heard_at if watch is not None else None

    def webhook_consumer_name(self) -> str:
        """The durable consumer every worker process of this stream shares (app.services.webhooks_out)."""
        return f"{self.stream}_WEBHOOKS"

    async def subscribe_webhooks(self, *, ack_wait: float, max_ack_pending: int):
        """A pull subscription on the shared durable consumer of the outgoing webhooks: created at the first
        worker's start from the new events on, then resumed; JetStream redelivers what a worker took but
        never acknowledged after `ack_wait` seconds, and lets the group hold at most `max_ack_pending`."""
        return await self.js.pull_subscribe(
            self.subjects.all, durable=self.webhook_consumer_name(), stream=self.stream,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.NEW, ack_policy=js_api.AckPolicy.EXPLICIT,
                ack_wait=ack_wait, max_ack_pending=max_ack_pending, max_deliver=-1,
            ),
        )

    async def webhook_ack_floor(self) -> int:
        """The stream sequence up to which the webhook consumer has every event acknowledged."""
        info = await self.js.consumer_info(self.stream, self.webhook_consumer_name())
        return info.ack_floor.stream_seq or 0

    async def subscribe_sessions(self, callback: Callable[[str | None, bytes], Awaitable[None]]):
        """Every `sessions.revoked` as it is published, on plain NATS (no consumer, nothing replayed):
        the api's cache is only made fresher by it, and a missed one is bounded by the cache's ttl."""

        async def on_message(msg) -> None:
            try:
                event = decode_delivery(msg.data)
            except msgspec.DecodeError:
                return
            await callback(event.user_id, bytes(event.data))

        return await self.nc.subscribe(f"{self.subjects.prefix}.user.*.{SESSIONS_REVOKED}", cb=on_message)

    @staticmethod
    async def unsubscribe(subscription: Any) -> None:
        """Ends a subscription of `subscribe_ordered` or `subscribe_sessions` (None: nothing to end);
        NATS may be gone at shutdown, which is no error."""
        if subscription is None:
            return
        try:
            await subscription.unsubscribe()
        except Exception as e:  # noqa: BLE001 - NATS may be gone at shutdown
            log.debug("unsubscribe failed: %s", e)

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001 - closing during a NATS outage must not fail shutdown
            await self.nc.close()


class OrderedWatch:
    """Keeps one of nats-py's ordered push consumers alive, for the event stream and the presence watch alike.

    It replaces nats-py's own check (two missed beats, looked at every two beats, then a silent re-create
    from seq 1): every quarter beat it looks whether anything arrived (nats-py marks the consumer active
    on every message and heartbeat); after two silent beats, or at once after this connection
    reconnected (a node was lost, maybe the consumer's), it re-creates the consumer from the seq after
    the last one delivered (`jsi._sseq`, kept by the subscription's callback), says so in the log, and
    tries again until a node answers. The new consumer gets short, doubling timeouts and is placed on
    this connection's node when it can be (see place()).
    """

    def __init__(self, bus: EventBus, jsi: Any, what: str, *, on_reset: Callable[[], None] | None = None):
        self.bus = bus
        self.jsi = jsi
        self.what = what
        self.on_reset = on_reset
        self.heard_at = time.monotonic()
        self.resets = 0
        self._beat = bus.config.heartbeat_seconds
        self._next_try = self.heard_at + 2 * self._beat
        self._failures = 0
        if jsi._hbtask is not None:
            jsi._hbtask.cancel()
        self._reset = jsi.reset_ordered_consumer  # nats-py's own; also what it calls on a sequence gap
        jsi.reset_ordered_consumer = self._logged_reset
        jsi.recreate_consumer = self._recreate
        jsi._hbtask = asyncio.get_running_loop().create_task(self._run())  # cancelled by unsubscribe()

    async def place(self, consumer: str) -> None:
        """On a cluster, a consumer not on this connection's node is replaced by one that is: the path of
        events (consumer and connection) then depends on one node, so two readers connected to different
        nodes (EventBus.second_connection) never both stop for one node lost."""
        if self.bus.config.replicas < 2:
            return
        try:
            info = await self.bus.js._jsm.consumer_info(self.jsi._stream, consumer,
                                                        timeout=self.bus.config.publish_timeout_seconds)
        except Exception:  # noqa: BLE001 - unknown for now: placement is a preference, not a rule
            return
        host = info.cluster.leader if info.cluster else None
        if host is None or self.bus.node() in (None, host):
            return
        await self._reset(self.jsi._sseq + 1)  # not logged: nothing was missed
        try:
            await self.bus.js._jsm.delete_consumer(self.jsi._stream, consumer)
        except Exception as e:  # noqa: BLE001 - it expires by itself once nobody listens
            log.debug("deleting a misplaced consumer failed: %s", e)

    async def _logged_reset(self, sseq: int | None) -> bool:
        self.resets += 1
        log.warning("%s silent for %.1f s (a NATS node lost?): re-created from seq %d",
                    self.what, time.monotonic() - self.heard_at, sseq or 0)
        if self.on_reset is not None:
            self.on_reset()
        return await self._reset(sseq)

    async def _recreate(self) -> None:
        # nats-py's own waits the whole JetStream timeout when the new consumer is placed on the dead node
        # (which the cluster has not noticed yet): a consumer is made in milliseconds, so the first try
        # gets half a beat, and each failed one is tried again at once with twice as long (up to the
        # JetStream timeout), so a slow cluster still gets one.
        jsi, jsm = self.jsi, self.bus.js._jsm
        timeout = min(self._beat / 2 * 2**self._failures, self.bus.config.publish_timeout_seconds)
        try:
            for _ in range(PLACEMENT_TRIES):
                info = await jsm.add_consumer(jsi._stream, config=jsi._ccreq, timeout=timeout)
                host, node = (info.cluster.leader if info.cluster else None), self.bus.node()
                if host is None or node is None or host == node:
                    break
                # On another node than this connection's, where either node's loss would stop it:
                # placed again (the server picks one of the stream's nodes at random).
                await jsm.delete_consumer(jsi._stream, info.name)
        except Exception as e:  # noqa: BLE001 - no node answered: at the next tick again
            log.info("re-creating the %s failed: %s", self.what, e.__class__.__name__ or e)
            self._failures += 1
            self._next_try = time.monotonic()
            return
        self._failures = 0
        jsi._psub._consumer = info.name
        self._next_try = time.monotonic() + 2 * self._beat

    async def _run(self) -> None:
        jsi, nc, beat = self.jsi, self.bus.nc, self._beat
        reconnects = nc.stats["reconnects"]
        while not nc.is_closed:
            await asyncio.sleep(beat / 4)  # a timer, not synchronisation
            now = time.monotonic()
            reconnected, reconnects = nc.stats["reconnects"] != reconnects, nc.stats["reconnects"]
            if jsi._active and not reconnected:  # nats-py sets it on every message and heartbeat
                jsi._active = False
                self.heard_at = now
                self._next_try = now + 2 * beat
                continue
            if not nc.is_connected or (not reconnected and now < self._next_try):
                continue
            self._next_try = now + 4 * beat  # unless _recreate() says sooner
            try:
                await jsi.reset_ordered_consumer(jsi._sseq + 1)  # _recreate() runs in the background
            except Exception as e:  # noqa: BLE001 - NATS away: tried again later
                log.info("re-creating the %s failed: %s", self.what, e.__class__.__name__)
