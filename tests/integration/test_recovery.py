"""Acceptance (b): a shard killed in the middle of a 50 K-event stream ends with every SKU's
on-hand stock equal to the truth: nothing lost, nothing applied twice; and the alert dedup
survives the restart (no two alerts of a SKU within the dedup window of event time)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import psutil
import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.testing import (
    ndjson,
    order,
    sku_upserted,
    stock_adjusted,
    stock_received,
    wait_for,
)
from tests.integration.helpers import all_alert_pages, parse_ts

pytestmark = pytest.mark.integration

HOUR = 3600.0
N_EVENTS = 50_000
N_SKUS = 200
N_HOT = 20  # SKUs kept near zero stock: alerted about once a day of event time
BATCH = 1_000
SPAN_S = 20 * 24 * HOUR  # event time covered by the stream
WAREHOUSES = ("DE-HAM", "FR-PAR")


def _build_stream(
    tenant_id: str, seed: int = 7
) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """50 000 events in batches of 1 000 and the true on-hand stock of each sku@warehouse."""
    rng = random.Random(seed)
    t0 = time.time() - SPAN_S - 10 * 24 * HOUR
    skus = [(f"SKU-{i:03d}", WAREHOUSES[i % 2]) for i in range(N_SKUS)]
    truth: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for i, (sku, warehouse) in enumerate(skus):
        stock = 30 if i < N_HOT else rng.randint(2_000, 5_000)
        truth[f"{sku}@{warehouse}"] = stock
        events.append(sku_upserted(tenant_id, sku, warehouse, stock, at=t0))
    step = SPAN_S / (N_EVENTS - len(events))
    n = 0
    while len(events) < N_EVENTS:
        n += 1
        at = t0 + n * step
        # Hot SKUs get a third of the events: frequent sales, so they hover near zero.
        i = rng.randrange(N_HOT) if rng.random() < 1 / 3 else rng.randrange(N_SKUS)
        sku, warehouse = skus[i]
        key = f"{sku}@{warehouse}"
        kind = rng.random()
        if kind < 0.6:
            qty = rng.randint(1, 4)
            event = order(tenant_id, sku, warehouse, qty, at=at, order_id=f"o-{n}")
            truth[key] -= qty
        elif kind < 0.85:
            qty = rng.randint(1, 8)
            event = stock_received(tenant_id, sku, warehouse, qty, at=at)
            truth[key] += qty
        else:
            delta = rng.choice([-3, -2, -1, 1, 2, 3])
            event = stock_adjusted(tenant_id, sku, warehouse, delta, at=at)
            truth[key] += delta
        event["event_id"] = f"ev-{n:06d}"
        events.append(event)
    for i, event in enumerate(events[:N_SKUS]):
        event["event_id"] = f"upsert-{i:03d}"
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    return batches, truth


def _shard(tenant_id: str) -> Any:
    import ray

    def handle():
        try:
            return ray.get_actor(f"tenant:{tenant_id}:0", namespace="aurora")
        except ValueError:
            return None

    return wait_for(handle, timeout=120, interval=0.5, what="the tenant's shard actor")


def _progress(store: RedisStore, tenant_id: str) -> tuple[int, int]:
    """(events whose outputs were written, events in the last checkpoint), read atomically."""
    pipe = store.client.pipeline(transaction=True)
    pipe.hget(f"aurora:t:{tenant_id}:counters", "events_processed")
    pipe.hget(f"aurora:t:{tenant_id}:ckpt:0", "events")
    written, checkpointed = pipe.execute()
    return int(written or 0), int(checkpointed or 0)


def _reported_health(store: RedisStore, tenant_id: str) -> dict[str, Any]:
    [health] = store.shard_health(tenant_id, 1)
    return health


def test_shard_killed_mid_stream_recovers_exact_stock_and_dedup(stack, make_tenant) -> None:
    import ray

    started = time.monotonic()

    def note(message: str) -> None:  # shown by pytest on failure (or with -s)
        print(f"{time.monotonic() - started:6.1f} s  {message}")  # noqa: T201

    tenant = make_tenant("recovery")
    tid = tenant.tenant_id
    store = RedisStore(stack.settings.redis_url)
    batches, truth = _build_stream(tid)
    assert sum(len(b) for b in batches) == N_EVENTS and len(truth) == N_SKUS
    shard = _shard(tid)
    first_pid = wait_for(
        lambda: _reported_health(store, tid).get("pid"),
        timeout=120,
        interval=0.2,
        what="the shard's first health report",
    )
    note(f"shard up in pid {first_pid}")
    # Throughput work yields to the API's replicas on contended cores.
    assert psutil.Process(first_pid).nice() == stack.settings.stream_nice == 19

    # Stream on a thread of its own; the main thread kills the shard on the way.
    posted: list[int] = []
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            for batch in batches:
                posted.append(tenant.client.post_events(ndjson(batch)))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    poster = threading.Thread(target=stream, name="poster", daemon=True)
    poster.start()

    # Kill when the shard has written outputs past its last checkpoint (at least one checkpoint
    # taken, at least half the stream processed): those events are in the read model and the
    # dedup marks but not in the checkpoint, so the restarted shard replays them. The race
    # between the read and the kill can close that window; then kill again further on.
    replayed = 0  # events processed twice so far (counted twice by events_processed)
    kills: list[dict[str, int]] = []
    pids = [first_pid]
    for threshold in (N_EVENTS // 2, N_EVENTS * 7 // 10, N_EVENTS * 9 // 10):

        def in_window(threshold: int = threshold, replayed: int = replayed) -> str | None:
            assert not failure, failure
            written, checkpointed = _progress(store, tid)
            unique = written - replayed
            if unique >= N_EVENTS and checkpointed >= N_EVENTS:
                return "over"
            return "kill" if unique >= threshold and 0 < checkpointed < unique else None

        if wait_for(in_window, timeout=240, interval=0.01, what=f"{threshold} events") == "over":
            break
        os.kill(pids[-1], signal.SIGKILL)
        written, checkpointed = _progress(store, tid)  # the dead process writes no more
        unique = written - replayed
        kills.append({"processed": unique, "checkpointed": checkpointed, "posted": sum(posted)})
        note(f"killed pid {pids[-1]}: {kills[-1]}")
        assert 0 < checkpointed <= unique < N_EVENTS
        replayed += unique - checkpointed

        # Ray restarts the actor in a new process, which restores the checkpoint. (Progress is read
        # from the health the shard writes to Redis every second: calling its health() method
        # queries the broker on the shard's own consumer and slows its consumption.)
        health = wait_for(
            lambda: (h := _reported_health(store, tid)).get("pid") not in (None, *pids) and h,
            timeout=120,
            interval=0.2,
            what="the shard to come back in a new process",
        )
        pids.append(health["pid"])
        note(f"restarted in pid {health['pid']} at {health['events']} events")
        assert health["events"] >= checkpointed
        if replayed:
            break
    assert replayed > 0, f"every kill landed on a checkpoint, nothing was replayed: {kills}"

    poster.join(timeout=300)
    assert not poster.is_alive(), "posting did not finish"
    assert not failure, failure
    assert sum(posted) == N_EVENTS
    note("all posted")

    def consumed_everything() -> bool:
        return sum(_reported_health(store, tid).get("offsets", {}).values()) >= N_EVENTS

    wait_for(consumed_everything, timeout=240, interval=0.5, what="the shard to consume the stream")
    ray.get(
        shard.checkpoint.remote(), timeout=60
    )  # takes the loop's lock: the last batch is written
    final = ray.get(shard.health.remote(), timeout=60)
    note(f"all consumed: {final['events']} events")

    # Every SKU's stock equals the truth.
    predictions = tenant.client.get("/v1/stock/predictions", limit=10_000).json()
    on_hand = {f"{p['sku']}@{p['warehouse']}": p["on_hand"] for p in predictions}
    assert set(on_hand) == set(truth), "SKUs missing from the read model"
    wrong = {k: (on_hand[k], truth[k]) for k in truth if on_hand[k] != truth[k]}
    assert not wrong, (
        f"{len(wrong)} SKUs (read model, truth) differ, e.g. {list(wrong.items())[:5]}"
    )
    # The restored count plus the replay is the stream, once.
    assert final["events"] == N_EVENTS, final
    assert final["pid"] == pids[-1]
    assert store.counters(tid)["events_processed"] == N_EVENTS + replayed

    # Alerts: some were raised, none twice, none within the dedup window of another.
    token = tenant.client.token()
    alerts = [a for page in all_alert_pages(stack.base_url, token, limit=1000) for a in page]
    assert alerts, "the hot SKUs were never alerted: the dedup check would prove nothing"
    ids = Counter(a["alert_id"] for a in alerts)
    duplicates = [i for i, n in ids.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} alerts stored twice, e.g. {duplicates[:3]}"
    window = stack.settings.dedup_window_s
    by_sku: dict[str, list[float]] = defaultdict(list)
    for alert in alerts:
        by_sku[f"{alert['sku']}@{alert['warehouse']}"].append(parse_ts(alert["as_of"]))
    too_close = {}
    for key, times in by_sku.items():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        if gaps and min(gaps) < window:
            too_close[key] = round(min(gaps) / HOUR, 2)
    assert not too_close, f"alerts of a SKU closer than the dedup window (h): {too_close}"
    note(f"{len(alerts)} alerts on {len(by_sku)} SKUs; {replayed} events replayed")
