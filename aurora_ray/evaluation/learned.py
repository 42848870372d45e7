"""Training the learned scorer for the evaluation, on the training period only.

The training streams are simulations of the training period with the same protocol as the test
(policies sized before a label cut two months before ``test_from``, labels up to ``test_from``),
one per policy seed: nothing of the test period is seen. Rows are every scored event while in
stock, labelled "a stock-out starts within the horizon", with features from
:func:`event_features` of the fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.features import FEATURE_NAMES, event_features
from aurora_ray.domain.state import BatchOutput, ScoringParams
from aurora_ray.evaluation import metrics as m
from aurora_ray.evaluation.methods import AuroraAnalytic
from aurora_ray.evaluation.simulate import build_benchmark, episodes_of

__all__ = ["TrainingSet", "training_set", "train_xgboost"]

F64 = NDArray[np.float64]
_CHUNK = 20_000


class _FeatureRecorder(AuroraAnalytic):
    """The analytic replay, keeping the feature rows of every scored point it shows."""

    def __init__(self, tenant_id: str, params: ScoringParams) -> None:
        super().__init__(tenant_id, params)
        self.rows: list[F64] = []

    def _probability(self, output: BatchOutput) -> F64:
        known = ~np.isnan(output.event_probability)
        self.rows.append(event_features(output)[known])  # the rows Series.add keeps, in order
        return output.event_probability


class TrainingSet:
    def __init__(self, features: F64, labels: NDArray[np.int8]) -> None:
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)


def training_set(
    path: Path,
    *,
    tenant_id: str,
    test_from: datetime,
    horizon_s: float,
    label_window: timedelta = timedelta(days=62),
    warmup: timedelta = timedelta(weeks=20),
    seed: int = 0,
    simulations: int = 1,
    params: ScoringParams | None = None,
    purchase_orders: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
) -> TrainingSet:
    """Features and labels from simulations that end where the test period starts.

    ``simulations`` runs the training period under that many policy draws (seeds ``seed``,
    ``seed + 1``, ...): the same real demand meets other stock levels, lead times and cycles,
    so the model sees more stock-outs than one history holds."""
    if simulations < 1:
        raise ValueError(f"simulations must be at least 1, got {simulations}")
    parts = []
    for k in range(simulations):
        progress(f"training simulation {k + 1}/{simulations} (policy seed {seed + k})")
        parts.append(
            _one_training_set(
                path,
                tenant_id=tenant_id,
                test_from=test_from,
                horizon_s=horizon_s,
                label_window=label_window,
                warmup=warmup,
                seed=seed + k,
                params=params,
                purchase_orders=purchase_orders,
            )
        )
    return TrainingSet(
        np.vstack([p.features for p in parts]), np.concatenate([p.labels for p in parts])
    )


def _one_training_set(
    path: Path,
    *,
    tenant_id: str,
    test_from: datetime,
    horizon_s: float,
    label_window: timedelta,
    warmup: timedelta,
    seed: int,
    params: ScoringParams | None,
    purchase_orders: bool,
) -> TrainingSet:
    bench = build_benchmark(
        path,
        tenant_id=tenant_id,
        test_from=test_from - label_window,
        end=test_from,
        warmup=warmup,
        seed=seed,
        purchase_orders=purchase_orders,
    )
    # The analytic replay, which runs the shards' timed fold (events and timer ticks): the
    # features are recorded exactly where the scores are, so there is no train/serve skew.
    params = params or ScoringParams(horizon_s=horizon_s)
    recorder = _FeatureRecorder(tenant_id, dataclasses.replace(params, horizon_s=horizon_s))
    events = bench.result.events
    for i in range(0, len(events), _CHUNK):
        recorder.feed(events[i : i + _CHUNK])
    features = np.vstack(recorder.rows)
    sku_arr, t, _ = recorder.series.arrays()
    episodes = episodes_of(bench.result)
    labels = m.label_samples(sku_arr, t, episodes, horizon_s, include_ongoing=False)
    ongoing = m.label_samples(sku_arr, t, episodes, 0.0, include_ongoing=True).astype(bool)
    complete = t < test_from.timestamp() - horizon_s  # outcome known before the test period
    keep = ~ongoing & complete
    return TrainingSet(features[keep], labels[keep])


def train_xgboost(data: TrainingSet) -> Callable[[F64], F64]:
    """A booster over ``FEATURE_NAMES`` (the retrain job's own fit), as features -> probability."""
    from aurora_ray.models.training import fit, predict

    booster = fit(data.features, data.labels, FEATURE_NAMES)
    return lambda features: predict(booster, features, FEATURE_NAMES)
