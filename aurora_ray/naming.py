"""Names shared by the actors, the Serve app and the CLI (Ray namespace, actor names, headers)."""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "SERVE_APP_NAME",
    "SOURCE_BACKFILL",
    "SOURCE_HEADER",
    "SUPERVISOR_NAME",
    "shard_name",
]

NAMESPACE = "aurora"
SUPERVISOR_NAME = "aurora-supervisor"
SERVE_APP_NAME = "aurora"
# Kafka header on every record a backfill produces: the warehouse sink does not write those
# orders again (the backfill job wrote them to fact_order itself).
SOURCE_HEADER = "aurora-source"
SOURCE_BACKFILL = b"backfill"


def shard_name(tenant_id: str, shard: int) -> str:
    return f"tenant:{tenant_id}:{shard}"
