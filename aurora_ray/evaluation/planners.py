"""Who decides what the simulated shop orders: replenishment planners for the closed loop.

From ``test_from`` on the simulated shop stops its own (s, S) review and orders only what a
planner tells it to (``simulate(..., own_policy_until=test_from)``); during the warm-up the
shop's policy runs, so every planner takes over the same shelf. A planner sees the stream only
through :func:`planner_hook`, as a deployed one would: every envelope in event-time order, and
a decision at the first event of each new hour (it acts at most an hour late, on what the
events before showed). The orders it returns are placed at that event's time; the simulator
sends them as ``stock.ordered`` and they land after the SKU's lead time.

* :class:`AuroraPlanner`: Aurora's live recommendations. The stream goes through the shards'
  own fold (``parse_ndjson``, ``fold_with_timers``); each hour it orders ``recommended_qty`` of
  every SKU whose ``order_by`` falls before the next hour.
* :class:`ClassicalNightly`: what a planner would run instead. Once a day after the review
  time, an intermittent-demand forecast per SKU (``statsforecast``: TSB or Croston SBA, batched
  over every SKU) of the daily sales the stream showed, and normal safety stock at the same
  service level (σ: the RMSE of the model's one-step in-sample errors): order up to
  ``f (L + 1 + R) + z σ √(L + 1 + R)`` when the position is at or below
  ``f (L + 1) + z σ √(L + 1)`` (days; the 1 is the day until the next review).
* :class:`PerfectForesight`: the ceiling. It knows every future order line and the lead times,
  and orders just in time: at each decision, enough that every line until the next decision's
  order can land is served, plus one unit (a shelf taken to exactly 0 counts as a stock-out).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special

from aurora_ray.demo_stream import to_ndjson
from aurora_ray.domain.events import parse_ndjson
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.evaluation.simulate import OnEvent, Policy

__all__ = [
    "AuroraPlanner",
    "ClassicalConfig",
    "ClassicalNightly",
    "PerfectForesight",
    "Planner",
    "StreamBook",
    "planner_hook",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_H_MS = 3_600_000
_DAY_MS = 86_400_000
_DAY_S = 86_400.0


def _ms(stamp: str) -> int:
    """``2011-09-01T08:26:00.000Z`` -> epoch milliseconds."""
    return int(np.datetime64(stamp.rstrip("Z"), "ms").astype(np.int64))


class Planner(Protocol):
    name: str

    def observe(self, event: Mapping[str, Any]) -> None:
        """Every envelope, in event-time order (after the decision it may trigger)."""
        ...

    def decide(self, now_ms: int) -> dict[str, int]:
        """Purchase orders to place now, ``{sku: units}``; sees only the events before."""
        ...


def planner_hook(planner: Planner, *, act_from_ms: int) -> OnEvent:
    """The simulator's hook: the planner observes every envelope and decides at the first event
    of each new hour from ``act_from_ms`` on (before it observes that event)."""
    hour: list[int | None] = [None]

    def on_event(event: Mapping[str, Any]) -> dict[str, int] | None:
        now = _ms(str(event["occurred_at"]))
        h = now // _H_MS
        orders = None
        if hour[0] is not None and h != hour[0] and now >= act_from_ms:
            orders = planner.decide(now)
        hour[0] = h
        planner.observe(event)
        return orders

    return on_event


class StreamBook:
    """On hand, on order and the promised lead time per SKU, as the stream tells them (what a
    shop's ERP knows), and the units sold per SKU and day since the first event."""

    def __init__(self, skus: Sequence[str]) -> None:
        self.skus = list(skus)
        self.index = {s: i for i, s in enumerate(self.skus)}
        n = len(self.skus)
        self.on_hand = np.zeros(n)
        self.on_order = np.zeros(n)
        self.lead_s = np.full(n, np.nan)  # expected_at - occurred_at of the latest stock.ordered
        self.first_day: int | None = None  # UTC day index of the first event
        self._sold: list[F64] = []  # per day: units sold per SKU

    def position(self) -> F64:
        return self.on_hand + self.on_order

    def sold(self, first_day: int, last_day: int) -> F64:
        """Units sold per SKU (rows) and day (columns) over ``[first_day, last_day)``."""
        base = self.first_day if self.first_day is not None else first_day
        out = np.zeros((len(self.skus), max(last_day - first_day, 0)))
        for d in range(max(first_day, base), last_day):
            k = d - base
            if 0 <= k < len(self._sold):
                out[:, d - first_day] = self._sold[k]
        return out

    def observe(self, event: Mapping[str, Any]) -> None:
        payload = event["payload"]
        i = self.index.get(str(payload.get("sku")))
        if i is None:
            return
        kind = event["event_type"]
        if kind == "order.created":
            qty = int(payload["qty"])
            self.on_hand[i] -= qty
            day = _ms(str(event["occurred_at"])) // _DAY_MS
            if self.first_day is None:
                self.first_day = day
            while len(self._sold) <= day - self.first_day:
                self._sold.append(np.zeros(len(self.skus)))
            self._sold[day - self.first_day][i] += qty
        elif kind == "sku.upserted":
            if payload.get("initial_stock") is not None:
                self.on_hand[i] = float(payload["initial_stock"])
            if self.first_day is None:
                self.first_day = _ms(str(event["occurred_at"])) // _DAY_MS
        elif kind == "stock.snapshot":
            self.on_hand[i] = float(payload["on_hand"])
        elif kind == "stock.received":
            qty = int(payload["qty"])
            self.on_hand[i] += qty
            self.on_order[i] = max(self.on_order[i] - qty, 0.0)
        elif kind == "stock.ordered":
            self.on_order[i] += int(payload["qty"])
            if payload.get("expected_at"):
                placed = _ms(str(event["occurred_at"]))
                self.lead_s[i] = (_ms(str(payload["expected_at"])) - placed) / 1000.0


class AuroraPlanner:
    """Aurora's live recommendations, followed: each hour, order ``recommended_qty`` of every
    SKU whose ``order_by`` is before the next hour.

    The envelopes of each hour go through the API's validation and the shards' own fold
    (``fold_with_timers``, one partition as in :class:`~aurora_ray.evaluation.methods.
    AuroraAnalytic`). Each SKU keeps the recommendation of its latest event or timer tick (the
    daily timers re-score every SKU); between them ``order_by`` already allows for the
    expected sales, so a SKU without events still falls due."""

    name = "aurora"

    def __init__(
        self, tenant_id: str, params: ScoringParams, *, lookahead_s: float = 3600.0
    ) -> None:
        if not params.recommendations:
            raise ValueError("the aurora planner needs ScoringParams(recommendations=True)")
        self.tenant_id = tenant_id
        self.params = params
        self.lookahead_s = lookahead_s
        self.state = SkuState()
        self.order_by = np.full(1024, np.nan)
        self.qty = np.zeros(1024, dtype=np.int64)
        self.buffer: list[Mapping[str, Any]] = []
        self.elapsed_s = 0.0

    def observe(self, event: Mapping[str, Any]) -> None:
        self.buffer.append(event)

    def _feed(self) -> None:
        if not self.buffer:
            return
        parsed = parse_ndjson(
            to_ndjson([dict(e) for e in self.buffer]),
            tenant_id=self.tenant_id,
            received_ms=int(time.time() * 1000),
            max_errors=10,
        )
        if parsed.errors:
            raise ValueError(f"the simulated stream failed validation: {parsed.errors[:3]}")
        self.buffer.clear()
        outputs = fold_with_timers(self.state, parsed.events, [0] * len(parsed.events), self.params)
        n = len(self.state)
        if n > len(self.order_by):
            grow = max(n, 2 * len(self.order_by)) - len(self.order_by)
            self.order_by = np.r_[self.order_by, np.full(grow, np.nan)]
            self.qty = np.r_[self.qty, np.zeros(grow, dtype=np.int64)]
        for output in outputs:
            rec = output.recommendations
            if rec is None or not len(output.rows):
                continue
            self.order_by[output.rows] = rec.order_by_s
            self.qty[output.rows] = rec.recommended_qty

    def decide(self, now_ms: int) -> dict[str, int]:
        began = time.perf_counter()
        self._feed()
        n = len(self.state)
        known = self.state.col("stock_known").astype(bool)
        with np.errstate(invalid="ignore"):
            due = known & (self.order_by[:n] <= now_ms / 1000.0 + self.lookahead_s)
        due &= self.qty[:n] > 0
        keys = self.state.keys
        orders = {keys[r].rsplit("@", 1)[0]: int(self.qty[r]) for r in np.flatnonzero(due)}
        self.elapsed_s += time.perf_counter() - began
        return orders


@dataclass(frozen=True)
class ClassicalConfig:
    """The nightly classical policy's parameters, chosen on the validation split like Aurora's
    (docs/evaluation.md, "Replenishment"): TSB with a fast demand probability (0.9: whether
    the SKU sold on the last days weighs most), a 91-day window, a 3-day review period."""

    model: Literal["CrostonSBA", "TSB"] = "TSB"
    window_days: int = 91  # the forecast's trailing window of daily sales
    review_period_days: float = 3.0  # R: how long an order must last after it lands
    # sigma: "residuals" = RMSE of the model's one-step in-sample errors; "daily" = the standard
    # deviation of daily sales over the window.
    sigma: Literal["residuals", "daily"] = "residuals"
    tsb_alpha_d: float = 0.1  # TSB's smoothing of the demand size
    tsb_alpha_p: float = 0.9  # and of the probability of a demand in a day
    review_hour: int = 5  # plans once a day at the first decision at or after this hour (UTC)
    default_lead_days: float = 7.0  # for a SKU whose lead time the stream never showed

    def __post_init__(self) -> None:
        if self.model not in ("CrostonSBA", "TSB"):
            raise ValueError(f"unknown model {self.model!r}: CrostonSBA or TSB")
        if self.sigma not in ("residuals", "daily"):
            raise ValueError(f"unknown sigma {self.sigma!r}: residuals or daily")
        if self.window_days < 7:
            raise ValueError("window_days must be >= 7")
        if self.review_period_days < 0:
            raise ValueError("review_period_days must be >= 0")
        if not 0 <= self.review_hour < 24:
            raise ValueError("review_hour must be in 0..23")


def _normal_quantile(level: float) -> float:
    return float(special.ndtri(level))


class ClassicalNightly:
    """A nightly (s, S) plan from an intermittent-demand forecast and normal safety stock."""

    name = "classical-nightly"

    def __init__(
        self, skus: Sequence[str], service_level: float, config: ClassicalConfig | None = None
    ) -> None:
        if not 0.0 < service_level < 1.0:
            raise ValueError(f"service_level must be in (0, 1), got {service_level}")
        self.config = config or ClassicalConfig()
        self.book = StreamBook(skus)
        self.z = _normal_quantile(service_level)
        self.last_day: int | None = None
        self.fit_s = 0.0  # time spent in the forecasts
        self.nights = 0
        self.elapsed_s = 0.0

    def observe(self, event: Mapping[str, Any]) -> None:
        self.book.observe(event)

    def forecast(self, sales: F64) -> tuple[F64, F64]:
        """Per SKU (rows of ``sales``, daily units): the forecast units/day and sigma/day."""
        from statsforecast import StatsForecast
        from statsforecast.models import TSB, CrostonSBA

        cfg = self.config
        n, w = sales.shape
        model = (
            TSB(alpha_d=cfg.tsb_alpha_d, alpha_p=cfg.tsb_alpha_p)
            if cfg.model == "TSB"
            else CrostonSBA()
        )
        frame = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n), w),
                "ds": np.tile(np.arange(w), n),
                "y": sales.ravel(),
            }
        )
        began = time.perf_counter()
        sf = StatsForecast(models=[model], freq=1)
        fitted = cfg.sigma == "residuals"
        out = sf.forecast(df=frame, h=1, fitted=fitted)
        level = np.nan_to_num(
            out.sort_values("unique_id")[model.alias].to_numpy(np.float64), nan=0.0
        )
        if fitted:
            values = sf.forecast_fitted_values()  # type: ignore[no-untyped-call]
            values = values.sort_values(["unique_id", "ds"])
            error = (values["y"] - values[model.alias]).to_numpy(np.float64).reshape(n, w)
            with np.errstate(invalid="ignore"):
                sigma = np.sqrt(np.nanmean(error * error, axis=1))
        else:
            sigma = sales.std(axis=1)
        self.fit_s += time.perf_counter() - began
        return np.maximum(level, 0.0), np.nan_to_num(sigma, nan=0.0)

    def decide(self, now_ms: int) -> dict[str, int]:
        cfg = self.config
        day = now_ms // _DAY_MS
        if (now_ms % _DAY_MS) < cfg.review_hour * _H_MS or day == self.last_day:
            return {}
        began = time.perf_counter()
        self.last_day = day
        first = self.book.first_day
        if first is None or day - first < 7:
            return {}
        sales = self.book.sold(max(first, day - cfg.window_days), day)
        level, sigma = self.forecast(sales)
        self.nights += 1
        lead = np.nan_to_num(self.book.lead_s / _DAY_S, nan=cfg.default_lead_days)
        protect = lead + 1.0  # until the order placed at the next review lands
        cover = protect + cfg.review_period_days
        reorder = level * protect + self.z * sigma * np.sqrt(protect)
        up_to = level * cover + self.z * sigma * np.sqrt(cover)
        position = self.book.position()
        due = (level > 0) & (position <= reorder)
        qty = np.ceil(up_to - position - 1e-9)
        orders = {self.book.skus[i]: int(qty[i]) for i in np.flatnonzero(due & (qty > 0)).tolist()}
        self.elapsed_s += time.perf_counter() - began
        return orders


