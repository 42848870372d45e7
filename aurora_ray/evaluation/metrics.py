"""Metrics for the offline evaluation of Aurora's stock-out probabilities and alerts.

Why these metrics: the live system answers "will this SKU stock out within the horizon H?" with
a probability, and raises an alert when the probability reaches a threshold, at most once per SKU
per dedup window. Offline, against known stock-out episodes, we want to know

* whether alerts are right (:func:`alert_precision`);
* whether stock-outs are caught early enough to act on (:func:`recall_at_lead`);
* whether the probabilities are honest (:func:`brier_score`, :func:`log_loss`,
  :func:`reliability_curve`, :func:`expected_calibration_error`);
* whether the dedup holds (:func:`duplicates_per_10k`);
* which threshold trades precision against recall best (:func:`precision_recall_curve`, built on
  :func:`alerts_from_series`, which dedups exactly like the live system).

Conventions shared by every function:

* Times are epoch seconds (event time), as float64.
* A SKU is any value numpy can sort and compare (``str`` or ``int``); a SKU must be spelled the
  same way in every input (e.g. ``"sku@warehouse"``). Each SKU is evaluated on its own: an alert
  or a sample is only ever matched with episodes of the same SKU.
* A stock-out episode occupies ``[start, end)``: out of stock from ``start`` (inclusive) until
  ``end`` (exclusive; ``inf`` if still out of stock when the data ends). Without end times an
  episode is an instant (``end = start``) and is never *ongoing*.
* "Starts within ``(t, t + H]``" means ``t < start <= t + H``; "ongoing at ``t``" means
  ``start <= t < end``.
* A ratio with an empty denominator (no alerts, no episodes, no samples) is ``NaN``, never 0, so
  that "nothing to measure" is not mistaken for a bad (or perfect) score.

Everything is vectorised with sorting and ``searchsorted`` on exact integer keys (SKU code and
the rank of a time among the distinct times), so boundaries such as "exactly 24 h before" are
decided exactly, and hundreds of thousands of samples are handled in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_DEDUP_S",
    "DEFAULT_HORIZON_S",
    "DEFAULT_LEAD_S",
    "DEFAULT_THRESHOLDS",
    "Alerts",
    "Episodes",
    "PrecisionRecallCurve",
    "PrecisionResult",
    "RecallResult",
    "ReliabilityCurve",
    "Samples",
    "alert_precision",
    "alerts_from_series",
    "brier_score",
    "count_duplicates",
    "duplicates_per_10k",
    "expected_calibration_error",
    "label_samples",
    "log_loss",
    "precision_recall_curve",
    "recall_at_lead",
    "reliability_curve",
]

HOUR_S = 3600.0
DEFAULT_HORIZON_S = 48 * HOUR_S
"""The prediction horizon H: the live system predicts a stock-out within the next 48 h."""
DEFAULT_LEAD_S = 24 * HOUR_S
"""Minimum useful warning: an alert must come at least 24 h before the stock-out to count."""
DEFAULT_DEDUP_S = 24 * HOUR_S
"""The live dedup window: at most one alert per SKU per 24 h."""
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Thresholds swept by :func:`precision_recall_curve`: 0.05, 0.10, ..., 0.95."""

F64 = NDArray[np.float64]
Idx = NDArray[np.intp]
Mask = NDArray[np.bool_]
Side = Literal["left", "right"]


# --------------------------------------------------------------------------- input validation


def _float_1d(name: str, values: ArrayLike) -> F64:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _sku_1d(name: str, values: ArrayLike) -> NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(**arrays: NDArray[Any]) -> None:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")


def _finite(name: str, values: F64) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite")


def _probabilities(name: str, values: F64, *, allow_nan: bool) -> None:
    known = values[~np.isnan(values)] if allow_nan else values
    if not allow_nan and np.any(np.isnan(values)):
        raise ValueError(f"{name} must not contain NaN")
    if np.any((known < 0.0) | (known > 1.0)):
        raise ValueError(f"{name} must be within [0, 1]")


