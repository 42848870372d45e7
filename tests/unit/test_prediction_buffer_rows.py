"""PredictionBuffer.append gathers with numpy: its rows equal a plain per-score reference
(last score of each SKU, SKUs in the order first scored, NaN probabilities left out), across
several outputs of a batch (events and event-time timers) and SKUs of unknown stock."""

from __future__ import annotations

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


def _reference(state: SkuState, outputs: list[BatchOutput], version: str) -> dict[str, list[Any]]:
    last: dict[int, tuple[BatchOutput, int, int]] = {}
    for output in outputs:
        last_event = {int(r): j for j, r in enumerate(output.event_rows.tolist())}
        for i, row in enumerate(output.rows.tolist()):
            if row in last_event and not np.isnan(output.probability[i]):
                last[row] = (output, i, last_event[row])
    out: dict[str, list[Any]] = {"prediction_id": [], "sku_id": [], "predicted_at": []}
    out.update(predicted_oos_at=[], probability=[], feature_vector=[], on_hand=[])
    for row, (output, i, event) in last.items():
        sku, warehouse = state.keys[row].rsplit("@", 1)
        at_us = int(round(float(output.as_of_s[i]) * 1e6))
        oos = float(output.predicted_oos_s[i])
        out["prediction_id"].append(prediction_id(TENANT, sku, warehouse, at_us, version))
        out["sku_id"].append(sku)
        out["predicted_at"].append(at_us)
        out["predicted_oos_at"].append(None if np.isnan(oos) else int(round(oos * 1e6)))
        out["probability"].append(round(float(output.probability[i]), 3))
        out["feature_vector"].append(event_features(output).astype("<f4")[event].tobytes())
        out["on_hand"].append(float(output.event_on_hand[event]))
    return out


def test_append_equals_the_per_score_reference() -> None:
    rng = np.random.default_rng(5)
    events = []
    for i in range(600):
        sku = f"S{int(rng.integers(0, 40))}"
        kind = EventType.STOCK_SNAPSHOT if rng.random() < 0.1 else EventType.ORDER_CREATED
        if sku in ("S0", "S1"):
            kind = EventType.ORDER_CREATED  # never a snapshot: stock unknown, no row
        ms = round((T0 + i * 120.0) * 1000)
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
    state = SkuState()
    buffer = PredictionBuffer(None, TENANT, shard=0)  # type: ignore[arg-type]  # never flushed
    for start in range(0, len(events), 150):
        chunk = events[start : start + 150]
        outputs = fold_with_timers(state, chunk, [i % 2 for i in range(len(chunk))], PARAMS)
        assert len(outputs) > 1  # events and timers
        expected = _reference(state, outputs, "v1")
        before = len(buffer)
        assert buffer.append(state, outputs, model_version="v1") == len(expected["sku_id"])
        got = buffer._rows  # noqa: SLF001 - the rows as buffered
        for name, values in expected.items():
            assert got[name][before:] == values, name
    assert "S0" not in buffer._rows["sku_id"]  # noqa: SLF001
    assert len(buffer) > 0
