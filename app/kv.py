"""The presence KV bucket's wire protocol: heartbeats with a message TTL, users' holder lists by compare-and-set, a watch."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, NamedTuple

import msgspec
from nats.js import api as js_api
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from app.events import EventBus, OrderedWatch, presence_bucket

log = logging.getLogger("fechatter.kv")

Entry = KeyValue.Entry

# JetStream's "wrong last sequence" error codes: someone else wrote the key first.
WRONG_LAST_SEQUENCE = (10071, 10164)

# How long the server keeps a watch's consumer nobody listens to (after a reset, the replaced one).
WATCH_INACTIVE_SECONDS = 30


class UserRecord(msgspec.Struct, frozen=True):
    """The value of a user's key: their workspace and the processes holding a stream of theirs."""

    w: str
    p: list[str]


class Heartbeat(msgspec.Struct):
    """The value of a process's key, refreshed every third of the TTL; also a view of the cluster's load."""

    pid: int
    host: str
    streams: int
    users: int


class ProcessSeen(NamedTuple):
    """A watch delivery of a process's key; `heartbeat` is None once it was removed or expired."""

    process_id: str
    heartbeat: Heartbeat | None


class UserSeen(NamedTuple):
    """A watch delivery of a user's key; `record` is None once nobody holds a stream of theirs."""

    user_id: str
    record: UserRecord | None


class WrongRevision(Exception):
    """The key changed since it was read: read it again and retry the compare-and-set."""


_record_decoder = msgspec.json.Decoder(UserRecord)
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)


def process_key(process_id: str) -> str:
    """A notify process's heartbeat; it carries a message TTL, so a crashed process's key expires."""
    return f"p.{process_id}"


def user_key(user_id: str) -> str:
    """The notify processes holding streams of a user; no TTL: a sweep removes processes that died."""
    return f"u.{user_id}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV key is stored under (NATS KV convention), for writes the KV client lacks."""
    return f"$KV.{bucket}.{key}"


