"""The recommendations in the read model: what build_outputs stores (compact, ``rec``), what
the API reads back from it, the alerts' orders, the cursor, and the settings' bounds."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from pydantic import ValidationError

from aurora_ray.api_models import ReplenishmentUpdate
from aurora_ray.domain.alerts import REC_LAYOUT, build_outputs, iso_utc
from aurora_ray.domain.events import StreamEvent
from aurora_ray.domain.replenish import LEAD_SOURCES
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.recommendations import _cursor_text, parse_cursor, recommendation_row
from aurora_ray.settings import Settings

pytestmark = pytest.mark.unit

T0 = 1.75e9
HOUR = 3600.0


def event(
    at: float, kind: str, sku: str, qty: int = 0, value: int = 0, **extra: int
) -> StreamEvent:
    ms = int(at * 1000)
    return StreamEvent(
        tenant_id="t",
        event_type=kind,
        event_id=f"{kind}-{sku}-{ms}",
        ts_ms=ms,
        received_ms=ms,
        sku=sku,
        warehouse="W",
        qty=qty,
        value=value,
        **extra,
    )


def shop() -> list[StreamEvent]:
    """A: a purchase order placed at 61 h lands at 100 h (learned 39 h); B: a given lead time
    of 48 h, MOQ 10, case pack 6; C: no demand; D: stock unknown (no picture)."""
    events = [
        event(T0, "sku.upserted", "A", value=100),
        event(T0, "sku.upserted", "B", value=100, lead_ms=48 * 3_600_000, moq=10, case_pack=6),
        event(T0, "sku.upserted", "C", value=50),
        event(T0 + HOUR, "order.created", "D", qty=1),
    ]
    for h in range(1, 61):
        events += [
            event(T0 + h * HOUR, "order.created", "A", qty=1),
            event(T0 + h * HOUR, "order.created", "B", qty=1 if h % 10 else 12),
        ]
    expected = int((T0 + 100 * HOUR) * 1000)
    events.append(event(T0 + 61 * HOUR, "stock.ordered", "A", qty=50, value=expected))
    events.append(event(T0 + 100 * HOUR, "stock.received", "A", qty=50))
    return events


def fold(params: ScoringParams) -> tuple[SkuState, list]:
    state = SkuState()
    events = shop()
    return state, fold_with_timers(state, events, [0] * len(events), params)


def test_the_stored_recommendation_is_the_folds_and_reads_back_named() -> None:
    state, outputs = fold(ScoringParams())
    built = build_outputs(state, outputs, tenant_id="t", model_version="m", now_s=T0)
    assert set(built.predictions) == {"A@W", "B@W", "C@W"}  # D: stock unknown
    # The latest picture of each row, as the fold recommends it.
    last = {}
    for output in outputs:
        for j, row in enumerate(output.rows.tolist()):
            if not math.isnan(output.probability[j]):
                last[state.keys[row]] = (output, j)
    for key, record in built.predictions.items():
        output, j = last[key]
        r = output.recommendations
        assert len(record["rec"]) == len(REC_LAYOUT)
        stored = dict(zip(REC_LAYOUT, record["rec"], strict=True))
        assert stored["recommended_qty"] == int(r.recommended_qty[j])
        assert stored["risk"] == round(float(r.risk[j]), 6)
        assert stored["lead_source"] == int(r.lead_source[j])
        row = recommendation_row(msgspec.json.decode(msgspec.json.encode(record)))
        assert row is not None
        assert (row["sku"], row["as_of"], row["on_hand"]) == (
            record["sku"],
            record["as_of"],
            record["on_hand"],
        )
        due = float(r.order_by_s[j])
        assert row["order_by"] == (None if math.isnan(due) else iso_utc(round(due * 1000) / 1000))
        assert row["lead_time_source"] == LEAD_SOURCES[int(r.lead_source[j])]
        assert row["lead_time_hours"] == round(float(r.lead_time_s[j]) / HOUR, 3)

    rows = {
        key: recommendation_row(msgspec.json.decode(msgspec.json.encode(p)))
        for key, p in built.predictions.items()
    }
    a, b, c = rows["A@W"], rows["B@W"], rows["C@W"]
    assert a is not None and b is not None and c is not None
    assert (a["lead_time_source"], a["lead_time_hours"]) == ("learned", 39.0)
    assert (b["lead_time_source"], b["moq"], b["case_pack"]) == ("given", 10, 6)
    assert b["recommended_qty"] % 6 == 0 and b["recommended_qty"] >= 10
    assert (a["moq"], a["case_pack"]) == (None, None)
    assert (c["order_by"], c["recommended_qty"], c["predicted_oos_at_p10"]) == (None, 0, None)
    assert c["service_level"] == ScoringParams().service_level

    # The due index's scores: every row with a record, inf for nothing to plan.
    scores = dict(
        zip((state.keys[r] for r in built.order_by_rows), built.order_by_s.tolist(), strict=True)
    )
    assert set(scores) == set(built.predictions) and scores["C@W"] == math.inf
    assert scores["B@W"] * 1000 == pytest.approx(built.predictions["B@W"]["rec"][2])


def test_alerts_carry_the_order_of_their_own_event() -> None:
    state, outputs = fold(ScoringParams(default_threshold=0.5))
    built = build_outputs(state, outputs, tenant_id="t", model_version="m", now_s=T0)
    assert built.alerts
    plans = [o.alert_recommendations for o in outputs]
    assert all(p is not None for p in plans)
    due = np.concatenate([p.order_by_s for p in plans if p is not None])
    qty = np.concatenate([p.recommended_qty for p in plans if p is not None])
    p10 = np.concatenate([p.oos_p10_s for p in plans if p is not None])
    for alert, when, units, early in zip(built.alerts, due, qty, p10, strict=True):
        assert alert.order_by == iso_utc(float(when))
        assert alert.recommended_qty == int(units)
        assert alert.predicted_oos_at_p10 == iso_utc(float(early))
        api = alert.to_api()
        assert api["order_by"] == alert.order_by and list(api)[0] == "alert_id"


def test_recommendations_off_store_none() -> None:
    state, outputs = fold(ScoringParams(recommendations=False, default_threshold=0.5))
    built = build_outputs(state, outputs, tenant_id="t", model_version="m", now_s=T0)
    assert built.predictions and all("rec" not in p for p in built.predictions.values())
    assert len(built.order_by_rows) == 0
    assert built.alerts and all(a.order_by is None for a in built.alerts)
    assert all(a.recommended_qty is None for a in built.alerts)
    assert recommendation_row(built.predictions["A@W"]) is None


def test_a_shorter_stored_layout_reads_with_nulls() -> None:
    record = {"sku": "A", "warehouse": "W", "as_of": "x", "on_hand": 1, "rec": [2, 0.5]}
    row = recommendation_row(record)
    assert row is not None and row["on_order"] == 2 and row["risk"] == 0.5
    assert row["order_by"] is None and row["lead_time_source"] is None


@pytest.mark.parametrize(
    "after", [(1.75e12, "A@W"), (math.inf, "SKU:with:colons@DE-HAM"), (0.0, "a@b@c")]
)
def test_cursor_round_trips(after: tuple[float, str]) -> None:
    assert parse_cursor(_cursor_text(after)) == after


@pytest.mark.parametrize("text", ["", "abc", "1.0", "1.0:nowarehouse", "nan:A@W", "x:A@W"])
def test_bad_cursors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cursor(text)


def test_service_level_bounds() -> None:
    assert ReplenishmentUpdate(service_level=0.5).service_level == 0.5
    for bad in (0.49, 1.0, 1.2):
        with pytest.raises(ValidationError, match="service_level"):
            ReplenishmentUpdate(service_level=bad)
        with pytest.raises(ValidationError, match="service_level"):
            Settings(service_level=bad)
    with pytest.raises(ValidationError, match="skus"):
        ReplenishmentUpdate(skus={"A": 1.0})
    with pytest.raises(ValidationError, match="default_lead_time_hours"):
        Settings(default_lead_time_hours=0)
