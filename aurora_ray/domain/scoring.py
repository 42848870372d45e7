"""The analytic stock-out scorer: no training needed, vectorised over SKUs.

Demand over the horizon H is modelled as a compound Poisson process (orders arrive at rate
lambda, each of size Q) and approximated by a negative binomial with the same mean and variance:

    mean = H * lambda * E[Q]        var = H * lambda * E[Q^2]

so a SKU whose orders vary in size gets a wider distribution than one selling single units. The
probability of a stock-out within H is P(demand >= on_hand); for on_hand <= 0 it is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

__all__ = ["Scores", "stockout_probability", "score"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    probability: FloatArray
    predicted_oos_s: FloatArray  # epoch seconds; NaN when no stock-out is expected
    demand_mean: FloatArray  # expected units over the horizon


def stockout_probability(on_hand: FloatArray, mean: FloatArray, var: FloatArray) -> FloatArray:
    """P(demand >= on_hand) for demand ~ NB(mean, var) (Poisson where var <= mean)."""
    on_hand = np.asarray(on_hand, dtype=np.float64)
    # No estimate (NaN) means no evidence of demand, never certainty of a stock-out.
    mean = np.nan_to_num(np.asarray(mean, dtype=np.float64), nan=0.0)
    var = np.nan_to_num(np.asarray(var, dtype=np.float64), nan=0.0)
    var = np.maximum(var, mean)
    out = np.ones_like(on_hand)
    positive = on_hand > 0
    no_demand = positive & (mean <= 0)
    out[no_demand] = 0.0
    active = positive & (mean > 0)
    over = active & (var > mean * (1 + 1e-9))
    poisson = active & ~over
    if poisson.any():
        # P(X >= k) = regularised lower incomplete gamma P(k, mu) for a Poisson(mu).
        out[poisson] = special.gammainc(on_hand[poisson], mean[poisson])
    if over.any():
        m, v = mean[over], var[over]
        p = m / v  # success probability
        r = m * m / (v - m)
        # P(X >= k) = I_{1-p}(k, r) for X ~ NB(r, p) counting failures.
        out[over] = special.betainc(on_hand[over], r, 1.0 - p)
    return np.clip(out, 0.0, 1.0)


def score(
    *,
    on_hand: FloatArray,
    rate: FloatArray,
    second_moment_rate: FloatArray,
    as_of_s: FloatArray,
    horizon_s: float,
    exposure: FloatArray | None = None,
    inbound_qty: FloatArray | None = None,
    inbound_due_s: FloatArray | None = None,
    due_exposure: FloatArray | None = None,
) -> Scores:
    """Score SKUs from their demand rates (units/s and units^2/s) at event time ``as_of_s``.

    ``exposure`` scales the horizon's demand by the demand calendar (see
    :mod:`aurora_ray.domain.calendar`); ``None`` is a flat week.

    ``inbound_qty`` units on order land ``inbound_due_s`` seconds after ``as_of_s`` (NaN: none
    expected; ``due_exposure`` is the calendar's factor over that span). Inbound landing within
    the horizon splits it in two: the stock runs out before the delivery lands, or demand over
    the whole horizon exceeds the stock plus the delivery. The probability is the larger of the
    two (a lower bound of their union; the two events are strongly correlated)."""
    scale = horizon_s if exposure is None else horizon_s * exposure
    mean = rate * scale
    var = second_moment_rate * scale
    probability = stockout_probability(on_hand, mean, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(rate > 0, np.maximum(on_hand, 0.0) / rate, np.nan)
    if inbound_qty is not None and inbound_due_s is not None:
        due = np.asarray(inbound_due_s, dtype=np.float64)
        lands = (inbound_qty > 0) & (on_hand > 0) & (np.nan_to_num(due, nan=np.inf) <= horizon_s)
        if lands.any():
            d = np.clip(due[lands], 0.0, horizon_s)
            d_scale = d if due_exposure is None else d * due_exposure[lands]
            oh, r, r2 = on_hand[lands], rate[lands], second_moment_rate[lands]
            before = stockout_probability(oh, r * d_scale, r2 * d_scale)
            total = oh + inbound_qty[lands]
            after = stockout_probability(total, mean[lands], var[lands])
            probability[lands] = np.maximum(before, after)
            with np.errstate(divide="ignore", invalid="ignore"):
                late = eta[lands] > d  # the delivery lands first: it pushes the stock-out out
                eta[lands] = np.where(late, np.where(r > 0, total / r, np.nan), eta[lands])
    predicted = as_of_s + eta
    return Scores(probability=probability, predicted_oos_s=predicted, demand_mean=mean)
