"""Replenishment recommendations: what to order, and by when, at a target service level.

Pure and vectorised over SKUs, like the scorer. For a SKU at event time ``t`` with ``on_hand``
units on the shelf and ``inbound`` units already on order, and a lead time ``L`` (mean and
variance, from the sources below), demand over a span ``T`` is compound Poisson: orders arrive
at rate ``m``/s with line sizes whose second moment gives ``v`` (units^2/s), so

    mean(T) = m T          var(T) = v T             (lead time L random: + m^2 Var(L))

Its quantiles come from a gamma distribution with that mean and variance (the continuous twin
of the negative binomial the scorer uses): lumpy demand (few, large lines) has a large ``v``
and so a long upper tail, which is what a shelf must hold against.

* ``reorder_point`` = the ``service_level`` quantile of demand over the lead time: the stock
  position below which an order placed now may land too late;
* ``order_up_to`` = the same quantile over the lead time plus the review period (how long an
  order must last after it lands);
* ``order_by`` = the latest time to order: when the position (on hand + on order), drawn down at
  the expected rate, reaches the reorder point; ``as_of`` when it is there already;
* ``recommended_qty`` = ``order_up_to`` minus the position at ``order_by`` (the position now
  when the order is due, else the reorder point), rounded up to the case pack and at least the
  MOQ; 0 when nothing needs ordering. Stock already on order counts, so following the
  recommendation twice never orders twice: the ``stock.ordered`` of the first order raises the
  position;
* ``risk`` = P(a stock-out before an order placed now could land): demand over the lead time
  reaching on hand plus what is on order;
* ``oos_p10`` / ``oos_p90``: an 80 % interval of the time the shelf runs empty (normal
  approximation of the demand's quantiles in time), NaN without demand.

Lead time sources, in order (``LEAD_*`` codes): given on the SKU (``lead_time_hours`` on
``sku.upserted``), learned from the SKU's own purchase orders (``stock.ordered`` to
``stock.received``, mean and variance), or the tenant's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import special

from aurora_ray.domain.scoring import stockout_probability

__all__ = [
    "LEAD_DEFAULT",
    "LEAD_GIVEN",
    "LEAD_LEARNED",
    "LEAD_SOURCES",
    "Recommendations",
    "demand_quantile",
    "lead_times",
    "marginal_stock",
    "recommend",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

LEAD_GIVEN: Final = 0
LEAD_LEARNED: Final = 1
LEAD_DEFAULT: Final = 2
LEAD_SOURCES: Final[tuple[str, ...]] = ("given", "learned", "default")

_Z_P90: Final = 1.2815515655446004  # standard normal quantile of 0.9
_WH_MIN_SHAPE: Final = 0.5  # below it, demand_quantile inverts the gamma exactly


@dataclass(frozen=True)
class Recommendations:
    """One value per SKU (times in epoch seconds)."""

    risk: F64
    order_by_s: F64  # NaN: no demand seen, nothing to plan
    recommended_qty: I64
    reorder_point: F64
    order_up_to: F64
    lead_time_s: F64
    lead_source: NDArray[np.int8]
    oos_p10_s: F64
    oos_p90_s: F64
    # What the recommendation counted on (for the read model): units on order that still count
    # (an order overdue past the grace does not), and the target service level.
    on_order: F64
    service_level: F64


def demand_quantile(mean: F64, var: F64, level: F64 | float) -> F64:
    """The ``level`` quantile of a demand with this mean and variance (gamma; 0 without demand).

    The variance is at least the mean (Poisson), as the scorer's negative binomial has it."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), mean)
    out = np.zeros_like(mean)
    active = mean > 0
    if not active.any():
        return out
    m, v = mean[active], var[active]
    shape = m * m / v
    scale = v / m
    lv = np.broadcast_to(np.asarray(level, dtype=np.float64), mean.shape)[active]
    # Wilson-Hilferty (the cube root of a gamma is nearly normal): within 2.5 % of the exact
    # quantile for shapes >= 0.5 at the levels used here, and ~50x cheaper than inverting the
    # incomplete gamma, which the very lumpy SKUs (shape < 0.5) still get.
    z = special.ndtri(lv)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.maximum(1.0 - 1.0 / (9.0 * shape) + z * np.sqrt(1.0 / (9.0 * shape)), 0.0)
    quantile = shape * root**3
    lumpy = shape < _WH_MIN_SHAPE
    if lumpy.any():
        quantile[lumpy] = special.gammaincinv(shape[lumpy], lv[lumpy])
    out[active] = scale * quantile
    return out


