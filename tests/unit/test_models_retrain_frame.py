"""The labelled rows as Ray Data hands them over, made fit for training (no Ray here).

`aurora bench --quick`'s retrain row failed with "float() argument must be a string or a real
number, not 'NAType'": ``map_groups(...).to_pandas()`` gives pyarrow-backed columns, a block
whose SKUs have no later stock-out carries an all-null ``next_stockout_s``, and the concatenated
column came back as ``object`` holding floats, ``None`` and ``<NA>``; the held-out alert replay
could not turn it into floats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.models import training as tr
from aurora_ray.models.retrain import train_candidate, training_frame

pytestmark = pytest.mark.unit
H = 3600.0


def _labelled(n_skus: int = 20, hours: int = 240) -> pd.DataFrame:
    """Hourly rows of SKUs that sell down steadily; every fourth one runs out and is restocked
    10 h later, the others never run out."""
    rows = []
    rng = np.random.default_rng(5)
    for s in range(n_skus):
        rate, full = rng.uniform(0.5, 3.0), rng.uniform(60, 200)
        runs_out = s % 4 == 0
        stock, out_for = (full if runs_out else 1e6), 0
        for h in range(hours):
            if out_for:
                out_for -= 1
                stock = 0.0 if out_for else full
            else:
                stock = max(stock - rate, 0.0)
                out_for = 10 if stock <= 0 else 0
            cover = stock / rate
            analytic = 0.9 if cover < 48 else 0.05
            features = [analytic, stock, rate, rate, np.log1p(cover), 1.0, h % 24, 0.0]
            rows.append(
                {"sku_id": f"SKU-{s:02d}", "warehouse_id": "DE-HAM", "t_s": h * H,
                 "on_hand": stock, "probability": analytic,
                 **dict(zip(FEATURE_NAMES, features, strict=True))}
            )  # fmt: skip
    frame = pd.DataFrame(rows)
    return tr.label_frame(
        frame, horizon_s=48 * H, end_s=(hours - 1) * H, key=("sku_id", "warehouse_id")
    )


def _as_ray_data_gives_it(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column pyarrow-backed, ``next_stockout_s`` an object column: a float where a
    stock-out follows, ``None`` or ``<NA>`` (from the blocks of SKUs that never run out)."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name in frame.columns:
        values = frame[name].to_numpy()
        if name in ("sku_id", "warehouse_id"):
            out[name] = pd.array(values.astype(str), dtype=pd.ArrowDtype(pa.large_string()))
        elif name == tr.LABEL:
            out[name] = pd.array(values, dtype=pd.ArrowDtype(pa.int8()))
        elif name == tr.NEXT_STOCKOUT:
            missing = [None, pd.NA]
            cells = [
                missing[i % 2] if np.isnan(v) else float(v) for i, v in enumerate(values.tolist())
            ]
            out[name] = pd.Series(cells, dtype=object)
        else:
            out[name] = pd.array(values, dtype=pd.ArrowDtype(pa.float64()))
    return out


def test_the_frame_ray_data_gives_breaks_the_alert_replay() -> None:
    raw = _as_ray_data_gives_it(_labelled())
    assert raw[tr.NEXT_STOCKOUT].isna().any() and raw[tr.NEXT_STOCKOUT].notna().any()
    with pytest.raises(TypeError, match="NAType"):
        tr.AlertReplay.from_rows(raw["sku_id"], raw["t_s"], raw[tr.NEXT_STOCKOUT], horizon_s=H)


def test_training_frame_has_numpy_columns_with_nan_for_a_missing_stock_out() -> None:
    labelled = _labelled()
    frame = training_frame(_as_ray_data_gives_it(labelled))
    assert list(frame.columns) == list(labelled.columns)
    assert frame[tr.NEXT_STOCKOUT].dtype == np.float64
    assert frame[tr.LABEL].dtype == np.int8
    for name in ("t_s", "on_hand", "probability", *FEATURE_NAMES):
        assert frame[name].dtype == np.float64, name
    expected = labelled[tr.NEXT_STOCKOUT].to_numpy()
    np.testing.assert_array_equal(frame[tr.NEXT_STOCKOUT].to_numpy(), expected)  # NaN == NaN
    assert frame["sku_id"].tolist() == labelled["sku_id"].tolist()


def test_a_candidate_trains_and_is_judged_on_the_frame_ray_data_gives() -> None:
    frame = training_frame(_as_ray_data_gives_it(_labelled()))
    candidate = train_candidate(frame, horizon_s=48 * H, active=None, threshold=0.7, rounds=10)
    assert candidate.rows["train"] + candidate.rows["held_out"] <= len(frame)
    assert candidate.rows["train_positives"] > 0 and candidate.rows["held_out"] > 0
    assert "alert_precision@0.7" in candidate.decision.active
