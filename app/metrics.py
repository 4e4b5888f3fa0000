"""Prometheus metrics, one registry per process, built in main and handed to the roles."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("fechatter.metrics")
# A gauge read from a dependency at scrape time waits this long at most; /metrics answers anyway.
SCRAPE_READ_SECONDS = 2.0


class Metrics:
    """The HTTP metrics every role shares; roles add their own collectors to `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "fechatter_http_requests",
            "HTTP requests answered",
            ["handler", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "fechatter_http_request_seconds",
            "Time to answer an HTTP request",
            ["handler"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        self._outbox_pending: Gauge | None = None
        self._count_outbox: Callable[[], Awaitable[int]] | None = None

    def watch_outbox(self, count: Callable[[], Awaitable[int]]) -> None:
        """The api role's `fechatter_outbox_pending`: `count` (the outbox entries) is read at each scrape."""
        if self._outbox_pending is None:
            self._outbox_pending = Gauge(
                "fechatter_outbox_pending", "Outbox entries: changes saved whose events NATS has not acknowledged",
                registry=self.registry,
            )
        self._count_outbox = count

    async def refresh(self) -> None:
        """Before a scrape: the gauges read from a dependency (left as they were when it does not answer)."""
        if self._count_outbox is not None and self._outbox_pending is not None:
            try:
                self._outbox_pending.set(await asyncio.wait_for(self._count_outbox(), SCRAPE_READ_SECONDS))
            except Exception as e:  # noqa: BLE001 - a scrape never fails for one gauge
                log.debug("outbox depth not read: %s", e)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(handler, method, str(status)).inc()
        self.request_seconds.labels(handler).observe(seconds)
