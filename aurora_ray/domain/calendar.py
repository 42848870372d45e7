"""The demand calendar: how a tenant's demand is spread over the hours of the week.

Shops do not sell evenly around the clock. The rates in :mod:`aurora_ray.domain.state` are
averages over wall-clock time, so "48 hours of demand" depends on *which* 48 hours: from a
Friday evening over a closed Saturday it is a fraction of the average, from a Tuesday morning
more. A calendar is 168 shares (Monday 00:00-01:00 UTC first) that sum to one; the *exposure* of
a window is the demand it holds relative to a window of the same length on a flat week, so that

    expected demand over (t, t + H] = rate * H * exposure(t, H)

A calendar is fitted per tenant from its own orders (:func:`fit_week_profile`) and stored with
its settings; without one the week is flat (exposure 1), which is the scorer of before.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["WEEK_HOURS", "exposure", "fit_week_profile", "validate_week_profile"]

WEEK_HOURS: Final = 168
_HOUR_S: Final = 3600.0
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday; Monday = 0
# Share of a fitted calendar spread evenly: an hour never seen to sell is unlikely, not
# impossible (a one-off Saturday opening must not meet a certainty of zero demand).
_UNIFORM_MIX: Final = 0.02

F64 = NDArray[np.float64]


def hour_of_week(ts_s: ArrayLike) -> F64:
    """Fractional hours since Monday 00:00 UTC, in [0, 168)."""
    t = np.asarray(ts_s, dtype=np.float64)
    return ((t / 86_400.0 + _EPOCH_WEEKDAY) % 7.0) * 24.0


def fit_week_profile(ts_s: ArrayLike, units: ArrayLike) -> tuple[float, ...]:
    """Units sold per hour of the week, as 168 shares (with a small even floor)."""
    t = np.asarray(ts_s, dtype=np.float64)
    q = np.asarray(units, dtype=np.float64)
    if t.shape != q.shape:
        raise ValueError(f"ts_s and units differ in length: {t.shape} != {q.shape}")
    weights = np.where(np.isfinite(q) & (q > 0), q, 0.0)
    bins = np.floor(hour_of_week(t)).astype(np.int64) % WEEK_HOURS
    counts = np.bincount(bins, weights=weights, minlength=WEEK_HOURS)
    total = counts.sum()
    if total <= 0:
        return tuple([1.0 / WEEK_HOURS] * WEEK_HOURS)
    shares = (1.0 - _UNIFORM_MIX) * counts / total + _UNIFORM_MIX / WEEK_HOURS
    return tuple(float(s) for s in shares)


def validate_week_profile(profile: ArrayLike) -> tuple[float, ...]:
    """168 non-negative finite shares summing to 1 (normalised here), or ValueError."""
    values = np.asarray(profile, dtype=np.float64)
    if values.shape != (WEEK_HOURS,):
        raise ValueError(f"a week profile has {WEEK_HOURS} hourly shares, got {values.size}")
    if not np.all(np.isfinite(values)) or (values < 0).any() or values.sum() <= 0:
        raise ValueError("a week profile's shares must be finite, non-negative and not all zero")
    return tuple(float(v) for v in values / values.sum())


def exposure(
    as_of_s: ArrayLike, horizon_s: float | ArrayLike, profile: tuple[float, ...] | None
) -> F64:
    """Demand in (t, t + horizon] relative to the same span of a flat week (1 without profile,
    or where the span is not positive). ``horizon_s`` is one span or one per time."""
    t = np.asarray(as_of_s, dtype=np.float64)
    spans = np.asarray(horizon_s, dtype=np.float64)
    if profile is None or not (spans > 0).any():
        return np.ones(np.broadcast(t, spans).shape)
    shares = np.asarray(profile, dtype=np.float64)
    # Cumulative demand share over time, as a piecewise-linear function of hours since a Monday.
    cum = np.concatenate([[0.0], np.cumsum(shares)])

    def through(hours: F64) -> F64:
        weeks = np.floor(hours / WEEK_HOURS)
        within = hours - weeks * WEEK_HOURS
        knots = np.arange(WEEK_HOURS + 1, dtype=np.float64)
        return np.asarray(weeks + np.interp(within, knots, cum), dtype=np.float64)

    start = hour_of_week(t)
    span_h = np.maximum(spans, 1e-9) / _HOUR_S
    share = through(start + span_h) - through(start)
    out: F64 = np.where(np.isnan(t) | ~(spans > 0), 1.0, share / (span_h / WEEK_HOURS))
    return out
