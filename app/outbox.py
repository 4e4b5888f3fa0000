"""The transactional outbox: an event is saved before its change and published after it, never lost, never phantom."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from pymongo.errors import PyMongoError

from app import events
from app.config import ApiConfig
from app.events import Event, EventBus, encode_event
from app.store import Store, new_id, utcnow
from app.tasks import Periodic

log = logging.getLogger("fechatter.outbox")

T = TypeVar("T")

PENDING = "pending"  # saved before the change; the change may or may not have happened
COMMITTED = "committed"  # the change happened; the event must be published

# What a change took before it ran that must be given back if it never happens, e.g. {"seq": 7}.
# Stored flat in the entry (so entries written before this type existed read the same).
RepairInfo = Mapping[str, str | int]


@dataclass(frozen=True)
class Check:
    """How the drainer tells, for an abandoned entry, whether its change happened.

    Stored flat in the entry (no operators in stored documents): the document `id` of `collection`
    exists (`op="exists"`), is gone (`op="absent"`), has `field == value` (`op="eq"`) or
    `field >= value` (`op="gte"`).
    """

    collection: str
    id: str
    op: str = "exists"
    field: str | None = None
    value: Any = None

    def filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {"_id": self.id}
        if self.op == "eq":
            query[self.field] = {"$eq": self.value}
        elif self.op == "gte":
            query[self.field] = {"$gte": self.value}
        return query


@dataclass(frozen=True)
class Abandoned:
    """A pending entry whose request died and whose change, by its Check, did not happen (yet)."""

    id: str
    event_type: str
    chat_id: str | None
    repair: dict[str, Any]


# Given an Abandoned entry with a repair payload, gives back what its change took. True when the
# change may have landed after all (the outbox checks again); False leaves the Check's answer: dropped.
AbandonedHook = Callable[[Abandoned], Awaitable[bool]]

# The fields the outbox itself stores; anything else in an entry is its repair payload.
_ENTRY_FIELDS = frozenset({
    "_id", "state", "owner", "n", "created_at", "type", "chat_id", "subject", "payload",
    "check_collection", "check_id", "check_op", "check_field", "check_value",
    "then_id", "then_subject", "then_payload",
})


class Outbox:
    """Every change of the api role goes through `apply(event, check, change)`.

    1. The event is inserted into `store.outbox` (state pending) BEFORE the change, so a crash
       after the change cannot lose it. Entries of concurrent requests share one insert_many.
    2. The change runs. If it raises, the entry is deleted (best effort) and the error goes on:
       no phantom event.
    3. The event is published with Nats-Msg-Id = event id, then the entry is deleted. If NATS
       is away, the entry is marked committed and the drainer publishes it when NATS is back.
       Deletes of acknowledged entries are grouped and off the request's path: one delete_many
       at a time in the background takes every entry acknowledged meanwhile, and the drainer
       deletes what it published in one delete_many per pass. Until deleted, an acknowledged entry is
       remembered in `_acked` and never published again by this process; another process (or a
       restart) that re-publishes it within the stream's duplicate window is dropped by Nats-Msg-Id.

    While this process has events waiting in the outbox (`backlog`), new events wait behind them
    instead of being published directly, so a chat's events never overtake each other. The
    drainer publishes committed entries at once and in order (created_at, then a per-process
    counter); a pending entry older than api.outbox_grace_seconds was abandoned by a crashed
    request: it is published only if its Check says the change happened, otherwise dropped; an
    entry saved with a `repair` payload is first handed to the `on_abandoned` hook, which gives back
    what the change took (the seq of a message, see ChatSequence). Entries live in MongoDB, so a
    restarted api process drains what the previous one left.
    """

    def __init__(self, store: Store, bus: EventBus, config: ApiConfig, on_abandoned: AbandonedHook | None = None):
        self.store = store
        self.bus = bus
        self.config = config
        self.on_abandoned = on_abandoned
        self.process_id = new_id()
        self._counter = itertools.count(1)
        # True until a drain pass finds nothing waiting: events of this process queue behind it.
        self.backlog = True
        self._generation = 0
        # Entries whose request decided to defer but has not yet marked them committed.
        self._deferring: set[str] = set()
        # chat (or subject) -> the last publish of it under way in this process, which the next one waits for.
        self._publishing: dict[str, asyncio.Future] = {}
        # Entries JetStream acknowledged that are not deleted yet, and the delete_many under way.
        self._acked: set[str] = set()
        self._forgetting: asyncio.Task | None = None
        # Entries waiting for the next insert_many, and the insert under way.
        self._saving: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._saver: asyncio.Task | None = None
        self._drainer = Periodic("outbox-drainer", config.outbox_interval_seconds, self.drain_once, log)

    # -- the request side -------------------------------------------------------------------

    async def apply(
        self, event: Event, check: Check, change: Callable[[], Awaitable[T]], *, repair: RepairInfo | None = None,
        then: Event | None = None,
    ) -> T:
        """Save the event, make the change, publish; the change's result is returned.

        `repair` is stored with the entry and handed to `on_abandoned` if the request dies before
        the change. `then`, an event the same change implies (the read mark a send moves), rides in the
        same entry and is published right after `event`, under the same check: no store command of its own.
        """
        payload = encode_event(event)
        entry = {
            "_id": event.id,
            "state": PENDING,
            "owner": self.process_id,
            "n": next(self._counter),
            "created_at": utcnow(),
            "type": event.type,
            "chat_id": event.chat_id,
            "subject": self.bus.subjects.for_event(event),
            "payload": payload.decode(),
            "check_collection": check.collection,
            "check_id": check.id,
            "check_op": check.op,
        }
        if check.field is not None:  # "exists"/"absent" checks have none: a smaller entry to store
            entry["check_field"] = check.field
            entry["check_value"] = check.value
        if then is not None:
            entry["then_id"] = then.id
            entry["then_subject"] = self.bus.subjects.for_event(then)
            entry["then_payload"] = encode_event(then).decode()
        if repair:
            if clash := _ENTRY_FIELDS.intersection(repair):
                raise ValueError(f"repair fields {sorted(clash)} would overwrite the outbox entry's own")
            entry.update(repair)
        await self._save(entry)
        try:
            result = await change()
        except BaseException:
            try:
                await self.store.outbox.delete_one({"_id": event.id, "state": {"$eq": PENDING}})
            except PyMongoError:
                pass  # the drainer's check finds the change did not happen and drops the entry
            raise
        await self._publish_or_defer(entry, payload)
        return result

    async def publish_ephemeral(self, event: Event) -> None:
        """Typing: nothing is stored, so nothing to replay later; dropped while NATS is away."""
        try:
            await self.bus.publish(event)
        except events.NATS_ERRORS as e:
            log.info("dropped %s event while NATS is away: %s", event.type, e.__class__.__name__)

    async def _publish_or_defer(self, entry: dict[str, Any], payload: bytes) -> None:
        # One publish in flight per chat (or user subject): a later event of the chat starts only once the
        # earlier one is acknowledged or deferred, so a publish lost with a NATS node is never overtaken.
        key = entry.get("chat_id") or entry["subject"]
        previous = self._publishing.get(key)
        turn = asyncio.get_running_loop().create_future()
        self._publishing[key] = turn
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._publish_in_turn(entry, payload)
        finally:
            turn.set_result(None)
            if self._publishing.get(key) is turn:
                del self._publishing[key]

    async def _publish_in_turn(self, entry: dict[str, Any], payload: bytes) -> None:
        if not self.backlog and self.bus.connected:
            try:
                await self.bus.publish_encoded(entry["subject"], entry["_id"], payload)
                await self._publish_then(entry)
            except events.NATS_ERRORS as e:
                # The change is stored: any NATS failure only delays its event (events.is_unavailable tells
                # a lost node or an election from the rest). Deferred whole: a re-publish of the first
                # event is dropped by its Nats-Msg-Id.
                level = logging.INFO if events.is_unavailable(e) else logging.WARNING
                log.log(level, "publishing %s %s failed (%s); deferred to the outbox", entry["type"], entry["_id"],
                        e.__class__.__name__)
            else:
                self._forget(entry["_id"])
                return
        # Synchronously (no await in between) join the backlog, so the drainer cannot miss us.
        self.backlog = True
        self._generation += 1
        self._deferring.add(entry["_id"])
        try:
            # Upsert: the drainer may have dropped a slow request's entry as abandoned meanwhile.
            await self.store.outbox.replace_one(
                {"_id": entry["_id"]}, {**entry, "state": COMMITTED}, upsert=True
            )
        except PyMongoError as e:
            log.warning("could not mark event %s committed (%s); the drainer checks it after the grace period",
                        entry["_id"], e)
        finally:
            self._deferring.discard(entry["_id"])
            self._drainer.wake()

    async def _save(self, entry: dict[str, Any]) -> None:
        """Insert the entry; requests arriving while an insert is under way share the next insert_many.

        Each request goes on only once its own entry is stored, so the entry still precedes the change.
        """
        loop = asyncio.get_running_loop()
        saved = loop.create_future()
        self._saving.append((entry, saved))
        if self._saver is None or self._saver.done():
            self._saver = loop.create_task(self._insert_waiting())
        await saved

    async def _insert_waiting(self) -> None:
        while self._saving:
            batch, self._saving = self._saving, []
            try:
                if len(batch) == 1:
                    await self.store.outbox.insert_one(batch[0][0])
                else:
                    await self.store.outbox.insert_many([entry for entry, _ in batch])
            except BaseException as e:
                # Entries stored before the failure are pending with no change: the drainer drops them.
                for _, saved in batch:
                    if not saved.done():
                        saved.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    for _, saved in self._saving:
                        saved.cancel()
                    self._saving = []
                    raise
                continue
            for _, saved in batch:
                if not saved.done():
                    saved.set_result(None)

    def _forget(self, entry_id: str) -> None:
        """Delete an acknowledged entry in the background, with every other one acknowledged meanwhile.

        The request does not wait: the event is published, and until the delete lands this process
        skips the entry (`_acked`) while others see a pending entry younger than the grace period.
        """
        self._acked.add(entry_id)
        if self._forgetting is None or self._forgetting.done():
            self._forgetting = asyncio.get_running_loop().create_task(self._delete_all_acked())

    async def _delete_all_acked(self) -> None:
        # One delete_many at a time; entries acknowledged while it runs go in the next one.
        while self._acked:
            if not await self._delete_acked():
                return  # MongoDB away: the drainer's next pass retries, and skips them meanwhile

    async def _delete_acked(self) -> bool:
        ids = list(self._acked)
        if not ids:
            return True
        try:
            await self.store.outbox.delete_many({"_id": {"$in": ids}})
        except PyMongoError as e:
            log.info("could not delete %d published outbox entries yet: %s", len(ids), e.__class__.__name__)
            return False
        self._acked.difference_update(ids)
        return True

    # -- the drainer -----------------------------------------------------------------------

    async def start(self) -> None:
        self._drainer.start()

    async def stop(self) -> None:
        await self._drainer.stop()
        if self._forgetting is not None:
            await asyncio.gather(self._forgetting, return_exceptions=True)
        if self._acked:
            await self._delete_acked()

    async def drain_once(self, batch: int = 500) -> bool:
        """One pass in order; True when there is more to do right away."""
        if not self.bus.connected:
            return False
        generation = self._generation
        grace = datetime.timedelta(seconds=self.config.outbox_grace_seconds)
        now = utcnow()
        waiting = False
        count = 0
        cursor = self.store.outbox.find({}).sort([("created_at", 1), ("n", 1)]).limit(batch)
        async for entry in cursor:
            count += 1
            if entry["_id"] in self._acked:
                continue  # published; its delete is on the way
            if entry["_id"] in self._deferring:
                waiting = True
                break  # its committed mark is on the way; nothing after it may go first
            if entry["state"] == COMMITTED:
                await self._publish_entry(entry)
                continue
            if now - entry["created_at"] <= grace:
                # An in-flight request: it publishes its own event, or defers it behind the backlog.
                continue
            await self._settle_abandoned(entry)
        if self._acked:
            await self._delete_acked()
        more = count >= batch
        if not waiting and not more and generation == self._generation and not self._deferring:
            self.backlog = False
        return more

    async def _publish_entry(self, entry: dict[str, Any]) -> None:
        await self.bus.publish_encoded(entry["subject"], entry["_id"], entry["payload"].encode())
        await self._publish_then(entry)
        self._acked.add(entry["_id"])  # deleted with the rest of the pass, in one delete_many

    async def _publish_then(self, entry: dict[str, Any]) -> None:
        if entry.get("then_id"):
            await self.bus.publish_encoded(entry["then_subject"], entry["then_id"], entry["then_payload"].encode())

    async def _settle_abandoned(self, entry: dict[str, Any]) -> None:
        check = Check(
            entry["check_collection"], entry["check_id"], entry["check_op"], entry.get("check_field"),
            entry.get("check_value"),
        )
        happened = await self._check(check)
        repair = {key: value for key, value in entry.items() if key not in _ENTRY_FIELDS}
        if not happened and repair and self.on_abandoned is not None:
            # The request took something (a seq) and died before its change: give it back, unless
            # the change landed meanwhile.
            abandoned = Abandoned(id=entry["_id"], event_type=entry["type"], chat_id=entry.get("chat_id"),
                                  repair=repair)
            if await self.on_abandoned(abandoned):
                happened = await self._check(check)
        if happened:
            log.info("publishing abandoned %s event %s", entry["type"], entry["_id"])
            await self._publish_entry(entry)
        else:
            log.info("dropping %s event %s: its change never happened", entry["type"], entry["_id"])
            await self.store.outbox.delete_one({"_id": entry["_id"], "state": {"$eq": PENDING}})

    async def _check(self, check: Check) -> bool:
        collection = getattr(self.store, check.collection)
        found = await collection.find_one(check.filter(), {"_id": 1})
        return (found is None) if check.op == "absent" else (found is not None)

