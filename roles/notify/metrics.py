"""The notify role's Prometheus collectors, on the process registry made in main."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.metrics import Metrics
from roles.notify.registry import Registry


class NotifyMetrics:
    def __init__(self, metrics: Metrics, registry: Registry):
        r = metrics.registry
        self.open_streams = Gauge("fechatter_notify_open_streams", "SSE streams open", registry=r)
        self.open_streams.set_function(lambda: registry.stream_count)
        self.users_online = Gauge("fechatter_notify_users_online", "Users with a stream open here", registry=r)
        self.users_online.set_function(lambda: registry.describe()["connected_users"])
        self.events_consumed = Counter("fechatter_notify_events_consumed", "Events read from JetStream", registry=r)
        self.events_delivered = Counter(
            "fechatter_notify_events_delivered", "Event frames written to streams (live and replayed)", registry=r
        )
        # One observation per event: JetStream's store time -> its frame written to every recipient stream.
        self.delivery_seconds = Histogram(
            "fechatter_notify_delivery_seconds", "Event stored in JetStream to frames written",
            registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # JetStream's num_pending of the last event read: how far this process is behind the stream.
        self.consumer_lag = Gauge(
            "fechatter_notify_consumer_lag", "Events in the stream this process has not consumed yet", registry=r
        )
        self.resumes = Counter("fechatter_notify_resumes", "Streams opened with a resume point served", registry=r)
        self.resyncs = Counter("fechatter_notify_resyncs", "Resume points too old or unknown", registry=r)
        self.slow_disconnects = Counter(
            "fechatter_notify_slow_client_disconnects", "Streams closed because the client read too slowly",
            registry=r,
        )
