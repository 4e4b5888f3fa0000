"""Outgoing webhooks: their rules (owner only, allowed hosts), the per-webhook queue fed by the worker's consumer, signed delivery and retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from typing import Annotated, Any

import msgspec
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from app import events
from app.auth import Identity
from app.config import Config
from app.errors import APIError, forbidden, not_found, validation_failed
from app.events import EventBus
from app.netguard import GuardedResolver, HostPolicy, TargetRefused
from app.schemas.common import Id, Request, Response
from app.store import Store, isoformat, new_id, new_secret, utcnow

log = logging.getLogger("fechatter.webhooks")

# What a webhook may subscribe to: the durable events about chats and messages (never typing, reads,
# presence or session revocations, which are one person's or ephemeral).
WEBHOOK_EVENTS = frozenset({
    events.MESSAGE_CREATED, events.MESSAGE_UPDATED, events.MESSAGE_DELETED, events.CHAT_CREATED,
    events.CHAT_UPDATED, events.CHAT_DELETED, events.MEMBER_JOINED, events.MEMBER_LEFT, events.MEMBER_UPDATED,
    events.REACTION_ADDED, events.REACTION_REMOVED, events.MESSAGE_PINNED, events.MESSAGE_UNPINNED,
    events.THREAD_UPDATED,
})
DELIVERIES_SHOWN = 100
# Attempts kept per webhook; older ones are deleted as new ones are written.
DELIVERIES_KEPT = 1000
MAX_WEBHOOKS_PER_WORKSPACE = 50
# Queued events a worker reads of one webhook at a time (delivered one after the other).
DRAIN_BATCH = 32
EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class OutgoingWebhookIn(Request):
    """An outgoing webhook: where to POST, which events, and optionally only those of some chats."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, examples=["https://hooks.example.com/fechatter"])]
    events: Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=len(WEBHOOK_EVENTS))]
    chat_ids: Annotated[list[Id], msgspec.Meta(max_length=100)] | None = None


class OutgoingWebhookOut(Response):
    """An outgoing webhook of the workspace (its secret is shown only at creation)."""

    id: str
    url: str
    events: list[str]
    chat_ids: list[str] | None
    created_at: str


class OutgoingWebhookCreated(OutgoingWebhookOut):
    """The webhook just created, with the secret that signs its deliveries."""

    # HMAC-SHA256 key of X-Fechatter-Signature; shown once.
    secret: str


class OutgoingWebhookList(Response):
    """The workspace's outgoing webhooks, oldest first."""

    webhooks: list[OutgoingWebhookOut]


class WebhookDeliveryOut(Response):
    """One delivery attempt: the event, the attempt number, the receiver's status code or the error."""

    event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    at: str
    duration_ms: float


class WebhookDeliveryList(Response):
    """A webhook's last 100 delivery attempts, newest first."""

    deliveries: list[WebhookDeliveryOut]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _out(doc: dict[str, Any]) -> OutgoingWebhookOut:
    return OutgoingWebhookOut(id=doc["_id"], url=doc["url"], events=doc["events"], chat_ids=doc.get("chat_ids"),
                      created_at=isoformat(doc["created_at"]))


