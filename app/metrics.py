"""Prometheus metrics, one registry per process, built in main and handed to the roles."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(handler, method, str(status)).inc()
        self.request_seconds.labels(handler).observe(seconds)