def _binary(name: str, values: ArrayLike) -> F64:
    arr = _float_1d(name, values)
    if np.any((arr != 0.0) & (arr != 1.0)):
        raise ValueError(f"{name} must be 0 or 1")
    return arr


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class Episodes:
    """Ground-truth stock-out episodes, one per element.

    ``sku``: the SKU of each episode. ``start_s``: when it went out of stock (epoch s, finite).
    ``end_s``: when it was back in stock (epoch s, ``>= start_s``, ``inf`` if still out of stock
    when the data ends), or ``None`` when unknown: each episode is then an instant and is never
    *ongoing* (see :attr:`ends`). Array-likes are accepted and converted to 1-D numpy arrays.
    """

    sku: NDArray[Any]
    start_s: F64
    end_s: F64 | None = None

    def __post_init__(self) -> None:
        sku = _sku_1d("sku", self.sku)
        start = _float_1d("start_s", self.start_s)
        _same_length(sku=sku, start_s=start)
        _finite("start_s", start)
        object.__setattr__(self, "sku", sku)
        object.__setattr__(self, "start_s", start)
        if self.end_s is not None:
            end = _float_1d("end_s", self.end_s)
            _same_length(sku=sku, end_s=end)
            if np.any(np.isnan(end)) or np.any(end < start):
                raise ValueError("end_s must be >= start_s (inf if still out of stock), not NaN")
            object.__setattr__(self, "end_s", end)

    @property
    def ends(self) -> F64:
        """End times, ``start_s`` where none were given (zero-length episodes)."""
        return self.start_s if self.end_s is None else self.end_s

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True, eq=False)
class Alerts:
    """Alerts, one per element: ``sku``, ``time_s`` (epoch s, event time at which the alert was
    raised, finite) and ``probability`` (in [0, 1], the score that raised it; NaN allowed when
    unknown — no metric needs it). Array-likes are accepted and converted to 1-D numpy arrays."""

    sku: NDArray[Any]
    time_s: F64
    probability: F64

    def __post_init__(self) -> None:
        sku = _sku_1d("sku", self.sku)
        time = _float_1d("time_s", self.time_s)
        prob = _float_1d("probability", self.probability)
        _same_length(sku=sku, time_s=time, probability=prob)
        _finite("time_s", time)
        _probabilities("probability", prob, allow_nan=True)
        object.__setattr__(self, "sku", sku)
        object.__setattr__(self, "time_s", time)
        object.__setattr__(self, "probability", prob)

    def __len__(self) -> int:
        return len(self.time_s)


@dataclass(frozen=True, eq=False)
class Samples:
    """Probabilities sampled over time (e.g. hourly per SKU) with their outcome labels.

    ``sku``, ``time_s`` (epoch s, finite), ``probability`` (in [0, 1]) and ``label`` (0/1: did
    the predicted event happen? see :func:`label_samples`). This is what the calibration metrics
    consume: ``brier_score(s.probability, s.label)``. Use :meth:`from_episodes` to label samples
    from ground truth.
    """

    sku: NDArray[Any]
    time_s: F64
    probability: F64
    label: NDArray[np.int8]

    def __post_init__(self) -> None:
        sku = _sku_1d("sku", self.sku)
        time = _float_1d("time_s", self.time_s)
        prob = _float_1d("probability", self.probability)
        label = _binary("label", self.label).astype(np.int8)
        _same_length(sku=sku, time_s=time, probability=prob, label=label)
        _finite("time_s", time)
        _probabilities("probability", prob, allow_nan=False)
        object.__setattr__(self, "sku", sku)
        object.__setattr__(self, "time_s", time)
        object.__setattr__(self, "probability", prob)
        object.__setattr__(self, "label", label)

    @classmethod
    def from_episodes(
        cls,
        sku: ArrayLike,
        time_s: ArrayLike,
        probability: ArrayLike,
        episodes: Episodes,
        horizon_s: float = DEFAULT_HORIZON_S,
        *,
        include_ongoing: bool = True,
    ) -> Samples:
        """Samples labelled by :func:`label_samples` (same arguments, same definitions)."""
        labels = label_samples(sku, time_s, episodes, horizon_s, include_ongoing=include_ongoing)
        return cls(
            sku=np.asarray(sku),
            time_s=np.asarray(time_s, dtype=np.float64),
            probability=np.asarray(probability, dtype=np.float64),
            label=labels,
        )

    def __len__(self) -> int:
        return len(self.time_s)


