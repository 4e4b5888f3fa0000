"""MongoDB storage: the one module that names collections and creates their indexes."""

from __future__ import annotations

import datetime
import secrets

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


def make_client(uri: str, timeout_ms: int) -> AsyncMongoClient:
    """The driver connects lazily, so building a client makes no connection yet."""
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 3, 10_000),
        retryWrites=False,  # nx-27017 and standalone servers have no retryable writes
        appname="fechatter",
    )


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
        self.files: AsyncCollection = self.db["files.files"]
        self.file_bucket = AsyncGridFSBucket(self.db, bucket_name="files")

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op."""
        await self.workspaces.create_index("name_key", unique=True)
        await self.workspaces.create_index("invite_code", unique=True)
        await self.users.create_index("email", unique=True)
        await self.users.create_index([("workspace_id", ASCENDING), ("fullname", ASCENDING)])
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
        await self.chats.create_index([("workspace_id", ASCENDING), ("type", ASCENDING)])
        await self.members.create_index([("chat_id", ASCENDING), ("user_id", ASCENDING)], unique=True)
        await self.members.create_index([("user_id", ASCENDING), ("chat_id", ASCENDING)])
        await self.messages.create_index([("chat_id", ASCENDING), ("seq", ASCENDING)], unique=True)
        await self.messages.create_index(
            [("chat_id", ASCENDING), ("sender_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"idempotency_key": {"$exists": True}},
        )
        try:
            await self.messages.create_index([("content", "text")])
        except OperationFailure as e:
            # nx-27017 refuses to re-create an existing text index once messages exist (a restart);
            # MongoDB treats it as the no-op it is. Anything else is a real failure.
            if "constraint failed" not in str(e):
                raise
        await self.rate_limits.create_index("expires_at", expireAfterSeconds=0)
        # Never put _id in a compound index: nx-27017 then fails every insert.
        await self.outbox.create_index("created_at")
        await self.files.create_index([("metadata.workspace_id", ASCENDING), ("uploadDate", DESCENDING)])
