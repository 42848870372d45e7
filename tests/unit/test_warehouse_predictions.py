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


def test_one_row_per_scored_sku_with_its_last_score_and_features(tmp_path: Path) -> None:
    state = SkuState()
    events = _batch(0)
    outputs = fold_with_timers(state, events, [0] * len(events), PARAMS)
    buffer = PredictionBuffer(Warehouse(str(tmp_path)), TENANT, shard=0)
    buffer.reset({0: 0})
    assert buffer.append(state, outputs, model_version="analytic-nb-1") == 2  # C: no stock
    table = buffer.table()
    assert sorted(table.column("sku_id").to_pylist()) == ["A", "B"]
    row = table.to_pylist()[table.column("sku_id").to_pylist().index("B")]
    assert row["on_hand"] == 0.0  # 5 units, five orders
    assert row["predicted_at"].timestamp() == pytest.approx(T0 + 6000)
    vector = np.frombuffer(row["feature_vector"], dtype="<f4")
    assert len(vector) == len(FEATURE_NAMES)
    [output] = outputs
    b_row = state.rows_for(["B@W1"])[0]
    last_b = np.flatnonzero(output.event_rows == b_row)[-1]
    expected = event_features(output)[last_b].astype("<f4")
    np.testing.assert_array_equal(vector, expected)
    assert row["probability"] == round(float(vector[0]), 3)


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
        assert wh.read(FACT_PREDICTION, TENANT).num_rows == 2, attempt
    assert buffer.flush({0: 113, 2: 7}) is None  # nothing buffered, nothing written


def test_batch_ids_are_deterministic_and_bounded() -> None:
    assert order_batch_id({1: (5, 9), 0: (0, 3)}) == "p0-0-3_p1-5-9"
    many = dict.fromkeys(range(64), (10**9, 10**9 + 5))
    assert order_batch_id(many) == order_batch_id(dict(many))
    assert len(order_batch_id(many)) < 100
    assert len(shard_batch_id(0, dict.fromkeys(range(64), 10**9))) < 100
    assert shard_batch_id(3, {}) == "shard3-start"