# --------------------------------------------------------------------------- exact per-SKU search


def _encode(*skus: NDArray[Any]) -> list[Idx]:
    """Integer codes for SKUs, consistent across all the given arrays (empty arrays are skipped
    so that an empty float array does not clash with string SKUs)."""
    present = [s for s in skus if len(s)]
    if not present:
        return [np.zeros(0, dtype=np.intp) for _ in skus]
    _, inverse = np.unique(np.concatenate(present), return_inverse=True)
    inverse = inverse.astype(np.intp).reshape(-1)
    out: list[Idx] = []
    offset = 0
    for s in skus:
        out.append(inverse[offset : offset + len(s)])
        offset += len(s)
    return out


class _GroupedTimes:
    """Times grouped by SKU code and sorted by ``(code, time)``, with exact per-SKU search.

    Why ranks: searching on ``code * BIG + time`` would lose sub-second precision at epoch
    magnitudes; replacing each time by its rank among the distinct times keeps the composite keys
    exact integers, so ``searchsorted`` on them is a per-SKU ``searchsorted`` on the times.
    """

    def __init__(self, codes: Idx, times: F64, order: Idx, distinct: F64, stride: int) -> None:
        self.codes = codes  # sorted
        self.times = times  # sorted within each code
        self.order = order  # sorted position -> index in the original arrays
        self.distinct = distinct  # sorted distinct times, a superset of ``times``
        self.stride = stride
        ranks = np.searchsorted(distinct, times, side="left")
        self.keys = codes.astype(np.int64) * stride + ranks

    @classmethod
    def build(cls, codes: Idx, times: F64) -> _GroupedTimes:
        order = np.lexsort((times, codes)).astype(np.intp)
        distinct = np.unique(times)
        return cls(codes[order], times[order], order, distinct, len(distinct) + 1)

    def subset(self, positions: Idx) -> _GroupedTimes:
        """The elements at the given sorted positions (increasing), sharing the ranking."""
        return _GroupedTimes(
            self.codes[positions],
            self.times[positions],
            self.order[positions],
            self.distinct,
            self.stride,
        )

    def __len__(self) -> int:
        return len(self.times)

    def position(self, codes: Idx, times: F64, side: Side) -> Idx:
        """Per query, the sorted position just past the query SKU's elements with time ``<= q``
        (``side="right"``) or ``< q`` (``side="left"``); later SKUs' elements come after it."""
        rank = np.searchsorted(self.distinct, times, side=side)
        return np.searchsorted(self.keys, codes.astype(np.int64) * self.stride + rank, "left")

    def group_start(self, codes: Idx) -> Idx:
        """Per query, the sorted position of the query SKU's first element."""
        return np.searchsorted(self.codes, codes, side="left")


