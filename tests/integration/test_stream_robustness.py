"""Issue 15 on the shard loop (``ShardProcessor`` in-process, real Tansu broker and Valkey):

* a record that breaks the API's bounds (another producer wrote it) is dead-lettered with its
  reason and the partition goes on: an event time in year 9999 (it spun the shard's timers for
  ever), a quantity of 2^63 (it overflowed the fold on every retry);
* a record that makes the fold itself fail is isolated after the replay and dead-lettered alone;
* a client's retry of the same events (same ``event_id``s) is folded once, also across a crash;
* a failing warehouse does not stop the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.events import StreamEvent, encode_stream_event
from aurora_ray.domain.state import BatchOutput
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor
from aurora_ray.testing import order, sku_upserted, stock_snapshot
from tests.integration._services import (
    PARTITIONS,
    Services,
    records_for,
    running_services,
    short_poll_consumer,
)

pytestmark = pytest.mark.integration

ALL = list(range(PARTITIONS))
HOUR = 3600.0


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("robust")) as svc:
        yield svc


def settings_for(svc: Services, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "checkpoint_interval_s": 3600.0,
        "checkpoint_events": 1_000_000,
        "batch_max_events": 64,
        "warehouse_uri": str(svc.data_dir / "warehouse"),
        **overrides,
    }
    return svc.settings(**values)


def make_processor(svc: Services, settings: Settings, tenant_id: str) -> ShardProcessor:
    proc = ShardProcessor(
        settings,
        tenant_id=tenant_id,
        shard=0,
        partitions=ALL,
        store=RedisStore(svc.redis_url),
        consumer_factory=short_poll_consumer(settings, tenant_id, 0),
    )
    proc.restore()
    return proc


def run_until(proc: ShardProcessor, records: int, *, timeout: float = 30.0) -> int:
    """``step()`` until ``records`` were consumed, as the actor's loop does: a failing step is
    logged and retried (it fell back to the last checkpoint). Returns the failed steps."""
    deadline = time.monotonic() + timeout
    failures = 0
    while proc.progress.events < records:
        assert time.monotonic() < deadline, (proc.progress.events, records, failures)
        try:
            proc.step(timeout=0.2)
        except Exception:
            failures += 1
            assert failures < 20, "the shard keeps failing on the same records"
    assert proc.progress.events == records
    return failures


def on_hand(proc: ShardProcessor, key: str) -> int:
    return int(proc.state.cols["on_hand"][proc.state.index[key]])


def dead_letters(store: RedisStore, tenant_id: str) -> list[dict[str, Any]]:
    raw = store.client.lrange(f"aurora:t:{tenant_id}:deadletter", 0, -1)
    return [json.loads(entry) for entry in raw]


def raw_record(tenant_id: str, **fields: Any) -> tuple[bytes, bytes]:
    """A record as another producer could write it, past the API's checks."""
    now = int(time.time() * 1000)
    base: dict[str, Any] = {
        "event_id": "raw",
        "tenant_id": tenant_id,
        "event_type": "order.created",
        "ts_ms": now - 3_600_000,
        "received_ms": now,
        "sku": "A",
        "warehouse": "W",
        "qty": 1,
        "payload": {"sku": "A", "warehouse": "W"},
    }
    base.update(fields)
    return b"A@W", encode_stream_event(StreamEvent(**base))


# -- poison records -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ts_ms": 253_402_128_000_000}, "ts_ms"),  # 9999-12-30: the timers spun for ever
        ({"qty": 2**63}, "qty"),  # overflowed the fold's int64 columns on every retry
    ],
)
def test_a_poison_record_is_dead_lettered_and_the_partition_goes_on(
    services: Services, fields: dict[str, Any], reason: str
) -> None:
    settings = settings_for(services, timer_period_hours=24.0)
    tenant_id = services.new_tenant_topic(settings)
    t0 = time.time() - 2 * 24 * HOUR
    before = records_for([sku_upserted(tenant_id, "A", "W", 100, at=t0)], tenant_id)
    after = records_for(
        [order(tenant_id, "A", "W", 1, at=t0 + 60 * i) for i in range(1, 11)], tenant_id
    )
    records = [*before, raw_record(tenant_id, event_id="poison", **fields), *after]
    services.produce(settings.topic_for(tenant_id), records)

    proc = make_processor(services, settings, tenant_id)
    assert run_until(proc, len(records)) == 0
    assert on_hand(proc, "A@W") == 90
    [entry] = dead_letters(proc.store, tenant_id)
    assert reason in entry["reason"] and '"poison"' in entry["record"]
    assert proc.store.counters(tenant_id)["dead_letters"] == 1
    proc.close()


