"""`TenantShard`: owns some partitions of a tenant topic and the state of their SKUs.

The stream loop runs on a thread inside the actor; actor methods answer health and control calls
meanwhile. Ray restarts a dead shard (``max_restarts=-1``): the constructor restores the last
checkpoint and the loop replays from the offsets saved with it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import ray

from actors.metrics import RayShardMetrics
from actors.priority import yield_cpu
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor

log = logging.getLogger(__name__)
_HEALTH_EVERY_S = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)  # type: ignore[call-overload]
class TenantShard:
    def __init__(
        self, settings: Settings, tenant_id: str, shard: int, partitions: list[int]
    ) -> None:
        yield_cpu(settings.stream_nice)  # the API's replicas first on contended cores
        self.store = RedisStore(settings.redis_url)
        self.store.mark_shard_started(tenant_id, shard)  # `starting` until its first heartbeat
        self.processor = ShardProcessor(
            settings,
            tenant_id=tenant_id,
            shard=shard,
            partitions=partitions,
            store=self.store,
            metrics=RayShardMetrics(tenant_id, shard),
        )
        self.processor.restore()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the loop and control calls never touch state together
        self._thread = threading.Thread(target=self._run, name="shard-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_health = 0.0
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.processor.step()
                if time.monotonic() - last_health >= _HEALTH_EVERY_S:
                    last_health = time.monotonic()
                    self._report_health()
            except Exception:  # keep the loop alive; the failure shows in logs and health
                log.exception("shard step failed; retrying in 1 s")
                time.sleep(1.0)

    def _report_health(self) -> None:
        health = self.processor.health()
        self.store.put_shard_health(
            self.processor.tenant_id, self.processor.shard, {**health, "pid": os.getpid()}
        )

    def health(self) -> dict[str, Any]:
        return {**self.processor.health(), "pid": os.getpid()}

    def checkpoint(self) -> None:
        with self._lock:
            self.processor.checkpoint()

    def stop(self) -> None:
        """Stop the loop and write a final checkpoint."""
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            self.processor.close()