class _EpisodeIndex:
    """Episodes searchable by SKU: "does one start within (lo, hi]?" and "is one ongoing at t?"."""

    def __init__(self, codes: Idx, starts: F64, ends: F64) -> None:
        self.starts = _GroupedTimes.build(codes, starts)
        sorted_ends = ends[self.starts.order]
        self.end_distinct = np.unique(sorted_ends)
        self.end_stride = len(self.end_distinct) + 1
        end_keys = self.starts.codes.astype(np.int64) * self.end_stride + np.searchsorted(
            self.end_distinct, sorted_ends, side="left"
        )
        # Running maximum of the end keys: within a SKU's run it is the latest end among the
        # episodes started so far (earlier SKUs' keys are all smaller, so they never win).
        self.max_end_key = np.maximum.accumulate(end_keys) if len(end_keys) else end_keys

    def starts_within(self, codes: Idx, lo: F64, hi: F64) -> Mask:
        """Whether an episode of the SKU starts within ``(lo, hi]``."""
        after_hi = self.starts.position(codes, hi, "right")
        after_lo = self.starts.position(codes, lo, "right")
        out: Mask = after_hi > after_lo
        return out

    def ongoing(self, codes: Idx, times: F64) -> Mask:
        """Whether an episode of the SKU is ongoing at t: ``start <= t < end``."""
        last = self.starts.position(codes, times, "right") - 1  # latest start <= t
        has = last >= self.starts.group_start(codes)
        out = np.zeros(len(times), dtype=np.bool_)
        if np.any(has):
            # end > t  <=>  rank(end) >= number of distinct ends <= t
            bound = codes[has].astype(np.int64) * self.end_stride + np.searchsorted(
                self.end_distinct, times[has], side="right"
            )
            out[has] = self.max_end_key[last[has]] >= bound
        return out


def _episode_index(codes: Idx, episodes: Episodes) -> _EpisodeIndex:
    return _EpisodeIndex(codes, episodes.start_s, episodes.ends)


# --------------------------------------------------------------------------- labels


def label_samples(
    sample_skus: ArrayLike,
    sample_times: ArrayLike,
    episodes: Episodes,
    horizon_s: float = DEFAULT_HORIZON_S,
    *,
    include_ongoing: bool = True,
) -> NDArray[np.int8]:
    """Outcome labels (0/1, int8) for probabilities sampled at ``(sku, t)``.

    Why: a probability "stock-out within H" is judged against what happened next. Definitions:

    * ``include_ongoing=True`` (default): label 1 iff an episode of the SKU starts within
      ``(t, t + H]`` *or* is ongoing at ``t`` (``start <= t < end``). For episodes of positive
      length this is exactly "the SKU is out of stock at some moment in ``(t, t + H]``" — the
      literal meaning of the live prediction, which also scores SKUs already at zero.
    * ``include_ongoing=False``: label 1 iff an episode of the SKU starts within ``(t, t + H]``
      (a new stock-out is coming); samples taken while already out of stock are labelled 0.

    Without episode end times nothing is ever ongoing, so both definitions coincide.
    """
    skus = _sku_1d("sample_skus", sample_skus)
    times = _float_1d("sample_times", sample_times)
    _same_length(sample_skus=skus, sample_times=times)
    _finite("sample_times", times)
    horizon = _non_negative("horizon_s", horizon_s)
    codes, ep_codes = _encode(skus, episodes.sku)
    index = _episode_index(ep_codes, episodes)
    label = index.starts_within(codes, times, times + horizon)
    if include_ongoing:
        label |= index.ongoing(codes, times)
    return label.astype(np.int8)


# --------------------------------------------------------------------------- alert precision


@dataclass(frozen=True, eq=False)
class PrecisionResult:
    """Outcome of :func:`alert_precision`.

    ``followed``/``ongoing`` are per alert, in the input order. ``n_ongoing`` counts every alert
    raised during an ongoing episode; ``n_ongoing_only`` those of them not also followed by a new
    start, i.e. what ``include_ongoing=True`` adds to the numerator.
    """

    precision: float
    n_alerts: int
    n_followed: int
    n_ongoing: int
    n_ongoing_only: int
    include_ongoing: bool
    followed: Mask
    ongoing: Mask

    @property
    def precision_followed(self) -> float:
        """Share of alerts followed by a start within ``(t, t + H]``."""
        return self.n_followed / self.n_alerts if self.n_alerts else float("nan")

    @property
    def precision_followed_or_ongoing(self) -> float:
        """Share of alerts followed by a start within ``(t, t + H]`` or raised while ongoing."""
        hits = self.n_followed + self.n_ongoing_only
        return hits / self.n_alerts if self.n_alerts else float("nan")


