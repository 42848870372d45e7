"""Training core: labels from stock trajectories, censoring, features, metrics, promotion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.models.training import (
    decode_feature_vectors,
    encode_feature_vectors,
    fit,
    held_out_metrics,
    label_frame,
    predict,
    promotion_decision,
    recall_at_precision,
    stockout_labels,
    time_cut,
)

pytestmark = pytest.mark.unit
H = 3600.0


def test_labels_of_a_hand_made_series() -> None:
    # One SKU, hourly rows; stock-out starts at t=5 h (3 -> 0) and at t=9 h (2 -> -1).
    t = np.arange(12) * H
    on_hand = [5, 4, 4, 3, 3, 0, 0, 2, 2, -1, 4, 4]
    labels, keep = stockout_labels(np.zeros(12), t, on_hand, horizon_s=2 * H)
    # Row i is positive iff a start lies in (t_i, t_i + 2 h]: starts at rows 5 and 9.
    assert labels.tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0]
    # Out of stock (rows 5, 6, 9) dropped; horizon past the end (t > 9 h) censored.
    assert keep.tolist() == [True, True, True, True, True, False, False, True, True, False,
                             False, False]


def test_a_start_exactly_at_the_horizon_counts_and_one_just_after_does_not() -> None:
    t = np.array([0.0, 48 * H, 48 * H + 1])
    labels, _ = stockout_labels(np.zeros(3), t, [1, 0, 0], horizon_s=48 * H)
    assert labels[0] == 1
    labels, _ = stockout_labels(np.zeros(3), t + [0, 1, 1], [1, 1, 0], horizon_s=48 * H)
    assert labels[0] == 0  # the start is at 48 h + 1 s


def test_the_first_row_out_of_stock_is_no_start_and_skus_do_not_leak() -> None:
    # SKU 0 ends in stock, SKU 1 begins out of stock: no start anywhere.
    group = np.array([0, 0, 0, 1, 1, 1])
    t = np.array([0, 1, 2, 0, 1, 2]) * H
    labels, keep = stockout_labels(group, t, [3, 2, 1, 0, 0, 5], horizon_s=10 * H, end_s=20 * H)
    assert labels.tolist() == [0, 0, 0, 0, 0, 0]
    assert keep.tolist() == [True, True, True, False, False, True]


def test_unsorted_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        stockout_labels(np.zeros(3), [0.0, 2.0, 1.0], [1, 1, 1], horizon_s=H)


def test_label_frame_sorts_groups_and_drops_censored_rows() -> None:
    frame = pd.DataFrame(
        {
            "sku_id": ["b", "a", "a", "b", "a"],
            "t_s": [1 * H, 2 * H, 0.0, 0.0, 1 * H],
            "on_hand": [0, 0, 2, 1, 1],
        }
    )
    out = label_frame(frame, horizon_s=1 * H, end_s=2 * H)
    assert list(zip(out.sku_id, out.t_s, out.label, strict=True)) == [
        ("a", 0.0, 0),
        ("a", 1 * H, 1),
        ("b", 0.0, 1),
    ]


def test_feature_vectors_round_trip_and_a_bad_cell_names_its_row() -> None:
    x = np.arange(16, dtype=np.float64).reshape(2, 8) / 4
    assert np.array_equal(decode_feature_vectors(encode_feature_vectors(x), 8), x)
    with pytest.raises(ValueError, match="row 1: feature_vector is 4 bytes"):
        decode_feature_vectors([b"\0" * 32, b"\0" * 4], 8)
    with pytest.raises(ValueError, match="row 0: feature_vector is null"):
        decode_feature_vectors([None], 8)


def test_time_cut_holds_out_the_last_fifth() -> None:
    assert time_cut([0.0, 50.0, 100.0]) == pytest.approx(80.0)
    with pytest.raises(ValueError, match="holdout_fraction"):
        time_cut([0.0], 1.5)


def test_recall_at_precision_and_metrics() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    y = np.array([1, 0, 1, 1, 0])
    assert recall_at_precision(p, y, 1.0) == pytest.approx(1 / 3)
    assert recall_at_precision(p, y, 0.75) == pytest.approx(1.0)  # 3 of 4 at p >= 0.6
    assert recall_at_precision(p, y, 0.5) == pytest.approx(1.0)
    metrics = held_out_metrics(p, y)
    assert metrics["precision@0.7"] == pytest.approx(2 / 3)
    assert metrics["recall@0.7"] == pytest.approx(2 / 3)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_promotion_needs_lower_brier_and_no_worse_recall() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    active = np.array([0.8, 0.6, 0.75, 0.2, 0.3, 0.1, 0.1, 0.4])
    better = np.array([0.9, 0.8, 0.3, 0.1, 0.7, 0.05, 0.1, 0.2])
    assert promotion_decision(better, active, y).promote
    assert not promotion_decision(active, better, y).promote
    # A lower Brier score but a ranking that loses recall at the active precision.
    flat = np.full(8, 3 / 8)
    decision = promotion_decision(flat, np.where(y == 1, 0.71, 0.69), y)
    assert not decision.promote and "recall" in decision.reason


def test_fit_learns_that_low_cover_means_stock_out() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2000, len(FEATURE_NAMES)))
    y = (x[:, 4] < 0.3).astype(int)  # log_hours_of_cover decides
    booster = fit(x, y, FEATURE_NAMES, rounds=150)
    low, high = x.copy(), x.copy()
    low[:, 4], high[:, 4] = 0.1, 0.9
    assert predict(booster, low, FEATURE_NAMES).mean() > 0.8
    assert predict(booster, high, FEATURE_NAMES).mean() < 0.2
    with pytest.raises(ValueError, match="expected"):
        fit(x[:, :3], y, FEATURE_NAMES)


def _analytic_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose analytic probability is honest: each label is drawn with that probability."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, len(FEATURE_NAMES)))
    x[:, FEATURE_NAMES.index("analytic_probability")] = rng.uniform(0.01, 0.99, n)
    y = (rng.uniform(0, 1, n) < x[:, 0]).astype(int)
    return x, y


def test_the_booster_corrects_the_analytic_scorer_and_keeps_its_order() -> None:
    x, y = _analytic_rows(4000, seed=2)
    booster = fit(x, y, FEATURE_NAMES, rounds=60)
    p = predict(booster, x, FEATURE_NAMES)
    # Nothing to correct: it stays near the honest analytic probability...
    assert np.mean(np.abs(p - x[:, 0])) < 0.06
    # ...and rises with it wherever the other features are.
    grid = np.repeat(x[:1], 50, axis=0)
    grid[:, 0] = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(predict(booster, grid, FEATURE_NAMES)) >= 0)


def test_the_margin_travels_with_the_saved_model() -> None:
    import xgboost as xgb

    x, y = _analytic_rows(500, seed=3)
    booster = fit(x, y, FEATURE_NAMES, rounds=10)
    loaded = xgb.Booster()
    loaded.load_model(bytearray(booster.save_raw("ubj")))
    np.testing.assert_allclose(
        predict(loaded, x, FEATURE_NAMES), predict(booster, x, FEATURE_NAMES), rtol=1e-6
    )
    plain = fit(x, y, FEATURE_NAMES, rounds=10, margin=False)
    assert not np.allclose(predict(plain, x, FEATURE_NAMES), predict(booster, x, FEATURE_NAMES))
    others = [f"f{i}" for i in range(len(FEATURE_NAMES))]
    with pytest.raises(ValueError, match="analytic_probability"):
        predict(booster, x, others)


def test_next_stockout_starts_per_group() -> None:
    from aurora_ray.models.training import next_stockout_starts

    group = [0, 0, 0, 0, 1, 1, 1]
    t = np.array([0, 1, 2, 3, 0, 1, 2]) * H
    on_hand = [3, 0, 2, 2, 1, 1, 1]  # group 0 runs out at 1 h; group 1 never does
    following = next_stockout_starts(group, t, on_hand)
    np.testing.assert_array_equal(following[:1], [1 * H])
    assert np.isnan(following[1:]).all()


def test_the_gate_judges_replayed_alerts_as_the_evaluation_does() -> None:
    from aurora_ray.models.training import AlertReplay

    # Two SKUs scored hourly for 4 days; each runs out at hour 60.
    hours = np.arange(96.0)
    key = np.repeat(["a@W", "b@W"], len(hours))
    t = np.tile(hours * H, 2)
    following = np.where(t < 60 * H, 60 * H, np.nan)
    y = ((following - t <= 48 * H) & (t < 60 * H)).astype(int)
    replay = AlertReplay.from_rows(key, t, following, horizon_s=48 * H)
    assert len(replay.episodes) == 2
    # Late: the active model passes 0.7 only 10 h ahead, which no recall@24h counts.
    late = np.where((t >= 50 * H) & (t < 60 * H), 0.9, 0.05)
    # Early: the candidate passes it 30 h ahead, once per SKU.
    early = np.where((t >= 30 * H) & (t < 60 * H), 0.8, 0.02)
    decision = promotion_decision(early, late, y, replay=replay)
    assert decision.candidate["recall@24h@0.7"] == 1.0
    assert decision.active["recall@24h@0.7"] == 0.0
    assert decision.active["alert_precision@0.7"] == 1.0
    assert decision.promote, decision.reason
    assert "recall@24h" in decision.reason
    assert decision.candidate["threshold@active_precision"] == 0.8  # the highest with it
    reverse = promotion_decision(late, early, y, replay=replay)
    assert not reverse.promote


def test_the_replay_works_for_horizons_under_a_day() -> None:
    from aurora_ray.models.training import AlertReplay

    t = np.arange(24.0) * H
    following = np.where(t < 20 * H, 20 * H, np.nan)
    replay = AlertReplay.from_rows(["a@W"] * 24, t, following, horizon_s=12 * H)
    assert replay.lead_s == 12 * H  # warned the whole horizon ahead
    p = np.where(t == 8 * H, 0.9, 0.1)
    curve = replay.curve(p, [0.7])
    assert curve.recall[0] == 1.0 and curve.precision[0] == 1.0
