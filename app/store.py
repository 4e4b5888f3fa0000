"""MongoDB storage: the one module that names collections and creates their indexes."""

from __future__ import annotations

import contextlib
import datetime
import secrets
from typing import Any, Iterator

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from gridfs import AsyncGridFSBucket

# Errors that mean "MongoDB is not answering", as opposed to a bad query: they become 503.
UNAVAILABLE_ERRORS = (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WTimeoutError,
)


def new_id() -> str:
    """Ids are strings everywhere; an ObjectId's hex keeps them short and roughly time-ordered."""
    return str(ObjectId())


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def utcnow() -> datetime.datetime:
    # MongoDB keeps milliseconds; truncating here makes what we return equal what we read back.
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def isoformat(value: datetime.datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds and a Z, as the contract says."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# Start-up work (index builds, migrations over every document) may take minutes on a large database.
STARTUP_TIMEOUT_SECONDS = 600.0


def make_client(uri: str, timeout_ms: int, **options: Any) -> AsyncMongoClient:
    """The driver connects lazily, so building a client makes no connection yet.

    `timeoutMS` bounds every operation (server selection, connection, the command, each getMore)
    by `timeout_ms`, and the driver sends what is left of it as each command's `maxTimeMS`: MongoDB
    cancels a command that cannot finish in time (ExecutionTimeout, a 503) instead of running on
    after the client gave up and delaying the commands behind it. The embedded server ignores
    maxTimeMS (docs/embedded-mongo.md): there the client gives up (NetworkTimeout, a 503 too).
    `options` go to the client as they are (tests add event listeners).
    """
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        timeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        retryWrites=False,  # nx-27017 and standalone servers have no retryable writes
        appname="fechatter",
        **options,
    )


@contextlib.contextmanager
def startup_timeout() -> Iterator[None]:
    """The operations inside get STARTUP_TIMEOUT_SECONDS instead of mongo.timeout_ms; only for start-up work."""
    with pymongo.timeout(STARTUP_TIMEOUT_SECONDS):
        yield


