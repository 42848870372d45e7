"""PredictionBuffer.append gathers with numpy: its rows equal a plain per-score reference (each
SKU's first known score in each step of event time after its last row, in event order), across
several outputs of a batch (events and event-time timers) and SKUs of unknown stock; and the rows
do not depend on where the micro-batches were cut."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.features import event_features
from aurora_ray.domain.state import BatchOutput, ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.warehouse.predictions import PredictionBuffer
from aurora_ray.warehouse.schema import prediction_id

pytestmark = pytest.mark.unit

TENANT = "3f6b2a52-5a53-4c4e-9d4b-0c1f2a3b4c5d"
T0 = 1_748_736_000.0
PARAMS = ScoringParams(timer_period_s=3 * 3600.0)
STEP_S = 3600.0


def _reference(
    state: SkuState, outputs: list[BatchOutput], version: str, last: dict[int, int]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"prediction_id": [], "sku_id": [], "predicted_at": []}
    out.update(predicted_oos_at=[], probability=[], feature_vector=[], on_hand=[])
    for output in outputs:
        features = event_features(output).astype("<f4")
        for j, row in enumerate(output.event_rows.tolist()):
            score = float(output.event_score[j])
            step = math.floor(float(output.event_as_of_s[j]) / STEP_S)
            if np.isnan(score) or step <= last.get(row, -1):
                continue
            last[row] = step
            sku, warehouse = state.keys[row].rsplit("@", 1)
            at_us = int(round(float(output.event_as_of_s[j]) * 1e6))
            oos = float(output.event_predicted_oos_s[j])
            out["prediction_id"].append(prediction_id(TENANT, sku, warehouse, at_us, version))
            out["sku_id"].append(sku)
            out["predicted_at"].append(at_us)
            out["predicted_oos_at"].append(None if np.isnan(oos) else int(round(oos * 1e6)))
            out["probability"].append(round(score, 3))
            out["feature_vector"].append(features[j].tobytes())
            out["on_hand"].append(float(output.event_on_hand[j]))
    return out


def _events(n: int = 600, seed: int = 5) -> list[StreamEvent]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        sku = f"S{int(rng.integers(0, 40))}"
        kind = EventType.STOCK_SNAPSHOT if rng.random() < 0.1 else EventType.ORDER_CREATED
        if sku in ("S0", "S1"):
            kind = EventType.ORDER_CREATED  # never a snapshot: stock unknown, no row
        ms = round((T0 + i * 120.0 + float(rng.integers(0, 90))) * 1000)
        events.append(
            StreamEvent(
                event_id=f"e{i}",
                tenant_id=TENANT,
                event_type=kind,
                ts_ms=ms,
                received_ms=ms,
                sku=sku,
                warehouse=f"W{i % 2}",
                qty=int(rng.integers(1, 4)),
                value=int(rng.integers(0, 30)),
            )
        )
    return events


def test_append_equals_the_per_score_reference() -> None:
    events = _events()
    state = SkuState()
    buffer = PredictionBuffer(None, TENANT, shard=0, step_s=STEP_S)  # type: ignore[arg-type]
    last: dict[int, int] = {}
    for start in range(0, len(events), 150):
        chunk = events[start : start + 150]
        outputs = fold_with_timers(state, chunk, [i % 2 for i in range(len(chunk))], PARAMS)
        assert len(outputs) > 1  # events and timers
        expected = _reference(state, outputs, "v1", last)
        before = len(buffer)
        assert buffer.append(state, outputs, model_version="v1") == len(expected["sku_id"])
        got = buffer._rows  # noqa: SLF001 - the rows as buffered
        for name, values in expected.items():
            assert got[name][before:] == values, name
    assert "S0" not in buffer._rows["sku_id"]  # noqa: SLF001
    assert len(buffer) > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_do_not_depend_on_where_the_batches_are_cut(seed: int) -> None:
    """A backfill folds in full batches, a live shard in trickles: the same rows either way."""
    events = _events(seed=seed)
    partitions = [int(e.sku[1:]) % 2 for e in events]  # a SKU stays in its partition

    def rows(cuts: list[int]) -> list[tuple[Any, ...]]:
        state = SkuState()
        buffer = PredictionBuffer(None, TENANT, shard=0, step_s=STEP_S)  # type: ignore[arg-type]
        bounds = [0, *cuts, len(events)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            outputs = fold_with_timers(state, events[a:b], partitions[a:b], PARAMS)
            buffer.append(state, outputs, model_version="v1")
        table = buffer.table().to_pylist()
        return sorted(tuple(r.values()) for r in table)

    rng = np.random.default_rng(seed)
    whole = rows([])
    assert whole == rows(list(range(1, len(events))))  # one event at a time
    assert whole == rows(sorted(rng.choice(np.arange(1, len(events)), 30, replace=False).tolist()))
    assert len(whole) > 40
