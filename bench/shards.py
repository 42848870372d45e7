"""Start ``TenantShard`` actors for a topic the Supervisor does not know, and time them.

The bench starts the shards itself (the very actor class the Supervisor starts), so the stream
can be pre-filled first and then consumed from a standing start, with 1, 2 or 4 shards.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aurora_ray.naming import NAMESPACE
from aurora_ray.stream import partitions_for
from bench.common import Target

__all__ = ["connect_ray", "run_shards"]


def connect_ray(target: Target) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=target.ray_address, namespace=NAMESPACE, log_to_driver=False)


def _events(handles: list[Any]) -> int:
    import ray

    healths = ray.get([h.health.remote() for h in handles], timeout=30)
    return sum(int(h["events"]) for h in healths)


def run_shards(
    target: Target, tenant_id: str, *, shards: int, expected: int, timeout_s: float = 300.0
) -> tuple[int, float, dict[str, Any]]:
    """Start ``shards`` shards on the tenant's topic and wait until they consumed ``expected``
    records. Returns (events counted, seconds, details); the clock starts at the first poll that
    sees records consumed, and the events before it are not counted."""
    import ray

    from actors.shard import TenantShard

    connect_ray(target)
    settings = target.settings.model_copy(update={"shards_per_tenant": shards})
    handles = [
        TenantShard.options(  # type: ignore[attr-defined]
            name=f"bench:{tenant_id}:{shard}", namespace=NAMESPACE
        ).remote(
            settings,
            tenant_id,
            shard,
            partitions_for(shard, shards, settings.partitions_per_topic),
        )
        for shard in range(shards)
    ]
    try:
        started = time.perf_counter()
        deadline = started + timeout_s
        first_at: float | None = None
        first_events = 0
        done = 0
        while time.perf_counter() < deadline:
            done = _events(handles)
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at, first_events = now, done
            if done >= expected:
                break
            time.sleep(0.1)
        finished = time.perf_counter()
        seconds = finished - (first_at or finished)
        details = {
            "shards": shards,
            "events": done,
            "expected": expected,
            "startup_s": (first_at or finished) - started,
            "timed_out": done < expected,
        }
        return done - first_events, seconds, details
    finally:
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.get(handle.stop.remote(), timeout=30)
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
