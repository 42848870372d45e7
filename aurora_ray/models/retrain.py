"""Retraining a tenant's model from ``fact_prediction`` on Ray Data, and its drift report.

Pipeline (:func:`run_retrain`):

1. Ray Data reads the tenant's ``fact_prediction`` folder, decodes each row's ``feature_vector``
   (the features the shards computed, :data:`FEATURE_NAMES` order) and converts times;
2. ``groupby(sku, warehouse).map_groups(label_frame)`` labels every row from its SKU's later
   on-hand stock (:mod:`aurora_ray.models.training`), dropping censored and out-of-stock rows;
3. the labelled rows come to the driver; the last 20 % of the window is held out and training
   rows whose horizon reaches into it are purged;
4. XGBoost is fit (:func:`training.fit`), the candidate and the active version are scored on the
   held-out rows, and the candidate is promoted only if it beats the active one: a lower Brier
   score, and recall@24h of the alerts each would raise there (:class:`training.AlertReplay`)
   not worse at the active version's alert precision;
5. the artifact goes to the model store, the version to the registry.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.models import training as tr
from aurora_ray.models.drift import drift_report, reference_histograms
from aurora_ray.models.registry import ModelRegistry, ModelVersion
from aurora_ray.models.scorer import XGBoostScorer, load_scorer
from aurora_ray.models.store import ModelStore
from aurora_ray.settings import Settings

__all__ = [
    "RetrainResult",
    "compute_drift",
    "labelled_rows",
    "prepare_batch",
    "run_retrain",
    "train_candidate",
    "training_frame",
]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
_KEY = ("sku_id", "warehouse_id")
_COLUMNS = ["sku_id", "warehouse_id", "predicted_at", "on_hand", "probability", "feature_vector"]
MIN_TRAIN_ROWS = 50


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


def prepare_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """A ``fact_prediction`` batch -> time in seconds and one column per feature."""
    features = tr.decode_feature_vectors(list(batch["feature_vector"]), len(FEATURE_NAMES))
    at = pd.to_datetime(batch["predicted_at"], utc=True).dt.tz_localize(None)
    epoch_us = at.to_numpy(dtype="datetime64[us]").astype(np.int64)
    out = pd.DataFrame(
        {
            "sku_id": batch["sku_id"].astype(str),
            "warehouse_id": batch["warehouse_id"].fillna("").astype(str),
            "t_s": epoch_us / 1e6,
            "on_hand": batch["on_hand"].astype(np.float64),
            "probability": batch["probability"].astype(np.float64),
        }
    )
    for j, name in enumerate(FEATURE_NAMES):
        out[name] = features[:, j]
    return out


def training_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Labelled rows with NumPy columns: the keys as ``str``, the label ``int8``, every other
    column ``float64`` with NaN for a missing value.

    Ray Data's ``to_pandas()`` gives pyarrow-backed columns, and a block whose SKUs have no
    later stock-out carries an all-null ``next_stockout_s``: concatenated with the others, the
    column comes back as ``object`` holding floats, ``None`` and ``<NA>``, which NumPy cannot
    turn into floats (the held-out alert replay failed on it)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if name in _KEY:
            columns[name] = column.astype(str).to_numpy(dtype=object)
        elif name == tr.LABEL:
            columns[name] = column.to_numpy(dtype=np.int8)
        else:
            columns[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def labelled_rows(
    settings: Settings, tenant_id: str, *, progress: Progress = log.info, partitions: int = 8
) -> pd.DataFrame:
    """Labelled in-stock rows of the tenant's fact_prediction, built on Ray Data."""
    import ray.data
    from pyarrow import fs as pafs

    from aurora_ray.warehouse import Warehouse

    filesystem, path = Warehouse.from_settings(settings).path("fact_prediction", tenant_id)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise ValueError(f"tenant {tenant_id} has no fact_prediction rows under {path}")
    began = time.perf_counter()
    ds = ray.data.read_parquet(path, filesystem=filesystem).select_columns(_COLUMNS)
    prepared = ds.map_batches(prepare_batch, batch_format="pandas")
    end_s: Any = prepared.max("t_s")
    if end_s is None:
        raise ValueError(f"tenant {tenant_id} has no fact_prediction rows")
    progress(f"read and decoded fact_prediction in {time.perf_counter() - began:.1f} s")
    labeller = functools.partial(
        tr.label_frame, horizon_s=settings.horizon_s, end_s=float(end_s), key=_KEY
    )
    began = time.perf_counter()
    # A hash shuffle by SKU; few partitions: each group is small, and a task per partition
    # costs more than the labelling on a small cluster.
    labelled = prepared.groupby(list(_KEY), num_partitions=partitions).map_groups(
        labeller, batch_format="pandas"
    )
    frame = training_frame(labelled.to_pandas())
    progress(f"labelled {len(frame)} in-stock rows per SKU in {time.perf_counter() - began:.1f} s")
    return frame