class PoisonedModel:
    """A learned scorer whose model fails on one stock level."""

    version = "poisoned-1"

    @staticmethod
    def model(output: BatchOutput) -> Any:
        if np.any(output.event_on_hand == 666_666):
            raise ValueError("cannot score 666666 units")
        return output.event_probability


def _fold_a_bad_stream(services: Services) -> tuple[ShardProcessor, float, int, int]:
    """A SKU "BAD" (666 666 units) among good events, folded to the end in micro-batches of 16;
    returns the processor, the stream's start, its records and the steps that failed."""
    settings = settings_for(services, timer_period_hours=0.0, batch_max_events=16)
    tenant_id = services.new_tenant_topic(settings)
    t0 = time.time() - 2 * 24 * HOUR
    events = [sku_upserted(tenant_id, "A", "W", 100, at=t0)]
    events += [order(tenant_id, "A", "W", 1, at=t0 + 60 * i) for i in range(1, 6)]
    events += [stock_snapshot(tenant_id, "BAD", "W", 666_666, at=t0 + 400)]
    events += [order(tenant_id, "A", "W", 1, at=t0 + 600 + 60 * i) for i in range(5)]
    events += [sku_upserted(tenant_id, "B", "W", 7, at=t0 + 1000)]
    records = records_for(events, tenant_id)
    services.produce(settings.topic_for(tenant_id), records)
    proc = make_processor(services, settings, tenant_id)
    return proc, t0, len(records), run_until(proc, len(records))


