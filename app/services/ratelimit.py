"""Fixed-window rate limits counted in MongoDB, so every api process shares one count."""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.errors import APIError
from app.store import Store
from app.tasks import Periodic

log = logging.getLogger("fechatter.ratelimit")

# How often the api role deletes windows that ended; a window is at most this much older than its end.
PURGE_INTERVAL_SECONDS = 60.0

Clock = Callable[[], float]  # seconds since the epoch: time.time, or a test's stopped clock


def fixed_window(now: float, length: float) -> tuple[float, float]:
    """The start and end of the fixed window of `length` seconds that holds `now`."""
    start = math.floor(now / length) * length
    return start, start + length


def rate_limited(what: str, now: float, window_end: float) -> APIError:
    """The 429 past a limit, with Retry-After: the whole seconds until the window ends (at least 1)."""
    retry_after = max(1, math.ceil(window_end - now))
    return APIError(429, "rate_limited", f"too many {what}; try again in {retry_after} s",
                    headers={"Retry-After": str(retry_after)})


class RateLimiter:
    """`await hit("signin:ip:1.2.3.4", limit=20, window=60)` raises 429 with Retry-After past the limit.

    A window is `{_id: "<key>@<start>", n, expires_ts}` (`expires_ts`: the window's end, epoch
    seconds). The limiter is also a background task of the api role (`start`/`stop`): every
    PURGE_INTERVAL_SECONDS it deletes the windows that ended, one range of the `expires_ts` index;
    several api processes doing it at once delete nothing twice. `clock` tells the time of both.
    """

    def __init__(self, store: Store, enabled: bool, purge_interval: float = PURGE_INTERVAL_SECONDS,
                 clock: Clock = time.time):
        self.store = store
        self.enabled = enabled
        self.clock = clock
        self._purger = Periodic("rate-limit-purge", purge_interval, self._purge, log)

    async def hit(self, key: str, *, limit: int, window: float, what: str = "requests") -> None:
        if not self.enabled or limit <= 0:
            return
        now = self.clock()
        start, end = fixed_window(now, window)
        if await self._count(f"{key}@{int(start)}", math.ceil(end)) > limit:
            raise rate_limited(what, now, end)

    async def per_user(self, kind: str, user_id: str, *, limit: int, window: float, what: str) -> None:
        """`hit` for one more `kind` (messages, edits, uploads...) by one user: every per-user limit's key."""
        await self.hit(f"{kind}:user:{user_id}", limit=limit, window=window, what=what)

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
        now = self.clock() if now is None else now
        result = await self.store.rate_limits.delete_many({"expires_ts": {"$lt": now}})
        return result.deleted_count

    # -- the background task: the store away, the next pass deletes what this one left ----------

    async def start(self) -> None:
        self._purger.start()

    async def stop(self) -> None:
        await self._purger.stop()

    @property
    def running(self) -> bool:
        return self._purger.running

    async def _purge(self) -> None:
        await self.purge_once()  # its count, returned to Periodic, would read as "more to do at once"


class LocalRateLimiter:
    """The same fixed windows counted in this process only, for a role with no shared store on the
    path (notify's stream opens): N processes let a user through up to N times the limit."""

    # Past this many keys, the windows that ended are dropped; memory stays bounded by active keys.
    PRUNE_AT = 10_000

    def __init__(self, enabled: bool, clock: Clock = time.time):
        self.enabled = enabled
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, *, limit: int, window: float, what: str = "requests") -> None:
        if not self.enabled or limit <= 0:
            return
        now = self.clock()
        start, end = fixed_window(now, window)
        current, n = self._windows.get(key, (start, 0))
        if current != start:
            n = 0
        if len(self._windows) >= self.PRUNE_AT and key not in self._windows:
            self._windows = {k: v for k, v in self._windows.items() if v[0] + window > now}
        self._windows[key] = (start, n + 1)
        if n + 1 > limit:
            raise rate_limited(what, now, end)
