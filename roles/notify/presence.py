"""Presence: a user is online while they hold a stream; changes become `presence` events on JetStream."""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from app import events
from app.events import EventBus, make_event
from roles.notify.registry import Registry, UserEntry

log = logging.getLogger("fechatter.notify.presence")


class Presence:
    """Who is online, and the events announcing it.

    Today "online" means "holds a stream on this process". The events go through JetStream so every
    notify process delivers them with a stream id; across processes (issue 8) only this class
    changes: a NATS KV bucket with a TTL per (user, process) decides online/offline.
    """

    def __init__(self, bus: EventBus, registry: Registry):
        self.bus = bus
        self.registry = registry
        # user -> (status, workspace, chats) still to publish, oldest first; a newer change replaces an
        # older one, so a tab reloaded quickly publishes nothing and the map is bounded by users.
        self._pending: dict[str, tuple[str, str, list[str]]] = {}
        # Users last announced online; an offline needs announcing only for them.
        self._announced: set[str] = set()
        self._worker: asyncio.Task | None = None

    def opened(self, entry: UserEntry) -> None:
        self._queue(entry, "online")

    def closed(self, entry: UserEntry) -> None:
        self._queue(entry, "offline")

    def _queue(self, entry: UserEntry, status: str) -> None:
        self._pending.pop(entry.user_id, None)
        self._pending[entry.user_id] = (status, entry.workspace_id, sorted(entry.chats))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._publish_pending())

    async def _publish_pending(self) -> None:
        # One publisher in order: a user's online and offline never overtake each other.
        while self._pending:
            user_id = next(iter(self._pending))
            status, workspace_id, chat_ids = self._pending.pop(user_id)
            if (status == "online") == (user_id in self._announced):
                continue
            event = make_event(
                events.PRESENCE, {"user_id": user_id, "status": status},
                user_id=user_id, workspace_id=workspace_id, chat_ids=chat_ids,
            )
            try:
                await self.bus.publish(event)
            except events.UNAVAILABLE_ERRORS as e:
                # Presence is ephemeral: a lost announcement is corrected by online-users and the next change.
                log.warning("presence of %s not published: %s", user_id, e)
                continue
            if status == "online":
                self._announced.add(user_id)
            else:
                self._announced.discard(user_id)

    async def flush(self, timeout: float) -> None:
        """Waits (bounded) until every queued change is published; used at shutdown."""
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except asyncio.TimeoutError:
                log.warning("presence changes of %d users not published at shutdown", len(self._pending))
                self._worker.cancel()

    # -- who is online -----------------------------------------------------------------------------

    def online_in_chats(self, chat_ids: Iterable[str]) -> set[str]:
        users: set[str] = set()
        for chat_id in chat_ids:
            users.update(self.registry.chat_members.get(chat_id, ()))
        return {user for user in users if self.registry.online(user)}

    def online_in_workspace(self, workspace_id: str) -> set[str]:
        return {
            entry.user_id for entry in self.registry.users.values()
            if entry.streams and entry.workspace_id == workspace_id
        }
