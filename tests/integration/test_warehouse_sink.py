"""The warehouse fills from the stream: fact_order from the WarehouseSink actor, fact_prediction
from the shards' checkpoints; a restarted or crashed sink writes no row twice."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.backfill import BACKFILL_ID_HEADER
from aurora_ray.domain.events import StreamEvent, encode_stream_event
from aurora_ray.naming import SOURCE_BACKFILL, SOURCE_HEADER
from aurora_ray.testing import ndjson, order, sku_upserted, wait_for
from aurora_ray.warehouse import DIM_SKU, DIM_TENANT, FACT_ORDER, FACT_PREDICTION, Warehouse
from aurora_ray.warehouse.sink import OrderSink

pytestmark = pytest.mark.integration

SKUS = 20


def _orders(tenant_id: str, n: int, *, at: float, prefix: str) -> list[dict]:
    events = [
        order(tenant_id, f"SKU-{i % SKUS}", "DE-HAM", 1, at=at + i, order_id=f"{prefix}-{i}")
        for i in range(n)
    ]
    for i, event in enumerate(events):
        event["event_id"] = f"{prefix}-{i}"
    return events


def test_orders_and_predictions_reach_the_warehouse_once(stack, make_tenant) -> None:
    import ray

    tenant = make_tenant("warehouse")
    tid = tenant.tenant_id
    wh = Warehouse(stack.settings.warehouse_uri)
    now = time.time()
    catalogue = [sku_upserted(tid, f"SKU-{i}", "DE-HAM", 500, at=now - 3600) for i in range(SKUS)]
    first = _orders(tid, 300, at=now - 600, prefix="a")
    assert tenant.client.post_events(ndjson(catalogue + first)) == SKUS + 300

    def rows() -> int:
        return wh.read(FACT_ORDER, tid, columns=["event_id"]).num_rows

    wait_for(lambda: rows() == 300, timeout=90, what="300 fact_order rows")
    assert wh.event_ids(tid) == {f"a-{i}" for i in range(300)}
    wait_for(lambda: wh.read(DIM_SKU, tid).num_rows == SKUS, timeout=30, what="dim_sku")
    assert wh.read(DIM_TENANT, tid).column("name").to_pylist() == ["warehouse"]

    # fact_prediction: written by the shard at its checkpoints, one row per SKU per batch.
    predictions = wait_for(
        lambda: (t := wh.read(FACT_PREDICTION, tid)).num_rows and t,
        timeout=60,
        what="fact_prediction rows",
    )
    assert set(predictions.column("sku_id").to_pylist()) <= {f"SKU-{i}" for i in range(SKUS)}
    assert {len(v) for v in predictions.column("feature_vector").to_pylist()} == {8 * 4}
    assert predictions.column("model_version").null_count == 0
    ids = predictions.column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids))

    # Kill the sink: Ray restarts it, it resumes from its offsets and writes no row twice.
    sink = ray.get_actor(f"tenant:{tid}:warehouse")
    ray.kill(sink, no_restart=False)
    second = _orders(tid, 100, at=now - 300, prefix="b")
    assert tenant.client.post_events(ndjson(second)) == 100
    wait_for(lambda: rows() >= 400, timeout=90, what="400 fact_order rows")
    table = wh.read(FACT_ORDER, tid, columns=["event_id"])
    assert table.num_rows == 400
    assert len(set(table.column("event_id").to_pylist())) == 400

    # Orders three hours late: the alert shows in the tenant's status.
    late = _orders(tid, 5, at=now - 3 * 3600, prefix="c")
    assert tenant.client.post_events(ndjson(late)) == 5

    def delayed() -> dict[str, Any] | None:
        warehouse = tenant.client.get("/v1/status/tenant").json()["warehouse"]
        return warehouse if warehouse["status"] == "delayed" else None

    found = wait_for(delayed, timeout=60, what="delayed ingestion in /v1/status/tenant")
    assert found["max_delay_s"] > found["limit_s"]


def test_a_crash_between_write_and_offsets_replays_the_same_batch(stack, tmp_path) -> None:
    """The core against the real broker and Valkey: the offsets store fails after the files
    were written; a new sink replays the pending batch under the same batch id."""
    settings = stack.settings.model_copy(
        update={"warehouse_uri": str(tmp_path / "wh"), "warehouse_flush_s": 0.5}
    )
    tid = str(uuid.uuid4())  # not registered: no supervisor-run sink competes for its keys
    TopicAdmin(settings.kafka_bootstrap).ensure_topic(
        settings.topic_for(tid), settings.partitions_per_topic
    )
    producer = BatchProducer(settings.kafka_bootstrap)
    now_ms = int(time.time() * 1000)

    def produce(prefix: str, n: int) -> None:
        records = []
        for i in range(n):
            event = StreamEvent(
                event_id=f"{prefix}-{i}",
                tenant_id=tid,
                event_type="order.created",
                ts_ms=now_ms - 60_000 + i,
                received_ms=now_ms,
                sku=f"SKU-{i % 7}",
                warehouse="W1",
                qty=1,
                payload={"order_id": i, "price": 2.5, "currency": "EUR"},
            )
            records.append((f"SKU-{i % 7}@W1".encode(), encode_stream_event(event)))
        producer.produce_batch(settings.topic_for(tid), records).result(timeout=30)

    produce("x", 200)
    store = RedisStore(settings.redis_url)
    wh = Warehouse(settings.warehouse_uri)
    hold = settings.model_copy(update={"warehouse_flush_s": 3600.0})  # flush only when told
    crashing = OrderSink(hold, tid, store=store, warehouse=wh)
    crashing.start()
    deadline = time.monotonic() + 60
    while len(crashing._buffer) < 200 and time.monotonic() < deadline:
        crashing.step(timeout=0.5)
    assert len(crashing._buffer) == 200

    class _Boom(RuntimeError):
        pass

    real_pipeline = store.client.pipeline

    def failing_pipeline(*args, **kwargs):
        raise _Boom("Redis went away")

    store.client.pipeline = failing_pipeline  # type: ignore[method-assign]
    with pytest.raises(_Boom):
        crashing.flush()
    store.client.pipeline = real_pipeline  # type: ignore[method-assign]
    assert wh.read(FACT_ORDER, tid).num_rows == 200  # written, but the offsets were not stored
    crashing._consumer.close()

    produce("y", 50)  # more records: the replay must still cut at the pending ranges
    replay = OrderSink(settings, tid, store=RedisStore(settings.redis_url), warehouse=wh)
    replay.start()
    assert replay.pending is not None
    deadline = time.monotonic() + 60
    while replay.rows_written < 250 and time.monotonic() < deadline:
        replay.step(timeout=0.5)
    replay.close()
    ids = wh.read(FACT_ORDER, tid, columns=["event_id"]).column("event_id").to_pylist()
    assert len(ids) == 250
    assert set(ids) == {f"x-{i}" for i in range(200)} | {f"y-{i}" for i in range(50)}
    producer.close()


def test_backfilled_records_are_passed_over_and_their_offsets_advance(stack, tmp_path) -> None:
    """Records with the backfill's source header (first or not) are never written again (the
    backfill job wrote its orders to fact_order itself); the sink still moves past them."""
    settings = stack.settings.model_copy(
        update={"warehouse_uri": str(tmp_path / "wh"), "warehouse_flush_s": 3600.0}
    )
    tid = str(uuid.uuid4())  # not registered: no supervisor-run sink competes for its keys
    topic = settings.topic_for(tid)
    TopicAdmin(settings.kafka_bootstrap).ensure_topic(topic, settings.partitions_per_topic)
    producer = BatchProducer(settings.kafka_bootstrap)
    now_ms = int(time.time() * 1000)

    def records(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
        out = []
        for i in range(n):
            event = StreamEvent(
                event_id=f"{prefix}-{i}", tenant_id=tid, event_type="order.created",
                ts_ms=now_ms - 60_000 + i, received_ms=now_ms, sku=f"SKU-{i % 7}",
                warehouse="W1", qty=1, payload={"order_id": i, "price": 2.5, "currency": "EUR"},
            )  # fmt: skip
            out.append((f"SKU-{i % 7}@W1".encode(), encode_stream_event(event)))
        return out

    backfill = [(SOURCE_HEADER, SOURCE_BACKFILL), (BACKFILL_ID_HEADER, b"bf-1")]
    producer.produce_batch(topic, records("live", 100)).result(timeout=30)
    producer.produce_batch(topic, records("bf", 150), headers=backfill).result(timeout=30)
    other_order = [("trace", b"1"), (SOURCE_HEADER, SOURCE_BACKFILL)]
    producer.produce_batch(topic, records("bf2", 20), headers=other_order).result(timeout=30)
    producer.produce_batch(topic, records("live2", 30)).result(timeout=30)
    wh = Warehouse(settings.warehouse_uri)
    sink = OrderSink(settings, tid, store=RedisStore(settings.redis_url), warehouse=wh)
    sink.start()
    deadline = time.monotonic() + 60
    while len(sink._buffer) < 300 and time.monotonic() < deadline:
        sink.step(timeout=0.5)
    assert len(sink._buffer) == 300
    sink.flush()
    ids = wh.read(FACT_ORDER, tid, columns=["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted(
        [f"live-{i}" for i in range(100)] + [f"live2-{i}" for i in range(30)]
    )
    # A fresh topic: the next offset of each partition is its record count (300 in all).
    assert sum(sink.offsets.values()) == 300
    assert len(sink._buffer) == 0
    sink.close()
    producer.close()


def test_the_sink_actor_raises_its_alarm_while_fact_order_fails_then_catches_up(
    stack, make_tenant
) -> None:
    """On the real stack: the tenant's fact_order folder is a regular file (every write there
    fails with an OSError); the actor keeps running, raises the alarm, and once the folder can
    be made writes every order once and clears the alarm. The shards are not held back."""
    import ray

    from aurora_ray.warehouse.sink import failing_tenants

    tenant = make_tenant("failing-warehouse")
    tid = tenant.tenant_id
    wh = Warehouse(stack.settings.warehouse_uri)
    blocker = Path(stack.settings.warehouse_uri) / FACT_ORDER / f"tenant_id={tid}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    store = RedisStore(stack.settings.redis_url)
    now = time.time()
    catalogue = [sku_upserted(tid, f"SKU-{i}", "DE-HAM", 500, at=now - 3600) for i in range(SKUS)]
    orders = _orders(tid, 50, at=now - 60, prefix="f")
    assert tenant.client.post_events(ndjson(catalogue + orders)) == SKUS + 50

    def alarm() -> list[dict]:
        return [a for a in failing_tenants(store) if a["tenant_id"] == tid]

    [record] = wait_for(alarm, timeout=60, what="the warehouse alarm in Redis")
    assert "Not a directory" in record["error"]
    sink = ray.get_actor(f"tenant:{tid}:warehouse")
    health = wait_for(
        lambda: (h := ray.get(sink.health.remote(), timeout=30))["buffered"] == SKUS + 50 and h,
        timeout=30,
        what="every record held by the sink",
    )
    assert health["warehouse_error"] and health["failing_since"] and health["rows_written"] == 0

    def stock() -> float:
        page, _ = store.predictions(tid, sku=None, warehouse=None)
        return sum(p["on_hand"] for p in page)

    # The shard scored every order meanwhile.
    wait_for(lambda: stock() == SKUS * 500 - 50, timeout=60, what="the orders scored")

    blocker.unlink()
    wait_for(lambda: not alarm(), timeout=60, what="the alarm cleared")
    assert wh.event_ids(tid) == {f"f-{i}" for i in range(50)}
    assert wh.read(FACT_ORDER, tid).num_rows == 50