@dataclass
class Candidate:
    booster: Any
    decision: tr.PromotionDecision
    window: tuple[float, float]
    cut_s: float
    rows: dict[str, int]
    reference: dict[str, Any] = field(default_factory=dict)


def train_candidate(
    frame: pd.DataFrame,
    *,
    horizon_s: float,
    active: XGBoostScorer | None,
    threshold: float,
    holdout_fraction: float = 0.2,
    rounds: int = tr.XGB_ROUNDS,
) -> Candidate:
    """Fit on the earlier part of the window, compare with ``active`` (None: the analytic
    scorer, i.e. the ``analytic_probability`` feature) on the held-out last part."""
    if frame.empty:
        raise ValueError("no labelled rows: is the data window longer than the horizon?")
    t = frame["t_s"].to_numpy(np.float64)
    cut = tr.time_cut(t, holdout_fraction)
    train = frame[t + horizon_s <= cut]  # purged: no training label looks into the test slice
    test = frame[t >= cut]
    names = list(FEATURE_NAMES)
    if len(train) < MIN_TRAIN_ROWS or not train[tr.LABEL].any():
        raise ValueError(
            f"too little training data: {len(train)} rows, {int(train[tr.LABEL].sum())} "
            f"stock-outs before {_iso(cut - horizon_s)} (need {MIN_TRAIN_ROWS} rows and one)"
        )
    if test.empty:
        raise ValueError("no held-out rows after the time cut")
    booster = tr.fit(train[names].to_numpy(), train[tr.LABEL].to_numpy(), names, rounds=rounds)
    x_test, y_test = test[names].to_numpy(), test[tr.LABEL].to_numpy()
    candidate_p = tr.predict(booster, x_test, names)
    if active is None:
        active_p = test["analytic_probability"].to_numpy(np.float64)
    else:
        active_p = tr.predict(active.booster, x_test, names)
    # The gate judges alerts as `aurora evaluate` does: replayed from each model's scores.
    replay = tr.AlertReplay.from_rows(
        test["sku_id"].astype(str) + "@" + test["warehouse_id"].astype(str),
        test["t_s"],
        test[tr.NEXT_STOCKOUT],
        horizon_s=horizon_s,
    )
    decision = tr.promotion_decision(
        candidate_p, active_p, y_test, threshold=threshold, replay=replay
    )
    return Candidate(
        booster=booster,
        decision=decision,
        window=(float(t.min()), float(t.max())),
        cut_s=cut,
        rows={
            "train": len(train),
            "train_positives": int(train[tr.LABEL].sum()),
            "held_out": len(test),
            "held_out_positives": int(y_test.sum()),
        },
        reference=reference_histograms(train[names].to_numpy(), names),
    )


@dataclass(frozen=True)
class RetrainResult:
    version: str
    promoted: bool
    decision: str
    metrics: dict[str, float]
    baseline: dict[str, Any]
    artifact_uri: str
    rows: dict[str, int]


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if not np.isfinite(v) else round(float(v), 6)) for k, v in metrics.items()}


