"""Sessions: each user's "tokens valid after" instant, which ends every access token issued before it."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import msgspec

from app.auth import Identity
from app.events import EventBus
from app.store import Store

# Users whose instant a process keeps; one more is one indexed read, so the bound only caps memory.
CUTOFFS_KEPT = 100_000
VALID_AFTER_FIELD = "tokens_valid_after"


class SessionCutoffs:
    """Per user, the instant before which access tokens no longer count (seconds since the epoch).

    Stored on the user document as a number (the embedded server stores a `$set` datetime as a
    string). Both roles ask `live(identity)` on every authenticated request; a cached value answers
    it, read again from MongoDB after `ttl` seconds. The `sessions.revoked` event updates it at once:
    the notify role learns it from its consumer, the api role from `subscribe` (a plain NATS
    subscription, so every api process hears it); `ttl` only bounds a missed event.
    """

    def __init__(self, store: Store, ttl: float, *, bus: EventBus | None = None, kept: int = CUTOFFS_KEPT):
        self.store = store
        self.bus = bus
        self.ttl = ttl
        self.kept = kept
        self._cutoffs: OrderedDict[str, tuple[float, float]] = OrderedDict()  # user -> (valid_after, read at)
        self._subscription: Any = None
        self.reads = 0

    def known(self, user_id: str) -> float:
        """The instant as this process knows it now, with no read: 0 when it knows none."""
        cached = self._cutoffs.get(user_id)
        return cached[0] if cached is not None else 0.0

    def learned(self, user_id: str, valid_after: float) -> None:
        """A newer instant (from the event, or this process's own logout-all): never moves back."""
        current = self._cutoffs.get(user_id)
        now = time.monotonic()
        self._cutoffs[user_id] = (max(valid_after, current[0] if current else 0.0), now)
        self._cutoffs.move_to_end(user_id)
        if len(self._cutoffs) > self.kept:
            self._cutoffs.popitem(last=False)

    async def valid_after(self, user_id: str) -> float:
        cached = self._cutoffs.get(user_id)
        if cached is not None and time.monotonic() - cached[1] < self.ttl:
            return cached[0]
        doc = await self.store.users.find_one({"_id": user_id}, {VALID_AFTER_FIELD: 1})
        self.reads += 1
        value = doc.get(VALID_AFTER_FIELD) if doc else None
        self.learned(user_id, float(value) if isinstance(value, (int, float)) else 0.0)
        return self.known(user_id)

    async def live(self, identity: Identity) -> bool:
        """False when the token was issued before its user's instant (logout-all, a password change)."""
        return identity.issued_at >= await self.valid_after(identity.user_id)

    def live_now(self, identity: Identity) -> bool:
        """`live` from what this process already knows: for a check that must not await."""
        return identity.issued_at >= self.known(identity.user_id)

    # -- the api role: hear every process's logout-all ----------------------------------------

    async def start(self) -> None:
        if self.bus is not None:
            self._subscription = await self.bus.subscribe_sessions(self._on_event)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        await EventBus.unsubscribe(subscription)

    def on_event(self, user_id: str | None, data: bytes) -> float | None:
        """A `sessions.revoked` event's instant, learned; None when it names none."""
        try:
            valid_after = msgspec.json.decode(data).get("valid_after")
        except (msgspec.DecodeError, AttributeError):
            return None
        if not user_id or not isinstance(valid_after, (int, float)):
            return None
        self.learned(user_id, float(valid_after))
        return float(valid_after)

    async def _on_event(self, user_id: str | None, data: bytes) -> None:
        self.on_event(user_id, data)
