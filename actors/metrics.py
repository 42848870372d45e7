"""Ray metrics of the stream side (Ray dashboard and its Prometheus endpoint)."""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

_LATENCY_BOUNDARIES = [5.0, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000]


class RayShardMetrics:
    """Implements ``aurora_ray.stream.ShardMetrics`` with ``ray.util.metrics``."""

    def __init__(self, tenant_id: str, shard: int) -> None:
        self.tags = {"tenant": tenant_id, "shard": str(shard)}
        keys = ("tenant", "shard")
        self.latency = Histogram(
            "prediction_latency_ms",
            description="Event accepted by the API -> scored by its shard, in ms",
            boundaries=_LATENCY_BOUNDARIES,
            tag_keys=keys,
        )
        self.alerts = Counter("alerts_generated_total", description="Alerts raised", tag_keys=keys)
        self.events = Counter(
            "events_processed_total", description="Events scored by shards", tag_keys=keys
        )
        self.lag = Gauge("shard_lag", description="Records behind the topic end", tag_keys=keys)

    def record_batch(
        self, *, events: int, alerts: int, latencies_ms: list[float], lag: int
    ) -> None:
        for value in latencies_ms:
            self.latency.observe(value, tags=self.tags)
        if alerts:
            self.alerts.inc(alerts, tags=self.tags)
        if events:
            self.events.inc(events, tags=self.tags)
        self.lag.set(lag, tags=self.tags)