def test_a_record_the_fold_cannot_take_is_isolated_and_dead_lettered_alone(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the fold fails on any batch holding the SKU "BAD" (no check of the
    decoder foresees such a record), whatever the scorer."""
    from aurora_ray import stream

    real = stream.fold_with_timers

    def fold(state: Any, events: Any, *args: Any, **kwargs: Any) -> Any:
        if any(e.sku == "BAD" for e in events):
            raise ValueError("the fold cannot take BAD")
        return real(state, events, *args, **kwargs)

    monkeypatch.setattr(stream, "fold_with_timers", fold)
    proc, t0, records, failures = _fold_a_bad_stream(services)
    tenant_id = proc.tenant_id
    assert 1 <= failures <= 2  # one failed micro-batch per partition holding a bad record
    assert on_hand(proc, "A@W") == 90 and on_hand(proc, "B@W") == 7
    assert "BAD@W" not in proc.state.index
    [entry] = dead_letters(proc.store, tenant_id)
    assert "the fold cannot take BAD" in entry["reason"] and "BAD" in entry["record"]
    # The partition goes on in normal mode afterwards.
    more = records_for([order(tenant_id, "A", "W", 2, at=t0 + 2000)], tenant_id)
    services.produce(proc.topic, more)
    assert run_until(proc, records + 1) == 0
    assert on_hand(proc, "A@W") == 88
    proc.close()


def test_a_learned_model_that_fails_gives_way_to_the_analytic_scorer(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record folds with the analytic scorer: the model is at fault, not the record. It is
    kept, the shard scores analytically from then on and says why."""
    monkeypatch.setattr(
        "aurora_ray.stream.load_scorer",
        lambda *_a, **_k: PoisonedModel(),  # noqa: ARG005
    )
    proc, _, _, failures = _fold_a_bad_stream(services)
    assert 1 <= failures <= 2
    assert on_hand(proc, "A@W") == 90 and on_hand(proc, "BAD@W") == 666_666
    assert dead_letters(proc.store, proc.tenant_id) == []
    assert "poisoned-1 failed" in (proc.health()["model_error"] or "")
    assert proc.scorer.model is None
    proc.close()


# -- idempotent folds ---------------------------------------------------------------------------
def _batch(tenant_id: str, t0: float) -> list[dict[str, Any]]:
    """One sku.upserted with initial_stock 100, then ten orders of 1, all with event ids."""
    events = [sku_upserted(tenant_id, "R", "W", 100, at=t0)]
    events += [order(tenant_id, "R", "W", 1, at=t0 + 60 * i) for i in range(1, 11)]
    for i, event in enumerate(events):
        event["event_id"] = f"retry-{i}"
    return events


def test_a_client_retry_is_folded_once(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    events = _batch(tenant_id, time.time() - HOUR)
    topic = settings.topic_for(tenant_id)
    for _ in range(3):  # posted three times, as a client does after a timeout
        services.produce(topic, records_for(events, tenant_id))
    proc = make_processor(services, settings, tenant_id)
    run_until(proc, 33)
    assert on_hand(proc, "R@W") == 90
    counters = proc.store.counters(tenant_id)
    assert counters["events_duplicate"] == 22 and counters["events_processed"] == 33
    assert proc.health()["duplicates"] == 22
    proc.close()


def test_the_ids_travel_with_the_checkpoint_so_a_replay_folds_each_once(
    services: Services,
) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    events = _batch(tenant_id, time.time() - HOUR)
    services.produce(topic, records_for(events, tenant_id))
    first = make_processor(services, settings, tenant_id)
    run_until(first, 11)
    first.checkpoint()
    # The retry arrives; the shard folds it (drops it) and dies before its next checkpoint.
    services.produce(topic, records_for(events, tenant_id))
    run_until(first, 22)
    assert on_hand(first, "R@W") == 90
    second = make_processor(services, settings, tenant_id)  # restores the checkpoint
    assert second.seen.size() == 11
    run_until(second, 22)
    assert on_hand(second, "R@W") == 90
    # A third copy after a crash that lost the whole window in memory: still once.
    services.produce(topic, records_for(events, tenant_id))
    second.checkpoint()
    third = make_processor(services, settings, tenant_id)
    run_until(third, 33)
    assert on_hand(third, "R@W") == 90
    for proc in (first, second, third):
        proc.close()


# -- the warehouse failing ----------------------------------------------------------------------
def test_a_failing_warehouse_does_not_stop_the_stream(services: Services, tmp_path: Path) -> None:
    blocked = tmp_path / "warehouse"
    blocked.write_text("a file where the warehouse folder should be")  # every write fails
    settings = settings_for(services, warehouse_uri=str(blocked), checkpoint_events=5)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    t0 = time.time() - 2 * 24 * HOUR
    events = [sku_upserted(tenant_id, "A", "W", 100, at=t0)]
    events += [order(tenant_id, "A", "W", 1, at=t0 + HOUR * i) for i in range(1, 21)]
    services.produce(topic, records_for(events, tenant_id))
    proc = make_processor(services, settings, tenant_id)
    assert run_until(proc, 21) == 0  # checkpoints were taken, the stream went on
    assert on_hand(proc, "A@W") == 80
    health = proc.health()
    assert health["warehouse_error"] and health["prediction_rows_buffered"] > 0
    assert proc.store.load_checkpoint(tenant_id, 0) is not None
    # The warehouse comes back: the rows kept meanwhile are written at the next checkpoint.
    blocked.unlink()
    proc.checkpoint()
    assert proc.health()["warehouse_error"] is None
    assert proc.health()["prediction_rows_buffered"] == 0
    assert proc.predictions.written >= 20
    proc.close()


def test_a_long_failure_keeps_a_bounded_backlog(services: Services, tmp_path: Path) -> None:
    blocked = tmp_path / "warehouse"
    blocked.write_text("not a folder")
    settings = settings_for(
        services, warehouse_uri=str(blocked), checkpoint_events=3, prediction_buffer_max_rows=4
    )
    tenant_id = services.new_tenant_topic(settings)
    t0 = time.time() - 2 * 24 * HOUR
    events = [sku_upserted(tenant_id, "A", "W", 100, at=t0)]
    events += [order(tenant_id, "A", "W", 1, at=t0 + HOUR * i) for i in range(1, 21)]
    services.produce(settings.topic_for(tenant_id), records_for(events, tenant_id))
    proc = make_processor(services, settings, tenant_id)
    run_until(proc, 21)
    health = proc.health()
    assert health["prediction_rows_buffered"] <= 4
    assert health["prediction_rows_dropped"] >= 10
    proc.close()
