"""Columnar per-SKU state and the fold that applies a micro-batch of events to it.

``apply_batch(state, batch, params) -> BatchOutput`` is the whole of stream processing: it moves
stock, updates demand rates, scores every event's SKU as of that event and decides which alerts to
raise. Everything is driven by event time (``ts``), never the wall clock. Events of a SKU are
applied in arrival (offset) order, each scored as of the latest event time seen so far, so the
state and the alerts do not depend on where batch boundaries fall: a replay of the same events
gives the same answers as the live stream.

Demand rates are exponentially decayed sums in event time, bias-corrected for short histories:
``rate = S / D`` with ``S = sum(q_i * exp(-(t - t_i) / tau))`` and
``D = tau * (1 - exp(-(t - t_first) / tau))``, the decayed length of the observed history.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.calendar import exposure
from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.replenish import Recommendations, lead_times, recommend
from aurora_ray.domain.scoring import score

__all__ = [
    "ATTR_COLUMNS",
    "ORDER_COLUMNS",
    "TYPE_CODES",
    "BatchOutput",
    "EventBatch",
    "ProbabilityModel",
    "Picture",
    "ScoredEvent",
    "ScoringParams",
    "SkuState",
    "apply_batch",
    "inbound_terms",
    "open_orders_at_events",
    "model_scores",
    "moves_state",
    "raise_alerts",
    "recommend_at",
]

TYPE_CODES: Final[dict[str, int]] = {
    EventType.ORDER_CREATED: 1,
    EventType.ORDER_CANCELLED: 2,
    EventType.STOCK_RECEIVED: 3,
    EventType.STOCK_ADJUSTED: 4,
    EventType.STOCK_SNAPSHOT: 5,
    EventType.SKU_UPSERTED: 6,
    EventType.STOCK_ORDERED: 7,
}
_CREATED, _CANCELLED, _RECEIVED, _ADJUSTED, _SNAPSHOT, _UPSERTED, _ORDERED = range(1, 8)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class ScoringParams:
    horizon_s: float = 48 * 3600.0
    half_life_s: float = 72 * 3600.0
    dedup_window_s: float = 24 * 3600.0
    min_history_s: float = 6 * 3600.0  # floor of D: a few early sales do not look like a rush
    default_threshold: float = 0.7
    # Demand is censored while out of stock: let its clock stop there (rates do not decay).
    censored_demand: bool = False
    # Event-time timers: every SKU is re-scored at each multiple of this period (0: never).
    timer_period_s: float = 24 * 3600.0
    # The tenant's demand calendar: 168 hour-of-week shares (None: a flat week).
    week_profile: tuple[float, ...] | None = None
    # Purchase orders on their way (stock.ordered) count as stock from their expected time on.
    inbound: bool = True
    # An order still not received this long after its expected time is no longer counted on.
    inbound_grace_s: float = 24 * 3600.0
    # Replenishment recommendations (aurora_ray.domain.replenish): the tenant's target service
    # level (per-SKU overrides in SkuState), how long an order must last after it lands, the
    # lead time of SKUs with neither a given nor a learned one, and the demand's memory.
    # Service level, review period and half-life were chosen on the evaluation's validation
    # split (docs/evaluation.md, "Replenishment"): the fewest stock-outs at the shop's
    # inventory + 10 %, with no more orders than the shop's own policy places.
    recommendations: bool = True
    service_level: float = 0.992
    review_period_s: float = 7 * 86400.0
    default_lead_time_s: float = 7 * 86400.0
    replenish_half_life_s: float = 56 * 86400.0
    # Work in progress (issue 16): None keeps one service level for every SKU; a value switches
    # the SKUs without their own service level to the marginal rule (replenish.marginal_stock).
    risk_per_unit: float | None = None

    @property
    def tau_s(self) -> float:
        return self.half_life_s / float(np.log(2.0))

    @property
    def replenish_tau_s(self) -> float:
        return self.replenish_half_life_s / float(np.log(2.0))


_COLUMNS: Final[dict[str, tuple[type, float]]] = {
    # name: (dtype, initial value)
    "on_hand": (np.int64, 0),
    "stock_known": (np.bool_, False),
    "s_qty": (np.float64, 0.0),  # decayed sum of units sold
    "s_qty2": (np.float64, 0.0),  # decayed sum of squared order sizes
    "t_ref": (np.float64, np.nan),  # event time the decayed sums refer to
    "t_first": (np.float64, np.nan),  # first event time seen
    "t_last": (np.float64, np.nan),  # latest event time seen
    "in_stock_s": (np.float64, 0.0),  # event time spent in stock (or unknown) since first seen
    "last_alert": (np.float64, np.nan),  # event time of the last alert raised
    "threshold": (np.float64, np.nan),  # per-SKU override; NaN means the tenant default
    "probability": (np.float64, np.nan),  # latest score
    "inbound_qty": (np.int64, 0),  # units on open purchase orders (stock.ordered, not received)
    "inbound_eta": (np.float64, np.nan),  # earliest expected time of the open orders
    "inbound_eta_last": (np.float64, np.nan),  # latest expected time of the open orders
    "partition": (np.int64, -1),  # topic partition the SKU's events come from (for timers)
    # Step of event time (prediction_row_hours) of the SKU's last fact_prediction row (-1: none).
    "pred_step": (np.int64, -1),
    # -- replenishment ---------------------------------------------------------------------------
    "r_qty": (np.float64, 0.0),  # decayed sums of units sold and squared sizes, long memory
    "r_qty2": (np.float64, 0.0),
    "service_level": (np.float64, np.nan),  # per-SKU override; NaN means the tenant default
    "lead_given_s": (np.float64, np.nan),  # lead_time_hours of sku.upserted, in seconds
    "moq": (np.int64, 0),  # minimum order quantity (0: none)
    "case_pack": (np.int64, 0),  # units per case (0: single units)
    "lead_n": (np.int64, 0),  # observed lead times (stock.ordered -> stock.received)
    "lead_mean_s": (np.float64, 0.0),  # their mean
    "lead_m2": (np.float64, 0.0),  # and sum of squared deviations (Welford)
    "inbound_placed": (np.float64, np.nan),  # when the earliest open order was placed
    "inbound_placed_last": (np.float64, np.nan),  # when the latest open order was placed
    # The order_by (epoch s; inf: nothing to plan) of the row's recommendation in the read model,
    # NaN: none. Kept by the shard, not the fold: its due index is rebuilt from it on restore.
    "order_by": (np.float64, np.nan),
}


class SkuState:
    """SKU state in numpy columns, one row per ``sku@warehouse`` key."""

    def __init__(self, capacity: int = 1024) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.overrides: dict[str, float] = {}  # per-SKU thresholds, also applied to new rows
        self.service_overrides: dict[str, float] = {}  # per-SKU service levels, likewise
        self.watermarks: dict[int, float] = {}  # partition -> latest event time seen (timers)
        self.cols: dict[str, NDArray[np.generic]] = {
            name: np.full(capacity, init, dtype=dtype) for name, (dtype, init) in _COLUMNS.items()
        }

    def __len__(self) -> int:
        return len(self.keys)

    def col(self, name: str) -> NDArray[np.generic]:
        return self.cols[name][: len(self.keys)]

    def rows_for(self, keys: list[str]) -> I64:
        """Row of each key, adding rows for keys not seen before."""
        index = self.index
        rows = np.empty(len(keys), dtype=np.int64)
        first_new = len(self.keys)
        for i, key in enumerate(keys):
            row = index.get(key)
            if row is None:
                row = len(self.keys)
                index[key] = row
                self.keys.append(key)
            rows[i] = row
        self._ensure_capacity(len(self.keys))
        if len(self.keys) > first_new:
            new = range(first_new, len(self.keys))
            if self.overrides:
                self._apply_overrides("threshold", self.overrides, new)
            if self.service_overrides:
                self._apply_overrides("service_level", self.service_overrides, new)
        return rows

    def _ensure_capacity(self, n: int) -> None:
        capacity = len(self.cols["on_hand"])
        if n <= capacity:
            return
        new_capacity = max(n, capacity * 2)
        for name, (dtype, init) in _COLUMNS.items():
            grown: NDArray[np.generic] = np.full(new_capacity, init, dtype=dtype)
            grown[:capacity] = self.cols[name]
            self.cols[name] = grown

    def set_thresholds(self, overrides: dict[str, float]) -> None:
        """Per-key thresholds (``sku@warehouse`` or bare ``sku``); the rest use the default."""
        self.overrides = dict(overrides)
        self.cols["threshold"][:] = np.nan
        if overrides:
            self._apply_overrides("threshold", self.overrides, range(len(self.keys)))

    def set_service_levels(self, overrides: dict[str, float]) -> None:
        """Per-key target service levels (``sku@warehouse`` or bare ``sku``); the rest use the
        tenant's (``ScoringParams.service_level``)."""
        self.service_overrides = dict(overrides)
        self.cols["service_level"][:] = np.nan
        if overrides:
            self._apply_overrides("service_level", self.service_overrides, range(len(self.keys)))

    def _apply_overrides(self, name: str, overrides: dict[str, float], rows: range) -> None:
        column = self.cols[name]
        for row in rows:
            key = self.keys[row]
            value = overrides.get(key)
            if value is None:
                value = overrides.get(key.rsplit("@", 1)[0])
            column[row] = np.nan if value is None else value

    def copy(self) -> SkuState:
        """A deep copy (the shard's undo point while it isolates a record the fold refuses)."""
        other = SkuState(capacity=1)
        other.keys = list(self.keys)
        other.index = dict(self.index)
        other.overrides = dict(self.overrides)
        other.service_overrides = dict(self.service_overrides)
        other.watermarks = dict(self.watermarks)
        other.cols = {name: column.copy() for name, column in self.cols.items()}
        return other

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        marks = sorted(self.watermarks.items())
        arrays: dict[str, Any] = {name: self.col(name) for name in _COLUMNS}
        arrays["keys"] = np.array(self.keys, dtype=np.str_)
        arrays["wm_partitions"] = np.array([p for p, _ in marks], dtype=np.int64)
        arrays["wm_times"] = np.array([t for _, t in marks], dtype=np.float64)
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SkuState:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        keys = [str(k) for k in loaded["keys"]]
        state = cls(capacity=max(1024, len(keys)))
        state.keys = keys
        state.index = {key: row for row, key in enumerate(keys)}
        for name in _COLUMNS:
            if name in loaded:
                state.cols[name][: len(keys)] = loaded[name]
        if "wm_partitions" in loaded:
            state.watermarks = {
                int(p): float(t)
                for p, t in zip(loaded["wm_partitions"], loaded["wm_times"], strict=True)
            }
        return state


