"""Names shared by the actors, the Serve app and the CLI (Ray namespace, actor names)."""

from __future__ import annotations

__all__ = ["NAMESPACE", "SERVE_APP_NAME", "SUPERVISOR_NAME", "shard_name"]

NAMESPACE = "aurora"
SUPERVISOR_NAME = "aurora-supervisor"
SERVE_APP_NAME = "aurora"


def shard_name(tenant_id: str, shard: int) -> str:
    return f"tenant:{tenant_id}:{shard}"
