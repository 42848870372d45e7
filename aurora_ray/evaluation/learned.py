"""Training the learned scorer for the evaluation, on the training period only.

The training stream is a simulation of the training period with the same protocol as the test
(policies sized before a label cut two months before ``test_from``, labels up to ``test_from``):
nothing of the test period is seen. Rows are every scored event while in stock, labelled "a
stock-out starts within the horizon", with features from :func:`event_features` of the fold.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aurora_ray.demo_stream import to_ndjson
from aurora_ray.domain.events import parse_ndjson
from aurora_ray.domain.features import FEATURE_NAMES, event_features
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.evaluation import metrics as m
from aurora_ray.evaluation.simulate import build_benchmark

__all__ = ["TrainingSet", "training_set", "train_xgboost"]

F64 = NDArray[np.float64]
_CHUNK = 20_000
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "max_depth": 5,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "nthread": 2,
    "seed": 0,
}
XGB_ROUNDS = 300


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
) -> TrainingSet:
    """Features and labels from a simulation that ends where the test period starts."""
    bench = build_benchmark(
        path,
        tenant_id=tenant_id,
        test_from=test_from - label_window,
        end=test_from,
        warmup=warmup,
        seed=seed,
    )
    state, params = SkuState(), ScoringParams(horizon_s=horizon_s)
    rows: list[F64] = []
    skus: list[str] = []
    times: list[F64] = []
    events = bench.result.events
    for i in range(0, len(events), _CHUNK):
        parsed = parse_ndjson(
            to_ndjson([dict(e) for e in events[i : i + _CHUNK]]), tenant_id=tenant_id, received_ms=0
        )
        # The same timed fold as the shards (events and timer ticks), so no train/serve skew.
        for output in fold_with_timers(state, parsed.events, [0] * len(parsed.events), params):
            known = ~np.isnan(output.event_probability)
            rows.append(event_features(output)[known])
            skus.extend(state.keys[r].rsplit("@", 1)[0] for r in output.event_rows[known].tolist())
            times.append(output.event_as_of_s[known])
    features = np.vstack(rows)
    sku_arr, t = np.array(skus), np.concatenate(times)
    ep = bench.result.episodes
    start = ep["start"].astype("datetime64[ms, UTC]").astype("int64").to_numpy() / 1e3
    end = np.full(len(ep), np.inf)
    has_end = ~ep["end"].isna().to_numpy()
    end[has_end] = ep["end"][has_end].astype("datetime64[ms, UTC]").astype("int64").to_numpy() / 1e3
    episodes = m.Episodes(sku=ep["sku"].astype(str).to_numpy(), start_s=start, end_s=end)
    labels = m.label_samples(sku_arr, t, episodes, horizon_s, include_ongoing=False)
    ongoing = m.label_samples(sku_arr, t, episodes, 0.0, include_ongoing=True).astype(bool)
    complete = t < test_from.timestamp() - horizon_s  # outcome known before the test period
    keep = ~ongoing & complete
    return TrainingSet(features[keep], labels[keep])


def train_xgboost(data: TrainingSet) -> Callable[[F64], F64]:
    """A booster over ``FEATURE_NAMES``, returned as features -> probability."""
    import xgboost as xgb

    matrix = xgb.DMatrix(data.features, label=data.labels, feature_names=list(FEATURE_NAMES))
    booster = xgb.train(XGB_PARAMS, matrix, num_boost_round=XGB_ROUNDS)

    def predict(features: F64) -> F64:
        scores = booster.predict(xgb.DMatrix(features, feature_names=list(FEATURE_NAMES)))
        return np.asarray(scores, dtype=np.float64)

    return predict
