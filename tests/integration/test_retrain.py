"""The retrain job on the session's real Ray instance, with a small fact_prediction table of a
known pattern: stock runs down at a steady rate, so "cover below the horizon" is exactly the
label, while the recorded analytic probability knows nothing (0.5). The learned model must beat
it, be promoted, stored with its sha256 and listed; the job also runs through the dashboard's
job submission API as ``aurora retrain --wait`` would submit it."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa
import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.models.registry import ModelRegistry
from aurora_ray.models.retrain import compute_drift, run_retrain
from aurora_ray.models.store import read_artifact
from aurora_ray.models.training import encode_feature_vectors, sha256_hex

pytestmark = pytest.mark.integration
H = 3600.0
T0 = 1_748_736_000.0  # 2025-06-01T00:00:00Z


def _fact_prediction(
    n_skus: int = 12, days: int = 24, seed: int = 3, *, never_out: int = 0
) -> pa.Table:
    """``n_skus`` SKUs that run out and are restocked, then ``never_out`` that never run out."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in (
        "prediction_id", "sku_id", "warehouse_id", "predicted_at", "probability",
        "model_version", "feature_vector", "on_hand")}  # fmt: skip
    features: list[np.ndarray] = []
    pid = 0
    for s in range(n_skus + never_out):
        rate = rng.uniform(0.5, 3.0)  # units per hour
        full = rng.uniform(60, 200) if s < n_skus else 1e6
        stock, out_for = full, 0
        for h in range(days * 24):
            t = T0 + h * H
            if out_for:
                out_for -= 1
                stock = 0.0 if out_for else full  # restock after 10 h out of stock
            else:
                stock = max(stock - rate, 0.0)
                if stock <= 0:
                    out_for = 10
            cover = stock / rate
            features.append(np.array([
                0.5, stock, rate, rate, np.log1p(cover), 1.0, (t / H) % 24, 0.0]))  # fmt: skip
            pid += 1
            cols["prediction_id"].append(pid)
            cols["sku_id"].append(f"SKU-{s:02d}")
            cols["warehouse_id"].append("DE-HAM")
            cols["predicted_at"].append(int(t * 1e6))
            cols["probability"].append(0.5)
            cols["model_version"].append("analytic-nb-1")
            cols["on_hand"].append(stock)
    cols["feature_vector"] = encode_feature_vectors(np.vstack(features))
    ts = pa.timestamp("us", tz="UTC")
    return pa.table({
        "prediction_id": pa.array(cols["prediction_id"], pa.int64()),
        "sku_id": pa.array(cols["sku_id"]),
        "warehouse_id": pa.array(cols["warehouse_id"]),
        "predicted_at": pa.array(cols["predicted_at"], pa.int64()).cast(ts),
        "predicted_oos_at": pa.array([None] * pid, pa.int64()).cast(ts),
        "probability": pa.array(cols["probability"], pa.float64()),
        "model_version": pa.array(cols["model_version"]),
        "feature_vector": pa.array(cols["feature_vector"], pa.binary()),
        "on_hand": pa.array(cols["on_hand"], pa.float64()),
    })  # fmt: skip


def _tenant_with_history(stack, table: pa.Table | None = None) -> str:
    from aurora_ray.warehouse import Warehouse

    tenant_id = str(uuid.uuid4())
    Warehouse.from_settings(stack.settings).write_fact_prediction(
        tenant_id, _fact_prediction() if table is None else table, batch_id="test-history"
    )
    return tenant_id


