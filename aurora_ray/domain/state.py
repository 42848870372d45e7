"""Columnar per-SKU state and the fold that applies a micro-batch of events to it.

``apply_batch(state, batch, params) -> BatchOutput`` is the whole of stream processing: it moves
stock, updates demand rates, scores the SKUs the batch touched and decides which alerts to raise.
Everything is driven by event time (``ts``), never the wall clock, so replaying the same events
gives the same state; the result of a batch does not depend on where batch boundaries fall, except
that scores and alerts are taken at the end of each batch.

Demand rates are exponentially decayed sums in event time, bias-corrected for short histories:
``rate = S / D`` with ``S = sum(q_i * exp(-(t - t_i) / tau))`` and
``D = tau * (1 - exp(-(t - t_first) / tau))``, the decayed length of the observed history.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.scoring import score

__all__ = ["BatchOutput", "EventBatch", "ScoringParams", "SkuState", "apply_batch", "TYPE_CODES"]

TYPE_CODES: Final[dict[str, int]] = {
    EventType.ORDER_CREATED: 1,
    EventType.ORDER_CANCELLED: 2,
    EventType.STOCK_RECEIVED: 3,
    EventType.STOCK_ADJUSTED: 4,
    EventType.STOCK_SNAPSHOT: 5,
    EventType.SKU_UPSERTED: 6,
}
_CREATED, _CANCELLED, _RECEIVED, _ADJUSTED, _SNAPSHOT, _UPSERTED = range(1, 7)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class ScoringParams:
    horizon_s: float = 48 * 3600.0
    half_life_s: float = 72 * 3600.0
    dedup_window_s: float = 24 * 3600.0
    min_history_s: float = 6 * 3600.0  # floor of D: a few early sales do not look like a rush
    default_threshold: float = 0.7

    @property
    def tau_s(self) -> float:
        return self.half_life_s / float(np.log(2.0))


_COLUMNS: Final[dict[str, tuple[type, float]]] = {
    # name: (dtype, initial value)
    "on_hand": (np.int64, 0),
    "stock_known": (np.bool_, False),
    "s_qty": (np.float64, 0.0),  # decayed sum of units sold
    "s_qty2": (np.float64, 0.0),  # decayed sum of squared order sizes
    "t_ref": (np.float64, np.nan),  # event time the decayed sums refer to
    "t_first": (np.float64, np.nan),  # first event time seen
    "t_last": (np.float64, np.nan),  # latest event time seen
    "last_alert": (np.float64, np.nan),  # event time of the last alert raised
    "threshold": (np.float64, np.nan),  # per-SKU override; NaN means the tenant default
    "probability": (np.float64, np.nan),  # latest score
}


class SkuState:
    """SKU state in numpy columns, one row per ``sku@warehouse`` key."""

    def __init__(self, capacity: int = 1024) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
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
        for i, key in enumerate(keys):
            row = index.get(key)
            if row is None:
                row = len(self.keys)
                index[key] = row
                self.keys.append(key)
            rows[i] = row
        self._ensure_capacity(len(self.keys))
        return rows

    def _ensure_capacity(self, n: int) -> None:
        capacity = len(self.cols["on_hand"])
        if n <= capacity:
            return
        new_capacity = max(n, capacity * 2)
        for name, (dtype, init) in _COLUMNS.items():
            grown = np.full(new_capacity, init, dtype=dtype)
            grown[:capacity] = self.cols[name]
            self.cols[name] = grown

    def set_thresholds(self, overrides: dict[str, float]) -> None:
        """Per-key threshold overrides (``sku@warehouse`` or bare ``sku``); others use the default."""
        column = self.cols["threshold"]
        column[:] = np.nan
        if not overrides:
            return
        for row, key in enumerate(self.keys):
            value = overrides.get(key)
            if value is None:
                value = overrides.get(key.rsplit("@", 1)[0])
            if value is not None:
                column[row] = value

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {name: self.col(name) for name in _COLUMNS}
        np.savez(buffer, keys=np.array(self.keys, dtype=np.str_), **arrays)  # type: ignore[arg-type]
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
        return state


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

    @classmethod
    def from_events(cls, events: list[StreamEvent]) -> EventBatch:
        scored = [e for e in events if e.event_type in TYPE_CODES and e.key is not None]
        return cls(
            keys=[f"{e.sku}@{e.warehouse}" for e in scored],
            type_code=np.fromiter((TYPE_CODES[e.event_type] for e in scored), np.int8, len(scored)),
            ts_s=np.fromiter((e.ts_ms for e in scored), np.float64, len(scored)) / 1000.0,
            qty=np.fromiter((e.qty for e in scored), np.int64, len(scored)),
            value=np.fromiter((e.value for e in scored), np.int64, len(scored)),
            received_s=np.fromiter((e.received_ms for e in scored), np.float64, len(scored))
            / 1000.0,
            unknown=len(events) - len(scored),
        )

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class BatchOutput:
    rows: I64  # rows touched (scored when their stock is known)
    as_of_s: F64
    probability: F64  # NaN where stock is unknown
    predicted_oos_s: F64
    demand_rate_per_h: F64
    alert_rows: I64 = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def alert_mask(self) -> NDArray[np.bool_]:
        return np.isin(self.rows, self.alert_rows)


def _stock_moves(state: SkuState, batch: EventBatch, rows: I64) -> None:
    """Apply stock changes in batch order: absolute sets, then the deltas that follow them."""
    code, n = batch.type_code, len(batch)
    on_hand = state.cols["on_hand"]
    known = state.cols["stock_known"]
    delta = np.zeros(n, dtype=np.int64)
    delta[code == _CREATED] = -batch.qty[code == _CREATED]
    for c in (_CANCELLED, _RECEIVED):
        delta[code == c] = batch.qty[code == c]
    delta[code == _ADJUSTED] = batch.value[code == _ADJUSTED]

    # An upsert sets stock only for a SKU whose stock is still unknown: it must be the first
    # stock-setting event of its row in the batch, and the row unknown before the batch.
    setting = np.flatnonzero((code == _SNAPSHOT) | (code == _UPSERTED))
    effective = np.zeros(n, dtype=bool)
    effective[setting[code[setting] == _SNAPSHOT]] = True
    if len(setting):
        _, first = np.unique(rows[setting], return_index=True)
        first_pos = setting[first]
        upsert_first = first_pos[(code[first_pos] == _UPSERTED) & ~known[rows[first_pos]]]
        effective[upsert_first] = True
    last_set = np.full(len(state), -1, dtype=np.int64)
    set_pos = np.flatnonzero(effective)
    np.maximum.at(last_set, rows[set_pos], set_pos)

    touched = np.unique(rows)
    has_set = last_set[touched] >= 0
    set_rows = touched[has_set]
    on_hand[set_rows] = batch.value[last_set[set_rows]]
    known[set_rows] = True
    after = np.arange(n) > last_set[rows]
    np.add.at(on_hand, rows[after], delta[after])


def _demand(state: SkuState, batch: EventBatch, rows: I64, tau: float) -> None:
    """Fold sales into the decayed sums, referred to the latest sale time of each row."""
    sales = batch.type_code == _CREATED
    if not sales.any():
        return
    s_rows, s_ts, s_qty = rows[sales], batch.ts_s[sales], batch.qty[sales].astype(np.float64)
    t_ref = state.cols["t_ref"]
    new_ref = t_ref.copy()[: len(state)]
    np.fmax.at(new_ref, s_rows, s_ts)
    touched = np.unique(s_rows)
    old = t_ref[touched]
    decay = np.where(np.isnan(old), 0.0, np.exp(-(new_ref[touched] - np.nan_to_num(old)) / tau))
    for name in ("s_qty", "s_qty2"):
        state.cols[name][touched] *= decay
    weight = np.exp(-(new_ref[s_rows] - s_ts) / tau)
    np.add.at(state.cols["s_qty"], s_rows, s_qty * weight)
    np.add.at(state.cols["s_qty2"], s_rows, s_qty * s_qty * weight)
    t_ref[touched] = new_ref[touched]


def apply_batch(state: SkuState, batch: EventBatch, params: ScoringParams) -> BatchOutput:
    """Apply ``batch`` to ``state`` in place and return the scores and alerts of touched SKUs."""
    rows = state.rows_for(batch.keys)
    if len(batch) == 0:
        empty = np.empty(0, dtype=np.float64)
        return BatchOutput(rows, empty, empty, empty, empty)
    tau = params.tau_s
    _stock_moves(state, batch, rows)
    _demand(state, batch, rows, tau)
    t_first, t_last = state.cols["t_first"], state.cols["t_last"]
    np.fmin.at(t_first, rows, batch.ts_s)
    np.fmax.at(t_last, rows, batch.ts_s)

    touched = np.unique(rows)
    as_of = t_last[touched]
    t_ref = state.cols["t_ref"][touched]
    age = np.where(np.isnan(t_ref), 0.0, as_of - np.nan_to_num(t_ref))
    decay = np.exp(-np.maximum(age, 0.0) / tau)
    history = np.maximum(as_of - t_first[touched], 0.0)
    duration = np.maximum(tau * -np.expm1(-history / tau), params.min_history_s)
    rate = state.cols["s_qty"][touched] * decay / duration
    rate2 = state.cols["s_qty2"][touched] * decay / duration
    on_hand = state.cols["on_hand"][touched].astype(np.float64)
    scores = score(
        on_hand=on_hand,
        rate=rate,
        second_moment_rate=rate2,
        as_of_s=as_of,
        horizon_s=params.horizon_s,
    )
    known = state.cols["stock_known"][touched]
    probability = np.where(known, scores.probability, np.nan)
    state.cols["probability"][touched] = probability

    threshold = state.cols["threshold"][touched]
    threshold = np.where(np.isnan(threshold), params.default_threshold, threshold)
    last_alert = state.cols["last_alert"][touched]
    quiet = np.isnan(last_alert) | (as_of - np.nan_to_num(last_alert) >= params.dedup_window_s)
    alerting = known & (probability >= threshold) & quiet
    alert_rows = touched[alerting]
    state.cols["last_alert"][alert_rows] = as_of[alerting]
    return BatchOutput(
        rows=touched,
        as_of_s=as_of,
        probability=probability,
        predicted_oos_s=np.where(known, scores.predicted_oos_s, np.nan),
        demand_rate_per_h=rate * 3600.0,
        alert_rows=alert_rows,
    )