class ScoredEvent(Protocol):
    """What the fold reads of an event (a :class:`StreamEvent`, or the shard's lighter
    ``ShardRecord`` whose payload stays unparsed)."""

    @property
    def event_type(self) -> str: ...
    @property
    def sku(self) -> str | None: ...
    @property
    def warehouse(self) -> str | None: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def received_ms(self) -> int: ...
    @property
    def qty(self) -> int: ...
    @property
    def value(self) -> int: ...


def _has_attrs(event: ScoredEvent) -> bool:
    """An upsert carrying replenishment data (lead time, MOQ, case pack)."""
    return bool(getattr(event, "lead_ms", 0) or getattr(event, "moq", 0)) or bool(
        getattr(event, "case_pack", 0)
    )


def moves_state(event: StreamEvent) -> bool:
    """Known type with a SKU key; a catalogue-only upsert (no initial_stock) moves nothing
    unless it carries replenishment data."""
    return (
        event.event_type in TYPE_CODES
        and event.key is not None
        and not (
            event.event_type == EventType.SKU_UPSERTED and event.value < 0 and not _has_attrs(event)
        )
    )


@dataclass
class EventBatch:
    """A micro-batch in columns; ``keys[i]`` is the ``sku@warehouse`` of event ``i``."""

    keys: list[str]
    type_code: NDArray[np.int8]
    ts_s: F64
    qty: I64
    value: I64
    received_s: F64
    unknown: int = 0  # events of unknown type (kept on the topic, not scored)
    # With ``from_events(..., partitions)``: the topic partition of each scored event.
    partition: I64 | None = None
    # Upserts carrying replenishment data: their positions in the batch and the values (a lead
    # time of 0 s, an MOQ or case pack of 0: not given).
    attr_pos: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    attr_lead_s: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    attr_moq: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    attr_pack: I64 = field(default_factory=lambda: np.empty(0, np.int64))

    @classmethod
    def from_events(
        cls, events: Sequence[ScoredEvent], partitions: Sequence[int] | None = None
    ) -> EventBatch:
        """The events that move state (:func:`moves_state`), in order, in columns; one pass."""
        codes = TYPE_CODES
        keys: list[str] = []
        type_code: list[int] = []
        ts_ms: list[int] = []
        qty: list[int] = []
        value: list[int] = []
        received_ms: list[int] = []
        positions: list[int] = []
        attrs: list[tuple[int, float, int, int]] = []
        unknown = 0
        for i, e in enumerate(events):
            code = codes.get(e.event_type)
            if code is None:
                unknown += 1
                continue
            sku, warehouse = e.sku, e.warehouse
            if sku is None or warehouse is None:
                continue
            if code == _UPSERTED and _has_attrs(e):
                attrs.append(
                    (
                        len(keys),
                        getattr(e, "lead_ms", 0) / 1000.0,
                        getattr(e, "moq", 0),
                        getattr(e, "case_pack", 0),
                    )
                )
            elif code == _UPSERTED and e.value < 0:
                continue
            keys.append(f"{sku}@{warehouse}")
            type_code.append(code)
            ts_ms.append(e.ts_ms)
            qty.append(e.qty)
            value.append(e.value)
            received_ms.append(e.received_ms)
            positions.append(i)
        partition = None
        if partitions is not None:
            partition = np.asarray(partitions, dtype=np.int64)[np.asarray(positions, np.int64)]
        return cls(
            keys=keys,
            type_code=np.array(type_code, dtype=np.int8),
            ts_s=np.array(ts_ms, dtype=np.float64) / 1000.0,
            qty=np.array(qty, dtype=np.int64),
            value=np.array(value, dtype=np.int64),
            received_s=np.array(received_ms, dtype=np.float64) / 1000.0,
            unknown=unknown,
            partition=partition,
            attr_pos=np.array([a[0] for a in attrs], dtype=np.int64),
            attr_lead_s=np.array([a[1] for a in attrs], dtype=np.float64),
            attr_moq=np.array([a[2] for a in attrs], dtype=np.int64),
            attr_pack=np.array([a[3] for a in attrs], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class BatchOutput:
    """Per touched row: the picture after the batch. Per alert: the event that raised it."""

    rows: I64
    as_of_s: F64
    probability: F64  # NaN where stock is unknown
    predicted_oos_s: F64
    demand_rate_per_h: F64
    alert_rows: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    alert_as_of_s: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    alert_probability: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    alert_predicted_oos_s: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    # Every event's score (grouped by row, arrival order within a row): for evaluation.
    event_rows: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    event_as_of_s: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    event_probability: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    event_on_hand: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    event_rate_per_h: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    event_second_moment_per_h: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    # The probability shown for every event (a learned model's, or the analytic one); the
    # analytic score stays in ``event_probability``, the model's first feature.
    event_score: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    # The predicted stock-out time as of every event (NaN: none expected, or stock unknown).
    event_predicted_oos_s: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    # Replenishment (ScoringParams.recommendations): per touched row (as ``rows``; meaningful
    # where the stock is known) and per alert (as ``alert_rows``).
    recommendations: Recommendations | None = None
    alert_recommendations: Recommendations | None = None


# A learned scorer: the fold's per-event picture (``event_*`` of a BatchOutput, whose
# ``event_probability`` is the analytic score) -> one probability per event. Thresholds and
# dedup then run on these probabilities instead of the analytic ones.
ProbabilityModel = Callable[[BatchOutput], F64]


def model_scores(
    model: ProbabilityModel | None,
    *,
    rows: I64,
    as_of: F64,
    probability: F64,
    on_hand: F64,
    rate_per_s: F64,
    second_moment_per_s: F64,
) -> F64:
    """The probability each event shows: ``model``'s where the stock is known, else analytic."""
    if model is None:
        return probability
    preview = BatchOutput(
        rows=rows,
        as_of_s=as_of,
        probability=probability,
        predicted_oos_s=np.full(len(rows), np.nan),
        demand_rate_per_h=rate_per_s * 3600.0,
        event_rows=rows,
        event_as_of_s=as_of,
        event_probability=probability,
        event_on_hand=on_hand,
        event_rate_per_h=rate_per_s * 3600.0,
        event_second_moment_per_h=second_moment_per_s * 3600.0,
    )
    shown = np.asarray(model(preview), dtype=np.float64)
    if shown.shape != probability.shape:
        raise ValueError(f"the model gave {shown.shape} probabilities for {probability.shape}")
    return np.where(np.isnan(probability), np.nan, np.clip(shown, 0.0, 1.0))


def _segment_starts(starts: NDArray[np.bool_]) -> I64:
    """Index of the first element of each element's segment (segments begin where True)."""
    idx = np.where(starts, np.arange(len(starts)), 0)
    return np.maximum.accumulate(idx)


def _running_max_per_group(values_ms: I64, group: I64) -> I64:
    """Running maximum within consecutive groups, exact on integer milliseconds: each group is
    lifted above the previous one so that one ``maximum.accumulate`` serves all groups."""
    low = int(values_ms.min())
    span = int(values_ms.max()) - low + 1
    lifted = (values_ms - low) + group * span
    return np.maximum.accumulate(lifted) - group * span + low


def apply_batch(
    state: SkuState,
    batch: EventBatch,
    params: ScoringParams,
    model: ProbabilityModel | None = None,
    *,
    rows: I64 | None = None,
) -> BatchOutput:
    """Apply ``batch`` to ``state`` in place; return the touched SKUs' scores and the alerts.

    With a ``model``, its probabilities (over the analytic score and the other per-event
    features) decide the alerts and are the ones shown. ``rows``: ``state.rows_for(batch.keys)``
    when the caller already has it (it is looked up otherwise)."""
    rows_by_pos = state.rows_for(batch.keys) if rows is None else rows
    n = len(batch)
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return BatchOutput(np.empty(0, np.int64), empty, empty, empty, empty)
    tau = params.tau_s
    # Group by SKU, keeping arrival order within each SKU.
    order = np.argsort(rows_by_pos, kind="stable")
    rows = rows_by_pos[order]
    code = batch.type_code[order]
    ts = batch.ts_s[order]
    qty = batch.qty[order]
    value = batch.value[order]
    first_of_row = np.ones(n, dtype=bool)
    first_of_row[1:] = rows[1:] != rows[:-1]
    last_of_row = np.ones(n, dtype=bool)
    last_of_row[:-1] = rows[1:] != rows[:-1]
    row_start = _segment_starts(first_of_row)

    # -- stock: segments restart at every absolute set (snapshot, or upsert of unknown stock) ---
    known_before = state.cols["stock_known"][rows].astype(bool)
    is_set = code == _SNAPSHOT
    # (A catalogue-only upsert, value -1, carries replenishment data and sets no stock.)
    setting = np.flatnonzero((code == _SNAPSHOT) | ((code == _UPSERTED) & (value >= 0)))
    if len(setting):
        # An upsert sets stock only while the SKU's stock is unknown: no stock before the batch
        # and no snapshot or upsert before it in the batch.
        first_setting = setting[np.r_[True, rows[setting][1:] != rows[setting][:-1]]]
        effective = first_setting[(code[first_setting] == _UPSERTED) & ~known_before[first_setting]]
        is_set[effective] = True
    delta = np.zeros(n, dtype=np.int64)
    delta[code == _CREATED] = -qty[code == _CREATED]
    for c in (_CANCELLED, _RECEIVED):
        delta[code == c] = qty[code == c]
    delta[code == _ADJUSTED] = value[code == _ADJUSTED]
    delta[is_set] = 0
    seg_start = _segment_starts(first_of_row | is_set)
    base = np.where(is_set[seg_start], value[seg_start], state.cols["on_hand"][rows])
    running = np.cumsum(delta)
    on_hand = base + running - (running[seg_start] - delta[seg_start])
    known = known_before | is_set[seg_start]
    orders = open_orders_at_events(state, rows, code, qty, value, row_start, ts)
    inbound_qty = orders["inbound_qty"].astype(np.int64)
    inbound_eta = orders["inbound_eta"].astype(np.float64)

    # -- demand: decayed sums of sales as of each event ------------------------------------------
    group = np.cumsum(first_of_row) - 1
    ts_ms = np.round(ts * 1000.0).astype(np.int64)
    seen_max = _running_max_per_group(ts_ms, group) / 1000.0
    seen_min = -_running_max_per_group(-ts_ms, group) / 1000.0
    t_last_prev = state.cols["t_last"][rows]
    as_of = np.fmax(seen_max, t_last_prev)
    # The demand clock: event time, or (censored_demand) only the time spent in stock.
    prev_as_of = np.where(first_of_row, t_last_prev, np.r_[np.nan, as_of[:-1]])
    step = np.nan_to_num(as_of - prev_as_of, nan=0.0)
    if params.censored_demand:
        before = np.where(first_of_row, state.cols["on_hand"][rows], np.r_[0, on_hand[:-1]])
        known_prev = np.where(first_of_row, known_before, np.r_[False, known[:-1]])
        step = np.where(known_prev & (before <= 0), 0.0, step)
    ticks = np.cumsum(step)
    clock_prev = state.cols["in_stock_s"][rows]
    clock = clock_prev + ticks - (ticks[row_start] - step[row_start])
    t_ref_prev = state.cols["t_ref"][rows]
    carried = np.where(np.isnan(t_ref_prev), 0.0, np.exp(-(clock - clock_prev) / tau))
    starts = np.flatnonzero(first_of_row)
    row_max_t = np.maximum.reduceat(clock, starts)[group]
    sold = np.where(code == _CREATED, qty, 0).astype(np.float64)
    scale = np.exp((clock - row_max_t) / tau)  # <= 1: cannot overflow
    back = np.exp((row_max_t - clock) / tau)
    sums: dict[str, F64] = {}
    for name, contribution in (("s_qty", sold * scale), ("s_qty2", sold * sold * scale)):
        cum = np.cumsum(contribution)
        within = cum - (cum[row_start] - contribution[row_start])
        sums[name] = state.cols[name][rows] * carried + within * back
    if params.recommendations:
        # The same sums with the replenishment's longer memory.
        tau_r = params.replenish_tau_s
        carried_r = np.where(np.isnan(t_ref_prev), 0.0, np.exp(-(clock - clock_prev) / tau_r))
        scale_r = np.exp((clock - row_max_t) / tau_r)
        back_r = np.exp((row_max_t - clock) / tau_r)
        for name, contribution in (("r_qty", sold * scale_r), ("r_qty2", sold * sold * scale_r)):
            cum = np.cumsum(contribution)
            within = cum - (cum[row_start] - contribution[row_start])
            sums[name] = state.cols[name][rows] * carried_r + within * back_r
    t_first = np.fmin(state.cols["t_first"][rows], seen_min)
    history = np.maximum(clock, 0.0)
    duration = np.maximum(tau * -np.expm1(-history / tau), params.min_history_s)
    rate = sums["s_qty"] / duration
    scores = score(
        on_hand=on_hand.astype(np.float64),
        rate=rate,
        second_moment_rate=sums["s_qty2"] / duration,
        as_of_s=as_of,
        horizon_s=params.horizon_s,
        exposure=exposure(as_of, params.horizon_s, params.week_profile),
        **inbound_terms(as_of, inbound_qty, inbound_eta, params),
    )
    analytic = np.where(known, scores.probability, np.nan)
    predicted = np.where(known, scores.predicted_oos_s, np.nan)
    probability = model_scores(
        model,
        rows=rows,
        as_of=as_of,
        probability=analytic,
        on_hand=on_hand.astype(np.float64),
        rate_per_s=rate,
        second_moment_per_s=sums["s_qty2"] / duration,
    )

    alerts = raise_alerts(state, rows, as_of, probability, known, params)

    # -- the state after the batch: each row's last event ---------------------------------------
    end = np.flatnonzero(last_of_row)
    touched = rows[end]
    recommended = alert_recommended = None
    if params.recommendations:
        attrs = _attrs_at_events(state, batch, order, rows, row_start)
        picture = Picture(
            rows=rows,
            as_of=as_of,
            on_hand=on_hand.astype(np.float64),
            history=history,
            r_qty=sums["r_qty"],
            r_qty2=sums["r_qty2"],
            orders=orders,
            attrs=attrs,
        )
        recommended = recommend_at(state, picture, end, params)
        alert_recommended = recommend_at(state, picture, alerts, params)
        for name, column in attrs.items():
            state.cols[name][touched] = column[end]
        state.cols["r_qty"][touched] = sums["r_qty"][end]
        state.cols["r_qty2"][touched] = sums["r_qty2"][end]
    state.cols["on_hand"][touched] = on_hand[end]
    state.cols["stock_known"][touched] = known[end]
    state.cols["s_qty"][touched] = sums["s_qty"][end]
    state.cols["s_qty2"][touched] = sums["s_qty2"][end]
    state.cols["t_ref"][touched] = as_of[end]
    state.cols["t_last"][touched] = as_of[end]
    state.cols["in_stock_s"][touched] = clock[end]
    state.cols["t_first"][touched] = t_first[end]
    state.cols["probability"][touched] = probability[end]
    for name, column in orders.items():
        state.cols[name][touched] = column[end]
    return BatchOutput(
        rows=touched,
        as_of_s=as_of[end],
        probability=probability[end],
        predicted_oos_s=predicted[end],
        demand_rate_per_h=rate[end] * 3600.0,
        alert_rows=rows[alerts],
        alert_as_of_s=as_of[alerts],
        alert_probability=probability[alerts],
        alert_predicted_oos_s=predicted[alerts],
        event_rows=rows,
        event_as_of_s=as_of,
        event_probability=analytic,
        event_on_hand=on_hand.astype(np.float64),
        event_rate_per_h=rate * 3600.0,
        event_second_moment_per_h=sums["s_qty2"] / duration * 3600.0,
        event_score=probability,
        event_predicted_oos_s=predicted,
        recommendations=recommended,
        alert_recommendations=alert_recommended,
    )


ATTR_COLUMNS: Final = ("lead_given_s", "moq", "case_pack")


def _attrs_at_events(
    state: SkuState, batch: EventBatch, order: I64, rows: I64, row_start: I64
) -> dict[str, NDArray[np.generic]]:
    """Each event's lead time, MOQ and case pack (sorted order): its row's, as set by the
    latest upsert carrying them at or before the event (a 0 keeps the value before)."""
    base = {name: state.cols[name][rows] for name in ATTR_COLUMNS}
    if not len(batch.attr_pos):
        return base
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    at = inverse[batch.attr_pos]
    by_time = np.argsort(at, kind="stable")
    idx = at[by_time]
    given = {
        "lead_given_s": batch.attr_lead_s[by_time],
        "moq": batch.attr_moq[by_time].astype(np.float64),
        "case_pack": batch.attr_pack[by_time].astype(np.float64),
    }
    row_end = np.r_[row_start[1:] != row_start[:-1], True]
    last_of = np.flatnonzero(row_end)
    out: dict[str, NDArray[np.generic]] = {}
    for name in ATTR_COLUMNS:
        column = base[name].astype(np.float64).copy()
        for k, i in enumerate(idx.tolist()):  # a few upserts per batch at most
            value = given[name][k]
            if value > 0:
                stop = int(last_of[np.searchsorted(last_of, i)]) + 1
                column[i:stop] = value
        out[name] = column.astype(base[name].dtype)
    return out


@dataclass
class Picture:
    """What a recommendation reads of each event (sorted order) or of each ticked row."""

    rows: I64
    as_of: F64
    on_hand: F64
    history: F64  # the demand clock (s) since the SKU's first event
    r_qty: F64
    r_qty2: F64
    orders: dict[str, NDArray[np.generic]]
    attrs: dict[str, NDArray[np.generic]]


def recommend_at(
    state: SkuState, picture: Picture, at: I64, params: ScoringParams
) -> Recommendations:
    """Recommendations as of the events ``at`` (indexes into ``picture``)."""
    tau_r = params.replenish_tau_s
    duration = np.maximum(tau_r * -np.expm1(-picture.history[at] / tau_r), params.min_history_s)
    orders, attrs = picture.orders, picture.attrs
    as_of = picture.as_of[at]
    counted = inbound_terms(
        as_of,
        orders["inbound_qty"][at].astype(np.int64),
        orders["inbound_eta"][at].astype(np.float64),
        params,
    )
    lead_mean, lead_var, source = lead_times(
        attrs["lead_given_s"][at].astype(np.float64),
        orders["lead_n"][at].astype(np.int64),
        orders["lead_mean_s"][at].astype(np.float64),
        orders["lead_m2"][at].astype(np.float64),
        params.default_lead_time_s,
    )
    override = state.cols["service_level"][picture.rows[at]].astype(np.float64)
    return recommend(
        as_of_s=as_of,
        on_hand=picture.on_hand[at],
        inbound_qty=counted.get("inbound_qty", np.zeros(len(at))),
        inbound_due_s=counted.get("inbound_due_s", np.full(len(at), np.nan)),
        rate=picture.r_qty[at] / duration,
        second_moment_rate=picture.r_qty2[at] / duration,
        lead_mean_s=lead_mean,
        lead_var_s2=lead_var,
        lead_source=source,
        service_level=np.where(np.isnan(override), params.service_level, override),
        review_period_s=params.review_period_s,
        moq=attrs["moq"][at].astype(np.int64),
        case_pack=attrs["case_pack"][at].astype(np.int64),
        risk_per_unit=params.risk_per_unit,
        quantile_rule=~np.isnan(override),
    )


ORDER_COLUMNS: Final = (
    "inbound_qty",
    "inbound_eta",
    "inbound_eta_last",
    "inbound_placed",
    "inbound_placed_last",
    "lead_n",
    "lead_mean_s",
    "lead_m2",
)


def open_orders_at_events(
    state: SkuState,
    rows: I64,
    code: NDArray[np.int8],
    qty: I64,
    value: I64,
    row_start: I64,
    ts: F64 | None = None,
) -> dict[str, NDArray[np.generic]]:
    """Open purchase orders as of each event, and the lead times learned from them: each of
    :data:`ORDER_COLUMNS` (units on order, earliest and latest expected time, earliest and
    latest time placed, and the count, mean and squared deviations of observed lead times).

    ``stock.ordered`` adds its units (``value`` is its expected time in ms); a ``stock.received``
    takes its units off, landed orders first, and (with ``ts``) observes a lead time: its time
    minus when the earliest open order was placed. Orders and receipts are a small share of a
    stream, so they are walked one by one; every other event carries its row's last figures."""
    base = {name: state.cols[name][rows] for name in ORDER_COLUMNS}
    ordered = code == _ORDERED
    base_q = base["inbound_qty"].astype(np.int64)
    if not ordered.any() and not (base_q > 0).any():
        return base
    with_orders = (base_q > 0) | np.isin(rows, rows[ordered])
    idx = np.flatnonzero(with_orders & (ordered | (code == _RECEIVED)))
    if not len(idx):
        return base
    walked: list[tuple[int, float, float, float, float, int, float, float]] = []
    open_orders: dict[int, tuple[int, float, float, float, float, int, float, float]] = {}
    for i in idx.tolist():
        row = int(rows[i])
        current = open_orders.get(row)
        if current is None:
            current = (
                int(base_q[i]),
                float(base["inbound_eta"][i]),
                float(base["inbound_eta_last"][i]),
                float(base["inbound_placed"][i]),
                float(base["inbound_placed_last"][i]),
                int(base["lead_n"][i]),
                float(base["lead_mean_s"][i]),
                float(base["lead_m2"][i]),
            )
        units, first, last, placed, placed_last, n, mean, m2 = current
        at = math.nan if ts is None else float(ts[i])
        if code[i] == _ORDERED:
            eta = float(value[i]) / 1000.0
            units += int(qty[i])
            first = eta if math.isnan(first) else min(first, eta)
            last = eta if math.isnan(last) else max(last, eta)
            placed = at if math.isnan(placed) else min(placed, at)
            placed_last = at if math.isnan(placed_last) else max(placed_last, at)
        else:
            observed = at - placed
            if units > 0 and observed >= 0:  # NaN (no placement time) compares False
                n += 1
                step = observed - mean
                mean += step / n
                m2 += step * (observed - mean)
            units = max(units - int(qty[i]), 0)
            # The earliest order has landed: what is left is expected by the latest time.
            if units == 0:
                first = last = placed = placed_last = math.nan
            else:
                first, placed = last, placed_last
        current = (units, first, last, placed, placed_last, n, mean, m2)
        open_orders[row] = current
        walked.append(current)
    # Every event takes the figures of its row's last order or receipt at or before it.
    pos = np.full(len(rows), -1, dtype=np.int64)
    pos[idx] = np.arange(len(idx))
    seen = np.maximum.accumulate(pos)
    last_move = np.maximum(seen, 0)
    own = (seen >= 0) & (idx[last_move] >= row_start)
    out: dict[str, NDArray[np.generic]] = {}
    for k, name in enumerate(ORDER_COLUMNS):
        at_move = np.array([w[k] for w in walked], dtype=base[name].dtype)
        out[name] = np.where(own, at_move[last_move], base[name])
    return out


def inbound_terms(
    as_of: F64, inbound_qty: I64, inbound_eta: F64, params: ScoringParams
) -> dict[str, F64]:
    """:func:`score`'s inbound arguments: the units that still count and when they land
    (an order overdue by more than ``inbound_grace_s`` no longer counts); none when no order
    counts, so a stream without purchase orders pays nothing for them."""
    due = inbound_eta - as_of
    counted = params.inbound & ~np.isnan(due) & (due >= -params.inbound_grace_s)
    if not counted.any():
        return {}
    due = np.where(counted, np.maximum(due, 0.0), np.nan)
    return {
        "inbound_qty": np.where(counted, inbound_qty, 0).astype(np.float64),
        "inbound_due_s": due,
        "due_exposure": exposure(as_of, due, params.week_profile),
    }


def raise_alerts(
    state: SkuState,
    rows: I64,
    as_of: F64,
    probability: F64,
    known: NDArray[np.bool_],
    params: ScoringParams,
) -> I64:
    """Events (indexes into the sorted batch) that raise an alert: probability at or over the
    SKU's threshold, and no alert for that SKU in the dedup window before (event time)."""
    override = state.cols["threshold"][rows].astype(np.float64)
    threshold = np.where(np.isnan(override), params.default_threshold, override)
    candidates = np.flatnonzero(known & (probability >= threshold))
    if not len(candidates):
        return np.empty(0, dtype=np.int64)
    last_alert = state.cols["last_alert"]
    window = params.dedup_window_s
    chosen: list[int] = []
    cand_rows = rows[candidates]
    bounds = np.flatnonzero(np.r_[True, cand_rows[1:] != cand_rows[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        row = int(cand_rows[lo])
        times = as_of[candidates[lo:hi]]
        last = float(last_alert[row])
        i = 0 if np.isnan(last) else int(np.searchsorted(times, last + window, "left"))
        while i < len(times):
            chosen.append(int(candidates[lo + i]))
            last = float(times[i])
            # max(): with a zero window every candidate alerts, and the search must still move on.
            i = max(i + 1, int(np.searchsorted(times, last + window, "left")))
        last_alert[row] = last
    return np.array(chosen, dtype=np.int64)