class WebhookService:
    """The api's side: the workspace owner creates, lists and deletes webhooks and reads their attempts."""

    def __init__(self, store: Store, config: Config):
        self.store = store
        self.policy = HostPolicy(config.webhooks.allowed_hosts)

    async def _require_owner(self, user: Identity) -> None:
        workspace = await self.store.workspaces.find_one({"_id": user.workspace_id}, {"owner_id": 1})
        if workspace is None or workspace.get("owner_id") != user.user_id:
            raise forbidden("Only the workspace owner manages outgoing webhooks")

    async def _hook(self, user: Identity, webhook_id: str) -> dict[str, Any]:
        await self._require_owner(user)
        doc = await self.store.webhooks.find_one({"_id": webhook_id})
        if doc is None or doc["workspace_id"] != user.workspace_id:
            raise not_found("webhook")
        return doc

    async def create(self, user: Identity, body: OutgoingWebhookIn) -> OutgoingWebhookCreated:
        await self._require_owner(user)
        try:
            self.policy.check_url(body.url)
        except TargetRefused as e:
            raise validation_failed({"url": f"This URL cannot be a webhook target: {e}"}, code="url_not_allowed")
        unknown = sorted(set(body.events) - WEBHOOK_EVENTS)
        if unknown:
            raise validation_failed({"events": f"Unknown event names: {', '.join(unknown)}"})
        chat_ids = sorted(set(body.chat_ids)) if body.chat_ids else None
        if chat_ids:
            found = await self.store.chats.count_documents({"_id": {"$in": chat_ids}, "workspace_id": user.workspace_id})
            if found != len(chat_ids):
                raise validation_failed({"chat_ids": "Some of these chats are not in your workspace"})
        if await self.store.webhooks.count_documents({"workspace_id": user.workspace_id}) >= MAX_WEBHOOKS_PER_WORKSPACE:
            raise APIError(409, "too_many_webhooks", f"A workspace has at most {MAX_WEBHOOKS_PER_WORKSPACE} webhooks")
        now = utcnow()
        doc = {
            "_id": new_id(), "workspace_id": user.workspace_id, "url": body.url, "events": sorted(set(body.events)),
            "chat_ids": chat_ids, "secret": new_secret(), "created_by": user.user_id, "created_at": now,
            "created_ts": isoformat(now), "lease_owner": None, "lease_token": None, "lease_until": 0.0,
        }
        await self.store.webhooks.insert_one(doc)
        return OutgoingWebhookCreated(**msgspec.structs.asdict(_out(doc)), secret=doc["secret"])

    async def list(self, user: Identity) -> OutgoingWebhookList:
        await self._require_owner(user)
        docs = await self.store.webhooks.find({"workspace_id": user.workspace_id}).sort("_id", ASCENDING).to_list(
            MAX_WEBHOOKS_PER_WORKSPACE)
        return OutgoingWebhookList(webhooks=[_out(d) for d in docs])

    async def delete(self, user: Identity, webhook_id: str) -> None:
        hook = await self._hook(user, webhook_id)
        await self.store.webhooks.delete_one({"_id": hook["_id"]})
        await self.store.webhook_queue.delete_many({"webhook_id": hook["_id"]})

    async def deliveries(self, user: Identity, webhook_id: str) -> WebhookDeliveryList:
        hook = await self._hook(user, webhook_id)
        docs = await self.store.webhook_deliveries.find({"webhook_id": hook["_id"]}).sort(
            "n", DESCENDING).to_list(DELIVERIES_SHOWN)
        return WebhookDeliveryList(deliveries=[
            WebhookDeliveryOut(event_id=d["event_id"], event_type=d["event_type"], attempt=d["attempt"],
                        status_code=d.get("status_code"), error=d.get("error"), at=isoformat(d["at"]),
                        duration_ms=d.get("duration_ms", 0.0))
            for d in docs
        ])


