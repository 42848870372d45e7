"""Health of the parts Aurora depends on, for `GET /status` and `aurora status`.

Checks dependencies before claiming to serve (a missing topic is reported, not discovered by a
failing produce). A shard is down when its heartbeat in Redis is older than ``stale_after_s``.
"""

from __future__ import annotations

import time
from typing import Any

from aurora_ray import __version__
from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.models.registry import model_status
from aurora_ray.settings import Settings
from aurora_ray.warehouse.sink import delayed_tenants

__all__ = ["collect_status"]

_DELAY_SHOWN_S = 600.0  # a delayed warehouse batch stays listed this long


def collect_status(
    settings: Settings,
    store: RedisStore,
    admin: TopicAdmin,
    *,
    ray_component: dict[str, Any],
    stale_after_s: float = 15.0,
) -> tuple[int, dict[str, Any]]:
    components: dict[str, dict[str, Any]] = {"ray": ray_component}
    try:
        store.ping()
        components["redis"] = {"status": "ok"}
    except Exception as exc:  # any failure means down; say why
        components["redis"] = {"status": "down", "error": str(exc)}
    topics: dict[str, int] = {}
    try:
        topics = admin.topics(timeout=3.0)
        components["kafka"] = {"status": "ok", "topics": len(topics)}
    except Exception as exc:
        components["kafka"] = {"status": "down", "error": str(exc)}

    shards: list[dict[str, Any]] = []
    if components["redis"]["status"] == "ok":
        now = time.time()
        for tenant_id in store.tenants():
            topic = settings.topic_for(tenant_id)
            if components["kafka"]["status"] == "ok" and topic not in topics:
                components["kafka"] = {"status": "down", "error": f"topic {topic} is missing"}
            for record in store.shard_health(tenant_id, settings.shards_per_tenant):
                beat = record.get("heartbeat")
                alive = isinstance(beat, int | float) and now - beat <= stale_after_s
                shards.append(
                    {
                        "name": f"tenant:{tenant_id}:{record['shard']}",
                        "status": "ok" if alive else "down",
                        "lag": record.get("lag"),
                        "last_checkpoint": record.get("last_checkpoint"),
                        "events": record.get("events"),
                    }
                )
    down_shards = [s["name"] for s in shards if s["status"] != "ok"]
    components["shards"] = {
        "status": "down" if down_shards else "ok",
        "shards": shards,
        **({"down": down_shards} if down_shards else {}),
    }
    down = [name for name, c in components.items() if c.get("status") != "ok"]
    body: dict[str, Any] = {
        "status": "degraded" if down else "ok",
        "version": __version__,
        "components": components,
    }
    if components["redis"]["status"] == "ok":  # operator alert: warehouse ingestion too late
        delayed = delayed_tenants(store, now=time.time(), max_age_s=_DELAY_SHOWN_S)
        body["warehouse"] = {"delayed_ingestion": delayed}
        body["models"] = model_status(store, settings)  # active version and drift; never down
    if down:
        body["down"] = down
    return (503 if down else 200), body
