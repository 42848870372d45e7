"""Names shared by the actors, the Serve app and the CLI (Ray namespace, actor names, headers)."""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "INGEST_ROUTE_PREFIX",
    "SERVE_APP_NAME",
    "SERVE_INGEST_APP_NAME",
    "SOURCE_BACKFILL",
    "SOURCE_HEADER",
    "SUPERVISOR_NAME",
    "shard_name",
]

NAMESPACE = "aurora"
SUPERVISOR_NAME = "aurora-supervisor"
SERVE_APP_NAME = "aurora"
# Writes have a Serve application (and replicas) of their own: Serve routes a request to the
# application with the longest matching prefix, so everything under /v1/ingest goes there.
SERVE_INGEST_APP_NAME = "aurora-ingest"
INGEST_ROUTE_PREFIX = "/v1/ingest"
# Kafka header on every record a backfill produces: the warehouse sink does not write those
# orders again (the backfill job wrote them to fact_order itself).
SOURCE_HEADER = "aurora-source"
SOURCE_BACKFILL = b"backfill"


def shard_name(tenant_id: str, shard: int) -> str:
    return f"tenant:{tenant_id}:{shard}"