def _precision(
    codes: Idx, times: F64, index: _EpisodeIndex, horizon: float, include_ongoing: bool
) -> PrecisionResult:
    followed = index.starts_within(codes, times, times + horizon)
    ongoing = index.ongoing(codes, times)
    n = len(times)
    n_followed = int(followed.sum())
    n_ongoing_only = int((ongoing & ~followed).sum())
    hits = n_followed + (n_ongoing_only if include_ongoing else 0)
    return PrecisionResult(
        precision=hits / n if n else float("nan"),
        n_alerts=n,
        n_followed=n_followed,
        n_ongoing=int(ongoing.sum()),
        n_ongoing_only=n_ongoing_only,
        include_ongoing=include_ongoing,
        followed=followed,
        ongoing=ongoing,
    )


def alert_precision(
    alerts: Alerts,
    episodes: Episodes,
    horizon_s: float = DEFAULT_HORIZON_S,
    *,
    include_ongoing: bool = False,
) -> PrecisionResult:
    """Share of alerts that were right.

    Definition: an alert of SKU ``k`` raised at ``t`` is *followed* iff an episode of ``k`` starts
    within ``(t, t + H]``. ``precision = #followed / #alerts`` (NaN without alerts). With
    ``include_ongoing=True`` an alert raised while an episode of ``k`` is ongoing at ``t``
    (``start <= t < end``) also counts as right.

    Why the default excludes ongoing: an alert is meant to warn *before* a stock-out; one raised
    when the shelf is already empty tells nobody anything new. Those alerts are still counted
    (``n_ongoing``, ``n_ongoing_only``) so the choice is visible, and both precisions are
    available as properties of the result.
    """
    horizon = _non_negative("horizon_s", horizon_s)
    codes, ep_codes = _encode(alerts.sku, episodes.sku)
    index = _episode_index(ep_codes, episodes)
    return _precision(codes, alerts.time_s, index, horizon, include_ongoing)


# --------------------------------------------------------------------------- recall at lead


@dataclass(frozen=True, eq=False)
class RecallResult:
    """Outcome of :func:`recall_at_lead`.

    ``detected`` is per episode in the input order; ``lead_times_s`` has one lead time per
    detected episode, in the input order (for a histogram); ``median_lead_s`` is their median
    (NaN if none was detected).
    """

    recall: float
    n_episodes: int
    n_detected: int
    detected: Mask
    lead_times_s: F64
    median_lead_s: float
    lead_s: float
    horizon_s: float


def _recall(
    ep_codes: Idx, starts: F64, alerts: _GroupedTimes, lead: float, horizon: float
) -> RecallResult:
    first = alerts.position(ep_codes, starts - horizon, "left")  # first alert >= start - H
    past = alerts.position(ep_codes, starts - lead, "right")  # past the alerts <= start - lead
    detected = past > first
    lead_times = starts[detected] - alerts.times[first[detected]]
    n = len(starts)
    n_detected = int(detected.sum())
    return RecallResult(
        recall=n_detected / n if n else float("nan"),
        n_episodes=n,
        n_detected=n_detected,
        detected=detected,
        lead_times_s=lead_times,
        median_lead_s=float(np.median(lead_times)) if n_detected else float("nan"),
        lead_s=lead,
        horizon_s=horizon,
    )


def _lead_and_horizon(lead_s: float, horizon_s: float) -> tuple[float, float]:
    lead = _non_negative("lead_s", lead_s)
    horizon = _non_negative("horizon_s", horizon_s)
    if lead > horizon:
        raise ValueError(f"lead_s ({lead}) must not exceed horizon_s ({horizon})")
    return lead, horizon


