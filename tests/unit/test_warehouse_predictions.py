"""fact_prediction rows from the shard's fold (PredictionBuffer) and the sink's batch ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.features import FEATURE_NAMES, event_features
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.warehouse import FACT_PREDICTION, Warehouse
from aurora_ray.warehouse.predictions import PredictionBuffer, shard_batch_id
from aurora_ray.warehouse.sink import order_batch_id

pytestmark = pytest.mark.unit

TENANT = "3f6b2a52-5a53-4c4e-9d4b-0c1f2a3b4c5d"
T0 = 1_748_736_000.0  # 2025-06-01T00:00:00Z
PARAMS = ScoringParams(horizon_s=48 * 3600.0, half_life_s=72 * 3600.0, timer_period_s=0.0)


def _event(i: int, event_type: str, sku: str, t: float, *, qty: int = 0, value: int = 0):
    ms = round((T0 + t) * 1000)
    return StreamEvent(
        event_id=f"e{i}",
        tenant_id=TENANT,
        event_type=event_type,
        ts_ms=ms,
        received_ms=ms,
        sku=sku,
        warehouse="W1",
        qty=qty,
        value=value,
    )


def _batch(start: int) -> list[StreamEvent]:
    events = [
        _event(start, EventType.STOCK_SNAPSHOT, "A", 0, value=40),
        _event(start + 1, EventType.STOCK_SNAPSHOT, "B", 0, value=5),
    ]
    events += [
        _event(start + 2 + i, EventType.ORDER_CREATED, "AB"[i % 2], 600 * (i + 1), qty=1)
        for i in range(10)
    ]
    events.append(_event(start + 20, EventType.ORDER_CREATED, "C", 700, qty=1))  # stock unknown
    return events


def test_a_row_per_sku_and_hour_with_the_first_score_of_the_hour(tmp_path: Path) -> None:
    state = SkuState()
    events = _batch(0)
    outputs = fold_with_timers(state, events, [0] * len(events), PARAMS)
    buffer = PredictionBuffer(Warehouse(str(tmp_path)), TENANT, shard=0)
    buffer.reset({0: 0})
    # A and B: their snapshots open hour 0; B's order at 3600 s and A's at 4200 s hour 1. C: no
    # stock known, no row.
    assert buffer.append(state, outputs, model_version="analytic-nb-1") == 4
    table = buffer.table()
    got = sorted(
        zip(table.column("sku_id").to_pylist(), table.column("predicted_at").to_pylist(),
            strict=True)
    )  # fmt: skip
    assert [(sku, at.timestamp() - T0) for sku, at in got] == [
        ("A", 0.0), ("A", 4200.0), ("B", 0.0), ("B", 3600.0),
    ]  # fmt: skip
    [row] = [
        r for r in table.to_pylist() if r["sku_id"] == "A" and r["predicted_at"].timestamp() > T0
    ]
    assert row["on_hand"] == 36.0  # 40 units, four orders by 4200 s
    vector = np.frombuffer(row["feature_vector"], dtype="<f4")
    assert len(vector) == len(FEATURE_NAMES)
    [output] = outputs
    a_row = state.rows_for(["A@W1"])[0]
    at_4200 = np.flatnonzero((output.event_rows == a_row) & (output.event_as_of_s == T0 + 4200))
    expected = event_features(output)[at_4200[0]].astype("<f4")
    np.testing.assert_array_equal(vector, expected)
    assert row["probability"] == round(float(vector[0]), 3)
    # The next batch opens no new hour for A before 7200 s.
    more = [_event(50, EventType.ORDER_CREATED, "A", 7000, qty=1)]
    assert buffer.append(state, fold_with_timers(state, more, [0], PARAMS), model_version="m") == 0


def test_flush_is_idempotent_by_start_offsets(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    buffer = PredictionBuffer(wh, TENANT, shard=1)
    for attempt in range(2):  # the second attempt is a replay from the same checkpoint
        state = SkuState()
        events = _batch(0)
        buffer.reset({0: 100, 2: 7})
        buffer.append(
            state, fold_with_timers(state, events, [0] * len(events), PARAMS), model_version="m"
        )
        result = buffer.flush({0: 113, 2: 7})
        assert result is not None and result.batch_id == "shard1-0.100_2.7"
        assert buffer.start_offsets == {0: 113, 2: 7} and len(buffer) == 0
        assert wh.read(FACT_PREDICTION, TENANT).num_rows == 4, attempt
    assert buffer.flush({0: 113, 2: 7}) is None  # nothing buffered, nothing written


def test_batch_ids_are_deterministic_and_bounded() -> None:
    assert order_batch_id({1: (5, 9), 0: (0, 3)}) == "p0-0-3_p1-5-9"
    many = dict.fromkeys(range(64), (10**9, 10**9 + 5))
    assert order_batch_id(many) == order_batch_id(dict(many))
    assert len(order_batch_id(many)) < 100
    assert len(shard_batch_id(0, dict.fromkeys(range(64), 10**9))) < 100
    assert shard_batch_id(3, {}) == "shard3-start"
