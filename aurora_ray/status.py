"""Reading the status views (:mod:`aurora_ray.health`) from Redis, the broker and Ray.

The API's routes and ``aurora status`` call these with their own clients; ``ray_health`` is the
caller's view of Ray (in a Serve replica: is the Supervisor actor there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final, cast

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.health import (
    Component,
    ComponentDown,
    HealthRules,
    operator_status,
    probe,
    public_status,
    tenant_status,
)
from aurora_ray.models.registry import model_status
from aurora_ray.settings import Settings
from aurora_ray.warehouse.sink import DELAYED_KEY, FAILING_KEY

__all__ = ["infrastructure", "read_operator", "read_public", "read_tenant", "rules_of"]

RayHealth = Callable[[], dict[str, Any]]
_DELAY_SHOWN_S: Final = 600.0  # a delayed warehouse batch stays listed this long


def rules_of(settings: Settings) -> HealthRules:
    return HealthRules(
        stale_after_s=settings.shard_stale_after_s, start_grace_s=settings.shard_start_grace_s
    )


def infrastructure(
    settings: Settings, store: RedisStore, admin: TopicAdmin, ray_health: RayHealth
) -> dict[str, Component]:
    """Ray, Redis and Kafka, probed side by side within ``health_timeout_s``."""
    timeout = settings.health_timeout_s

    def ray() -> None:
        answer = ray_health()
        if answer.get("status") != "ok":
            raise ComponentDown("not running", str(answer.get("error", "")))

    return probe(
        {
            "ray": ray,
            "redis": lambda: store.ping(timeout=timeout),
            "kafka": lambda: admin.ping(timeout=timeout),
        },
        timeout_s=timeout,
    )


def read_public(
    settings: Settings, store: RedisStore, admin: TopicAdmin, ray_health: RayHealth
) -> tuple[int, dict[str, Any]]:
    return public_status(infrastructure(settings, store, admin, ray_health))


def _delayed(raw: bytes | None, now: float) -> dict[str, Any] | None:
    record = json.loads(raw) if raw else None
    if record and now - float(record.get("at", 0)) <= _DELAY_SHOWN_S:
        return cast(dict[str, Any], record)
    return None


def read_tenant(
    settings: Settings,
    store: RedisStore,
    tenant_id: str,
    *,
    topic_exists: bool,
    record: dict[str, Any] | None = None,
    delayed: bytes | None = None,
    failing: bytes | None = None,
    now: float | None = None,
    internal: bool = False,
) -> dict[str, Any]:
    """The tenant's view; ``record`` (the tenant's registry entry) and ``delayed`` (its
    warehouse delay note) are read here unless given."""
    now = time.time() if now is None else now
    if record is None:
        record = store.tenant(tenant_id) or {}
    if delayed is None:
        delayed = cast(bytes | None, store.client.hget(DELAYED_KEY, tenant_id))
    if failing is None:
        failing = cast(bytes | None, store.client.hget(FAILING_KEY, tenant_id))
    created = record.get("created_at")
    return tenant_status(
        tenant_id,
        records=store.shard_health(tenant_id, settings.shards_per_tenant),
        created_at=float(created) if isinstance(created, int | float) else None,
        topic_exists=topic_exists,
        delayed=_delayed(delayed, now),
        failing=json.loads(failing) if failing else None,
        internal=internal,
        model=model_status(store, settings, tenant_id),
        now=now,
        rules=rules_of(settings),
    )


def read_operator(
    settings: Settings, store: RedisStore, admin: TopicAdmin, ray_health: RayHealth
) -> dict[str, Any]:
    """Every tenant's view beside the infrastructure (with the errors themselves)."""
    infra = infrastructure(settings, store, admin, ray_health)
    tenants: dict[str, dict[str, Any]] = {}
    topics: dict[str, int] | None = None
    if infra["kafka"].ok:
        try:
            topics = admin.topics(timeout=settings.health_timeout_s)
        except Exception as exc:  # went down since the probe: report it
            infra["kafka"] = Component(ok=False, reason="not available", error=str(exc))
    if infra["redis"].ok:
        now = time.time()
        delayed = cast(dict[bytes, bytes], store.client.hgetall(DELAYED_KEY))
        failing = cast(dict[bytes, bytes], store.client.hgetall(FAILING_KEY))
        for tenant_id, record in sorted(store.tenants().items()):
            tenants[tenant_id] = read_tenant(
                settings,
                store,
                tenant_id,
                # Kafka down: already reported; no tenant's topic is counted missing too.
                topic_exists=topics is None or settings.topic_for(tenant_id) in topics,
                record=record,
                delayed=delayed.get(tenant_id.encode(), b""),
                failing=failing.get(tenant_id.encode(), b""),
                internal=True,
                now=now,
            )
    return operator_status(infra, tenants, topics=None if topics is None else len(topics))