def test_retrain_on_ray_data_beats_the_analytic_baseline_and_is_promoted(stack) -> None:
    tenant_id = _tenant_with_history(stack)
    lines: list[str] = []
    result = run_retrain(stack.settings, tenant_id=tenant_id, progress=lines.append, rounds=60)
    assert result.promoted, result.decision
    assert result.metrics["brier"] < result.baseline["metrics"]["brier"]
    assert result.baseline["version"] == stack.settings.model_version
    assert result.rows["train"] > 1000 and result.rows["held_out_positives"] > 0
    assert any("labelled" in line for line in lines), lines  # progress lines

    registry = ModelRegistry(
        RedisStore(stack.settings.redis_url), baseline_version=stack.settings.model_version
    )
    meta = registry.active(tenant_id)
    assert meta is not None and meta.version == result.version
    assert sha256_hex(read_artifact(meta.artifact_uri)) == meta.sha256
    assert meta.feature_names == list(FEATURE_NAMES)
    assert set(meta.reference) == set(FEATURE_NAMES)  # drift reference stored
    listing = registry.listing(tenant_id)
    assert [(r["version"], r["active"]) for r in listing] == [
        (result.version, True), (stack.settings.model_version, False)]  # fmt: skip
    json.dumps(listing)

    # A second run compares against the learned active version, not the baseline.
    again = run_retrain(stack.settings, tenant_id=tenant_id, rounds=60)
    assert again.baseline["version"] == result.version

    report = compute_drift(stack.settings, tenant_id=tenant_id)
    assert report is not None and report["rows"] > 0 and report["max_psi"] is not None


def test_retrain_job_through_the_job_submission_api(stack) -> None:
    from aurora_ray.models.submit import submit_retrain
    from aurora_ray.ray_jobs import follow_job, job_client

    tenant_id = _tenant_with_history(stack)
    job_id = submit_retrain(
        stack.settings,
        tenant_id=tenant_id,
        dashboard_url=stack.dashboard_url,
        extra_args=["--rounds", "30"],
    )
    lines: list[str] = []
    status = follow_job(
        job_client(stack.settings, stack.dashboard_url), job_id, timeout_s=240, on_log=lines.append
    )
    assert status == "SUCCEEDED", "\n".join(lines[-30:])
    assert any("registered xgb-" in line for line in lines), lines[-30:]
    registry = ModelRegistry(
        RedisStore(stack.settings.redis_url), baseline_version=stack.settings.model_version
    )
    assert registry.active_version(tenant_id).startswith("xgb-")


def test_a_tenant_without_history_fails_with_a_clear_error(stack) -> None:
    with pytest.raises(ValueError, match="no fact_prediction rows"):
        run_retrain(stack.settings, tenant_id=str(uuid.uuid4()))


def test_max_rows_trains_on_a_seeded_sample_of_the_labelled_rows(stack) -> None:
    tenant_id = _tenant_with_history(stack)
    lines: list[str] = []
    result = run_retrain(
        stack.settings, tenant_id=tenant_id, progress=lines.append, rounds=20, max_rows=2_000,
        promote=False,
    )  # fmt: skip
    labelled = result.rows["labelled"]
    assert labelled > 2_000
    assert result.rows["train"] + result.rows["held_out"] <= 2_000
    assert any(f"sampled 2000 of {labelled}" in line for line in lines), lines


def test_labelled_rows_of_skus_that_never_run_out_come_as_floats_with_nan(stack) -> None:
    """Most SKUs never run out, so most of the shuffle's partitions carry an all-null
    next_stockout_s: Ray Data's to_pandas() gave an object column of floats and nulls there,
    on which the held-out alert replay failed (`aurora bench --quick`'s retrain row)."""
    from aurora_ray.models.retrain import labelled_rows
    from aurora_ray.models.training import LABEL, NEXT_STOCKOUT

    table = _fact_prediction(n_skus=2, days=12, never_out=30)
    tenant_id = _tenant_with_history(stack, table)
    frame = labelled_rows(stack.settings, tenant_id)
    assert frame[NEXT_STOCKOUT].dtype == np.float64, frame.dtypes
    assert frame[LABEL].dtype == np.int8
    assert all(frame[name].dtype == np.float64 for name in ("t_s", "on_hand", *FEATURE_NAMES))
    never = ~frame["sku_id"].isin(["SKU-00", "SKU-01"])
    assert frame.loc[never, NEXT_STOCKOUT].isna().all() and never.sum() > 0
    assert frame.loc[~never, NEXT_STOCKOUT].notna().any()
    result = run_retrain(stack.settings, tenant_id=tenant_id, rounds=20, promote=False)
    assert result.rows["train_positives"] > 0 and result.rows["held_out"] > 0