class PresenceBucket:
    """The bucket `presence_bucket(stream)`: typed reads and writes, no rule about who is online.

    Keys `p.<process>` hold heartbeats written with a message TTL, so a dead process's key expires and
    leaves a marker every watcher sees; keys `u.<user>` hold UserRecords changed only by compare-and-set
    on their revision, which is returned to the caller to order what it announces.
    """

    def __init__(self, bus: EventBus, ttl_seconds: int):
        self.bus = bus
        self.ttl = ttl_seconds
        self.name = presence_bucket(bus.stream)
        self._kv: KeyValue | None = None
        self._watcher = None
        self._updates: asyncio.Queue = asyncio.Queue()
        self._init_done = False
        self._watch: OrderedWatch | None = None

    @property
    def resets(self) -> int:
        """How often the watch was re-created after silence."""
        return self._watch.resets if self._watch is not None else 0

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("PresenceBucket.open() first")
        return self._kv

    async def open(self) -> None:
        """Creates the bucket on first use: message TTLs allowed, expiries leave a marker watchers see."""
        js = self.bus.js
        try:
            self._kv = await js.key_value(self.name)
            return
        except BucketNotFoundError:
            pass
        config = js_api.KeyValueConfig(
            bucket=self.name,
            history=1,
            storage=js_api.StorageType.FILE,
            replicas=self.bus.config.replicas,
            limit_marker_ttl=self.ttl,
        )
        try:
            self._kv = await js.create_key_value(config)
        except BadRequestError:  # another process created it a moment ago
            self._kv = await js.key_value(self.name)

    # -- processes ---------------------------------------------------------------------------------

    async def beat(self, process_id: str, heartbeat: Heartbeat) -> None:
        # A plain publish with a message TTL: it re-creates the key too if it expired while NATS was away.
        await self.bus.js.publish(kv_subject(self.name, process_key(process_id)), msgspec.json.encode(heartbeat),
                                  msg_ttl=self.ttl)

    async def forget_process(self, process_id: str) -> None:
        await self.kv.purge(process_key(process_id))

    # -- users -------------------------------------------------------------------------------------

    async def read_user(self, user_id: str) -> tuple[int, UserRecord | None]:
        """The key's revision (0 if it never existed) and its record (None if nobody holds a stream)."""
        try:
            entry = await self.kv.get(user_key(user_id))
        except KeyDeletedError as e:
            return e.entry.revision, None
        except KeyNotFoundError as e:
            # nats-py's get() reports a purged key as not found, carrying the marker: a compare-and-set
            # must name the marker's revision, or a user who went offline can never come back online.
            return (e.entry.revision if e.entry is not None else 0), None
        # An expiry marker placed by the server carries no KV-Operation, only an empty value.
        if not entry.value:
            return entry.revision, None
        return entry.revision, _record_decoder.decode(entry.value)

    async def write_user(self, user_id: str, record: UserRecord, last: int) -> int:
        """Writes only onto revision `last`; returns the new revision or raises WrongRevision."""
        try:
            return await self.kv.update(user_key(user_id), msgspec.json.encode(record), last=last)
        except KeyWrongLastSequenceError:
            raise WrongRevision() from None

    async def remove_user(self, user_id: str, last: int) -> int:
        """A purge that only lands on `last`; its marker expires, so offline users leave no key behind."""
        headers = {KV_OP: KV_PURGE, "Nats-Rollup": "sub", "Nats-Expected-Last-Subject-Sequence": str(last)}
        try:
            ack = await self.bus.js.publish(kv_subject(self.name, user_key(user_id)), b"", headers=headers,
                                            msg_ttl=self.ttl)
        except APIError as e:
            if e.err_code in WRONG_LAST_SEQUENCE:
                raise WrongRevision() from None
            raise
        return ack.seq

    # -- the watch ---------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Starts watching every key; read the deliveries with changes().

        Not nats-py's `kv.watchall()`: its ordered consumer beats every 5 s and is checked every 10 s,
        so a lost NATS node left the mirror stale for ~14 s. This one is an ordered push consumer on the
        bucket's subjects with an idle heartbeat of `nats.heartbeat_seconds`, kept alive by the same
        OrderedWatch as the event consumer (re-created from the seq after the last one delivered, so
        nothing is lost)."""
        self._updates = asyncio.Queue()
        self._init_done = False
        stream = f"KV_{self.name}"
        self._watcher = await self.bus.js.subscribe(
            kv_subject(self.name, ">"), stream=stream, cb=self._on_watched, ordered_consumer=True,
            idle_heartbeat=self.bus.config.heartbeat_seconds,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT, inactive_threshold=WATCH_INACTIVE_SECONDS,
        )
        self._watch = OrderedWatch(self.bus, self._watcher._sub._jsi, "presence watch")
        info = await self._watcher.consumer_info()
        if not info.num_pending and not self._watcher.delivered and not self._init_done:
            self._init_done = True
            self._updates.put_nowait(None)
        # After the look at what is pending: placing it may replace the consumer (made in the background).
        await self._watch.place(self._watcher._consumer)

    async def _on_watched(self, msg) -> None:
        try:
            meta = msg.metadata
        except Exception:  # noqa: BLE001 - not a stream message
            return
        if self._watch is not None:
            self._watch.jsi._sseq = meta.sequence.stream  # where a re-created watch resumes
        self._updates.put_nowait((msg, meta))
        if not meta.num_pending and not self._init_done:
            self._init_done = True
            self._updates.put_nowait(None)

    def stalled(self) -> str | None:
        """A reason for /health/ready when the watch has heard nothing (no change, no heartbeat) for
        nats.stall_seconds: re-creating it has not worked, so this process's presence view is stale."""
        if self._watcher is None or self._watch is None:
            return None
        silent = time.monotonic() - self._watch.heard_at
        if silent > self.bus.config.stall_seconds:
            return f"presence watch silent for {silent:.0f} s"
        return None

    async def changes(self) -> AsyncIterator[ProcessSeen | UserSeen | None]:
        """Every key's current value, then None (the mirror is complete), then each change as it happens."""
        while True:
            item = await self._updates.get()
            if item is None:
                yield None
                continue
            if item is _CLOSED:
                return
            msg, meta = item
            entry = _entry(self.name, msg, meta)
            if entry is None:
                continue
            try:
                change = _decode(entry)
            except Exception:  # noqa: BLE001 - one unreadable value must not stop the watch
                log.exception("presence key %s unreadable; ignored", entry.key)
                continue
            if change is not None:
                yield change

    async def close(self) -> None:
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            self._updates.put_nowait(_CLOSED)
            try:
                await watcher.unsubscribe()
                # Not left for the server to drop after WATCH_INACTIVE_SECONDS.
                await self.bus.js.delete_consumer(f"KV_{self.name}", watcher._consumer)
            except Exception:  # noqa: BLE001 - NATS may be gone at shutdown
                pass


_CLOSED = object()


def _entry(bucket: str, msg, meta) -> Entry | None:
    """A KV entry of a watched message, as nats-py's watch makes it (server expiry markers included)."""
    headers = msg.headers or {}
    op = headers.get(KV_OP)
    if op is None and KV_MARKER_REASON in headers:
        # nats-server 2.11+: server-placed TTL/age expiry markers carry Nats-Marker-Reason, no KV-Operation.
        op = {"MaxAge": KV_PURGE, "Purge": KV_PURGE, "Remove": KV_DEL}.get(headers[KV_MARKER_REASON])
        if op is None:
            return None
    return Entry(bucket=bucket, key=msg.subject[len(kv_subject(bucket, "")):], value=msg.data,
                 revision=meta.sequence.stream, delta=meta.num_pending, created=meta.timestamp, operation=op)


def _decode(entry) -> ProcessSeen | UserSeen | None:
    kind, _, name = entry.key.partition(".")
    gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
    if kind == "p":
        return ProcessSeen(name, None if gone else _heartbeat_decoder.decode(entry.value))
    if kind == "u":
        return UserSeen(name, None if gone else _record_decoder.decode(entry.value))
    return None
