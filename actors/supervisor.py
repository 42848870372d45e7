"""`Supervisor`: a named, detached actor that makes every tenant have its topic and shards.

It reconciles every few seconds from the tenant registry in Redis, so a tenant created by the CLI
gets its shards without anyone calling in, and a shard that Ray could not restart is respawned.
Shards are owned by the supervisor: if it dies, Ray restarts it and it respawns them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

from actors.shard import TenantShard
from actors.warehouse_sink import WarehouseSink, warehouse_sink_name
from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.naming import NAMESPACE, SUPERVISOR_NAME, shard_name
from aurora_ray.settings import Settings
from aurora_ray.stream import partitions_for

log = logging.getLogger(__name__)
_RECONCILE_EVERY_S = 3.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)  # type: ignore[call-overload]
class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RedisStore(settings.redis_url)
        self.admin = TopicAdmin(settings.kafka_bootstrap)
        self.shards: dict[str, Any] = {}
        self.sinks: dict[str, Any] = {}  # one WarehouseSink per tenant
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="reconcile", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile failed")
            self._stop.wait(_RECONCILE_EVERY_S)

    def reconcile(self) -> list[str]:
        """Ensure topics and shards for every tenant; returns the shard names running."""
        with self._lock:
            for tenant_id in self.store.tenants():
                self._ensure_tenant(tenant_id)
            return sorted(self.shards)

    def ensure_tenant(self, tenant_id: str) -> list[str]:
        with self._lock:
            return self._ensure_tenant(tenant_id)

    def _ensure_tenant(self, tenant_id: str) -> list[str]:
        settings = self.settings
        self.admin.ensure_topic(
            settings.topic_for(tenant_id),
            settings.partitions_per_topic,
            replication=settings.topic_replication_factor,
        )
        names = []
        for shard in range(settings.shards_per_tenant):
            name = shard_name(tenant_id, shard)
            names.append(name)
            if name in self.shards and self._alive(self.shards[name]):
                continue
            try:
                handle = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                partitions = partitions_for(
                    shard, settings.shards_per_tenant, settings.partitions_per_topic
                )
                handle = TenantShard.options(  # type: ignore[attr-defined]
                    name=name,
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    resources=dict(settings.shard_resources),
                ).remote(settings, tenant_id, shard, partitions)
                log.info("started shard %s on partitions %s", name, partitions)
            self.shards[name] = handle
        self._ensure_sink(tenant_id)
        return names

    def _ensure_sink(self, tenant_id: str) -> None:
        name = warehouse_sink_name(tenant_id)
        if name in self.sinks and self._alive(self.sinks[name]):
            return
        self.sinks[name] = WarehouseSink.options(  # type: ignore[attr-defined]
            name=name, namespace=NAMESPACE, get_if_exists=True
        ).remote(self.settings, tenant_id)

    @staticmethod
    def _alive(handle: Any) -> bool:
        try:
            ray.get(handle.health.remote(), timeout=30)
            return True
        except Exception:
            return False

    def shard_handles(self) -> dict[str, Any]:
        return dict(self.shards)

    def stop(self) -> None:
        """Stop all shards with a final checkpoint (used by `aurora down`)."""
        self._stop.set()
        with self._lock:
            for handle in self.shards.values():
                try:
                    ray.get(handle.stop.remote(), timeout=30)
                except Exception:
                    log.exception("shard stop failed")
            for handle in self.sinks.values():
                try:
                    ray.get(handle.stop.remote(), timeout=30)
                except Exception:
                    log.exception("warehouse sink stop failed")


def ensure_supervisor(settings: Settings) -> Any:
    """The running supervisor, or a new one (named, detached): idempotent."""
    return Supervisor.options(  # type: ignore[attr-defined]
        name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings)
