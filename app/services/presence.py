"""Presence across notify processes: who is online anywhere, and one `presence` event per real change."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import time
from typing import Callable, Iterable, Protocol

from app import events
from app.events import EventBus
from app.kv import Heartbeat, PresenceBucket, ProcessSeen, UserRecord, UserSeen, WrongRevision
from app.services import membership
from app.store import Store

log = logging.getLogger("fechatter.presence")

# Compare-and-set retries of one user's key before giving up until the next tick.
CAS_ATTEMPTS = 8

# A holder that is a lease, not a process: "~<deadline in ms since the epoch>~<process that left>".
LEASE_MARK = "~"


def lease(deadline: float, process_id: str) -> str:
    return f"{LEASE_MARK}{int(deadline * 1000)}{LEASE_MARK}{process_id}"


def lease_deadline(holder: str) -> float | None:
    """The wall-clock deadline of a lease, None for a process id (those never start with the mark)."""
    if not holder.startswith(LEASE_MARK):
        return None
    try:
        return int(holder[1:].split(LEASE_MARK, 1)[0]) / 1000
    except ValueError:
        return 0.0  # unreadable: lapsed


class LocalUser(Protocol):
    """A user with streams open (or opening) on this process, as presence sees them."""

    user_id: str
    workspace_id: str
    chats: set[str]


class LocalUsers(Protocol):
    """What presence needs of this process's connection registry; answers are exact and in memory."""

    stream_count: int

    def online(self, user_id: str) -> bool: ...

    def chats_of(self, user_id: str) -> set[str] | None:
        """The user's chats, or None when they have no entry here or it is still loading."""

    def online_here(self) -> Iterable[LocalUser]:
        """Users with at least one stream open on this process."""

    def members_here(self, chat_ids: Iterable[str]) -> set[str]:
        """Users with an entry here who are members of any of those chats."""


