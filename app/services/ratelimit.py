"""Fixed-window rate limits counted in MongoDB, so every api process shares one count."""

from __future__ import annotations

import datetime
import math
import time

from pymongo import ReturnDocument

from app.errors import APIError
from app.store import Store


class RateLimiter:
    """`await hit("signin:ip:1.2.3.4", limit=20, window=60)` raises 429 with Retry-After past the limit."""

    def __init__(self, store: Store, enabled: bool):
        self.store = store
        self.enabled = enabled

    async def hit(self, key: str, *, limit: int, window: float, what: str = "requests") -> None:
        if not self.enabled or limit <= 0:
            return
        now = time.time()
        window_start = math.floor(now / window) * window
        doc = await self.store.rate_limits.find_one_and_update(
            {"_id": f"{key}@{int(window_start)}"},
            {
                "$inc": {"n": 1},
                "$setOnInsert": {
                    "expires_at": datetime.datetime.fromtimestamp(window_start + window, datetime.timezone.utc)
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc["n"] > limit:
            retry_after = max(1, math.ceil(window_start + window - now))
            raise APIError(
                429,
                "rate_limited",
                f"too many {what}; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
