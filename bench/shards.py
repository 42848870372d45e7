"""Start ``TenantShard`` actors for a topic the Supervisor does not know, and time them.

The bench starts the shards itself (the very actor class the Supervisor starts), so the stream
can be pre-filled first and then consumed from a standing start, with 1, 2 or 4 shards, and so
a scenario can run the same measurement with other shard settings in the same run (the event-id
window off: ``idempotency_window_events=0``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from aurora_ray.naming import NAMESPACE
from aurora_ray.settings import Settings
from aurora_ray.stream import partitions_for
from bench.common import Target

__all__ = [
    "WINDOW_OFF",
    "connect_ray",
    "fold_span",
    "healths",
    "process_cpu_seconds",
    "run_shards",
    "tenant_actors",
]

#: Shard settings with the event-id window off (every record folded, no id remembered).
WINDOW_OFF: Mapping[str, Any] = {"idempotency_window_events": 0}


def connect_ray(target: Target) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=target.ray_address, namespace=NAMESPACE, log_to_driver=False)


def healths(handles: list[Any]) -> list[dict[str, Any]]:
    import ray

    return list(ray.get([h.health.remote() for h in handles], timeout=30))


def fold_span(shards: list[dict[str, Any]]) -> float | None:
    """Seconds from the first records any shard had in hand to the last micro-batch any shard
    wrote, by the shards' own clocks (one machine, one wall clock); None when no shard folded
    anything."""
    firsts = [h["first_records_at"] for h in shards if h.get("first_records_at") is not None]
    lasts = [h["last_batch_at"] for h in shards if h.get("last_batch_at") is not None]
    if not firsts or not lasts:
        return None
    return float(max(lasts) - min(firsts))


def process_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far; 0 for one that is gone."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _start_shards(settings: Settings, tenant_id: str, shards: int) -> list[Any]:
    from actors.shard import TenantShard

    return [
        TenantShard.options(  # type: ignore[attr-defined]
            name=f"bench:{tenant_id}:{shard}",
            namespace=NAMESPACE,
            resources=dict(settings.shard_resources),
        ).remote(
            settings,
            tenant_id,
            shard,
            partitions_for(shard, shards, settings.partitions_per_topic),
        )
        for shard in range(shards)
    ]


def _stop(handles: list[Any]) -> None:
    import ray

    for handle in handles:
        with contextlib.suppress(Exception):
            ray.get(handle.stop.remote(), timeout=30)
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


@contextlib.contextmanager
def tenant_actors(target: Target, tenant_id: str, settings: Settings) -> Iterator[list[Any]]:
    """What the Supervisor starts for a tenant (``settings.shards_per_tenant`` shards and the
    warehouse sink, the same actor classes and options), with ``settings`` of the caller's
    choosing, for a tenant that is not registered; stopped and removed at the end. Yields the
    shards' handles."""
    from actors.warehouse_sink import WarehouseSink

    connect_ray(target)
    shards = _start_shards(settings, tenant_id, settings.shards_per_tenant)
    sink = WarehouseSink.options(  # type: ignore[attr-defined]
        name=f"bench:{tenant_id}:warehouse", namespace=NAMESPACE
    ).remote(settings, tenant_id)
    try:
        healths(shards)  # constructed (restored, consuming) before the caller goes on
        yield shards
    finally:
        _stop([*shards, sink])


def run_shards(
    target: Target,
    tenant_id: str,
    *,
    shards: int,
    expected: int,
    overrides: Mapping[str, Any] | None = None,
    timeout_s: float = 300.0,
) -> tuple[int, float | None, dict[str, Any]]:
    """Start ``shards`` shards on the tenant's topic and wait until they consumed ``expected``
    records. Returns (events folded, seconds, details).

    The seconds are the shards' own: from the first records a shard had in hand to the last
    micro-batch written (``first_records_at`` and ``last_batch_at`` of their health), every
    event folded counted. Actor start-up and the first fetch are outside the span, as the raw
    consumer's connection and first batch are outside its clock; and the figure does not
    depend on when this process happens to poll (a small topic folds in one micro-batch, between
    two polls). None when nothing was folded. ``overrides``: shard settings for this run."""
    connect_ray(target)
    settings = target.settings.model_copy(update={**(overrides or {}), "shards_per_tenant": shards})
    started_wall = time.time()  # the shards' clock: first_records_at is on it
    handles = _start_shards(settings, tenant_id, shards)
    try:
        started = time.perf_counter()
        deadline = started + timeout_s
        done = 0
        while time.perf_counter() < deadline:
            done = sum(int(h["events"]) for h in healths(handles))
            if done >= expected:
                break
            time.sleep(0.1)
        final = healths(handles)  # the final word: nothing is left to fold
        done = sum(int(h["events"]) for h in final)
        seconds = fold_span(final)
        firsts = [h["first_records_at"] for h in final if h.get("first_records_at") is not None]
        details = {
            "shards": shards,
            "events": done,
            "expected": expected,
            "seconds": seconds,
            # Actor start, restore and the first fetch, before the span.
            "startup_s": min(firsts) - started_wall if firsts else None,
            "waited_s": time.perf_counter() - started,
            "timed_out": done < expected,
            "event_ids_remembered": sum(int(h.get("event_ids_remembered", 0)) for h in final),
            "per_shard": [
                {k: h.get(k) for k in ("shard", "events", "first_records_at", "last_batch_at")}
                for h in final
            ],
        }
        return done, seconds, details
    finally:
        _stop(handles)