def recall_at_lead(
    alerts: Alerts,
    episodes: Episodes,
    lead_s: float = DEFAULT_LEAD_S,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> RecallResult:
    """Share of stock-outs warned about early enough to act, and how early.

    Definition: an episode of SKU ``k`` starting at ``s`` is *detected* iff an alert of ``k`` was
    raised at a time in ``[s - H, s - lead]`` (both ends inclusive): at least ``lead`` before the
    stock-out, but not more than ``H`` before (an older alert predicted a different window).
    ``recall = #detected / #episodes`` (NaN without episodes). The *lead time* of a detected
    episode is ``s - (earliest alert of k within [s - H, s - lead])``, so ``>= lead``; for
    ``lead > 0`` that alert is also the earliest of ``k`` within ``[s - H, s)``.

    Why: a correct alert 10 minutes before the shelf empties is useless; with the defaults an
    alert must come 24 h to 48 h ahead.
    """
    lead, horizon = _lead_and_horizon(lead_s, horizon_s)
    alert_codes, ep_codes = _encode(alerts.sku, episodes.sku)
    grouped = _GroupedTimes.build(alert_codes, alerts.time_s)
    return _recall(ep_codes, episodes.start_s, grouped, lead, horizon)


# --------------------------------------------------------------------------- calibration


def _p_and_y(p: ArrayLike, y: ArrayLike) -> tuple[F64, F64]:
    probs = _float_1d("p", p)
    labels = _binary("y", y)
    _same_length(p=probs, y=labels)
    _probabilities("p", probs, allow_nan=False)
    return probs, labels


def brier_score(p: ArrayLike, y: ArrayLike) -> float:
    """Mean squared error of the probabilities: ``mean((p_i - y_i) ** 2)``.

    Why: a proper scoring rule (honest probabilities minimise it) that stays bounded in [0, 1], so
    a few confident mistakes cannot dominate it. 0 is perfect; always predicting the base rate
    ``b`` scores ``b (1 - b)``. ``p`` in [0, 1], ``y`` in {0, 1}; NaN for no samples.
    """
    probs, labels = _p_and_y(p, y)
    return float(np.mean((probs - labels) ** 2)) if len(probs) else float("nan")


def log_loss(p: ArrayLike, y: ArrayLike, eps: float = 1e-6) -> float:
    """Mean negative log-likelihood: ``-mean(y log q + (1 - y) log(1 - q))`` (natural log), with
    ``q = clip(p, eps, 1 - eps)``.

    Why: the proper scoring rule that punishes confident mistakes hardest; the clip bounds the
    cost of a single ``p = 0`` or ``p = 1`` mistake at ``-log(eps)`` (13.8 for the default).
    NaN for no samples.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be within (0, 0.5), got {eps}")
    probs, labels = _p_and_y(p, y)
    if not len(probs):
        return float("nan")
    q = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(q) + (1.0 - labels) * np.log1p(-q)))


@dataclass(frozen=True, eq=False)
class ReliabilityCurve:
    """Outcome of :func:`reliability_curve`: ``edges`` (``bins + 1``), then per bin the mean
    predicted probability, the observed frequency of ``y = 1`` (both NaN for an empty bin) and
    the number of samples."""

    edges: F64
    mean_predicted: F64
    observed_frequency: F64
    counts: NDArray[np.int64]


def reliability_curve(p: ArrayLike, y: ArrayLike, bins: int = 10) -> ReliabilityCurve:
    """Predicted against observed frequency in equal-width probability bins.

    Definition: edges ``k / bins`` for ``k = 0..bins``; bin ``k`` holds ``edges[k] <= p <
    edges[k + 1]``, the last bin also ``p = 1``. Per bin: ``mean_predicted = mean(p)``,
    ``observed_frequency = mean(y)``, ``counts = #samples``.

    Why: a calibrated model's points lie on the diagonal — of the SKUs given 0.8, 80 % stock out.
    Alerting at a fixed threshold only means something if that holds near the threshold.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    bins = int(bins)
    probs, labels = _p_and_y(p, y)
    edges = np.arange(bins + 1, dtype=np.float64) / bins  # exact k / bins, so 0.3 is in [0.3, 0.4)
    which = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.int64)
    sum_p = np.bincount(which, weights=probs, minlength=bins)
    sum_y = np.bincount(which, weights=labels, minlength=bins)
    filled = counts > 0
    mean_predicted = np.full(bins, np.nan)
    observed = np.full(bins, np.nan)
    mean_predicted[filled] = sum_p[filled] / counts[filled]
    observed[filled] = sum_y[filled] / counts[filled]
    return ReliabilityCurve(
        edges=edges, mean_predicted=mean_predicted, observed_frequency=observed, counts=counts
    )