class DeliveryMetrics:
    def __init__(self, registry: Any):
        from prometheus_client import Counter, Histogram

        self.attempts = Counter("fechatter_webhook_attempts", "Outgoing webhook attempts", ["outcome"],
                                registry=registry)
        self.enqueued = Counter("fechatter_webhook_enqueued", "Events queued for a webhook", registry=registry)
        self.seconds = Histogram("fechatter_webhook_attempt_seconds", "Time of one outgoing webhook attempt",
                                 registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class Lease:
    """One worker's hold on one webhook's queue: a token no other holder ever had, and when it was last renewed."""

    def __init__(self, hook_id: str, token: str, renewed_at: float):
        self.hook_id = hook_id
        self.token = token
        self.renewed_at = renewed_at
        self.lost = False


class WebhookDeliverer:
    """The worker's side. One intake task reads the shared durable consumer in batches and writes, for each
    matching webhook, a queue document keyed (webhook, event) in stream order, then acknowledges: an event is
    acked only once its queue documents exist, so a killed worker's events are redelivered by JetStream and
    re-queued idempotently. A scheduler leases each webhook with queued work to one worker at a time (the
    lease expires if that worker dies or stalls), and that worker delivers the webhook's queue oldest first,
    one at a time, recording each outcome before it sends the next. Every send and every record is fenced by
    the lease's token: a holder that lost its lease stops. Per-webhook order survives any crash, and only the
    one delivery in flight when its holder died or lost the lease is repeated, right after itself."""

    def __init__(self, store: Store, bus: EventBus, config: Config, metrics: DeliveryMetrics, worker_id: str | None = None):
        self.store = store
        self.bus = bus
        self.settings = config.webhooks
        self.worker = config.worker
        self.metrics = metrics
        self.worker_id = worker_id or new_id()
        self.policy = HostPolicy(config.webhooks.allowed_hosts)
        self.http: SimpleAsyncHTTPClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._draining: dict[str, asyncio.Task] = {}
        self._subscription = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._logged: dict[str, int] = {}
        # Every event up to this stream sequence is acknowledged, so queued by now: a webhook's queue is
        # delivered only up to it, and no earlier event can join it later (a redelivery after a killed worker).
        self.ack_floor = 0

    async def start(self) -> None:
        self._stopping = False
        self.http = SimpleAsyncHTTPClient(
            force_instance=True, resolver=GuardedResolver(policy=self.policy), max_clients=64,
            max_body_size=self.settings.max_response_bytes, max_buffer_size=self.settings.max_response_bytes,
        )
        self._subscription = await self.bus.subscribe_webhooks(
            ack_wait=self.worker.ack_wait_seconds, max_ack_pending=self.worker.batch)
        self._tasks = [asyncio.create_task(self._intake()), asyncio.create_task(self._schedule())]

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *self._draining.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._draining = [], {}
        await EventBus.unsubscribe(self._subscription)
        self._subscription = None
        if self.http is not None:
            self.http.close()
            self.http = None

    # Intake: consumer -> queue documents -> ack.

    async def _intake(self) -> None:
        while not self._stopping:
            try:
                messages = await self._subscription.fetch(self.worker.batch, timeout=1.0)
            except (asyncio.TimeoutError, TimeoutError, events.NatsTimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: try again shortly
                log.warning("webhook intake: fetch failed: %s", e)
                await asyncio.sleep(0.5)
                continue
            try:
                await self.enqueue(messages)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - MongoDB away: JetStream redelivers after ack_wait
                log.warning("webhook intake: queueing %d events failed: %s", len(messages), e)
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                try:
                    await message.ack_sync(timeout=2.0)
                except Exception as e:  # noqa: BLE001 - redelivered and re-queued idempotently
                    log.debug("ack failed: %s", e)
            await self._update_floor()
            self._wake.set()

    async def _update_floor(self) -> None:
        try:
            self.ack_floor = max(self.ack_floor, await self.bus.webhook_ack_floor())
        except Exception as e:  # noqa: BLE001 - NATS away: deliver up to the last floor known
            log.debug("ack floor: %s", e)

    async def enqueue(self, messages: list[Any]) -> None:
        parsed = []
        for message in messages:
            try:
                event = events.decode_event(message.data)
            except msgspec.DecodeError:
                continue
            if event.type in WEBHOOK_EVENTS and event.workspace_id:
                parsed.append((message.metadata.sequence.stream, event, message.data))
        if not parsed:
            return
        workspace_ids = sorted({e.workspace_id for _, e, _ in parsed})
        hooks = await self.store.webhooks.find({"workspace_id": {"$in": workspace_ids}}).to_list(None)
        if not hooks:
            return
        docs = []
        for seq, event, body in parsed:
            for hook in hooks:
                if (hook["workspace_id"] != event.workspace_id or event.type not in hook["events"]
                        or (hook.get("chat_ids") and event.chat_id not in hook["chat_ids"])
                        or event.ts < hook["created_ts"]):
                    continue
                docs.append({"_id": f"{hook['_id']}:{event.id}", "webhook_id": hook["_id"], "seq": seq,
                             "event_id": event.id, "event_type": event.type, "body": bytes(body).decode(),
                             "attempts": 0, "first_at": 0.0, "next_at": 0.0})
        if not docs:
            return
        try:
            await self.store.webhook_queue.insert_many(docs, ordered=False)
        except BulkWriteError as e:
            # A redelivered event is queued already (same _id): that is the idempotence, nothing else may fail.
            if any(error.get("code") != 11000 for error in e.details.get("writeErrors", [])):
                raise
        self.metrics.enqueued.inc(len(docs))

    # Delivery: one task per leased webhook.

    async def _schedule(self) -> None:
        while not self._stopping:
            try:
                await self._update_floor()
                hook_ids = await self.store.webhook_queue.distinct("webhook_id")
                for hook_id in hook_ids:
                    if hook_id in self._draining:
                        continue
                    lease = await self.acquire(hook_id)
                    if lease is not None:
                        self._draining[hook_id] = asyncio.create_task(self.drain(lease))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - MongoDB away: look again later
                log.warning("webhook scheduler: %s", e)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.worker.poll_seconds)
            except asyncio.TimeoutError:
                pass

    async def acquire(self, hook_id: str) -> Lease | None:
        """The webhook's lease under a new token if it is free (lapsed, released, or this worker's own from a
        drain that ended), else None. Only one drain of this worker per webhook runs (`_draining`)."""
        now = time.time()
        doc = await self.store.webhooks.find_one({"_id": hook_id}, {"lease_owner": 1, "lease_until": 1})
        if doc is None:
            await self.store.webhook_queue.delete_many({"webhook_id": hook_id})  # the webhook was deleted
            return None
        # Taken by one plain conditional update, never {_id, $or: [...]}: nx-27017's findAndModify matched a
        # branch of that `$or` without the `_id`, so a worker holding any webhook's lease "took" every other.
        if doc.get("lease_until", 0.0) < now:
            condition: dict[str, Any] = {"lease_until": {"$lt": now}}
        elif doc.get("lease_owner") == self.worker_id:
            condition = {"lease_owner": {"$eq": self.worker_id}}
        else:
            return None
        token = new_id()
        taken = await self.store.webhooks.update_one(
            {"_id": hook_id, **condition},
            {"$set": {"lease_owner": self.worker_id, "lease_token": token,
                      "lease_until": now + self.settings.lease_seconds}},
        )
        return Lease(hook_id, token, now) if taken.matched_count else None

    async def renew(self, lease: Lease) -> bool:
        """Extends the lease if its token is still the webhook's (no other worker took it since): the fence
        every send and every mark of the queue passes first. False: lost, the holder must stop."""
        now = time.time()
        result = await self.store.webhooks.update_one(
            {"_id": lease.hook_id, "lease_token": {"$eq": lease.token}},
            {"$set": {"lease_until": now + self.settings.lease_seconds}},
        )
        if result.matched_count:
            lease.renewed_at = now
            return True
        lease.lost = True
        return False

    async def _release(self, lease: Lease) -> None:
        await self.store.webhooks.update_one({"_id": lease.hook_id, "lease_token": {"$eq": lease.token}},
                                             {"$set": {"lease_owner": None, "lease_token": None, "lease_until": 0.0}})

    def _fresh(self, lease: Lease) -> bool:
        # A send starts only within a third of the lease of its last renewal: no other worker can hold it then.
        return time.time() - lease.renewed_at < self.settings.lease_seconds / 3

    async def drain(self, lease: Lease) -> None:
        """Delivers the leased webhook's queue until it is empty or the lease is lost."""
        hook_id = lease.hook_id
        hook = None
        try:
            while not self._stopping:
                if hook is None or not self._fresh(lease):
                    if not await self.renew(lease):
                        return
                    hook = await self.store.webhooks.find_one({"_id": hook_id})
                    if hook is None:
                        return
                items = await self.store.webhook_queue.find(
                    {"webhook_id": hook_id, "seq": {"$lte": self.ack_floor}}).sort("seq", ASCENDING).to_list(
                    DRAIN_BATCH)
                if not items:
                    if await self.store.webhook_queue.find_one({"webhook_id": hook_id}, {"_id": 1}) is None:
                        await self._release(lease)
                        return
                    await asyncio.sleep(self.worker.poll_seconds)  # queued, but earlier events are not all yet
                    continue
                wait = items[0]["next_at"] - time.time()
                if wait > 0:
                    await asyncio.sleep(min(wait, self.settings.lease_seconds / 3))
                    continue
                await self._deliver_in_order(hook, items, lease)
                if lease.lost:
                    log.info("webhook %s: lease lost to another worker, stopped", hook_id)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - MongoDB away: the lease lapses and this or another worker resumes
            log.warning("webhook %s: delivery paused: %s", hook_id, e)
        finally:
            self._draining.pop(hook_id, None)

    async def _deliver_in_order(self, hook: dict[str, Any], items: list[dict[str, Any]], lease: Lease) -> None:
        """Delivers `items` one after the other, stopping at the first failure (order) or when the lease is
        lost. Each outcome is recorded (the entry removed, or its retry set) before the next item is sent, and
        only while the lease is still ours: a crash or a lost lease repeats at most the one delivery in flight,
        right after itself. The attempts' log is written once per batch."""
        logs: list[dict[str, Any]] = []
        try:
            for item in items:
                if self._stopping or (not self._fresh(lease) and not await self.renew(lease)):
                    break
                attempt = item["attempts"] + 1
                started = time.monotonic()
                status, error, permanent = await self._post_holding(hook, item, lease)
                duration = time.monotonic() - started
                ok = status is not None and 200 <= status < 300
                self.metrics.attempts.labels("ok" if ok else "refused" if permanent else "failed").inc()
                self.metrics.seconds.observe(duration)
                logs.append({
                    "_id": new_id(), "n": new_id(), "webhook_id": hook["_id"], "event_id": item["event_id"],
                    "event_type": item["event_type"], "attempt": attempt, "status_code": status, "error": error,
                    "at": utcnow(), "duration_ms": round(duration * 1000, 2),
                })
                if not await self.renew(lease):
                    break  # the new holder sends this item again: its outcome is no longer ours to record
                if ok:
                    await self.store.webhook_queue.delete_one({"_id": item["_id"]})
                    continue
                await self._failed(hook, item, attempt, status, error, permanent)
                break
        finally:
            if logs:
                await self.store.webhook_deliveries.insert_many(logs)
                await self._trim_log(hook["_id"], len(logs))

    async def _post_holding(self, hook: dict[str, Any], item: dict[str, Any],
                            lease: Lease) -> tuple[int | None, str | None, bool]:
        """post(), renewing the lease every third of it while the receiver takes its time, so a slow answer
        never lets a second worker send the same webhook meanwhile."""
        post = asyncio.ensure_future(self.post(hook, item, item["body"].encode()))
        try:
            while not (await asyncio.wait({post}, timeout=self.settings.lease_seconds / 3))[0]:
                if not lease.lost:
                    await self.renew(lease)
            return post.result()
        finally:
            post.cancel()

    async def _trim_log(self, hook_id: str, written: int) -> None:
        self._logged[hook_id] = self._logged.get(hook_id, 0) + written
        if self._logged[hook_id] < DELIVERIES_SHOWN:
            return
        self._logged[hook_id] = 0
        oldest_kept = await self.store.webhook_deliveries.find({"webhook_id": hook_id}, {"n": 1}).sort(
            "n", DESCENDING).skip(DELIVERIES_KEPT - 1).limit(1).to_list(1)
        if oldest_kept:
            await self.store.webhook_deliveries.delete_many({"webhook_id": hook_id, "n": {"$lt": oldest_kept[0]["n"]}})

    async def _failed(self, hook: dict[str, Any], item: dict[str, Any], attempt: int, status: int | None,
                      error: str | None, permanent: bool) -> None:
        first_at = item["first_at"] or time.time()
        if permanent or time.time() - first_at >= self.settings.retry_for_seconds:
            await self.store.webhook_dead.update_one(
                {"_id": item["_id"]},
                {"$setOnInsert": {**{k: v for k, v in item.items() if k != "_id"}, "attempts": attempt,
                                  "last_status": status, "last_error": error, "dead_at": time.time()}},
                upsert=True,
            )
            await self.store.webhook_queue.delete_one({"_id": item["_id"]})
            log.warning("webhook %s: event %s dead-lettered after %d attempts (%s)", hook["_id"],
                        item["event_id"], attempt, error or status)
            return
        await self.store.webhook_queue.update_one(
            {"_id": item["_id"]},
            {"$set": {"attempts": attempt, "first_at": first_at, "next_at": time.time() + self.backoff(attempt)}},
        )

    def backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter (between half and all of it), so failing receivers are not hammered in step."""
        delay = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    async def post(self, hook: dict[str, Any], item: dict[str, Any], body: bytes) -> tuple[int | None, str | None, bool]:
        """(status code, error, permanent): never follows a redirect; the target is checked again here."""
        try:
            self.policy.check_url(hook["url"])
        except TargetRefused as e:
            return None, f"refused: {e}", True
        assert self.http is not None
        try:
            response = await self.http.fetch(
                hook["url"], method="POST", body=body, raise_error=False, follow_redirects=False,
                connect_timeout=self.settings.connect_timeout_seconds,
                request_timeout=self.settings.request_timeout_seconds,
                headers={
                    "Content-Type": "application/json", "User-Agent": "Fechatter-Webhooks",
                    "X-Fechatter-Event": item["event_type"], "X-Fechatter-Delivery": item["event_id"],
                    "X-Fechatter-Signature": sign(hook["secret"], body),
                },
            )
        except TargetRefused as e:
            return None, f"refused: {e}", True
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any network failure is one failed attempt
            return None, f"{type(e).__name__}: {e}"[:300], False
        if response.code == 599:
            return None, str(response.error)[:300], False
        return response.code, None, False