class Store:
    """Fechatter's collections. Documents stay flat: one document per membership, arrays only of scalars."""

    def __init__(self, client: AsyncMongoClient, database: str):
        self.client = client
        self.db: AsyncDatabase = client[database]
        self.workspaces: AsyncCollection = self.db["workspaces"]
        self.users: AsyncCollection = self.db["users"]
        self.refresh_tokens: AsyncCollection = self.db["refresh_tokens"]
        self.chats: AsyncCollection = self.db["chats"]
        self.members: AsyncCollection = self.db["members"]
        self.messages: AsyncCollection = self.db["messages"]
        # Claims of (chat, sender, idempotency key) so a retried send never takes a second seq.
        self.send_claims: AsyncCollection = self.db["send_claims"]
        # Events written before their change, removed once JetStream acknowledged them.
        self.outbox: AsyncCollection = self.db["outbox"]
        # Fixed-window request counters shared by every api process.
        self.rate_limits: AsyncCollection = self.db["rate_limits"]
        # One small document per direct mention of a member (app.services.mentions): GET /api/mentions.
        self.mentions: AsyncCollection = self.db["mentions"]
        # One document per (message, emoji, member) reaction, and one per pinned message (app.services.reactions):
        # documents of their own, never arrays of subdocuments in the message (they corrupt on nx-27017).
        self.reactions: AsyncCollection = self.db["reactions"]
        self.pins: AsyncCollection = self.db["pins"]
        # Per message (_id = its id), what a page shows of those: its reactions as scalars and who pinned it.
        self.message_marks: AsyncCollection = self.db["message_marks"]
        # Edit history: one document per version an edit replaced (app.services.messages), never an array in the message.
        self.message_versions: AsyncCollection = self.db["message_versions"]
        # Re-encoded avatar PNGs (app.services.people), one document per (picture, size), read by _id alone.
        self.avatars: AsyncCollection = self.db["avatars"]
        # GridFS bucket "files": app.services.files writes both collections itself; downloads use the bucket.
        self.files: AsyncCollection = self.db["files.files"]
        self.file_chunks: AsyncCollection = self.db["files.chunks"]
        self.file_bucket = AsyncGridFSBucket(self.db, bucket_name="files")
        # Outgoing webhooks (app.services.webhooks_out): the hooks, each one's queue of events to deliver in
        # stream order, its log of attempts, and the events given up on after retrying.
        self.webhooks: AsyncCollection = self.db["webhooks"]
        self.webhook_queue: AsyncCollection = self.db["webhook_queue"]
        self.webhook_deliveries: AsyncCollection = self.db["webhook_deliveries"]
        self.webhook_dead: AsyncCollection = self.db["webhook_dead"]
        # Incoming webhooks (app.services.webhooks_in): one per secret URL, found by the secret's SHA-256.
        self.incoming_webhooks: AsyncCollection = self.db["incoming_webhooks"]

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op.

        Runs before the role serves, under startup_timeout(): an index build on a large
        collection may take longer than a request may.
        """
        with startup_timeout():
            await self._ensure_indexes()

    async def _ensure_indexes(self) -> None:
        await self.workspaces.create_index("name_key", unique=True)
        await self.workspaces.create_index("invite_code", unique=True)
        await self.users.create_index("email", unique=True)
        # The users listing's order and pages: name_key = casefold(fullname) + "\x01" + _id, unique by its id
        # (app.services.accounts.user_name_key; backfill_user_name_keys gives it to older users). Not
        # unique in the index: on MongoDB, users still without it would collide as nulls.
        await self.users.create_index([("workspace_id", ASCENDING), ("name_key", ASCENDING)])
        # Usernames are unique per workspace, stored lower-case (case-insensitive). The index's name ends in
        # username, so nx-27017 serves {workspace_id: $eq, username: $eq} from it (a mention's lookup).
        # Partial: on MongoDB, users still without one (before the start-up migration) would collide as nulls.
        await self.users.create_index(
            [("workspace_id", ASCENDING), ("username", ASCENDING)],
            unique=True,
            partialFilterExpression={"username": {"$exists": True}},
        )
        # A workspace's bots (GET /api/bots) without reading its people: the name ends in is_bot (see above).
        await self.users.create_index([("workspace_id", ASCENDING), ("is_bot", ASCENDING)])
        await self.incoming_webhooks.create_index("secret_hash", unique=True)
        await self.incoming_webhooks.create_index("chat_id")
        await self.refresh_tokens.create_index("user_id")
        await self.refresh_tokens.create_index("family_id")
        # Channel names are unique per workspace; direct chats are unique per pair of people.
        await self.chats.create_index(
            [("workspace_id", ASCENDING), ("name_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"name_key": {"$exists": True}},
        )
        await self.chats.create_index(
            "direct_key", unique=True, partialFilterExpression={"direct_key": {"$exists": True}}
        )
        # Public channels by name, a page per range (name_key is unique in a workspace).
        await self.chats.create_index([("workspace_id", ASCENDING), ("type", ASCENDING), ("name_key", ASCENDING)])
        # A workspace's chats by recent activity: where a search of a caller in many chats starts
        # (app.services.search). The name ends in the sorted field, which nx-27017 then walks in order.
        await self.chats.create_index([("workspace_id", ASCENDING), ("last_message_at", DESCENDING)])
        await self.members.create_index([("chat_id", ASCENDING), ("user_id", ASCENDING)], unique=True)
        await self.members.create_index([("user_id", ASCENDING), ("chat_id", ASCENDING)])
        await self.messages.create_index([("chat_id", ASCENDING), ("seq", ASCENDING)], unique=True)
        await self.messages.create_index(
            [("chat_id", ASCENDING), ("sender_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"idempotency_key": {"$exists": True}},
        )
        # A thread's replies in seq order, and (thread_root_id null) the listing of roots and plain messages:
        # both a range of seq, the field the index's name ends in (what nx-27017 serves from an index).
        await self.messages.create_index(
            [("chat_id", ASCENDING), ("thread_root_id", ASCENDING), ("seq", ASCENDING)])
        # A message's earlier versions oldest first: {message_id: $eq, rev: $gte 0}, a range of the last field.
        await self.message_versions.create_index([("message_id", ASCENDING), ("rev", ASCENDING)], unique=True)
        # Search reads (chat_id, seq) windows with a regex (app.services.search): the text index of
        # older versions only costs writes. nx-27017 cannot drop its FTS table over the wire (a no-op).
        try:
            await self.messages.drop_index("content_text")
        except OperationFailure:
            pass  # never created, or already dropped
        # A user's mentions newest first, paged by message id (ids are time-ordered); and a chat's or a
        # leaving member's mentions deleted by a range of the second.
        await self.mentions.create_index([("user_id", ASCENDING), ("message_id", DESCENDING)])
        await self.mentions.create_index([("chat_id", ASCENDING), ("user_id", ASCENDING)])
        # One reaction per (message, emoji, member): a second PUT's insert is refused, so it changes nothing.
        # A page reads none of them: it reads message_marks by _id (app.services.reactions.MessageMarks).
        await self.reactions.create_index(
            [("message_id", ASCENDING), ("emoji", ASCENDING), ("user_id", ASCENDING)], unique=True
        )
        # A pin's _id is its message's id; one per message of a chat, and a chat's pins newest first as one
        # range of `rank` (app.services.reactions.pin_rank).
        await self.pins.create_index([("chat_id", ASCENDING), ("message_id", ASCENDING)], unique=True)
        await self.pins.create_index([("chat_id", ASCENDING), ("rank", ASCENDING)])
        # A deleted chat's claims go with it: delete_many({chat_id: $eq}) reads this index, not every claim.
        await self.send_claims.create_index("chat_id")
        # Windows expire by a number the api role's purge deletes by range (RateLimiter.purge_once). Not a
        # TTL index: on nx-27017 that runs a purge scanning every live window before each command.
        await self.rate_limits.create_index("expires_ts")
        await self._drop_rate_limit_ttl()
        # Never put _id in a compound index: nx-27017 then fails every insert.
        # The drainer's order, (created_at, n), read from this index: no sort of the backlog.
        await self.outbox.create_index([("created_at", ASCENDING), ("n", ASCENDING)])
        await self.files.create_index([("metadata.workspace_id", ASCENDING), ("uploadDate", DESCENDING)])
        # The index GridFS readers expect (pymongo's uploader made it; ours does not check on each upload).
        # nx-27017 keeps GridFS in its own tables and answers this with a no-op.
        await self.file_chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        # A workspace's webhooks; a webhook's queue oldest first (its stream sequence), its attempts newest first.
        await self.webhooks.create_index("workspace_id")
        await self.webhook_queue.create_index([("webhook_id", ASCENDING), ("seq", ASCENDING)])
        await self.webhook_deliveries.create_index([("webhook_id", ASCENDING), ("n", DESCENDING)])
        await self.webhook_dead.create_index([("webhook_id", ASCENDING), ("seq", ASCENDING)])

    async def _drop_rate_limit_ttl(self) -> None:
        """Older versions expired windows by a TTL index on `expires_at`: drop it and the windows it left.

        By key, not name: whatever it was called. An expired old window is deleted here (once, at start-up:
        on nx-27017 a scan of the few live windows); a live one gets `expires_ts` at its next hit, and one
        never hit again is expired by the next start-up.
        """
        try:
            await self.db.command("dropIndexes", self.rate_limits.name, index={"expires_at": 1})
        except OperationFailure:
            pass  # never created (a new database), or already dropped
        await self.rate_limits.delete_many(
            {"expires_at": {"$lt": datetime.datetime.now(datetime.timezone.utc)}, "expires_ts": {"$exists": False}}
        )
