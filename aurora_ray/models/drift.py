"""Drift of a model version: feature shift (PSI) against its training data, and calibration.

The retrain job stores, with each version, per feature the bin edges (training deciles) and the
training proportions (:func:`reference_histograms`). :func:`drift_report` compares recent
``fact_prediction`` rows with them (population stability index per feature) and, over rows
whose horizon has passed, the probabilities shown with what happened (expected calibration
error). Rules of thumb for PSI: below 0.1 stable, 0.1-0.25 moderate, above 0.25 a real shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aurora_ray.evaluation.metrics import expected_calibration_error

__all__ = ["PSI_ALERT", "PSI_WARN", "drift_report", "histogram", "psi", "reference_histograms"]

F64 = NDArray[np.float64]
PSI_WARN: Final = 0.1
PSI_ALERT: Final = 0.25
_EPS: Final = 1e-4


def reference_histograms(
    features: ArrayLike, feature_names: Sequence[str], bins: int = 10
) -> dict[str, dict[str, list[float]]]:
    """Per feature: inner bin edges (quantiles of the training rows) and the proportions."""
    x = np.asarray(features, dtype=np.float64)
    out: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(feature_names):
        column = x[:, j][np.isfinite(x[:, j])]
        if not len(column):
            continue
        qs = np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)
        out[name] = {"edges": edges.tolist(), "proportions": histogram(column, edges).tolist()}
    return out


def histogram(values: ArrayLike, edges: ArrayLike) -> F64:
    """Proportions of ``values`` in the bins cut at ``edges`` (``len(edges) + 1`` bins)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    cuts = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(cuts, v, side="right"), minlength=len(cuts) + 1)
    total = counts.sum()
    return counts / total if total else np.zeros(len(cuts) + 1)


def psi(expected: ArrayLike, actual: ArrayLike) -> float:
    """Population stability index: ``sum((a - e) * ln(a / e))``, proportions floored at 1e-4."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _EPS)
    if e.shape != a.shape:
        raise ValueError(f"expected {e.shape} and actual {a.shape} proportions differ in shape")
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    reference: dict[str, dict[str, list[float]]],
    recent_features: ArrayLike,
    feature_names: Sequence[str],
    *,
    outcome_probabilities: ArrayLike = (),
    outcome_labels: ArrayLike = (),
) -> dict[str, Any]:
    """PSI per feature of ``recent_features`` against ``reference``, the largest, and the ECE of
    the probabilities of rows whose outcome is known (NaN without any)."""
    x = np.asarray(recent_features, dtype=np.float64).reshape(-1, len(feature_names))
    scores: dict[str, float] = {}
    if len(x):
        for j, name in enumerate(feature_names):
            ref = reference.get(name)
            if ref is not None:
                actual = histogram(x[:, j], ref["edges"])
                scores[name] = round(psi(ref["proportions"], actual), 6)
    worst = max(scores.values()) if scores else float("nan")
    p = np.asarray(outcome_probabilities, dtype=np.float64)
    y = np.asarray(outcome_labels, dtype=np.float64)
    ece = expected_calibration_error(np.clip(p, 0, 1), y) if len(p) else float("nan")
    status = "unknown" if not scores else "ok"
    if scores and worst >= PSI_ALERT:
        status = "shift"
    elif scores and worst >= PSI_WARN:
        status = "moderate"
    return {
        "psi": scores,
        "max_psi": None if np.isnan(worst) else round(worst, 6),
        "ece": None if np.isnan(ece) else round(ece, 6),
        "rows": int(len(x)),
        "outcome_rows": int(len(p)),
        "status": status,
    }
