"""Presence across notify processes: a NATS KV bucket says who holds streams where; changes become `presence` events."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
from typing import Awaitable, Callable, Iterable

import msgspec
from nats.js.errors import APIError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from app import events
from app.events import EventBus, make_event
from app.store import Store
from roles.notify.registry import Registry, UserEntry

log = logging.getLogger("fechatter.notify.presence")

# Compare-and-set retries of one user's key before giving up until the next tick.
CAS_ATTEMPTS = 8
# JetStream's "wrong last sequence" error codes: someone else wrote the key first.
WRONG_LAST_SEQUENCE = (10071, 10164)


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


_record_decoder = msgspec.json.Decoder(UserRecord)
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)


def new_process_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Presence:
    """Who is online in the whole cluster, and the one `presence` event per real change.

    The bucket (app.events.presence_bucket) holds two kinds of keys:
      - p.<process>: each notify process's heartbeat, written with a message TTL of
        notify.presence_ttl_seconds and refreshed every third of it. When a process dies its key
        expires and JetStream leaves a marker that every process's watch sees.
      - u.<user>: {workspace, [processes holding a stream of the user]}. Every change is a
        compare-and-set on the key's revision; the writer whose change turns the list from empty to
        non-empty (or back) is the one that publishes `online` (`offline`), with that revision in the
        Nats-Msg-Id. So a transition is announced once, whichever process makes it.
    Processes that died are removed from users' lists by one process (the smallest live id), as soon
    as their key expires: its users go offline at most the TTL after the crash.

    Each process mirrors the bucket through a KV watch; answers come from memory: this process's own
    users from the registry (exact at once), other processes' from the mirror (a watch delivery late).
    """

    def __init__(self, bus: EventBus, registry: Registry, store: Store,
                 load_chats: Callable[[str], Awaitable[set[str]]], ttl_seconds: int):
        self.bus = bus
        self.registry = registry
        self.store = store
        self._load_chats = load_chats
        self.ttl = max(1, int(ttl_seconds))
        self.process_id = new_process_id()
        self.kv = None
        # The mirror: live processes' heartbeats and users' records, as the watch last delivered them.
        self.processes: dict[str, Heartbeat] = {}
        self.users: dict[str, UserRecord] = {}
        self.synced = asyncio.Event()
        # user -> (workspace, chats at the change or None) whose record may need this process's change;
        # a newer change replaces an older one, so a tab reloaded quickly writes nothing.
        self._pending: dict[str, tuple[str, list[str] | None]] = {}
        self._worker: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self._sweep_again = False
        self._watcher = None
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, sync_timeout: float = 10.0) -> None:
        self.kv = await self.bus.presence_store(self.ttl)
        # The heartbeat first: a user's record never names a process whose key was not written before.
        await self._beat()
        self._watcher = await self.kv.watchall()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._tick_forever())]
        try:
            await asyncio.wait_for(self.synced.wait(), sync_timeout)
        except asyncio.TimeoutError:
            log.warning("presence bucket not mirrored after %.0fs; going on", sync_timeout)

    async def stop(self, timeout: float) -> None:
        """After flush(): our heartbeat is removed so others sweep at once whatever was left."""
        for task in self._tasks:
            task.cancel()
        for task in (self._worker, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
        try:
            await asyncio.wait_for(self.kv.purge(events.presence_process_key(self.process_id)), timeout)
        except Exception as e:  # noqa: BLE001 - NATS may be gone; the heartbeat then expires by itself
            log.info("heartbeat not removed at shutdown (%s); it expires within %ds", e, self.ttl)
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:  # noqa: BLE001 - NATS may be gone at shutdown
                pass

    async def _tick_forever(self) -> None:
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)  # a timer, not synchronisation
            try:
                await self._beat()
            except Exception as e:  # noqa: BLE001 - NATS away: try again next tick
                log.warning("presence heartbeat failed: %s", e)
                continue
            self._recheck_own()
            self._schedule_sweep()

    async def _beat(self) -> None:
        heartbeat = Heartbeat(os.getpid(), socket.gethostname(), self.registry.stream_count,
                              sum(1 for entry in self.registry.users.values() if entry.streams))
        subject = events.kv_subject(events.presence_bucket(self.bus.stream), events.presence_process_key(self.process_id))
        # A plain publish with a message TTL: it re-creates the key too if it expired while NATS was away.
        await self.bus.js.publish(subject, msgspec.json.encode(heartbeat), msg_ttl=self.ttl)

    # -- the mirror --------------------------------------------------------------------------------

    async def _watch(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # every value present at start has been delivered
                self.synced.set()
                self._schedule_sweep()
                continue
            try:
                self._apply(entry)
            except Exception:  # noqa: BLE001 - one unreadable value must not stop the mirror
                log.exception("presence key %s unreadable; ignored", entry.key)

    def _apply(self, entry) -> None:
        kind, _, name = entry.key.partition(".")
        gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        if kind == "p":
            if gone:
                if self.processes.pop(name, None) is not None and name != self.process_id:
                    log.info("notify process %s gone; its users are swept", name)
                    self._schedule_sweep()
            else:
                self.processes[name] = _heartbeat_decoder.decode(entry.value)
        elif kind == "u":
            if gone:
                self.users.pop(name, None)
            else:
                self.users[name] = _record_decoder.decode(entry.value)

    # -- changes made by this process --------------------------------------------------------------

    def changed(self, entry: UserEntry) -> None:
        """The user's first stream here opened, or their last one closed."""
        self._queue(entry.user_id, entry.workspace_id, sorted(entry.chats))

    def _queue(self, user_id: str, workspace_id: str, chats: list[str] | None) -> None:
        self._pending.pop(user_id, None)
        self._pending[user_id] = (workspace_id, chats)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._publish_pending())

    async def _publish_pending(self) -> None:
        # One writer per process, in order: this process's changes of a user never overtake each other.
        while self._pending:
            user_id = next(iter(self._pending))
            workspace_id, chats = self._pending.pop(user_id)
            me = self.process_id

            def mine(holders: list[str], user_id=user_id) -> list[str]:
                others = [p for p in holders if p != me and not self._dead(p)]
                return [*others, me] if self.registry.online(user_id) else others

            try:
                await self._write(user_id, mine, workspace_id, chats)
            except Exception as e:  # noqa: BLE001 - presence is ephemeral: the next tick corrects it
                log.warning("presence of %s not written: %s", user_id, e)

    def _recheck_own(self) -> None:
        """Corrects what a failed write or an outage left wrong: our users in the mirror as we hold them."""
        if not self.synced.is_set():
            return
        me = self.process_id
        for user_id, entry in self.registry.users.items():
            if entry.streams and me not in self._holders(user_id) and user_id not in self._pending:
                self._queue(user_id, entry.workspace_id, sorted(entry.chats))
        for user_id, record in list(self.users.items()):
            if me in record.p and not self.registry.online(user_id) and user_id not in self._pending:
                self._queue(user_id, record.w, None)

    # -- processes that died -----------------------------------------------------------------------

    def _dead(self, process_id: str) -> bool:
        # Only after the first full mirror: before it, a live process may simply not be delivered yet.
        return self.synced.is_set() and process_id != self.process_id and process_id not in self.processes

    def _leader(self) -> bool:
        return bool(self.processes) and min(self.processes) == self.process_id

    def _schedule_sweep(self) -> None:
        if not self.synced.is_set() or not self._leader():
            return
        if self._sweeper is not None and not self._sweeper.done():
            self._sweep_again = True
            return
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """The leader takes dead processes out of every user's record; the last one out announces offline."""
        while True:
            self._sweep_again = False
            for user_id, record in list(self.users.items()):
                dead = {p for p in record.p if self._dead(p)}
                if not dead:
                    continue
                try:
                    await self._write(user_id, lambda holders, dead=dead: [p for p in holders if p not in dead],
                                      record.w, None)
                except Exception as e:  # noqa: BLE001 - retried at the next tick
                    log.warning("presence of %s not swept: %s", user_id, e)
            if not self._sweep_again:
                return

    # -- the compare-and-set -----------------------------------------------------------------------

    async def _write(self, user_id: str, change: Callable[[list[str]], list[str]], workspace_id: str,
                     chats: list[str] | None) -> None:
        key = events.presence_user_key(user_id)
        for _ in range(CAS_ATTEMPTS):
            revision, record = await self._read(key)
            before = list(record.p) if record else []
            after = change(before)
            if after == before:
                return
            workspace_id = record.w if record else workspace_id
            try:
                if after:
                    new_revision = await self.kv.update(
                        key, msgspec.json.encode(UserRecord(workspace_id, after)), last=revision)
                else:
                    new_revision = await self._remove(key, revision)
            except KeyWrongLastSequenceError:
                continue  # another process changed it first: read again
            if bool(before) != bool(after):
                await self._announce(user_id, "online" if after else "offline", new_revision, workspace_id, chats)
            return
        log.warning("presence of %s still contended after %d attempts; retried next tick", user_id, CAS_ATTEMPTS)

    async def _read(self, key: str) -> tuple[int, UserRecord | None]:
        try:
            entry = await self.kv.get(key)
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

    async def _remove(self, key: str, revision: int) -> int:
        """A purge that only lands on `revision`; its marker expires, so offline users leave no key behind."""
        headers = {KV_OP: KV_PURGE, "Nats-Rollup": "sub", "Nats-Expected-Last-Subject-Sequence": str(revision)}
        try:
            ack = await self.bus.js.publish(events.kv_subject(events.presence_bucket(self.bus.stream), key), b"", headers=headers,
                                            msg_ttl=self.ttl)
        except APIError as e:
            if e.err_code in WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=e.description) from None
            raise
        return ack.seq

    async def _announce(self, user_id: str, status: str, revision: int, workspace_id: str,
                        chats: list[str] | None) -> None:
        entry = self.registry.users.get(user_id)
        if entry is not None and entry.loading is None:
            chats = sorted(entry.chats)
        elif chats is None:
            chats = sorted(await self._load_chats(user_id))
        event = make_event(
            # The revision orders announcements made by different processes: a stale one is dropped.
            events.PRESENCE, {"user_id": user_id, "status": status, "revision": revision},
            user_id=user_id, workspace_id=workspace_id, chat_ids=chats,
            event_id=events.presence_event_id(user_id, status, revision),
        )
        try:
            await self.bus.publish(event)
        except events.UNAVAILABLE_ERRORS as e:
            # The record is right; only the announcement is lost: online-users still tells the truth.
            log.warning("presence of %s not published: %s", user_id, e)

    async def flush(self, timeout: float) -> None:
        """Waits (bounded) until every queued change is written; used at shutdown."""
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except asyncio.TimeoutError:
                log.warning("presence changes of %d users not written at shutdown", len(self._pending))
                self._worker.cancel()

    # -- who is online -----------------------------------------------------------------------------

    def _holders(self, user_id: str) -> list[str]:
        record = self.users.get(user_id)
        return record.p if record is not None else []

    def _online_elsewhere(self, user_id: str) -> bool:
        return any(p != self.process_id and p in self.processes for p in self._holders(user_id))

    def is_online(self, user_id: str) -> bool:
        return self.registry.online(user_id) or self._online_elsewhere(user_id)

    def _remote_users(self) -> set[str]:
        return {user_id for user_id in self.users if self._online_elsewhere(user_id)}

    def online_users(self) -> set[str]:
        local = {user_id for user_id, entry in self.registry.users.items() if entry.streams}
        return local | self._remote_users()

    async def online_in_chats(self, chat_ids: Iterable[str]) -> set[str]:
        chat_ids = list(chat_ids)
        users: set[str] = set()
        for chat_id in chat_ids:
            users.update(self.registry.chat_members.get(chat_id, ()))
        online = {user for user in users if self.registry.online(user)}
        remote = self._remote_users() - online
        if remote and chat_ids:
            # Other processes' users: membership comes from MongoDB, the one place that knows it for all.
            cursor = self.store.members.find(
                {"chat_id": {"$in": chat_ids}, "user_id": {"$in": sorted(remote)}},
                projection={"user_id": 1, "_id": 0},
            )
            online.update([doc["user_id"] async for doc in cursor])
        return online

    def online_in_workspace(self, workspace_id: str) -> set[str]:
        local = {
            entry.user_id for entry in self.registry.users.values()
            if entry.streams and entry.workspace_id == workspace_id
        }
        return local | {user_id for user_id in self._remote_users() if self.users[user_id].w == workspace_id}