def expected_calibration_error(p: ArrayLike, y: ArrayLike, bins: int = 10) -> float:
    """Count-weighted mean gap between predicted and observed frequency over the bins of
    :func:`reliability_curve`: ``sum_k (n_k / N) * |mean_predicted_k - observed_frequency_k|``
    over non-empty bins.

    Why: one number for "how far off the diagonal", in probability units (0.05 = probabilities are
    off by five points on average). 0 for perfect calibration; NaN for no samples.
    """
    curve = reliability_curve(p, y, bins)
    total = int(curve.counts.sum())
    if not total:
        return float("nan")
    filled = curve.counts > 0
    gaps = np.abs(curve.mean_predicted[filled] - curve.observed_frequency[filled])
    return float(np.sum(curve.counts[filled] * gaps) / total)


# --------------------------------------------------------------------------- duplicates


def count_duplicates(alerts: Alerts, window_s: float = DEFAULT_DEDUP_S) -> int:
    """Number of alerts raised within the dedup window of a previous alert of the same SKU.

    Definition: with a SKU's alerts in time order, alert ``i`` is a duplicate iff
    ``t_i < t_{i-1} + window`` (so also at equal times). This mirrors the live rule, which allows
    an alert at ``t`` only when ``t >= t_last + window``.
    """
    window = _non_negative("window_s", window_s)
    (codes,) = _encode(alerts.sku)
    order = np.lexsort((alerts.time_s, codes))
    c = codes[order]
    t = alerts.time_s[order]
    return int(np.sum((c[1:] == c[:-1]) & (t[1:] < t[:-1] + window)))


def duplicates_per_10k(alerts: Alerts, window_s: float = DEFAULT_DEDUP_S) -> float:
    """Duplicate alerts (:func:`count_duplicates`) per 10 000 alerts:
    ``10_000 * #duplicates / #alerts`` (NaN without alerts).

    Why: the live system promises at most one alert per SKU per window; anything above 0 means
    the dedup leaks (e.g. across restarts or shards), in units that compare across data sizes.
    """
    n = len(alerts)
    return 10_000.0 * count_duplicates(alerts, window_s) / n if n else float("nan")


# --------------------------------------------------------------------------- threshold sweep


def _dedup(grouped: _GroupedTimes, dedup: float) -> Idx:
    """Sorted positions (into ``grouped``) of the alerts the live rule raises from candidates:
    per SKU in time order, the first candidate alerts, then the first at or after the last
    alert + ``dedup``, and so on."""
    if not len(grouped):
        return np.zeros(0, dtype=np.intp)
    # For each candidate, the next candidate allowed after it alerts: the same SKU's first at or
    # after t + dedup or, if none, the next SKU's first candidate.
    nxt = grouped.position(grouped.codes, grouped.times + dedup, "left").tolist()
    chosen: list[int] = []
    i, n = 0, len(nxt)
    while i < n:
        chosen.append(i)
        i = max(nxt[i], i + 1)
    return np.asarray(chosen, dtype=np.intp)


def _series(skus: ArrayLike, times: ArrayLike, probs: ArrayLike) -> tuple[NDArray[Any], F64, F64]:
    sku = _sku_1d("skus", skus)
    time = _float_1d("times", times)
    prob = _float_1d("probs", probs)
    _same_length(skus=sku, times=time, probs=prob)
    _finite("times", time)
    _probabilities("probs", prob, allow_nan=True)
    return sku, time, prob


