"""The notify role: holds browsers' SSE streams and pushes each event to the online members of its chat."""

from __future__ import annotations

import functools
import logging
import time

from tornado.ioloop import PeriodicCallback

from app import events
from app.deps import Deps
from app.services import membership
from app.services.online import OnlineUsers
from app.services.presence import Presence
from app.services.ratelimit import LocalRateLimiter
from app.services.sessions import SessionCutoffs
from app.web import RoleApp, route
from roles.notify.consumer import EventConsumer
from roles.notify.frames import PING, PING_CHUNK
from roles.notify.handlers import OnlineUsersHandler, SseHealthHandler
from roles.notify.holder import LoopPasses
from roles.notify.metrics import NotifyMetrics
from roles.notify.registry import KEEPALIVE_SLICES, Registry
from roles.notify.stream import EventStreamHandler
from roles.notify.window import ReplayWindow

log = logging.getLogger("fechatter.notify")

# At shutdown, how long queued presence changes get to reach JetStream.
PRESENCE_FLUSH_SECONDS = 2.0


class NotifyApp(RoleApp):
    """The application plus the process's delivery state: registry, replay window, consumer, presence."""

    def __init__(self, routes, deps: Deps, **settings):
        super().__init__(routes, role="notify", deps=deps, **settings)
        config = deps.config
        self.registry = Registry(functools.partial(membership.user_chat_ids, deps.store),
                                 presence_max_members=config.notify.presence_max_members)
        self.window = ReplayWindow(config.notify.replay_window_seconds, config.notify.replay_max_events,
                                   config.notify.replay_ephemeral_events)
        self.notify_metrics = NotifyMetrics(deps.metrics, self.registry)
        self.stream_passes = LoopPasses()
        # Stream opens per user, counted per process (notify has no shared counter on this path).
        self.stream_opens = LocalRateLimiter(config.limits.enabled)
        self.presence = Presence(deps.bus, deps.store, self.registry, config.notify.presence_ttl_seconds,
                                 grace_seconds=config.notify.presence_offline_grace_seconds)
        self.online = OnlineUsers(deps.store, self.presence)
        # Kept current by the consumer's `sessions.revoked` events; a stream's open reads the user once.
        self.sessions = SessionCutoffs(deps.store, config.auth.session_cache_seconds)
        self.settings["session_check"] = self.sessions.live
        self.consumer = EventConsumer(deps.bus, self.window, self.registry, self.notify_metrics,
                                      sessions=self.sessions)
        self.settings["ready_checks"] = [self.consumer.stalled, self.presence.bucket.stalled]
        self.stopping = False
        self._keepalive: PeriodicCallback | None = None
        self._ticks = 0

    async def start(self) -> None:
        await events.when_available(self.consumer.start, "event stream")
        await self.presence.start()
        # One timer for every stream, not a task per stream. Each stream is visited every half
        # keepalive, one slice of them per tick so 10,000 pings never go out in one burst, and is
        # pinged only when nothing was written to it since the last visit: at most one keepalive apart.
        period = self.settings["config"].notify.keepalive_seconds / 2 / KEEPALIVE_SLICES
        self._keepalive = PeriodicCallback(self._tick, period * 1000)
        self._keepalive.start()

    def _tick(self) -> None:
        self._ticks += 1
        if self._ticks % KEEPALIVE_SLICES == 0:
            self.window.trim(time.time())
        current = self._ticks % KEEPALIVE_SLICES
        # send() never changes the registry there and then (it defers), so the live set can be walked.
        for stream in self.registry.keepalive_slices[current]:
            if stream.wrote:
                stream.wrote = False
            else:
                stream.send(PING, PING_CHUNK)

    async def stop(self) -> None:
        """Closes every stream (clients reconnect elsewhere and resume) and stops consuming."""
        self.stopping = True
        if self._keepalive is not None:
            self._keepalive.stop()
        streams = self.registry.all_streams()
        for stream in streams:
            stream.end()
        if streams:
            log.info("closed %d streams", len(streams))
        await self.presence.flush(PRESENCE_FLUSH_SECONDS)
        await self.presence.stop(PRESENCE_FLUSH_SECONDS)
        await self.consumer.stop()


def make_app(deps: Deps, **settings) -> NotifyApp:
    routes = [
        route("/events", EventStreamHandler),
        route("/api/online-users", OnlineUsersHandler),
        route("/api/sse/health", SseHealthHandler),
    ]
    return NotifyApp(routes, deps, **settings)
