"""Ray metrics of the HTTP side."""

from __future__ import annotations

from ray.util.metrics import Counter


class ApiMetrics:
    def __init__(self) -> None:
        self.ingested = Counter(
            "events_ingested_total",
            description="Events accepted by POST /ingest/events (acknowledged by the broker)",
            tag_keys=("tenant",),
        )
        self.rejected = Counter(
            "events_rejected_total",
            description="Events refused by POST /ingest/events (every line of a refused "
            "request; 1 for a request refused before its lines were read)",
            tag_keys=("tenant", "reason"),
        )

        self.limited = Counter(
            "rate_limited_total",
            description="Requests refused by the tenant's rate limit (429, or 413 for more "
            "events than its bucket holds), by the bucket that refused",
            tag_keys=("tenant", "bucket"),
        )
        self.limiter_unavailable = Counter(
            "rate_limiter_unavailable_total",
            description="Requests let through without a limit because Redis did not answer "
            "the rate limiter in time (fail open)",
        )

    def accepted(self, tenant_id: str, n: int) -> None:
        if n:
            self.ingested.inc(n, tags={"tenant": tenant_id})

    def refused(self, tenant_id: str, n: int, reason: str) -> None:
        if n:
            self.rejected.inc(n, tags={"tenant": tenant_id, "reason": reason})

    def rate_limited(self, tenant_id: str, bucket: str) -> None:
        self.limited.inc(1, tags={"tenant": tenant_id, "bucket": bucket})

    def failed_open(self) -> None:
        self.limiter_unavailable.inc(1)