def run_retrain(
    settings: Settings,
    *,
    tenant_id: str,
    progress: Progress = log.info,
    promote: bool = True,
    rounds: int = tr.XGB_ROUNDS,
    frame: pd.DataFrame | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Build labelled rows (Ray Data unless ``frame`` is given), train, evaluate, store,
    register and (if it beats the active version and ``promote``) activate.

    ``max_rows``: train and evaluate on a seeded uniform sample of that many labelled rows (the
    labels are computed on all rows first, so a sampled row keeps its true label)."""
    store = RedisStore(settings.redis_url)
    registry = ModelRegistry(store, baseline_version=settings.model_version)
    models = ModelStore(settings.warehouse_uri)
    if frame is None:
        frame = labelled_rows(settings, tenant_id, progress=progress)
    labelled = len(frame)
    if max_rows is not None and labelled > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
        progress(f"sampled {max_rows} of {labelled} labelled rows")
    active_meta = registry.active(tenant_id)
    active = load_scorer(active_meta, baseline_version=settings.model_version, read=models.read)
    progress(f"active version {active.version}; training on {len(frame)} rows")
    began = time.perf_counter()
    threshold, _ = store.thresholds(tenant_id)
    candidate = train_candidate(
        frame,
        horizon_s=settings.horizon_s,
        active=active if isinstance(active, XGBoostScorer) else None,
        threshold=threshold or settings.default_threshold,
        rounds=rounds,
    )
    progress(f"trained in {time.perf_counter() - began:.1f} s: {candidate.rows}")
    progress(f"decision: {candidate.decision.reason}")
    stamp = datetime.now(tz=UTC)
    version = f"xgb-{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    artifact = bytes(candidate.booster.save_raw("ubj"))
    uri = models.write(tenant_id, version, artifact)
    promoted = candidate.decision.promote and promote
    meta = ModelVersion(
        version=version,
        trained_at=stamp.isoformat().replace("+00:00", "Z"),
        window_start=_iso(candidate.window[0]),
        window_end=_iso(candidate.window[1]),
        feature_names=list(FEATURE_NAMES),
        metrics=_clean(candidate.decision.candidate),
        artifact_uri=uri,
        sha256=tr.sha256_hex(artifact),
        status="candidate" if candidate.decision.promote else "rejected",
        baseline={"version": active.version, "metrics": _clean(candidate.decision.active)},
        decision=candidate.decision.reason,
        horizon_hours=settings.horizon_hours,
        rows={**candidate.rows, "labelled": labelled},
        reference=candidate.reference,
    )
    registry.register(tenant_id, meta)
    if promoted:
        registry.promote(tenant_id, version)
    progress(f"registered {version} ({'promoted' if promoted else meta.status}) at {uri}")
    return RetrainResult(
        version=version,
        promoted=promoted,
        decision=candidate.decision.reason,
        metrics=meta.metrics,
        baseline=meta.baseline,
        artifact_uri=uri,
        rows={**candidate.rows, "labelled": labelled},
    )


def compute_drift(
    settings: Settings, *, tenant_id: str, window_s: float = 24 * 3600.0
) -> dict[str, Any] | None:
    """Drift of the active learned version over the last ``window_s`` of event time in
    fact_prediction (PSI) and over the rows of the window before whose outcome is known (ECE);
    stored with the version. None while the analytic baseline is active (nothing trained)."""
    from aurora_ray.warehouse import Warehouse

    store = RedisStore(settings.redis_url)
    registry = ModelRegistry(store, baseline_version=settings.model_version)
    meta = registry.active(tenant_id)
    if meta is None:
        return None
    table = Warehouse.from_settings(settings).read("fact_prediction", tenant_id, columns=_COLUMNS)
    if table.num_rows == 0:
        return None
    rows = prepare_batch(table.to_pandas())
    end = float(rows["t_s"].max())
    recent = rows[rows["t_s"] > end - window_s]
    labelled = tr.label_frame(rows, horizon_s=settings.horizon_s, end_s=end, key=_KEY)
    known = labelled[labelled["t_s"] > end - window_s - settings.horizon_s]
    report = drift_report(
        meta.reference,
        recent[list(FEATURE_NAMES)].to_numpy(),
        list(FEATURE_NAMES),
        outcome_probabilities=known["probability"].to_numpy(),
        outcome_labels=known[tr.LABEL].to_numpy(),
    )
    report.update(version=meta.version, as_of=_iso(end), computed_at=_iso(time.time()))
    registry.update(tenant_id, meta.version, drift=report)
    return report
