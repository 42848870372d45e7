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

    def accepted(self, tenant_id: str, n: int) -> None:
        if n:
            self.ingested.inc(n, tags={"tenant": tenant_id})

    def refused(self, tenant_id: str, n: int, reason: str) -> None:
        if n:
            self.rejected.inc(n, tags={"tenant": tenant_id, "reason": reason})