def lead_times(
    given_s: F64,
    learned_n: I64,
    learned_mean_s: F64,
    learned_m2: F64,
    default_s: float,
) -> tuple[F64, F64, NDArray[np.int8]]:
    """Mean and variance of each SKU's lead time (s, s^2) and the source used.

    ``learned_m2`` is the sum of squared deviations (Welford) of ``learned_n`` observations."""
    given = ~np.isnan(given_s) & (given_s > 0)
    learned = ~given & (learned_n > 0)
    source = np.full(given_s.shape, LEAD_DEFAULT, dtype=np.int8)
    source[learned] = LEAD_LEARNED
    source[given] = LEAD_GIVEN
    mean = np.where(given, given_s, np.where(learned, learned_mean_s, default_s))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(learned & (learned_n > 1), learned_m2 / np.maximum(learned_n - 1, 1), 0.0)
    return mean.astype(np.float64), np.maximum(var, 0.0), source


def _round_order(qty: F64, moq: I64, case_pack: I64) -> I64:
    """Whole units, up to a multiple of the case pack, at least the MOQ (0 stays 0)."""
    units = np.ceil(np.maximum(qty, 0.0) - 1e-9).astype(np.int64)
    pack = np.maximum(case_pack, 1)
    units = -(-units // pack) * pack
    ordering = units > 0
    floor = -(-np.maximum(moq, 0) // pack) * pack  # the MOQ in whole cases
    return np.where(ordering, np.maximum(units, floor), 0)


def _time_to_reach(stock: F64, rate: F64, second_moment_rate: F64, z: float) -> F64:
    """Seconds until demand reaches ``stock`` at the quantile with normal score ``-z``:
    ``m T + z sqrt(v T) = stock`` (``z`` > 0: an early time, < 0: a late one). NaN: no demand."""
    m, v = rate, np.maximum(second_moment_rate, rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = (-z * np.sqrt(v) + np.sqrt(z * z * v + 4.0 * m * np.maximum(stock, 0.0))) / (2 * m)
        out = np.where(m > 0, root * root, np.nan)
    return out


def marginal_stock(mean: F64, var: F64, risk_per_unit: float) -> F64:
    """The stock at which one more unit lowers P(demand > stock) by ``risk_per_unit``: where the
    gamma density of the demand (this mean and variance) falls to that value, right of its mode.

    Holding a unit only while it buys at least this much risk is the Lagrangian optimum of
    "fewest stock-outs for a stock budget" across SKUs (each SKU's cycle counts the same): SKUs
    sold in small lines get a high service level, SKUs sold in large lines a lower one. Where the
    density never reaches the value (a wide demand of shape > 1), the mean."""
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), mean)
    out = np.zeros_like(mean)
    active = mean > 0
    if not active.any():
        return out
    m, v = mean[active], var[active]
    shape, scale = m * m / v, v / m
    # log density: (k - 1) log x - x / theta - log Gamma(k) - k log theta
    const = np.log(risk_per_unit) + special.gammaln(shape) + shape * np.log(scale)
    mode = np.maximum((shape - 1.0) * scale, 0.0)
    x = mode + 2.0 * scale
    for _ in range(40):  # Newton on a concave function right of the mode: monotone steps
        safe = np.maximum(x, 1e-12)
        g = (shape - 1.0) * np.log(safe) - x / scale - const
        slope = (shape - 1.0) / safe - 1.0 / scale
        x = np.maximum(x - g / slope, mode + 1e-9)
    with np.errstate(divide="ignore"):
        peak = (shape - 1.0) * np.log(np.maximum(mode, 1e-12)) - mode / scale - const
    out[active] = np.where((shape > 1.0) & (peak < 0.0), m, x)
    return out


def recommend(
    *,
    as_of_s: F64,
    on_hand: F64,
    inbound_qty: F64,
    inbound_due_s: F64,
    rate: F64,
    second_moment_rate: F64,
    lead_mean_s: F64,
    lead_var_s2: F64,
    lead_source: NDArray[np.int8],
    service_level: F64,
    review_period_s: float,
    moq: I64,
    case_pack: I64,
    risk_per_unit: float | None = None,
    quantile_rule: NDArray[np.bool_] | None = None,
) -> Recommendations:
    """Recommendations for SKUs whose stock is known (see the module's docstring).

    ``rate``/``second_moment_rate`` are units/s and units^2/s; ``inbound_due_s`` is when the
    open orders land, in seconds after ``as_of_s`` (NaN: no order on its way)."""
    on_hand = np.asarray(on_hand, dtype=np.float64)
    inbound = np.nan_to_num(np.asarray(inbound_qty, dtype=np.float64))
    m = np.nan_to_num(np.asarray(rate, dtype=np.float64))
    v = np.maximum(np.nan_to_num(np.asarray(second_moment_rate, dtype=np.float64)), m)
    position = on_hand + inbound
    # Demand over the lead time, and over the lead time plus the review period.
    lead_mean = m * lead_mean_s
    lead_var = v * lead_mean_s + m * m * lead_var_s2
    cover_s = lead_mean_s + review_period_s
    reorder_point = demand_quantile(lead_mean, lead_var, service_level)
    order_up_to = np.maximum(
        demand_quantile(m * cover_s, v * cover_s + m * m * lead_var_s2, service_level),
        reorder_point,
    )
    if risk_per_unit is not None:
        # The marginal rule (marginal_stock), except for SKUs the caller keeps on the quantile
        # rule (a per-SKU service level); an order then covers the review period at the rate.
        marginal = marginal_stock(lead_mean, lead_var, risk_per_unit)
        keep = np.zeros(len(m), bool) if quantile_rule is None else quantile_rule
        reorder_point = np.where(keep, reorder_point, marginal)
        order_up_to = np.where(keep, order_up_to, marginal + m * review_period_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(m > 0, np.maximum(position - reorder_point, 0.0) / m, np.nan)
    order_by = as_of_s + wait
    due = position <= reorder_point
    short = order_up_to - np.where(due, position, reorder_point)
    qty = _round_order(np.where(m > 0, short, 0.0), moq, case_pack)
    # Risk: demand over the lead time reaches on hand plus what lands within it.
    lands = np.nan_to_num(np.asarray(inbound_due_s, dtype=np.float64), nan=np.inf) <= lead_mean_s
    risk = stockout_probability(on_hand + np.where(lands, inbound, 0.0), lead_mean, lead_var)
    # When the shelf runs empty: on hand alone, or with the inbound if it lands before then.
    early = _time_to_reach(on_hand, m, v, _Z_P90)
    late = _time_to_reach(on_hand, m, v, -_Z_P90)
    due_s = np.nan_to_num(np.asarray(inbound_due_s, dtype=np.float64), nan=np.inf)
    early = np.where(early > due_s, _time_to_reach(position, m, v, _Z_P90), early)
    late = np.where(late > due_s, _time_to_reach(position, m, v, -_Z_P90), late)
    return Recommendations(
        risk=risk,
        order_by_s=order_by,
        recommended_qty=qty,
        reorder_point=reorder_point,
        order_up_to=order_up_to,
        lead_time_s=np.asarray(lead_mean_s, dtype=np.float64),
        lead_source=lead_source,
        oos_p10_s=np.where(on_hand > 0, as_of_s + early, as_of_s),
        oos_p90_s=np.where(on_hand > 0, as_of_s + late, as_of_s),
        on_order=inbound,
        service_level=np.broadcast_to(np.asarray(service_level, dtype=np.float64), m.shape),
    )
