"""Event-time timers: re-score SKUs as time passes, not only when their events arrive.

A slow SKU may see no event for days while its stock runs down in expectation; a score taken only
at its events goes stale. Like a stream processor's event-time timers, every time a partition's
event time (its running maximum, its watermark) crosses a multiple of ``timer_period_s``, every
SKU of that partition is scored as of that boundary, with the same alert rule as for events.

Timers are driven per partition, in offset order, so they fire at the same point of the sequence
in a replay as live: the state and the alerts stay a function of the per-partition event
sequences. A partition that receives no events does not advance, and its SKUs are not re-scored
(as with an idle source in other stream processors).

A gap of event time costs O(1) however long it is: when an event moves a partition's watermark
across more than :data:`MAX_TICKS_PER_GAP` boundaries, the first ``MAX_TICKS_PER_GAP - 1`` of them
fire and then the last one, the others are skipped (ADR-003). Nothing is lost that a shorter gap
would have shown: with no event in between, the skipped boundaries only re-score the same stock
with ever more decayed rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.calendar import exposure
from aurora_ray.domain.scoring import score
from aurora_ray.domain.state import (
    ATTR_COLUMNS,
    ORDER_COLUMNS,
    BatchOutput,
    EventBatch,
    Picture,
    ProbabilityModel,
    ScoredEvent,
    ScoringParams,
    SkuState,
    apply_batch,
    inbound_terms,
    model_scores,
    raise_alerts,
    recommend_at,
)

__all__ = ["MAX_TICKS_PER_GAP", "fold_with_timers", "tick", "timer_boundaries"]

#: Most timer boundaries fired for one jump of a partition's watermark (a week of daily timers).
MAX_TICKS_PER_GAP = 8

I64 = NDArray[np.int64]


def tick(
    state: SkuState,
    at_s: float,
    params: ScoringParams,
    rows: I64,
    model: ProbabilityModel | None = None,
) -> BatchOutput:
    """Score ``rows`` (with known stock and no event after ``at_s``) as of event time ``at_s``.

    Nothing but the scores and the alert marks changes: decayed sums are read at ``at_s``."""
    rows = rows[state.cols["stock_known"][rows].astype(bool)]
    rows = rows[~(state.cols["t_last"][rows].astype(np.float64) > at_s)]
    n = len(rows)
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return BatchOutput(np.empty(0, np.int64), empty, empty, empty, empty)
    tau = params.tau_s
    on_hand = state.cols["on_hand"][rows].astype(np.float64)
    t_last = state.cols["t_last"][rows]
    age = np.maximum(at_s - np.nan_to_num(t_last, nan=at_s), 0.0)
    if params.censored_demand:
        age = np.where(on_hand <= 0, 0.0, age)
    clock = state.cols["in_stock_s"][rows] + age
    decay = np.where(np.isnan(state.cols["t_ref"][rows]), 0.0, np.exp(-age / tau))
    duration = np.maximum(tau * -np.expm1(-np.maximum(clock, 0.0) / tau), params.min_history_s)
    rate = state.cols["s_qty"][rows] * decay / duration
    as_of = np.full(n, at_s)
    scores = score(
        on_hand=on_hand,
        rate=rate,
        second_moment_rate=state.cols["s_qty2"][rows] * decay / duration,
        as_of_s=as_of,
        horizon_s=params.horizon_s,
        exposure=exposure(as_of, params.horizon_s, params.week_profile),
        **inbound_terms(
            as_of,
            state.cols["inbound_qty"][rows].astype(np.int64),
            state.cols["inbound_eta"][rows].astype(np.float64),
            params,
        ),
    )
    known = np.ones(n, dtype=bool)
    second_moment = state.cols["s_qty2"][rows] * decay / duration
    probability = model_scores(
        model,
        rows=rows,
        as_of=as_of,
        probability=scores.probability,
        on_hand=on_hand,
        rate_per_s=rate,
        second_moment_per_s=second_moment,
    )
    alerts = raise_alerts(state, rows, as_of, probability, known, params)
    state.cols["probability"][rows] = probability
    recommended = alert_recommended = None
    if params.recommendations:
        decay_r = np.where(
            np.isnan(state.cols["t_ref"][rows]), 0.0, np.exp(-age / params.replenish_tau_s)
        )
        picture = Picture(
            rows=rows,
            as_of=as_of,
            on_hand=on_hand,
            history=np.maximum(clock, 0.0),
            r_qty=state.cols["r_qty"][rows].astype(np.float64) * decay_r,
            r_qty2=state.cols["r_qty2"][rows].astype(np.float64) * decay_r,
            orders={name: state.cols[name][rows] for name in ORDER_COLUMNS},
            attrs={name: state.cols[name][rows] for name in ATTR_COLUMNS},
        )
        recommended = recommend_at(state, picture, np.arange(n), params)
        alert_recommended = recommend_at(state, picture, alerts, params)
    return BatchOutput(
        rows=rows,
        as_of_s=as_of,
        probability=probability,
        predicted_oos_s=scores.predicted_oos_s,
        demand_rate_per_h=rate * 3600.0,
        alert_rows=rows[alerts],
        alert_as_of_s=as_of[alerts],
        alert_probability=probability[alerts],
        alert_predicted_oos_s=scores.predicted_oos_s[alerts],
        event_rows=rows,
        event_as_of_s=as_of,
        event_probability=scores.probability,
        event_on_hand=on_hand,
        event_rate_per_h=rate * 3600.0,
        event_second_moment_per_h=second_moment * 3600.0,
        event_score=probability,
        event_predicted_oos_s=scores.predicted_oos_s,
        recommendations=recommended,
        alert_recommendations=alert_recommended,
    )


def timer_boundaries(previous_s: float, now_s: float, period_s: float) -> list[int]:
    """The multiples of ``period_s`` that fire when a watermark moves from ``previous_s`` to
    ``now_s``: each one crossed, but at most :data:`MAX_TICKS_PER_GAP` (the first ones and the
    last), so that a jump of any length costs O(1)."""
    first, last = math.floor(previous_s / period_s) + 1, math.floor(now_s / period_s)
    if first > last:
        return []
    if last - first + 1 <= MAX_TICKS_PER_GAP:
        return list(range(first, last + 1))
    return [*range(first, first + MAX_TICKS_PER_GAP - 1), last]


def fold_with_timers(
    state: SkuState,
    events: Sequence[ScoredEvent],
    partitions: Sequence[int],
    params: ScoringParams,
    model: ProbabilityModel | None = None,
) -> list[BatchOutput]:
    """Apply ``events`` (with the partition each came from, in offset order) and fire the timers
    their partitions' event time crosses; outputs in the order they happened."""
    outputs: list[BatchOutput] = []
    period = params.timer_period_s
    marks = state.watermarks
    start = 0

    def flush(upto: int) -> None:
        nonlocal start
        if upto <= start:
            return
        batch = EventBatch.from_events(events[start:upto], partitions[start:upto])
        rows = state.rows_for(batch.keys)
        outputs.append(apply_batch(state, batch, params, model, rows=rows))
        if len(rows) and batch.partition is not None:
            state.cols["partition"][rows] = batch.partition
        start = upto

    for i, (event, partition) in enumerate(zip(events, partitions, strict=True)):
        ts = event.ts_ms / 1000.0
        previous = marks.get(partition)
        if previous is None or ts <= previous:
            marks[partition] = ts if previous is None else previous
            continue
        marks[partition] = ts
        if period <= 0:
            continue
        boundaries = timer_boundaries(previous, ts, period)
        if not boundaries:
            continue
        flush(i)
        owned_rows = np.flatnonzero(state.col("partition") == partition)
        for k in boundaries:
            outputs.append(tick(state, k * period, params, owned_rows, model))
    flush(len(events))
    return outputs