def new_process_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Presence:
    """Who is online in the whole cluster, over the bucket of app.kv.PresenceBucket.

    Each notify process keeps a heartbeat key alive and, for every user, the list of processes holding
    a stream of theirs. The writer whose compare-and-set turns a list from empty to non-empty (or back)
    is the one that announces `online` (`offline`), with that revision: a transition is announced
    once, whichever process makes it, and notify drops an announcement older than one it delivered.
    Processes that died are removed from users' lists by one process (the smallest live id), as soon
    as their heartbeat expires: its users go offline at most the TTL after the crash.

    Offline grace: when a user's last stream here closes (a tab closed, this process shutting down) and no
    other live process holds them, this process writes a lease `~<deadline>~<process>` in its place
    instead of emptying the list: nothing is announced. A stream reopening anywhere replaces the lease
    (non-empty to non-empty: no `online` either). Every process sets a timer at each lease's deadline
    seen in the mirror; the leader then removes lapsed leases and announces `offline`. So the grace
    holds across processes: the one that wrote the lease may be gone long before it lapses.

    Each process mirrors the bucket through a watch; answers come from memory: this process's own
    users from `local` (exact at once), other processes' from the mirror (a watch delivery late).
    """

    def __init__(self, bus: EventBus, store: Store, local: LocalUsers, ttl_seconds: int, *,
                 grace_seconds: float = 0.0):
        self.bus = bus
        self.store = store
        self.local = local
        self.ttl = max(1, int(ttl_seconds))
        self.grace = max(0.0, float(grace_seconds))
        self.process_id = new_process_id()
        self.bucket = PresenceBucket(bus, self.ttl)
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
        self._tasks: list[asyncio.Task] = []
        # Lease deadline (ms) -> the timer that sweeps when it lapses.
        self._lease_timers: dict[int, asyncio.TimerHandle] = {}
        # Bot users (their token says so): their streams never make them online, nor announce them.
        self.bots: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, sync_timeout: float = 10.0) -> None:
        await events.when_available(self._open, "presence bucket")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._tick_forever())]
        try:
            await asyncio.wait_for(self.synced.wait(), sync_timeout)
        except asyncio.TimeoutError:
            log.warning("presence bucket not mirrored after %.0fs; going on", sync_timeout)

    async def _open(self) -> None:
        await self.bucket.open()
        # The heartbeat first: a user's record never names a process whose key was not written before.
        await self._beat()
        await self.bucket.watch()

    async def flush(self, timeout: float) -> None:
        """Waits (bounded) until every queued change is written; used at shutdown."""
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except asyncio.TimeoutError:
                log.warning("presence changes of %d users not written at shutdown", len(self._pending))
                self._worker.cancel()

    async def stop(self, timeout: float) -> None:
        """After flush(): our heartbeat is removed so others sweep at once whatever was left."""
        for task in self._tasks:
            task.cancel()
        for timer in self._lease_timers.values():
            timer.cancel()
        self._lease_timers.clear()
        for task in (self._worker, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
        try:
            await asyncio.wait_for(self.bucket.forget_process(self.process_id), timeout)
        except Exception as e:  # noqa: BLE001 - NATS may be gone; the heartbeat then expires by itself
            log.info("heartbeat not removed at shutdown (%s); it expires within %ds", e, self.ttl)
        await self.bucket.close()

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
        users = sum(1 for _ in self.local.online_here())
        await self.bucket.beat(self.process_id,
                               Heartbeat(os.getpid(), socket.gethostname(), self.local.stream_count, users))

    # -- the mirror --------------------------------------------------------------------------------

    async def _watch(self) -> None:
        async for change in self.bucket.changes():
            if change is None:  # every value present at start has been delivered
                self.synced.set()
                self._schedule_sweep()
            elif isinstance(change, ProcessSeen):
                name, heartbeat = change
                if heartbeat is not None:
                    self.processes[name] = heartbeat
                elif self.processes.pop(name, None) is not None and name != self.process_id:
                    log.info("notify process %s gone; its users are swept", name)
                    self._schedule_sweep()
            elif isinstance(change, UserSeen):
                if change.record is None:
                    self.users.pop(change.user_id, None)
                else:
                    self.users[change.user_id] = change.record
                    self._time_leases(change.record)

    def _time_leases(self, record: UserRecord) -> None:
        loop = asyncio.get_running_loop()
        for holder in record.p:
            deadline = lease_deadline(holder)
            if deadline is None:
                continue
            key = int(deadline * 1000)
            if key in self._lease_timers:
                continue
            delay = max(0.0, deadline - time.time()) + 0.05
            self._lease_timers[key] = loop.call_later(delay, self._lease_lapsed, key)

    def _lease_lapsed(self, key: int) -> None:
        self._lease_timers.pop(key, None)
        self._schedule_sweep()

    # -- changes made by this process --------------------------------------------------------------

    def changed(self, user: LocalUser) -> None:
        """The user's first stream here opened, or their last one closed."""
        self._queue(user.user_id, user.workspace_id, sorted(user.chats))

    def _queue(self, user_id: str, workspace_id: str, chats: list[str] | None) -> None:
        if user_id in self.bots:
            return
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
                if self.local.online(user_id):
                    # A stream of theirs is open again: the leases it outlived are done with.
                    return [*(p for p in others if lease_deadline(p) is None), me]
                if self.grace and me in holders and all(lease_deadline(p) is not None for p in others):
                    # Nobody else holds them: the user stays online until the lease lapses.
                    return [*others, lease(time.time() + self.grace, me)]
                return others

            try:
                await self._write(user_id, mine, workspace_id, chats)
            except Exception as e:  # noqa: BLE001 - presence is ephemeral: the next tick corrects it
                log.warning("presence of %s not written: %s", user_id, e)

    def _recheck_own(self) -> None:
        """Corrects what a failed write or an outage left wrong: our users in the mirror as we hold them."""
        if not self.synced.is_set():
            return
        me = self.process_id
        for user in self.local.online_here():
            if me not in self._holders(user.user_id) and user.user_id not in self._pending:
                self._queue(user.user_id, user.workspace_id, sorted(user.chats))
        for user_id, record in list(self.users.items()):
            if me in record.p and not self.local.online(user_id) and user_id not in self._pending:
                self._queue(user_id, record.w, None)

    # -- processes that died -----------------------------------------------------------------------

    def _dead(self, process_id: str) -> bool:
        """A process whose heartbeat is gone, or a lease that lapsed."""
        deadline = lease_deadline(process_id)
        if deadline is not None:
            return deadline <= time.time()
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
        for _ in range(CAS_ATTEMPTS):
            revision, record = await self.bucket.read_user(user_id)
            before = list(record.p) if record else []
            after = change(before)
            if after == before:
                return
            workspace_id = record.w if record else workspace_id
            try:
                if after:
                    new_revision = await self.bucket.write_user(user_id, UserRecord(workspace_id, after), revision)
                else:
                    new_revision = await self.bucket.remove_user(user_id, revision)
            except WrongRevision:
                continue  # another process changed it first: read again
            if bool(before) != bool(after):
                await self._announce(user_id, "online" if after else "offline", new_revision, workspace_id, chats)
            return
        log.warning("presence of %s still contended after %d attempts; retried next tick", user_id, CAS_ATTEMPTS)

    async def _announce(self, user_id: str, status: str, revision: int, workspace_id: str,
                        chats: list[str] | None) -> None:
        # Those sharing a chat with the user are told: this process's copy of their chats is the newest,
        # then the one taken at the change, then MongoDB's.
        known = self.local.chats_of(user_id)
        if known is not None:
            chats = sorted(known)
        elif chats is None:
            chats = sorted(await membership.user_chat_ids(self.store, user_id))
        try:
            await self.bus.announce_presence(user_id, status, revision, workspace_id=workspace_id, chat_ids=chats)
        except events.UNAVAILABLE_ERRORS as e:
            # The record is right; only the announcement is lost: online-users still tells the truth.
            log.warning("presence of %s not published: %s", user_id, e)

    # -- who is online -----------------------------------------------------------------------------

    def _holders(self, user_id: str) -> list[str]:
        record = self.users.get(user_id)
        return record.p if record is not None else []

    def _online_elsewhere(self, user_id: str) -> bool:
        """Held by another live process, or within the grace of a lease."""
        now = time.time()
        for p in self._holders(user_id):
            deadline = lease_deadline(p)
            if (deadline > now) if deadline is not None else (p != self.process_id and p in self.processes):
                return True
        return False

    def is_online(self, user_id: str) -> bool:
        return user_id not in self.bots and (self.local.online(user_id) or self._online_elsewhere(user_id))

    def _remote_users(self) -> set[str]:
        return {user_id for user_id in self.users if self._online_elsewhere(user_id)}

    def online_users(self) -> set[str]:
        local = {user.user_id for user in self.local.online_here()}
        return (local | self._remote_users()) - self.bots

    async def chats_of(self, user_id: str) -> set[str]:
        """The user's chats: this process's copy when it holds them, else MongoDB's."""
        chats = self.local.chats_of(user_id)
        if chats is None:
            chats = await membership.user_chat_ids(self.store, user_id)
        return chats

    async def online_in_chats(self, chat_ids: Iterable[str]) -> set[str]:
        chat_ids = list(chat_ids)
        online = {user for user in self.local.members_here(chat_ids) if self.local.online(user)} - self.bots
        remote = self._remote_users() - online
        if remote and chat_ids:
            # Other processes' users: membership comes from MongoDB, the one place that knows it for all.
            online |= await membership.members_among(self.store, chat_ids, remote)
        return online

    def online_in_workspace(self, workspace_id: str) -> set[str]:
        local = {user.user_id for user in self.local.online_here()
                 if user.workspace_id == workspace_id and user.user_id not in self.bots}
        return local | {user_id for user_id in self._remote_users() if self.users[user_id].w == workspace_id}
