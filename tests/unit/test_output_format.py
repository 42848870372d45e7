"""The vectorised formatting of the shard's outputs gives exactly the per-value strings."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.domain.alerts import (
    _iso_or_none,
    alert_id_for,
    alert_ids_for,
    build_outputs,
    iso_utc,
    iso_utc_many,
)
from aurora_ray.domain.state import BatchOutput, SkuState

pytestmark = pytest.mark.unit


def _values() -> np.ndarray:
    rng = np.random.default_rng(3)
    ms = np.round(rng.uniform(0, 4e9, 20_000), 3)
    return np.concatenate(
        [
            rng.uniform(0, 4e9, 20_000),
            ms,
            ms + 0.0005,  # half a millisecond: truncation, not rounding
            np.round(rng.uniform(0, 4e9, 20_000), 6) - 5e-7,  # half a microsecond
            [0.0, 0.9999995, 0.9999994999, 1.7e9 + 0.9999996, 253402300798.9999],
        ]
    )


def test_iso_utc_many_equals_iso_utc() -> None:
    values = _values()
    assert iso_utc_many(values) == [iso_utc(float(v)) for v in values]


def test_iso_utc_many_out_of_range_like_iso_or_none() -> None:
    values = np.array([np.nan, np.inf, 253402300799.0, 5e11, -1.5, 1.7e9 + 0.25])
    assert iso_utc_many(values, none_if_out_of_range=True) == [
        _iso_or_none(float(v)) for v in values
    ]
    assert iso_utc_many(np.array([-1.5]))[0] == iso_utc(-1.5)


def test_alert_ids_for_equals_uuid5() -> None:
    rng = np.random.default_rng(5)
    keys = [f"SKU-{i}@WH-{i % 3}" for i in range(2_000)]
    as_of = np.round(rng.uniform(0, 4e9, len(keys)), 3).tolist()
    tenant = "00000000-0000-0000-0000-00000000abcd"
    assert alert_ids_for(tenant, keys, as_of) == [
        alert_id_for(tenant, k, t) for k, t in zip(keys, as_of, strict=True)
    ]


def _scored(state: SkuState, keys: list[str], *, at: float, p: float) -> BatchOutput:
    rows = state.rows_for(keys)
    n = len(rows)
    return BatchOutput(
        rows=rows,
        as_of_s=np.full(n, at),
        probability=np.array([p if i % 2 == 0 else np.nan for i in range(n)]),
        predicted_oos_s=np.full(n, at + 3600.0),
        demand_rate_per_h=np.full(n, 1.5),
        alert_rows=rows[:1],
        alert_as_of_s=np.array([at]),
        alert_probability=np.array([p]),
        alert_predicted_oos_s=np.array([np.nan]),
    )


def test_build_outputs_keeps_the_latest_picture_of_each_sku_and_every_alert() -> None:
    """A batch's outputs (the batch and its timers) give the records that merging each output's
    in order would: the latest scored picture of a SKU wins; alerts are kept in order."""
    state = SkuState()
    outputs = [
        _scored(state, ["A@W", "B@W", "C@W"], at=1.7e9, p=0.8),
        _scored(state, ["C@W", "A@W"], at=1.7e9 + 60, p=0.9),
        _scored(state, ["B@W", "A@W", "C@W"], at=1.7e9 + 120, p=0.95),
    ]
    predictions, alerts, _, _ = build_outputs(
        state, outputs, tenant_id="t", model_version="m", now_s=1.8e9
    )
    expected: dict[str, dict[str, object]] = {}
    for output in outputs:
        for j, row in enumerate(output.rows.tolist()):
            if not np.isnan(output.probability[j]):
                key = state.keys[row]
                expected[key] = {
                    "probability": round(float(output.probability[j]), 6),
                    "as_of": iso_utc(float(output.as_of_s[j])),
                }
    assert predictions.keys() == expected.keys()
    for key, want in expected.items():
        assert {k: predictions[key][k] for k in want} == want
    assert [(a.key, a.as_of, a.created_at) for a in alerts] == [
        ("A@W", iso_utc(1.7e9), iso_utc(1.8e9)),
        ("C@W", iso_utc(1.7e9 + 60), iso_utc(1.8e9)),
        ("B@W", iso_utc(1.7e9 + 120), iso_utc(1.8e9)),
    ]
    assert alerts[0].to_api()["as_of"] == iso_utc(1.7e9)
    assert alerts[0].alert_id == alert_id_for("t", "A@W", 1.7e9)