def alerts_from_series(
    skus: ArrayLike,
    times: ArrayLike,
    probs: ArrayLike,
    threshold: float,
    dedup_s: float = DEFAULT_DEDUP_S,
) -> Alerts:
    """The alerts the live system would raise from a probability series (per-event scores or
    hourly samples), sorted by SKU then time.

    Rule (as in the live ``_raise_alerts``): a point alerts iff ``p >= threshold`` and no alert of
    its SKU was raised in ``(t - dedup, t]`` by this rule, i.e. ``t >= t_last + dedup``; points
    of a SKU are taken in time order (ties in input order). NaN probabilities never alert.

    Why: to know what precision and recall a different threshold *would* give, the dedup must be
    replayed too — it removes alerts, and so changes both.
    """
    sku, time, prob = _series(skus, times, probs)
    dedup = _non_negative("dedup_s", dedup_s)
    (codes,) = _encode(sku)
    candidates = np.flatnonzero(prob >= float(threshold))
    grouped = _GroupedTimes.build(codes[candidates], time[candidates])
    picked = candidates[grouped.order[_dedup(grouped, dedup)]]
    return Alerts(sku=sku[picked], time_s=time[picked], probability=prob[picked])


@dataclass(frozen=True, eq=False)
class PrecisionRecallCurve:
    """Outcome of :func:`precision_recall_curve`, one entry per threshold: ``precision`` (as in
    :func:`alert_precision`), ``recall`` and ``median_lead_s`` (as in :func:`recall_at_lead`),
    ``n_alerts`` and ``n_detected``; ``n_episodes`` is the same for all thresholds."""

    thresholds: F64
    precision: F64
    recall: F64
    median_lead_s: F64
    n_alerts: NDArray[np.int64]
    n_detected: NDArray[np.int64]
    n_episodes: int


def precision_recall_curve(
    skus: ArrayLike,
    times: ArrayLike,
    probs: ArrayLike,
    episodes: Episodes,
    thresholds: ArrayLike = DEFAULT_THRESHOLDS,
    *,
    horizon_s: float = DEFAULT_HORIZON_S,
    lead_s: float = DEFAULT_LEAD_S,
    dedup_s: float = DEFAULT_DEDUP_S,
    include_ongoing: bool = False,
) -> PrecisionRecallCurve:
    """Precision and recall@lead one would get by alerting at each threshold.

    Definition: for each threshold ``th``, ``A = alerts_from_series(skus, times, probs, th,
    dedup_s)``; then ``precision = alert_precision(A, episodes, horizon_s, include_ongoing)`` and
    ``recall = recall_at_lead(A, episodes, lead_s, horizon_s)``. Identical to calling those
    functions per threshold, but the series is sorted and indexed once.

    Why: picks the operating threshold (0.7 vs 0.9) on evidence. Neither curve is guaranteed
    monotone in the threshold: with dedup, a lower threshold can fire earlier (outside the
    qualifying window) and then stay silent through it.
    """
    sku, time, prob = _series(skus, times, probs)
    lead, horizon = _lead_and_horizon(lead_s, horizon_s)
    dedup = _non_negative("dedup_s", dedup_s)
    ths = _float_1d("thresholds", thresholds)
    codes, ep_codes = _encode(sku, episodes.sku)
    index = _episode_index(ep_codes, episodes)
    series = _GroupedTimes.build(codes, time)
    sorted_prob = prob[series.order]
    k = len(ths)
    precision = np.full(k, np.nan)
    recall = np.full(k, np.nan)
    median_lead = np.full(k, np.nan)
    n_alerts = np.zeros(k, dtype=np.int64)
    n_detected = np.zeros(k, dtype=np.int64)
    for j, th in enumerate(ths.tolist()):
        candidates = series.subset(np.flatnonzero(sorted_prob >= th))
        alerts = candidates.subset(_dedup(candidates, dedup))
        prec = _precision(alerts.codes, alerts.times, index, horizon, include_ongoing)
        rec = _recall(ep_codes, episodes.start_s, alerts, lead, horizon)
        precision[j] = prec.precision
        recall[j] = rec.recall
        median_lead[j] = rec.median_lead_s
        n_alerts[j] = prec.n_alerts
        n_detected[j] = rec.n_detected
    return PrecisionRecallCurve(
        thresholds=ths,
        precision=precision,
        recall=recall,
        median_lead_s=median_lead,
        n_alerts=n_alerts,
        n_detected=n_detected,
        n_episodes=len(episodes),
    )
