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

__all__ = ["connect_ray", "fold_span", "run_shards"]


def connect_ray(target: Target) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=target.ray_address, namespace=NAMESPACE, log_to_driver=False)


def _healths(handles: list[Any]) -> list[dict[str, Any]]:
    import ray

    return list(ray.get([h.health.remote() for h in handles], timeout=30))


def fold_span(healths: list[dict[str, Any]]) -> float | None:
    """Seconds from the first records any shard had in hand to the last micro-batch any shard
    wrote, by the shards' own clocks (one machine, one wall clock); None when no shard folded
    anything."""
    firsts = [h["first_records_at"] for h in healths if h.get("first_records_at") is not None]
    lasts = [h["last_batch_at"] for h in healths if h.get("last_batch_at") is not None]
    if not firsts or not lasts:
        return None
    return float(max(lasts) - min(firsts))


def run_shards(
    target: Target,
    tenant_id: str,
    *,
    shards: int,
    expected: int,
    timeout_s: float = 300.0,
) -> tuple[int, float | None, dict[str, Any]]:
    """Start ``shards`` shards on the tenant's topic and wait until they consumed ``expected``
    records. Returns (events folded, seconds, details).

    The seconds are the shards' own: from the first records a shard had in hand to the last
    micro-batch written (``first_records_at`` and ``last_batch_at`` of their health), every
    event folded counted. Actor start-up and the first fetch are outside the span, as the raw
    consumer's connection and first batch are outside its clock; and the figure does not
    depend on when this process happens to poll (a small topic folds in one micro-batch, between
    two polls). None when nothing was folded."""
    import ray

    from actors.shard import TenantShard

    connect_ray(target)
    settings = target.settings.model_copy(update={"shards_per_tenant": shards})
    started_wall = time.time()  # the shards' clock: first_records_at is on it
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
        done = 0
        while time.perf_counter() < deadline:
            done = sum(int(h["events"]) for h in _healths(handles))
            if done >= expected:
                break
            time.sleep(0.1)
        healths = _healths(handles)  # the final word: nothing is left to fold
        done = sum(int(h["events"]) for h in healths)
        seconds = fold_span(healths)
        firsts = [h["first_records_at"] for h in healths if h.get("first_records_at") is not None]
        details = {
            "shards": shards,
            "events": done,
            "expected": expected,
            "seconds": seconds,
            # Actor start, restore and the first fetch, before the span.
            "startup_s": min(firsts) - started_wall if firsts else None,
            "waited_s": time.perf_counter() - started,
            "timed_out": done < expected,
            "per_shard": [
                {k: h.get(k) for k in ("shard", "events", "first_records_at", "last_batch_at")}
                for h in healths
            ],
        }
        return done, seconds, details
    finally:
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.get(handle.stop.remote(), timeout=30)
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
