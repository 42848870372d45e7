"""Scorers: sha256 checked on load, and a model's probabilities drive the fold's alerts."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.domain.events import StreamEvent
from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.domain.state import BatchOutput, EventBatch, ScoringParams, SkuState, apply_batch
from aurora_ray.models.scorer import AnalyticScorer, ArtifactError, XGBoostScorer
from aurora_ray.models.training import fit, sha256_hex

pytestmark = pytest.mark.unit


def _artifact() -> bytes:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(300, len(FEATURE_NAMES)))
    booster = fit(x, (x[:, 0] > 0.5).astype(int), FEATURE_NAMES, rounds=20)
    return bytes(booster.save_raw("ubj"))


def test_a_sha256_mismatch_is_refused() -> None:
    data = _artifact()
    with pytest.raises(ArtifactError, match="sha256"):
        XGBoostScorer.from_artifact("v1", data, sha256="0" * 64, feature_names=FEATURE_NAMES)
    scorer = XGBoostScorer.from_artifact(
        "v1", data, sha256=sha256_hex(data), feature_names=FEATURE_NAMES
    )
    assert scorer.version == "v1" and scorer.model is not None


def test_other_feature_names_are_refused() -> None:
    data = _artifact()
    with pytest.raises(ArtifactError, match="features"):
        XGBoostScorer.from_artifact("v1", data, sha256=sha256_hex(data), feature_names=["x"])


def _events(n: int) -> list[StreamEvent]:
    base = 1_750_000_000_000
    out = [
        StreamEvent(
            event_id="u", tenant_id="t", event_type="sku.upserted", ts_ms=base, received_ms=base,
            sku="A", warehouse="W", qty=0, value=1000,
        )
    ]
    for i in range(n):
        at = base + (i + 1) * 3_600_000 * 30
        out.append(
            StreamEvent(
                event_id=f"o{i}", tenant_id="t", event_type="order.created", ts_ms=at,
                received_ms=at, sku="A", warehouse="W", qty=1, value=0,
            )
        )
    return out


def test_the_model_probability_decides_the_alerts() -> None:
    params = ScoringParams(dedup_window_s=1.0)  # (0 loops forever in raise_alerts)
    analytic = apply_batch(SkuState(), EventBatch.from_events(_events(5)), params)
    assert len(analytic.alert_rows) == 0  # 1000 in stock: no analytic alert

    def always(output: BatchOutput) -> np.ndarray:
        return np.full(len(output.event_rows), 0.95)

    learned = apply_batch(SkuState(), EventBatch.from_events(_events(5)), params, always)
    assert len(learned.alert_rows) == 6
    assert np.allclose(learned.alert_probability, 0.95)
    assert np.allclose(learned.probability, 0.95)
    # The analytic score stays the first feature; the shown one is the model's.
    assert np.array_equal(learned.event_probability, analytic.event_probability)
    assert np.allclose(learned.event_score, 0.95)
    assert AnalyticScorer("analytic-nb-1").model is None
