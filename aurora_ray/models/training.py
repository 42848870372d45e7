"""The training core: labels from stock trajectories, the XGBoost fit and held-out metrics.

Pure numpy/pandas/xgboost, no Ray: the retrain job wires these functions into Ray Data, the
evaluation calls :func:`fit` directly, so both train exactly the same model.

A row is one scored moment of a SKU (a ``fact_prediction`` row: its features and its on-hand
stock). Its label is "a stock-out starts within the horizon after this row", read from the SKU's
later rows: a stock-out starts at a row whose ``on_hand`` is ``<= 0`` while the row before it had
``> 0``. Rows already out of stock are dropped (nothing left to predict), and so are rows whose
horizon runs past the end of the data (their outcome is censored, not negative).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from aurora_ray.evaluation import metrics as m
from aurora_ray.evaluation.metrics import brier_score, expected_calibration_error, log_loss

if TYPE_CHECKING:
    import xgboost as xgb

__all__ = [
    "LABEL",
    "MARGIN_FEATURE",
    "NEXT_STOCKOUT",
    "AlertReplay",
    "XGB_PARAMS",
    "XGB_ROUNDS",
    "decode_feature_vectors",
    "encode_feature_vectors",
    "fit",
    "held_out_metrics",
    "label_frame",
    "next_stockout_starts",
    "predict",
    "promotion_decision",
    "recall_at_precision",
    "sha256_hex",
    "stockout_labels",
    "time_cut",
]

F64 = NDArray[np.float64]
LABEL: Final = "label"
NEXT_STOCKOUT: Final = "next_stockout_s"
XGB_PARAMS: Final[dict[str, Any]] = {
    "objective": "binary:logistic",
    "max_depth": 2,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    # Bounds each leaf's step: rows the analytic scorer is sure of have a Newton step of
    # gradient / ~0 hessian, which without a bound can throw a whole leaf far off.
    "max_delta_step": 1.0,
    "tree_method": "hist",
    "nthread": 2,
    "seed": 0,
}
XGB_ROUNDS: Final = 300
MARGIN_FEATURE: Final = "analytic_probability"
"""The booster learns a correction to the analytic scorer: boosting starts from this feature's
log-odds (XGBoost's base margin) instead of a constant, and the model is constrained to rise
with it. Chosen on the validation split (docs/evaluation.md, "The learned scorer")."""
_MARGIN_ATTR: Final = "aurora_base_margin"
_LOGIT_EPS: Final = 1e-6
REPORT_THRESHOLDS: Final = (0.7, 0.9)


# --------------------------------------------------------------------------- labels


def stockout_labels(
    group: ArrayLike,
    times_s: ArrayLike,
    on_hand: ArrayLike,
    *,
    horizon_s: float,
    end_s: float | None = None,
) -> tuple[NDArray[np.int8], NDArray[np.bool_]]:
    """Label and keep-mask per row; rows must be sorted by ``group`` (contiguous) then time.

    ``label[i] = 1`` iff a stock-out of row ``i``'s group starts at a later row ``j`` with
    ``times[j] - times[i] <= horizon_s``. ``keep[i]`` is false for rows already out of stock
    and for rows whose horizon ends after ``end_s`` (default: the latest time in the data)."""
    label, keep, _ = _label_rows(group, times_s, on_hand, horizon_s=horizon_s, end_s=end_s)
    return label, keep


def _label_rows(
    group: ArrayLike,
    times_s: ArrayLike,
    on_hand: ArrayLike,
    *,
    horizon_s: float,
    end_s: float | None,
) -> tuple[NDArray[np.int8], NDArray[np.bool_], F64]:
    """:func:`stockout_labels`' label and keep-mask, and the next stock-out start they come
    from (:func:`next_stockout_starts`)."""
    g = np.asarray(group)
    t = np.asarray(times_s, dtype=np.float64)
    stock = np.asarray(on_hand, dtype=np.float64)
    n = len(t)
    if not (len(g) == n == len(stock)):
        raise ValueError(f"lengths differ: group {len(g)}, times_s {n}, on_hand {len(stock)}")
    if n == 0:
        return np.empty(0, np.int8), np.empty(0, bool), np.empty(0, np.float64)
    same_as_prev = np.r_[False, g[1:] == g[:-1]]
    if np.any(same_as_prev & (np.diff(t, prepend=t[0]) < 0)):
        raise ValueError("rows are not sorted by time within their group")
    following = next_stockout_starts(g, t, stock)
    label = following - t <= horizon_s  # NaN (none) compares False
    end = float(np.max(t)) if end_s is None else float(end_s)
    keep = ~(stock <= 0) & (t + horizon_s <= end)  # already out of stock: dropped
    return label.astype(np.int8), keep, following


def next_stockout_starts(group: ArrayLike, times_s: ArrayLike, on_hand: ArrayLike) -> F64:
    """Per row (sorted as for :func:`stockout_labels`): the time of the first stock-out start
    after it in its group, NaN if none. A start is a row with ``on_hand <= 0`` whose previous
    row in the group had ``> 0``."""
    g = np.asarray(group)
    t = np.asarray(times_s, dtype=np.float64)
    out = np.asarray(on_hand, dtype=np.float64) <= 0
    n = len(t)
    following = np.full(n, np.nan)
    if n == 0:
        return following
    same_as_prev = np.r_[False, g[1:] == g[:-1]]
    starts = np.flatnonzero(out & same_as_prev & np.r_[False, ~out[:-1]])
    if len(starts):
        # The first start after each row (an index > i), if it is in the same group.
        k = np.searchsorted(starts, np.arange(n), side="right")
        nxt = starts[np.minimum(k, len(starts) - 1)]
        ours = (k < len(starts)) & (g[nxt] == g)
        following = np.where(ours, t[nxt], np.nan)
    return following


def label_frame(
    frame: pd.DataFrame,
    *,
    horizon_s: float,
    end_s: float,
    key: Sequence[str] = ("sku_id",),
    time_col: str = "t_s",
) -> pd.DataFrame:
    """The labelled, uncensored in-stock rows of ``frame`` (one or several SKUs), with a
    ``label`` column and the time of the next stock-out start (``next_stockout_s``, NaN if
    none). Works as a Ray Data ``map_groups`` function or on a whole table."""
    if frame.empty:
        return frame.assign(
            **{LABEL: pd.Series(dtype=np.int8), NEXT_STOCKOUT: pd.Series(dtype=np.float64)}
        )
    ordered = frame.sort_values([*key, time_col], kind="stable")
    group = ordered.groupby(list(key), sort=False).ngroup().to_numpy()
    times = ordered[time_col].to_numpy(np.float64)
    on_hand = ordered["on_hand"].to_numpy(np.float64)
    labels, keep, following = _label_rows(group, times, on_hand, horizon_s=horizon_s, end_s=end_s)
    return ordered.assign(**{LABEL: labels, NEXT_STOCKOUT: following})[keep]


def time_cut(times_s: ArrayLike, holdout_fraction: float = 0.2) -> float:
    """Start of the held-out slice: the last ``holdout_fraction`` of the data's time window."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be within (0, 1), got {holdout_fraction}")
    t = np.asarray(times_s, dtype=np.float64)
    if not len(t):
        raise ValueError("no rows to split")
    start, end = float(t.min()), float(t.max())
    return start + (1.0 - holdout_fraction) * (end - start)


# --------------------------------------------------------------------------- features


def decode_feature_vectors(values: Sequence[bytes | None], n_features: int) -> F64:
    """``feature_vector`` cells (float32 little-endian) -> an ``(n, n_features)`` matrix."""
    width = 4 * n_features
    for i, value in enumerate(values):
        if value is None or len(value) != width:
            size = "null" if value is None else f"{len(value)} bytes"
            raise ValueError(
                f"row {i}: feature_vector is {size}, expected {width} bytes "
                f"({n_features} float32 values)"
            )
    joined = b"".join(values)  # type: ignore[arg-type]  # checked for None above
    return np.frombuffer(joined, dtype="<f4").reshape(len(values), n_features).astype(np.float64)


def encode_feature_vectors(features: ArrayLike) -> list[bytes]:
    """The inverse of :func:`decode_feature_vectors`: one float32 little-endian blob per row."""
    matrix = np.ascontiguousarray(np.asarray(features, dtype="<f4"))
    if matrix.ndim != 2:
        raise ValueError(f"features must be a matrix, got {matrix.ndim} dimensions")
    return [row.tobytes() for row in matrix]


# --------------------------------------------------------------------------- model


def _logit(p: F64) -> F64:
    q = np.clip(np.nan_to_num(p, nan=0.5), _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


def fit(
    features: ArrayLike,
    labels: ArrayLike,
    feature_names: Sequence[str],
    *,
    rounds: int = XGB_ROUNDS,
    params: dict[str, Any] | None = None,
    margin: bool = True,
) -> xgb.Booster:
    """The booster over ``feature_names``: the one fit of the evaluation and the retrain job.

    With ``margin`` (and :data:`MARGIN_FEATURE` among the features) the booster corrects the
    analytic scorer rather than replacing it; it records that in an attribute saved with the
    model, so :func:`predict` (also after a save and load) starts from the same margin."""
    import xgboost as xgb

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    names = list(feature_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"features have shape {x.shape}, expected (n, {len(names)})")
    if len(y) != len(x):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    if not len(y):
        raise ValueError("no training rows")
    settings = {**XGB_PARAMS, **(params or {})}
    base_margin = None
    if margin and MARGIN_FEATURE in names:
        column = names.index(MARGIN_FEATURE)
        base_margin = _logit(x[:, column])
        rising = ",".join("1" if i == column else "0" for i in range(len(names)))
        settings.setdefault("monotone_constraints", f"({rising})")
    matrix = xgb.DMatrix(x, label=y, base_margin=base_margin, feature_names=names)
    booster = xgb.train(settings, matrix, num_boost_round=rounds)
    if base_margin is not None:
        booster.set_attr(**{_MARGIN_ATTR: MARGIN_FEATURE})
    return booster


def predict(booster: xgb.Booster, features: ArrayLike, feature_names: Sequence[str]) -> F64:
    """Probabilities of ``booster`` (from the analytic margin if it was fitted with one)."""
    import xgboost as xgb

    x = np.asarray(features, dtype=np.float64)
    if not len(x):
        return np.empty(0, np.float64)
    names = list(feature_names)
    margin_of = booster.attr(_MARGIN_ATTR)
    base_margin = None
    if margin_of is not None:
        if margin_of not in names:
            raise ValueError(f"the booster starts from {margin_of!r}, not among {names}")
        base_margin = _logit(x[:, names.index(margin_of)])
    scores = booster.predict(xgb.DMatrix(x, base_margin=base_margin, feature_names=names))
    return np.asarray(scores, dtype=np.float64)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- metrics


def _precision_recall(p: F64, y: F64, threshold: float) -> tuple[float, float]:
    flagged = p >= threshold
    tp = float(np.sum(flagged & (y == 1)))
    n_flagged, positives = float(np.sum(flagged)), float(np.sum(y == 1))
    precision = tp / n_flagged if n_flagged else float("nan")
    recall = tp / positives if positives else float("nan")
    return precision, recall


def recall_at_precision(p: ArrayLike, y: ArrayLike, precision: float) -> float:
    """The best recall over all thresholds whose precision is at least ``precision``
    (0 when none reaches it, NaN without positives)."""
    probs = np.asarray(p, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    positives = float(np.sum(labels == 1))
    if not positives:
        return float("nan")
    order = np.argsort(-probs, kind="stable")
    sorted_p, sorted_y = probs[order], labels[order]
    # Cut only between distinct probabilities: all rows of a tie are flagged together.
    last_of_tie = np.r_[sorted_p[1:] != sorted_p[:-1], True]
    tp = np.cumsum(sorted_y)[last_of_tie]
    flagged = (np.arange(len(sorted_p)) + 1.0)[last_of_tie]
    ok = tp / flagged >= precision - 1e-12
    return float(np.max(tp[ok]) / positives) if ok.any() else 0.0


def held_out_metrics(p: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Brier, log loss, ECE and precision / recall at 0.7 and 0.9 (NaN becomes None in JSON)."""
    probs = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    labels = np.asarray(y, dtype=np.float64)
    out: dict[str, float] = {
        "rows": float(len(labels)),
        "positives": float(np.sum(labels == 1)),
        "brier": brier_score(probs, labels),
        "log_loss": log_loss(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }
    for threshold in REPORT_THRESHOLDS:
        precision, recall = _precision_recall(probs, labels, threshold)
        out[f"precision@{threshold}"] = precision
        out[f"recall@{threshold}"] = recall
    return out


@dataclass(frozen=True, eq=False)
class AlertReplay:
    """Held-out rows as the live alert rule sees them, judged with the metrics of
    ``aurora evaluate``: alerts replayed from a probability series (at or above a threshold, at
    most one per SKU per dedup window), their precision (followed by a stock-out start within the
    horizon) and recall@24h (the share of stock-outs warned about 24 h to 48 h ahead).

    ``key`` is the SKU of each row (``sku@warehouse``), ``t_s`` its time; the stock-outs are the
    distinct next starts (``next_stockout_s``) of the rows."""

    key: NDArray[Any]
    t_s: F64
    episodes: m.Episodes
    horizon_s: float
    lead_s: float = m.DEFAULT_LEAD_S
    dedup_s: float = m.DEFAULT_DEDUP_S

    @classmethod
    def from_rows(
        cls, key: ArrayLike, t_s: ArrayLike, next_stockout_s: ArrayLike, *, horizon_s: float
    ) -> AlertReplay:
        keys = np.asarray(key).astype(str)
        t = np.asarray(t_s, dtype=np.float64)
        following = np.asarray(next_stockout_s, dtype=np.float64)
        known = np.isfinite(following)
        pairs = pd.DataFrame({"k": keys[known], "s": following[known]}).drop_duplicates()
        episodes = m.Episodes(sku=pairs["k"].to_numpy(), start_s=pairs["s"].to_numpy())
        # A horizon under 24 h: "early enough" is then the whole horizon ahead.
        lead = min(m.DEFAULT_LEAD_S, float(horizon_s))
        return cls(keys, t, episodes, float(horizon_s), lead_s=lead)

    def curve(self, p: ArrayLike, thresholds: Sequence[float]) -> m.PrecisionRecallCurve:
        return m.precision_recall_curve(
            self.key,
            self.t_s,
            np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0),
            self.episodes,
            thresholds,
            horizon_s=self.horizon_s,
            lead_s=self.lead_s,
            dedup_s=self.dedup_s,
        )


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    candidate: dict[str, float]
    active: dict[str, float]


def _alert_recall(
    replay: AlertReplay, candidate_p: ArrayLike, active_p: ArrayLike, threshold: float
) -> tuple[float, float, float, dict[str, float], dict[str, float]]:
    """(active alert precision at ``threshold``, its recall@24h, the candidate's best recall@24h
    at that precision or better over the thresholds) and both sides' alert figures."""
    active = replay.curve(active_p, [threshold])
    target, active_recall = float(active.precision[0]), float(active.recall[0])
    grid = sorted({*m.DEFAULT_THRESHOLDS, threshold})
    cand = replay.curve(candidate_p, grid)
    at = grid.index(threshold)
    ok = np.flatnonzero(cand.precision >= target - 1e-12)  # none when the target is NaN
    # The highest threshold with the best recall: the fewest alerts for it.
    pick = int(ok[len(ok) - 1 - np.argmax(cand.recall[ok][::-1])]) if len(ok) else None
    best = float(cand.recall[pick]) if pick is not None else 0.0
    sides = (
        {
            f"alert_precision@{threshold}": float(cand.precision[at]),
            f"recall@24h@{threshold}": float(cand.recall[at]),
            "recall@24h@active_precision": best,
            # The threshold at which the candidate reaches that: its alerts match the active
            # model's precision there, not necessarily at the tenant's own threshold.
            "threshold@active_precision": float(grid[pick]) if pick is not None else float("nan"),
            "alerts": float(cand.n_alerts[at]),
            "stockouts": float(len(replay.episodes)),
        },
        {
            f"alert_precision@{threshold}": target,
            f"recall@24h@{threshold}": active_recall,
            "recall@24h@active_precision": active_recall,
            "alerts": float(active.n_alerts[0]),
            "stockouts": float(len(replay.episodes)),
        },
    )
    return target, active_recall, best, *sides


def promotion_decision(
    candidate_p: ArrayLike,
    active_p: ArrayLike,
    y: ArrayLike,
    *,
    threshold: float = 0.7,
    replay: AlertReplay | None = None,
) -> PromotionDecision:
    """Promote only when the candidate beats the active model on the same held-out rows: a lower
    Brier score, and recall not worse at the active model's precision (at its alert threshold).

    With a ``replay`` those are alert figures, as ``aurora evaluate`` measures them: recall@24h
    of the replayed alerts, at the active model's alert precision. Without one, per-row
    precision and recall."""
    cand, active = held_out_metrics(candidate_p, y), held_out_metrics(active_p, y)
    if replay is not None:
        target, active_recall, cand_recall, cand_alerts, active_alerts = _alert_recall(
            replay, candidate_p, active_p, threshold
        )
        cand.update(cand_alerts)
        active.update(active_alerts)
        what = "recall@24h"
    else:
        target, _ = _precision_recall(np.asarray(active_p, np.float64), np.asarray(y), threshold)
        active_recall = active.get(f"recall@{threshold}", float("nan"))
        cand_recall = recall_at_precision(candidate_p, y, target) if np.isfinite(target) else 0.0
        cand["recall@active_precision"] = cand_recall
        active["recall@active_precision"] = active_recall
        what = "recall"
    if not np.isfinite(cand["brier"]) or not cand["positives"]:
        return PromotionDecision(False, "no held-out stock-outs to compare on", cand, active)
    if not cand["brier"] < active["brier"]:
        reason = f"Brier {cand['brier']:.5f} is not below the active {active['brier']:.5f}"
        return PromotionDecision(False, reason, cand, active)
    if np.isfinite(target) and np.isfinite(active_recall) and cand_recall < active_recall:
        reason = (
            f"{what} {cand_recall:.3f} at the active precision {target:.3f} is below the "
            f"active {active_recall:.3f}"
        )
        return PromotionDecision(False, reason, cand, active)
    reason = f"Brier {cand['brier']:.5f} < {active['brier']:.5f}, {what} {cand_recall:.3f} " + (
        f">= {active_recall:.3f} at precision {target:.3f}"
        if np.isfinite(target)
        else "(the active model raises no alert at its threshold)"
    )
    return PromotionDecision(True, reason, cand, active)
