"""Stock-out predictors compared on the same event stream.

A predictor is fed the simulated envelopes in event-time order (in chunks) and records every
probability it would show a user, as ``(sku, time, probability)`` points. Alerts at any threshold
are derived from those points with the live system's rule (``metrics.alerts_from_series``), so
the comparison cannot drift from what the product does.

* :class:`AuroraAnalytic` runs the shards' own code: ``parse_ndjson`` (the API's validation),
  ``EventBatch.from_events`` and ``apply_batch``, scoring every event.
* :class:`NightlyBatch` is what competitors sell: once a day at 00:00 it forecasts demand from a
  28-day moving average of daily sales and scores P(demand over the horizon >= on hand) with a
  Poisson model; the probability then stays as it is until the next night.
* :class:`RateOracle` is a reference, not a product method: the live fold (stock, purchase
  orders, timers exactly as :class:`AuroraAnalytic`), but its demand rate at each scoring time
  is the SKU's *realised* demand around it (:class:`DemandTimeline`), the horizon itself left
  out. It measures the recall a forecaster that knew the future demand level could reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from aurora_ray.demo_stream import to_ndjson
from aurora_ray.domain.calendar import exposure
from aurora_ray.domain.events import ParsedBatch, parse_ndjson
from aurora_ray.domain.features import event_features
from aurora_ray.domain.scoring import score
from aurora_ray.domain.state import (
    BatchOutput,
    EventBatch,
    ScoringParams,
    SkuState,
    apply_batch,
    inbound_terms,
    open_orders_at_events,
)
from aurora_ray.domain.timers import fold_with_timers

__all__ = [
    "METHODS",
    "ORACLE_LABEL",
    "REFERENCE_METHODS",
    "AuroraAnalytic",
    "DemandTimeline",
    "LearnedScorer",
    "NightlyBatch",
    "Predictor",
    "RateOracle",
    "Series",
    "make_predictor",
]

F64 = NDArray[np.float64]
_DAY_S = 86_400.0


@dataclass
class Series:
    """Probability points a predictor showed: parallel arrays (SKU names, epoch s, p)."""

    skus: list[str] = field(default_factory=list)
    times: list[F64] = field(default_factory=list)
    probs: list[F64] = field(default_factory=list)

    def add(self, skus: Sequence[str], times: F64, probs: F64) -> None:
        keep = ~np.isnan(probs)
        if keep.all():
            self.skus.extend(skus)
        else:
            self.skus.extend(s for s, k in zip(skus, keep, strict=True) if k)
        self.times.append(times[keep])
        self.probs.append(probs[keep])

    def arrays(self) -> tuple[NDArray[np.str_], F64, F64]:
        times = np.concatenate(self.times) if self.times else np.empty(0)
        probs = np.concatenate(self.probs) if self.probs else np.empty(0)
        return np.array(self.skus, dtype=np.str_), times, probs


class Predictor(Protocol):
    name: str
    series: Series

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        """Consume envelopes (event-time order); return the points they produced."""
        ...


def _sku_of(key: str) -> str:
    return key.rsplit("@", 1)[0]


class AuroraAnalytic:
    """The live scorer, exactly as a shard runs it."""

    name = "aurora-analytic"

    def __init__(self, tenant_id: str, params: ScoringParams | None = None) -> None:
        self.tenant_id = tenant_id
        self.params = params or ScoringParams()
        self.state = SkuState()
        self.series = Series()
        self.elapsed_s = 0.0

    def _parse(self, events: Sequence[Mapping[str, Any]]) -> ParsedBatch:
        """The envelopes through the API's own validation (the simulator's must all pass)."""
        parsed = parse_ndjson(
            to_ndjson([dict(e) for e in events]),
            tenant_id=self.tenant_id,
            received_ms=int(time.time() * 1000),
            max_errors=10,
        )
        if parsed.errors:
            raise ValueError(f"the simulated stream failed validation: {parsed.errors[:3]}")
        return parsed

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        if not events:
            return [], np.empty(0), np.empty(0)
        began = time.perf_counter()
        parsed = self._parse(events)
        # One partition: the evaluation stream is in event-time order, so its timers fire where
        # each of a topic's partitions would fire them (see aurora_ray.domain.timers).
        outputs = fold_with_timers(self.state, parsed.events, [0] * len(parsed.events), self.params)
        keys = self.state.keys
        skus: list[str] = []
        times: list[F64] = []
        probs: list[F64] = []
        for output in outputs:
            skus.extend(_sku_of(keys[r]) for r in output.event_rows.tolist())
            times.append(output.event_as_of_s)
            probs.append(self._probability(output))
        time_s = np.concatenate(times) if times else np.empty(0)
        probability = np.concatenate(probs) if probs else np.empty(0)
        self.series.add(skus, time_s, probability)
        self.elapsed_s += time.perf_counter() - began
        return skus, time_s, probability

    def _probability(self, output: BatchOutput) -> F64:
        return output.event_probability


class LearnedScorer(AuroraAnalytic):
    """The same fold, with the probability from a model over :func:`event_features`.

    ``model`` maps a feature matrix to probabilities (e.g. a trained XGBoost booster wrapped by
    :func:`aurora_ray.evaluation.learned.train_xgboost`). Rows whose stock is unknown stay NaN.
    """

    name = "xgboost"

    def __init__(
        self,
        tenant_id: str,
        model: Callable[[F64], F64],
        params: ScoringParams | None = None,
    ) -> None:
        super().__init__(tenant_id, params)
        self.model = model

    def _probability(self, output: BatchOutput) -> F64:
        features = event_features(output)
        known = ~np.isnan(output.event_probability)
        probability = np.full(len(features), np.nan)
        if known.any():
            probability[known] = self.model(features[known])
        return probability


class NightlyBatch:
    """Daily 00:00 forecast from a 28-day moving average of daily sales (Poisson demand)."""

    name = "nightly-batch"

    def __init__(
        self,
        tenant_id: str,
        *,
        horizon_s: float = 48 * 3600.0,
        window_days: int = 28,
        inbound: bool = True,
    ):
        self.tenant_id = tenant_id
        self.horizon_s = horizon_s
        self.window_days = window_days
        self.state = SkuState()  # stock is tracked with the same fold; only scoring differs
        self.params = ScoringParams(horizon_s=horizon_s, inbound=inbound)
        self.sales: dict[str, list[tuple[float, int]]] = {}
        self.series = Series()
        self.day: float | None = None  # the last midnight that was scored
        self.elapsed_s = 0.0

    def _nightly(self, midnight: float) -> tuple[list[str], F64, F64]:
        keys = list(self.state.keys)
        known = self.state.col("stock_known").astype(bool)
        on_hand = self.state.col("on_hand").astype(np.float64)
        since = midnight - self.window_days * _DAY_S
        rate_per_s = np.zeros(len(keys))
        for i, key in enumerate(keys):
            history = self.sales.get(key)
            if history:
                while history and history[0][0] < since:
                    history.pop(0)
                rate_per_s[i] = sum(q for _, q in history) / (self.window_days * _DAY_S)
        # Poisson demand (second moment rate = rate), with the open purchase orders the stream
        # told of, as for Aurora: the batch knows what the shop has on order too.
        at = np.full(len(keys), midnight)
        scores = score(
            on_hand=on_hand,
            rate=rate_per_s,
            second_moment_rate=rate_per_s,
            as_of_s=at,
            horizon_s=self.horizon_s,
            **inbound_terms(
                at,
                self.state.col("inbound_qty").astype(np.int64),
                self.state.col("inbound_eta").astype(np.float64),
                self.params,
            ),
        )
        prob = np.where(known, scores.probability, np.nan)
        skus = [_sku_of(k) for k in keys]
        times = np.full(len(keys), midnight)
        self.series.add(skus, times, prob)
        return skus, times, prob

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        began = time.perf_counter()
        out_skus: list[str] = []
        out_t: list[F64] = []
        out_p: list[F64] = []
        chunk: list[Mapping[str, Any]] = []

        def flush() -> None:
            if chunk:
                parsed = parse_ndjson(
                    to_ndjson([dict(e) for e in chunk]),
                    tenant_id=self.tenant_id,
                    received_ms=int(time.time() * 1000),
                )
                apply_batch(self.state, EventBatch.from_events(parsed.events), self.params)
                for e in parsed.events:
                    if e.event_type == "order.created" and e.key:
                        self.sales.setdefault(e.key, []).append((e.ts_ms / 1000.0, e.qty))
                chunk.clear()

        for event in events:
            ts = _epoch(str(event["occurred_at"]))
            midnight = ts - ts % _DAY_S
            if self.day is None:
                self.day = midnight
            while midnight > self.day:
                flush()
                self.day += _DAY_S
                s, t, p = self._nightly(self.day)
                out_skus.extend(s)
                out_t.append(t)
                out_p.append(p)
            chunk.append(event)
        flush()
        self.elapsed_s += time.perf_counter() - began
        if not out_t:
            return [], np.empty(0), np.empty(0)
        return out_skus, np.concatenate(out_t), np.concatenate(out_p)


@dataclass(frozen=True)
class DemandTimeline:
    """Every SKU's realised demand, for window sums in O(log n): each SKU's order lines (time,
    units) sorted on one shifted time axis (block ``b`` of SKU ``b`` holds its lines at
    ``t - start_s + b * span``), with the cumulative units and squared units.

    Only lines in ``[start_s, end_s)`` count: windows are clipped to those edges of the data and
    their length is what remains of them.
    """

    index: dict[str, int]  # SKU -> block
    shifted: F64  # sorted line times on the shifted axis
    cum_qty: F64  # len(shifted) + 1: units of the lines before each position
    cum_qty2: F64  # the same for squared units (the compound-Poisson second moment)
    start_s: float
    end_s: float

    @property
    def span(self) -> float:
        return self.end_s - self.start_s + 1.0

    @classmethod
    def from_lines(
        cls,
        skus: Sequence[str] | NDArray[Any],
        times_s: Sequence[float] | F64,
        qty: Sequence[float] | F64,
        *,
        start_s: float,
        end_s: float,
    ) -> DemandTimeline:
        """Order lines (SKU, epoch seconds, units requested) -> a timeline over
        ``[start_s, end_s)``. Raises ValueError on mismatched lengths, an empty span, or
        negative or non-finite units."""
        names = np.asarray(skus).astype(str)
        t = np.asarray(times_s, dtype=np.float64)
        q = np.asarray(qty, dtype=np.float64)
        if not len(names) == len(t) == len(q):
            raise ValueError(
                f"skus, times_s and qty differ in length: {len(names)}, {len(t)}, {len(q)}"
            )
        if not end_s > start_s:
            raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
        bad = ~np.isfinite(q) | (q < 0) | ~np.isfinite(t)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"line {first}: units must be finite and >= 0 and the time finite "
                f"(sku {names[first]!r}, time {t[first]}, qty {q[first]})"
            )
        keep = (t >= start_s) & (t < end_s)
        index = {str(s): b for b, s in enumerate(np.unique(names))}
        block = np.array([index[s] for s in names[keep].tolist()], dtype=np.float64)
        span = end_s - start_s + 1.0
        shifted = (t[keep] - start_s) + block * span
        order = np.argsort(shifted, kind="stable")
        kept = q[keep][order]
        return cls(
            index=index,
            shifted=shifted[order],
            cum_qty=np.r_[0.0, np.cumsum(kept)],
            cum_qty2=np.r_[0.0, np.cumsum(kept * kept)],
            start_s=float(start_s),
            end_s=float(end_s),
        )

    def _sums(self, block: NDArray[np.int64], a: F64, b: F64) -> tuple[F64, F64, F64]:
        """Units, squared units and length of ``[a, b)`` clipped to the data, per point."""
        lo = np.clip(a, self.start_s, self.end_s)
        hi = np.clip(b, self.start_s, self.end_s)
        length = np.maximum(hi - lo, 0.0)
        base = np.maximum(block, 0) * self.span - self.start_s
        i = np.searchsorted(self.shifted, lo + base, side="left")
        j = np.searchsorted(self.shifted, np.maximum(hi, lo) + base, side="left")
        known = block >= 0
        units = np.where(known, self.cum_qty[j] - self.cum_qty[i], 0.0)
        squares = np.where(known, self.cum_qty2[j] - self.cum_qty2[i], 0.0)
        return units, squares, length

    def window_rates(
        self, skus: Sequence[str], at_s: F64, horizon_s: float, window_s: float
    ) -> tuple[F64, F64]:
        """Per point: (units/s, units²/s) realised over ``[t - W, t) ∪ [t + H, t + H + W)``,
        the horizon ``[t, t + H)`` left out, each part clipped to the data's edges; the sums are
        divided by the length that remains (0 where nothing remains). A SKU without lines has
        rate 0."""
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        t = np.asarray(at_s, dtype=np.float64)
        if len(skus) != len(t):
            raise ValueError(f"skus and at_s differ in length: {len(skus)} != {len(t)}")
        block = np.array([self.index.get(s, -1) for s in skus], dtype=np.int64)
        u1, s1, l1 = self._sums(block, t - window_s, t)
        u2, s2, l2 = self._sums(block, t + horizon_s, t + horizon_s + window_s)
        length = l1 + l2
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(length > 0, (u1 + u2) / length, 0.0)
            second = np.where(length > 0, (s1 + s2) / length, 0.0)
        return rate, second


ORACLE_LABEL = "rate oracle (ceiling, sees the future demand level)"


class RateOracle(AuroraAnalytic):
    """Reference only, never a product method: the live fold (``fold_with_timers`` over the
    same parsed events, so stock on hand, open purchase orders and timer ticks are exactly
    Aurora's), scored with :func:`score`, the same calendar exposure and the same inbound terms,
    but with the demand rate and second moment *realised* around each scoring time ``t``:
    ``[t - W, t) ∪ [t + H, t + H + W)`` (:meth:`DemandTimeline.window_rates`). It knows the
    future level of demand, not the orders inside the horizon: the recall it reaches bounds any
    forecaster of the demand level."""

    name = "rate-oracle"
    label = ORACLE_LABEL

    def __init__(
        self,
        tenant_id: str,
        demand: DemandTimeline,
        params: ScoringParams | None = None,
        *,
        window_s: float = 7 * _DAY_S,
    ) -> None:
        super().__init__(tenant_id, params)
        if window_s <= 0:
            raise ValueError(f"the oracle's window must be > 0 s, got {window_s}")
        self.demand = demand
        self.window_s = window_s
        # Open purchase orders per row, as the fold's state had them after each of its batches.
        self.inbound_state = SkuState()

    def feed(self, events: Sequence[Mapping[str, Any]]) -> tuple[list[str], F64, F64]:
        if not events:
            return [], np.empty(0), np.empty(0)
        began = time.perf_counter()
        parsed = self._parse(events)
        # fold_with_timers cuts this batch into consecutive slices between timer ticks.
        whole = EventBatch.from_events(parsed.events)
        outputs = fold_with_timers(self.state, parsed.events, [0] * len(parsed.events), self.params)
        keys = self.state.keys
        skus: list[str] = []
        times: list[F64] = []
        probs: list[F64] = []
        position = 0
        for output in outputs:
            if not len(output.event_rows):
                continue
            if output.event_rows is output.rows:  # a timer tick: the state as it stood
                qty = self.inbound_state.cols["inbound_qty"][output.event_rows].astype(np.int64)
                eta = self.inbound_state.cols["inbound_eta"][output.event_rows].astype(np.float64)
            else:
                qty, eta = self._inbound_of(whole, position, output)
                position += len(output.event_rows)
            names = [_sku_of(keys[r]) for r in output.event_rows.tolist()]
            skus.extend(names)
            times.append(output.event_as_of_s)
            probs.append(self._oracle_probability(names, output, qty, eta))
        if position != len(whole):
            raise RuntimeError(
                f"the oracle matched {position} of {len(whole)} folded events to the fold's output"
            )
        time_s = np.concatenate(times) if times else np.empty(0)
        probability = np.concatenate(probs) if probs else np.empty(0)
        self.series.add(skus, time_s, probability)
        self.elapsed_s += time.perf_counter() - began
        return skus, time_s, probability

    def _inbound_of(
        self, whole: EventBatch, position: int, output: BatchOutput
    ) -> tuple[NDArray[np.int64], F64]:
        """The open purchase orders as of each event of the fold's batch that starts at
        ``position`` of ``whole``: the fold's own function on the same slice, in the fold's
        order (by row, arrival order within a row)."""
        n = len(output.event_rows)
        rows = self.inbound_state.rows_for(whole.keys[position : position + n])
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        if not np.array_equal(rows, output.event_rows):
            raise RuntimeError("the oracle's view of a batch differs from the fold's (rows)")
        code = whole.type_code[position : position + n][order]
        qty = whole.qty[position : position + n][order]
        value = whole.value[position : position + n][order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        row_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        orders = open_orders_at_events(self.inbound_state, rows, code, qty, value, row_start)
        last = np.r_[rows[1:] != rows[:-1], True]
        cols = self.inbound_state.cols
        for name, column in orders.items():
            cols[name][rows[last]] = column[last]
        return orders["inbound_qty"].astype(np.int64), orders["inbound_eta"].astype(np.float64)

    def rates(self, skus: Sequence[str], output: BatchOutput) -> tuple[F64, F64]:
        """Demand rate and second moment (per second) to score ``output``'s points with."""
        return self.demand.window_rates(
            skus, output.event_as_of_s, self.params.horizon_s, self.window_s
        )

    def _oracle_probability(
        self,
        skus: Sequence[str],
        output: BatchOutput,
        inbound_qty: NDArray[np.int64],
        inbound_eta: F64,
    ) -> F64:
        params = self.params
        as_of = output.event_as_of_s
        rate, second = self.rates(skus, output)
        scores = score(
            on_hand=output.event_on_hand,
            rate=rate,
            second_moment_rate=second,
            as_of_s=as_of,
            horizon_s=params.horizon_s,
            exposure=exposure(as_of, params.horizon_s, params.week_profile),
            **inbound_terms(as_of, inbound_qty, inbound_eta, params),
        )
        # Unknown stock stays unknown, as in the fold.
        return np.where(np.isnan(output.event_probability), np.nan, scores.probability)


def _epoch(stamp: str) -> float:
    """``2011-09-01T08:26:00.000Z`` -> epoch seconds (fast path for the simulator's stamps)."""
    return float(np.datetime64(stamp.rstrip("Z"), "ms").astype(np.int64)) / 1000.0


# Methods a user may pick. REFERENCE_METHODS are run beside the product methods, reported
# apart as what the data allows, never as a product method (nor in the closed loop).
METHODS = ("nightly-batch", "aurora-analytic", "xgboost", "rate-oracle")
REFERENCE_METHODS = ("rate-oracle",)


def make_predictor(
    name: str,
    tenant_id: str,
    params: ScoringParams | None = None,
    *,
    model: Callable[[F64], F64] | None = None,
    demand: DemandTimeline | None = None,
    oracle_window_s: float = 7 * _DAY_S,
) -> Predictor:
    if name == "aurora-analytic":
        return AuroraAnalytic(tenant_id, params)
    if name == "nightly-batch":
        params = params or ScoringParams()
        return NightlyBatch(tenant_id, horizon_s=params.horizon_s, inbound=params.inbound)
    if name == "xgboost":
        if model is None:
            raise ValueError("the xgboost method needs a trained model")
        return LearnedScorer(tenant_id, model, params)
    if name == "rate-oracle":
        if demand is None:
            raise ValueError("the rate-oracle method needs the realised demand (a DemandTimeline)")
        return RateOracle(tenant_id, demand, params, window_s=oracle_window_s)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
