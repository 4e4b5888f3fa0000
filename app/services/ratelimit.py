"""Fixed-window rate limits counted in MongoDB, so every api process shares one count."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from app.errors import APIError
from app.store import Store

log = logging.getLogger("fechatter.ratelimit")

# How often the api role deletes windows that ended; a window is at most this much older than its end.
PURGE_INTERVAL_SECONDS = 60.0


class RateLimiter:
    """`await hit("signin:ip:1.2.3.4", limit=20, window=60)` raises 429 with Retry-After past the limit.

    A window is `{_id: "<key>@<start>", n, expires_ts}` (`expires_ts`: the window's end, epoch
    seconds). The limiter is also a background task of the api role (`start`/`stop`): every
    PURGE_INTERVAL_SECONDS it deletes the windows that ended, one range of the `expires_ts` index;
    several api processes doing it at once delete nothing twice.
    """

    def __init__(self, store: Store, enabled: bool, purge_interval: float = PURGE_INTERVAL_SECONDS):
        self.store = store
        self.enabled = enabled
        self.purge_interval = purge_interval
        self._task: asyncio.Task | None = None

    async def hit(self, key: str, *, limit: int, window: float, what: str = "requests") -> None:
        if not self.enabled or limit <= 0:
            return
        now = time.time()
        window_start = math.floor(now / window) * window
        n = await self._count(f"{key}@{int(window_start)}", math.ceil(window_start + window))
        if n > limit:
            retry_after = max(1, math.ceil(window_start + window - now))
            raise APIError(
                429,
                "rate_limited",
                f"too many {what}; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def _count(self, window_id: str, expires_ts: int) -> int:
        """This window's count after one more hit: one command, two on the window's first hit.

        The first hit is an update_one upsert, not a find_one_and_update: nx-27017's findAndModify
        with upsert drops `$setOnInsert` (docs/embedded-mongo.md). Every hit `$set`s `expires_ts`
        (the same value for one window): a window written by an older version, with only a TTL
        `expires_at`, gets it at its next hit and is purged with the others.
        """
        update = {"$inc": {"n": 1}, "$set": {"expires_ts": expires_ts}}
        doc = await self.store.rate_limits.find_one_and_update(
            {"_id": window_id}, update, projection={"n": 1}, return_document=ReturnDocument.AFTER
        )
        if doc is not None:
            return doc["n"]
        try:
            result = await self.store.rate_limits.update_one({"_id": window_id}, update, upsert=True)
        except DuplicateKeyError:  # a concurrent first hit inserted it a moment ago
            result = await self.store.rate_limits.update_one({"_id": window_id}, update)
        if result.upserted_id is not None:
            return 1
        doc = await self.store.rate_limits.find_one({"_id": window_id}, {"n": 1})
        return doc["n"] if doc is not None else 1

    async def purge_once(self, now: float | None = None) -> int:
        """Delete the windows that ended by `now` (default: the clock); how many were deleted."""
        now = time.time() if now is None else now
        result = await self.store.rate_limits.delete_many({"expires_ts": {"$lt": now}})
        return result.deleted_count

    # -- the background task ----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rate-limit-purge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval)
            try:
                await self.purge_once()
            except PyMongoError as exc:  # the store is away: the next pass deletes what this one left
                log.warning("rate limit purge failed: %s", exc)


class LocalRateLimiter:
    """The same fixed windows counted in this process only, for a role with no shared store on the
    path (notify's stream opens): N processes let a user through up to N times the limit."""

    # Past this many keys, the windows that ended are dropped; memory stays bounded by active keys.
    PRUNE_AT = 10_000

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, *, limit: int, window: float, what: str = "requests") -> None:
        if not self.enabled or limit <= 0:
            return
        now = time.time()
        window_start = math.floor(now / window) * window
        start, n = self._windows.get(key, (window_start, 0))
        if start != window_start:
            n = 0
        if len(self._windows) >= self.PRUNE_AT and key not in self._windows:
            self._windows = {k: v for k, v in self._windows.items() if v[0] + window > now}
        self._windows[key] = (window_start, n + 1)
        if n + 1 > limit:
            retry_after = max(1, math.ceil(window_start + window - now))
            raise APIError(
                429,
                "rate_limited",
                f"too many {what}; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