class PerfectForesight:
    """The ceiling: every future order line (units requested) and every lead time known.

    At each decision (the same hourly decisions as the other planners) it orders, per SKU, what
    the lines from now until the next decision's order could land need beyond the position,
    plus ``buffer_units`` (a sale that takes the shelf to exactly 0 starts a stock-out episode
    in the simulator). The next decision is the first order line or review instant in a later
    hour. What is left are the stock-outs no planner could avoid: those in the first lead time
    after it takes over, when only the shop's stock is there, and lines in an hour without a
    decision before them. It ignores the cost of ordering (it orders nearly every hour)."""

    name = "perfect-foresight"

    def __init__(
        self,
        demand: pd.DataFrame,
        policies: Mapping[str, Policy],
        *,
        start_ms: int,
        end_ms: int,
        review_hour: int = 5,
        buffer_units: int = 1,
    ) -> None:
        self.skus = sorted(policies)
        self.book = StreamBook(self.skus)
        index = {s: i for i, s in enumerate(self.skus)}
        self.lead_ms = np.array(
            [policies[s].lead_time_days * _DAY_MS for s in self.skus], dtype=np.int64
        )
        self.buffer_units = buffer_units
        t = demand["ts"].dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy(np.int64)
        codes = demand["sku"].astype(str).to_numpy()
        keep = np.isin(codes, self.skus) & (t >= start_ms) & (t < end_ms)
        block = np.array([index[s] for s in codes[keep].tolist()], dtype=np.int64)
        self.start_ms, self.end_ms = start_ms, end_ms
        self.span = end_ms - start_ms + 2 * int(self.lead_ms.max(initial=0)) + _DAY_MS
        shifted = (t[keep] - start_ms) + block * self.span
        order = np.argsort(shifted, kind="stable")
        self.shifted = shifted[order]
        self.cum = np.r_[0.0, np.cumsum(demand["qty"].to_numpy(np.float64)[keep][order])]
        # Decision instants: an order line or a daily review, the first of each hour.
        first_day = start_ms - start_ms % _DAY_MS
        reviews = np.arange(first_day + review_hour * _H_MS, end_ms, _DAY_MS, dtype=np.int64)
        moments = np.unique(np.r_[t[keep], reviews[reviews >= start_ms]])
        hours = moments // _H_MS
        firsts = np.r_[True, hours[1:] != hours[:-1]]
        self.decision_ms = moments[firsts]
        self.elapsed_s = 0.0

    def observe(self, event: Mapping[str, Any]) -> None:
        self.book.observe(event)

    def demand_between(self, lo_ms: int, hi_ms: I64) -> F64:
        """Units requested per SKU in ``[lo_ms, hi_ms[i])``."""
        base = np.arange(len(self.skus), dtype=np.int64) * self.span - self.start_ms
        lo = np.searchsorted(self.shifted, lo_ms + base, side="left")
        hi = np.searchsorted(self.shifted, np.maximum(hi_ms, lo_ms) + base, side="left")
        out: F64 = self.cum[hi] - self.cum[lo]
        return out

    def decide(self, now_ms: int) -> dict[str, int]:
        began = time.perf_counter()
        k = np.searchsorted(self.decision_ms, (now_ms // _H_MS + 1) * _H_MS, side="left")
        following = int(self.decision_ms[k]) if k < len(self.decision_ms) else self.end_ms
        # Lines at ``now`` are still to come: the event that triggers a decision is the first
        # of its hour, and the planner has not observed it yet.
        coming = self.demand_between(now_ms, following + self.lead_ms)
        need = coming + np.where(coming > 0, self.buffer_units, 0)
        qty = np.ceil(need - self.book.position() - 1e-9)
        orders = {self.skus[i]: int(qty[i]) for i in np.flatnonzero(qty > 0).tolist()}
        self.elapsed_s += time.perf_counter() - began
        return orders
