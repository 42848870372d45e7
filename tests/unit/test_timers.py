"""Event-time timers: SKUs are re-scored as their partition's event time passes boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers

pytestmark = pytest.mark.unit

TENANT = "0b7c4f7e-8d6f-4a53-9d0e-3c1f2b8a9e10"
DAY = 86_400.0
T0 = 1_750_032_000.0  # a midnight (UTC)


def ev(kind: str, sku: str, t: float, *, qty: int = 0, value: int = 0) -> StreamEvent:
    return StreamEvent(
        event_id=f"{sku}-{t}",
        tenant_id=TENANT,
        event_type=kind,
        ts_ms=round(t * 1000),
        received_ms=0,
        sku=sku,
        warehouse="W",
        qty=qty,
        value=value,
    )


def stream() -> tuple[list[StreamEvent], list[int]]:
    """SLOW (partition 0) sells 20 units in its first hours, then nothing; FAST (partition 0)
    keeps selling and so moves partition 0's event time; OTHER is alone on partition 1."""
    events = [
        ev(EventType.SKU_UPSERTED, "SLOW", T0 + 60, value=30),
        ev(EventType.SKU_UPSERTED, "FAST", T0 + 60, value=10_000),
        ev(EventType.SKU_UPSERTED, "OTHER", T0 + 60, value=30),
    ]
    parts = [0, 0, 1]
    for h in range(1, 11):
        events += [ev(EventType.ORDER_CREATED, "SLOW", T0 + h * 3600, qty=2)]
        events += [ev(EventType.ORDER_CREATED, "OTHER", T0 + h * 3600, qty=2)]
        parts += [0, 1]
    for h in range(12, 4 * 24):
        events.append(ev(EventType.ORDER_CREATED, "FAST", T0 + h * 3600, qty=1))
        parts.append(0)
    return events, parts


def fold(events: list[StreamEvent], parts: list[int], cuts: list[int]) -> tuple[SkuState, list]:
    state, params = SkuState(), ScoringParams()
    outputs = []
    bounds = [0, *cuts, len(events)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        outputs += fold_with_timers(state, events[lo:hi], parts[lo:hi], params)
    return state, outputs


def ticks_of(state: SkuState, outputs: list, sku: str) -> list[float]:
    row = state.index[f"{sku}@W"]
    return sorted(
        float(t)
        for out in outputs
        for r, t in zip(out.event_rows, out.event_as_of_s, strict=True)
        if r == row and t % DAY == 0
    )


def alerts_of(state: SkuState, outputs: list) -> list[tuple[str, float]]:
    return sorted(
        (state.keys[r], float(t))
        for out in outputs
        for r, t in zip(out.alert_rows, out.alert_as_of_s, strict=True)
    )


def test_a_quiet_sku_is_rescored_at_each_midnight_its_partition_passes() -> None:
    events, parts = stream()
    state, outputs = fold(events, parts, [])
    assert ticks_of(state, outputs, "SLOW") == [T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
    # OTHER's partition never reaches the next midnight: no timer fires for it.
    assert ticks_of(state, outputs, "OTHER") == []


def test_timer_scores_show_time_passing() -> None:
    events, parts = stream()
    state, outputs = fold(events, parts, [])
    row = state.index["SLOW@W"]
    at = {
        float(t): float(p)
        for out in outputs
        for r, t, p in zip(out.event_rows, out.event_as_of_s, out.event_probability, strict=True)
        if r == row
    }
    # 10 units left after a brisk first morning: the risk is high and stays in [0, 1].
    assert 0.5 < at[T0 + DAY] <= 1.0
    assert all(0.0 <= p <= 1.0 for p in at.values())


def test_timers_do_not_depend_on_batch_boundaries() -> None:
    events, parts = stream()
    whole_state, whole = fold(events, parts, [])
    for cuts in ([5], [1, 2, 3, 50, 51], list(range(1, len(events), 7))):
        state, outputs = fold(events, parts, cuts)
        assert alerts_of(state, outputs) == alerts_of(whole_state, whole)
        for sku in ("SLOW", "FAST", "OTHER"):
            assert ticks_of(state, outputs, sku) == ticks_of(whole_state, whole, sku)
        np.testing.assert_array_equal(state.col("on_hand"), whole_state.col("on_hand"))
        np.testing.assert_allclose(state.col("last_alert"), whole_state.col("last_alert"))


def test_watermarks_and_partitions_survive_a_checkpoint() -> None:
    events, parts = stream()
    params = ScoringParams()
    live = SkuState()
    fold_with_timers(live, events[:40], parts[:40], params)
    restored = SkuState.from_bytes(live.to_bytes())
    assert restored.watermarks == live.watermarks
    np.testing.assert_array_equal(restored.col("partition"), live.col("partition"))
    after_live = fold_with_timers(live, events[40:], parts[40:], params)
    after_restore = fold_with_timers(restored, events[40:], parts[40:], params)
    assert alerts_of(restored, after_restore) == alerts_of(live, after_live)
    assert ticks_of(restored, after_restore, "SLOW") == ticks_of(live, after_live, "SLOW")


def test_period_zero_disables_timers() -> None:
    events, parts = stream()
    state = SkuState()
    outputs = fold_with_timers(state, events, parts, ScoringParams(timer_period_s=0.0))
    assert ticks_of(state, outputs, "SLOW") == []
