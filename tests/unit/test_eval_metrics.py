"""Offline-evaluation metrics (aurora_ray.evaluation.metrics): hand-made cases with known answers,
plus properties checked against naive reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_ray.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    Alerts,
    Episodes,
    Samples,
    alert_precision,
    alerts_from_series,
    brier_score,
    count_duplicates,
    duplicates_per_10k,
    expected_calibration_error,
    label_samples,
    log_loss,
    precision_recall_curve,
    recall_at_lead,
    reliability_curve,
)

pytestmark = pytest.mark.unit

H = 3600.0
T0 = 1_700_000_000.0  # an epoch-second origin, so float precision at real magnitudes is exercised
HORIZON = 48 * H


def at(hours: float) -> float:
    return T0 + hours * H


def alerts(*rows: tuple[str, float]) -> Alerts:
    """Alerts from (sku, hours after T0); probability is irrelevant to the metrics."""
    return Alerts(
        sku=np.array([sku for sku, _ in rows], dtype=str),
        time_s=np.array([at(h) for _, h in rows]),
        probability=np.full(len(rows), 0.9),
    )


def episodes(*rows: tuple[str, float]) -> Episodes:
    """Episodes without end times from (sku, start hours)."""
    return Episodes(
        sku=np.array([sku for sku, _ in rows], dtype=str),
        start_s=np.array([at(h) for _, h in rows]),
    )


def spells(*rows: tuple[str, float, float]) -> Episodes:
    """Episodes from (sku, start hours, end hours)."""
    return Episodes(
        sku=np.array([sku for sku, _, _ in rows], dtype=str),
        start_s=np.array([at(h) for _, h, _ in rows]),
        end_s=np.array([at(h) for _, _, h in rows]),
    )


# --------------------------------------------------------------------------- precision


def test_precision_counts_followed_late_and_never() -> None:
    eps = episodes(("A", 10.0))
    result = alert_precision(
        alerts(("A", 0.0), ("A", -50.0), ("B", 0.0)),  # within H / start 60 h later / no episode
        eps,
        HORIZON,
    )
    assert result.n_alerts == 3
    assert result.n_followed == 1
    assert result.precision == pytest.approx(1 / 3)
    assert result.followed.tolist() == [True, False, False]
    assert result.n_ongoing == 0


def test_precision_window_is_open_at_the_alert_and_closed_at_the_horizon() -> None:
    eps = episodes(("A", 100.0))
    result = alert_precision(
        alerts(("A", 52.0), ("A", 100.0 - 48.0 - 1e-3), ("A", 100.0)),
        eps,
        HORIZON,
    )
    # start exactly t + H counts; just over H does not; an alert at the start itself does not
    assert result.followed.tolist() == [True, False, False]


def test_precision_ongoing_is_counted_separately_and_optional() -> None:
    eps = spells(("A", 10.0, 20.0), ("A", 30.0, 40.0))
    raised = alerts(
        ("A", 0.0),  # followed (10 h later)
        ("A", 10.0),  # ongoing at its start; also followed by the start at 30 h
        ("A", 15.0),  # ongoing, followed by 30 h
        ("A", 35.0),  # ongoing only
        ("A", 40.0),  # the episode ended at 40 h (end exclusive): nothing
        ("B", 35.0),  # another SKU: nothing
    )
    default = alert_precision(raised, eps, HORIZON)
    assert default.followed.tolist() == [True, True, True, False, False, False]
    assert default.ongoing.tolist() == [False, True, True, True, False, False]
    assert (default.n_followed, default.n_ongoing, default.n_ongoing_only) == (3, 3, 1)
    assert default.precision == pytest.approx(3 / 6)
    assert not default.include_ongoing
    wide = alert_precision(raised, eps, HORIZON, include_ongoing=True)
    assert wide.precision == pytest.approx(4 / 6)
    assert default.precision_followed_or_ongoing == pytest.approx(4 / 6)
    assert wide.precision_followed == pytest.approx(3 / 6)


def test_precision_without_end_times_has_no_ongoing() -> None:
    result = alert_precision(alerts(("A", 15.0)), episodes(("A", 10.0)), include_ongoing=True)
    assert result.n_ongoing == 0
    assert result.precision == 0.0


def test_precision_of_no_alerts_is_nan() -> None:
    empty = Alerts(sku=np.array([], dtype=str), time_s=np.array([]), probability=np.array([]))
    assert math.isnan(alert_precision(empty, episodes(("A", 1.0))).precision)
    no_episodes = Episodes(sku=np.array([]), start_s=np.array([]))
    assert alert_precision(alerts(("A", 0.0)), no_episodes).precision == 0.0


# --------------------------------------------------------------------------- recall at lead


def test_recall_boundaries_and_lead_times() -> None:
    s = 100.0
    eps = episodes(
        ("A", s),  # alert exactly 24 h before: counts
        ("B", s),  # 23 h before: too late
        ("C", s),  # 49 h before: too early for H = 48 h
        ("D", s),  # exactly 48 h before: counts
        ("E", s),  # 30 h and 40 h before: counts, earliest gives 40 h
        ("F", s),  # 49 h and 10 h before: neither qualifies
        ("G", s),  # only another SKU's alert
    )
    raised = alerts(
        ("A", s - 24),
        ("B", s - 23),
        ("C", s - 49),
        ("D", s - 48),
        ("E", s - 30),
        ("E", s - 40),
        ("F", s - 49),
        ("F", s - 10),
        ("X", s - 30),
    )
    result = recall_at_lead(raised, eps, lead_s=24 * H, horizon_s=HORIZON)
    assert result.detected.tolist() == [True, False, False, True, True, False, False]
    assert result.n_detected == 3
    assert result.n_episodes == 7
    assert result.recall == pytest.approx(3 / 7)
    assert (result.lead_times_s / H).tolist() == [24.0, 48.0, 40.0]
    assert result.median_lead_s == 40 * H


def test_recall_lead_time_uses_the_earliest_alert_in_the_horizon() -> None:
    eps = episodes(("A", 100.0), ("A", 300.0))
    raised = alerts(("A", 100 - 47), ("A", 100 - 30), ("A", 100 - 5), ("A", 300 - 26))
    result = recall_at_lead(raised, eps)
    assert result.detected.tolist() == [True, True]
    assert (result.lead_times_s / H).tolist() == [47.0, 26.0]
    assert result.median_lead_s == pytest.approx(36.5 * H)


def test_recall_with_no_detection_or_no_episodes() -> None:
    result = recall_at_lead(alerts(("A", 99.0)), episodes(("A", 100.0)))
    assert result.recall == 0.0
    assert math.isnan(result.median_lead_s)
    assert result.lead_times_s.size == 0
    none = recall_at_lead(alerts(("A", 0.0)), Episodes(sku=np.array([]), start_s=np.array([])))
    assert math.isnan(none.recall)


def test_recall_rejects_lead_longer_than_horizon() -> None:
    with pytest.raises(ValueError, match="lead_s"):
        recall_at_lead(alerts(("A", 0.0)), episodes(("A", 1.0)), lead_s=50 * H)


# --------------------------------------------------------------------------- Brier, log loss


def test_brier_score_by_hand() -> None:
    p = [0.1, 0.8, 0.6, 0.3]
    y = [0, 1, 0, 1]
    assert brier_score(p, y) == pytest.approx((0.01 + 0.04 + 0.36 + 0.49) / 4)
    assert brier_score([0.0, 1.0], [0, 1]) == 0.0
    assert brier_score([1.0, 0.0], [False, True]) == 1.0


def test_log_loss_by_hand() -> None:
    p = [0.1, 0.8, 0.6, 0.3]
    y = [0, 1, 0, 1]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.3)) / 4
    assert log_loss(p, y) == pytest.approx(expected, rel=1e-12)
    assert log_loss([0.5] * 3, [0, 1, 1]) == pytest.approx(math.log(2))


def test_log_loss_clips_certain_mistakes() -> None:
    assert log_loss([0.0, 1.0], [1, 0]) == pytest.approx(-math.log(1e-6))
    assert log_loss([0.0], [1], eps=1e-3) == pytest.approx(-math.log(1e-3))
    assert log_loss([1.0, 0.0], [1, 0]) == pytest.approx(-math.log(1 - 1e-6))


def test_scores_reject_bad_inputs_and_are_nan_when_empty() -> None:
    with pytest.raises(ValueError):
        brier_score([1.2], [1])
    with pytest.raises(ValueError):
        brier_score([0.5], [2])
    with pytest.raises(ValueError):
        brier_score([0.5, 0.5], [1])
    with pytest.raises(ValueError):
        log_loss([float("nan")], [1])
    assert math.isnan(brier_score([], []))
    assert math.isnan(log_loss([], []))


# --------------------------------------------------------------------------- reliability, ECE


def test_reliability_curve_bins() -> None:
    p = [0.05, 0.15, 0.15, 0.3, 0.95, 1.0, 0.0]
    y = [0, 1, 0, 1, 1, 1, 0]
    curve = reliability_curve(p, y, bins=10)
    assert curve.edges.tolist() == pytest.approx([k / 10 for k in range(11)])
    assert curve.edges[3] == 0.3  # exactly, so 0.3 falls in [0.3, 0.4)
    assert curve.counts.tolist() == [2, 2, 0, 1, 0, 0, 0, 0, 0, 2]
    assert curve.mean_predicted[0] == pytest.approx(0.025)
    assert curve.observed_frequency[0] == 0.0
    assert curve.mean_predicted[1] == pytest.approx(0.15)
    assert curve.observed_frequency[1] == 0.5
    assert curve.mean_predicted[3] == pytest.approx(0.3)
    assert curve.mean_predicted[9] == pytest.approx(0.975)  # p = 1 is in the last bin
    assert curve.observed_frequency[9] == 1.0
    assert np.isnan(curve.mean_predicted[2]) and np.isnan(curve.observed_frequency[2])


def test_ece_is_zero_when_perfectly_calibrated() -> None:
    p = [0.25] * 4 + [0.75] * 4
    y = [1, 0, 0, 0] + [1, 1, 1, 0]
    curve = reliability_curve(p, y, bins=10)
    filled = curve.counts > 0
    assert curve.mean_predicted[filled] == pytest.approx(curve.observed_frequency[filled])
    assert expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_miscalibrated_model() -> None:
    p = [0.1] * 10 + [0.9] * 10
    y = [0] * 10 + [1] * 5 + [0] * 5
    # bin 0.1: |0.1 - 0| = 0.1; bin 0.9: |0.9 - 0.5| = 0.4; equal weights -> 0.25
    assert expected_calibration_error(p, y) == pytest.approx(0.25)
    # weighted by counts: 30 samples at 0.1 (gap 0.1) and 10 at 0.9 (gap 0.4) -> 0.175
    p2 = [0.1] * 30 + [0.9] * 10
    y2 = [0] * 30 + [1] * 5 + [0] * 5
    assert expected_calibration_error(p2, y2) == pytest.approx(0.175)
    # one bin: ECE is the gap between mean prediction and base rate
    assert expected_calibration_error([0.6, 0.8], [0, 0], bins=1) == pytest.approx(0.7)


def test_ece_empty_and_bad_bins() -> None:
    assert math.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError):
        reliability_curve([0.5], [1], bins=0)


# --------------------------------------------------------------------------- duplicates


def test_duplicates_per_10k() -> None:
    raised = alerts(("A", 0.0), ("A", 10.0), ("A", 20.0), ("B", 0.0))
    # 10 h after 0 h, and 20 h is within 24 h of the (duplicate) alert at 10 h
    assert count_duplicates(raised) == 2
    assert duplicates_per_10k(raised) == 5000.0


def test_duplicates_window_boundary_ties_and_order() -> None:
    raised = alerts(("A", 24.0), ("A", 0.0), ("B", 5.0), ("B", 5.0), ("C", 0.0), ("A", 48.0))
    # A: 0, 24, 48 are exactly a window apart (allowed, as live); B: equal times -> 1 duplicate
    assert count_duplicates(raised) == 1
    assert duplicates_per_10k(raised) == pytest.approx(10_000 / 6)
    assert count_duplicates(raised, window_s=24 * H + 1) == 3
    empty = Alerts(sku=np.array([], dtype=str), time_s=np.array([]), probability=np.array([]))
    assert math.isnan(duplicates_per_10k(empty))


# --------------------------------------------------------------------------- alerts from series


def test_alerts_from_series_dedups_like_the_live_system() -> None:
    hours = [0, 1, 2, 24, 30, 48, 50, 5, 6]
    skus = ["A", "A", "A", "A", "A", "A", "A", "B", "B"]
    probs = [0.8, 0.9, 0.5, 0.95, 0.7, 0.71, float("nan"), 0.69, 0.7]
    out = alerts_from_series(skus, [at(h) for h in hours], probs, threshold=0.7, dedup_s=24 * H)
    assert out.sku.tolist() == ["A", "A", "A", "B"]
    # 1 h is within 24 h of 0 h; 24 h is exactly a window later (allowed); 30 h within 24 h of
    # 24 h; 48 h allowed; NaN never alerts; 0.69 < threshold, 0.7 >= threshold
    assert ((out.time_s - T0) / H).tolist() == [0.0, 24.0, 48.0, 6.0]
    assert out.probability.tolist() == [0.8, 0.95, 0.71, 0.7]
    assert count_duplicates(out) == 0


def test_alerts_from_series_sorts_unsorted_input_and_breaks_ties_in_input_order() -> None:
    hours = [30, 0, 10, 0]
    probs = [0.9, 0.75, 0.99, 0.8]
    out = alerts_from_series(["A"] * 4, [at(h) for h in hours], probs, threshold=0.7)
    assert ((out.time_s - T0) / H).tolist() == [0.0, 30.0]
    assert out.probability.tolist() == [0.75, 0.9]


def test_alerts_from_series_with_no_candidates() -> None:
    out = alerts_from_series(["A", "B"], [T0, T0], [0.1, 0.2], threshold=0.9)
    assert len(out) == 0


# --------------------------------------------------------------------------- labels


def test_label_samples_both_definitions() -> None:
    eps = spells(("A", 100.0, 105.0), ("B", 10.0, 11.0))
    sample_hours = [52.0, 51.0, 99.0, 100.0, 103.0, 105.0, 106.0, 0.0]
    skus = ["A"] * 7 + ["B"]
    times = [at(h) for h in sample_hours]
    default = label_samples(skus, times, eps, HORIZON)
    starts = label_samples(skus, times, eps, HORIZON, include_ongoing=False)
    # 52 h: start exactly t + H; 51 h: start 49 h away; 99 h: 1 h away; 100 h: at the start
    # (ongoing, not a start within (t, t + H]); 103 h: ongoing; 105 h: just ended; 106 h: after
    assert default.tolist() == [1, 0, 1, 1, 1, 0, 0, 1]
    assert starts.tolist() == [1, 0, 1, 0, 0, 0, 0, 1]
    assert default.dtype == np.int8


def test_label_samples_overlapping_episodes_and_no_end_times() -> None:
    eps = spells(("A", 0.0, 100.0), ("A", 10.0, 20.0))
    # at 50 h the latest-started episode has ended but the first is still ongoing
    assert label_samples(["A"], [at(50.0)], eps).tolist() == [1]
    instants = episodes(("A", 0.0), ("A", 10.0))
    times = [at(h) for h in (0.0, 5.0, 10.0)]
    assert label_samples(["A"] * 3, times, instants).tolist() == [1, 1, 0]
    assert label_samples(["A"] * 3, times, instants, include_ongoing=False).tolist() == [1, 1, 0]


def test_samples_from_episodes_feed_the_calibration_metrics() -> None:
    eps = spells(("A", 10.0, 12.0))
    samples = Samples.from_episodes(
        ["A", "A", "B"], [at(0.0), at(60.0), at(0.0)], [0.9, 0.2, 0.1], eps
    )
    assert samples.label.tolist() == [1, 0, 0]
    assert brier_score(samples.probability, samples.label) == pytest.approx(
        (0.01 + 0.04 + 0.01) / 3
    )


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        Alerts(sku=np.array(["A", "B"]), time_s=np.array([T0]), probability=np.array([0.5]))
    with pytest.raises(ValueError, match="end_s"):
        Episodes(sku=np.array(["A"]), start_s=np.array([T0]), end_s=np.array([T0 - 1]))
    with pytest.raises(ValueError, match="finite"):
        Episodes(sku=np.array(["A"]), start_s=np.array([np.nan]))
    with pytest.raises(ValueError, match="label"):
        Samples(
            sku=np.array(["A"]),
            time_s=np.array([T0]),
            probability=np.array([0.5]),
            label=np.array([3], dtype=np.int8),
        )
    ok = Episodes(sku=np.array(["A"]), start_s=np.array([T0]), end_s=np.array([np.inf]))
    assert label_samples(["A"], [T0 + 1e6], ok).tolist() == [1]  # still out of stock


# --------------------------------------------------------------------------- threshold sweep


def test_precision_recall_curve_by_hand() -> None:
    s = 100.0
    eps = episodes(("A", s), ("B", s))
    hours = [s - 40, s - 30, s - 20, s - 40, s - 5, 200.0]
    skus = ["A", "A", "A", "B", "B", "C"]
    probs = [0.75, 0.95, 0.99, 0.5, 0.95, 0.8]
    curve = precision_recall_curve(
        skus, [at(h) for h in hours], probs, eps, thresholds=[0.7, 0.9, 0.99]
    )
    # 0.7: A@60h (followed, lead 40 h), B@95h (followed, too late), C@200h (no episode)
    # 0.9: A@70h (followed, lead 30 h), B@95h;  0.99: A@80h (followed, only 20 h ahead)
    assert curve.n_alerts.tolist() == [3, 2, 1]
    assert curve.precision.tolist() == pytest.approx([2 / 3, 1.0, 1.0])
    assert curve.n_detected.tolist() == [1, 1, 0]
    assert curve.recall.tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert curve.median_lead_s[:2].tolist() == [40 * H, 30 * H]
    assert math.isnan(curve.median_lead_s[2])
    assert curve.n_episodes == 2


def test_precision_recall_curve_matches_the_per_threshold_functions() -> None:
    rng = np.random.default_rng(7)
    n_sku, n_hours = 40, 24 * 20
    sku_names = np.array([f"sku-{i:03d}" for i in range(n_sku)])
    skus = np.repeat(sku_names, n_hours)
    times = np.tile(T0 + np.arange(n_hours) * H, n_sku)
    probs = rng.beta(0.6, 2.0, size=len(times))
    probs[rng.random(len(probs)) < 0.01] = np.nan
    ep_sku = rng.choice(sku_names, size=60)
    ep_start = T0 + rng.integers(0, n_hours, size=60) * H + rng.choice([0.0, 0.5 * H], size=60)
    eps = Episodes(sku=ep_sku, start_s=ep_start, end_s=ep_start + rng.integers(1, 30, 60) * H)
    order = rng.permutation(len(times))
    curve = precision_recall_curve(skus[order], times[order], probs[order], eps)
    assert curve.thresholds.tolist() == list(DEFAULT_THRESHOLDS)
    for j, th in enumerate(DEFAULT_THRESHOLDS):
        raised = alerts_from_series(skus, times, probs, th)
        prec = alert_precision(raised, eps)
        rec = recall_at_lead(raised, eps)
        assert curve.n_alerts[j] == len(raised)
        assert np.isclose(curve.precision[j], prec.precision, equal_nan=True)
        assert np.isclose(curve.recall[j], rec.recall)
        assert np.isclose(curve.median_lead_s[j], rec.median_lead_s, equal_nan=True)
        assert count_duplicates(raised) == 0


def test_metrics_run_at_evaluation_scale() -> None:
    rng = np.random.default_rng(1)
    n_sku, n_hours = 1000, 300  # 300 000 hourly samples
    skus = np.repeat(np.array([f"S{i:05d}@WH1" for i in range(n_sku)]), n_hours)
    times = np.tile(T0 + np.arange(n_hours) * H, n_sku)
    probs = rng.random(len(times)) ** 3
    ep_sku = rng.choice(np.unique(skus), size=5000)
    ep_start = T0 + rng.random(5000) * n_hours * H
    eps = Episodes(sku=ep_sku, start_s=ep_start, end_s=ep_start + 6 * H)
    labels = label_samples(skus, times, eps)
    expected_calibration_error(probs, labels)
    brier_score(probs, labels)
    log_loss(probs, labels)
    raised = alerts_from_series(skus, times, probs, 0.7)
    alert_precision(raised, eps)
    recall_at_lead(raised, eps)
    duplicates_per_10k(raised)
    precision_recall_curve(skus, times, probs, eps)
    assert len(raised) > 5_000


# --------------------------------------------------------------------------- properties


def naive_alerts(rows: list[tuple[int, int, float]], threshold: float, dedup: float) -> list[int]:
    """Indices of (sku, time, p) rows alerted by the live rule, one SKU and time at a time."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1], i))
    last: dict[int, float] = {}
    out = []
    for i in order:
        sku, t, p = rows[i]
        if p >= threshold and (sku not in last or t >= last[sku] + dedup):
            last[sku] = t
            out.append(i)
    return out


sku_st = st.integers(0, 3)
hour_st = st.integers(0, 120)
episode_st = st.lists(st.tuples(sku_st, hour_st, st.integers(0, 30)), max_size=8)
alert_st = st.lists(st.tuples(sku_st, hour_st), max_size=12)


def build(
    ep_rows: list[tuple[int, int, int]], al_rows: list[tuple[int, int]]
) -> tuple[Episodes, Alerts]:
    eps = Episodes(
        sku=np.array([s for s, _, _ in ep_rows], dtype=np.int64),
        start_s=np.array([at(h) for _, h, _ in ep_rows]),
        end_s=np.array([at(h + d) for _, h, d in ep_rows]),
    )
    raised = Alerts(
        sku=np.array([s for s, _ in al_rows], dtype=np.int64),
        time_s=np.array([at(h) for _, h in al_rows]),
        probability=np.full(len(al_rows), 0.8),
    )
    return eps, raised


@settings(max_examples=150, deadline=None)
@given(episode_st, alert_st, st.sampled_from([0, 12, 24]), st.sampled_from([24, 48]))
def test_precision_and_recall_match_naive_definitions(
    ep_rows: list[tuple[int, int, int]], al_rows: list[tuple[int, int]], lead: int, horizon: int
) -> None:
    eps, raised = build(ep_rows, al_rows)
    prec = alert_precision(raised, eps, horizon * H)
    rec = recall_at_lead(raised, eps, lead * H, horizon * H)
    followed = [any(s == a and t < h <= t + horizon for s, h, _ in ep_rows) for a, t in al_rows]
    ongoing = [any(s == a and h <= t < h + d for s, h, d in ep_rows) for a, t in al_rows]
    assert prec.followed.tolist() == followed
    assert prec.ongoing.tolist() == ongoing
    detected, leads = [], []
    for s, h, _ in ep_rows:
        hits = [t for a, t in al_rows if a == s and h - horizon <= t <= h - lead]
        detected.append(bool(hits))
        if hits:
            leads.append(float(h - min(hits)))
    assert rec.detected.tolist() == detected
    assert (rec.lead_times_s / H).tolist() == pytest.approx(leads)
    if lead:  # then the earliest qualifying alert is also the earliest within [s - H, s)
        for (s, h, _), hit in zip(ep_rows, detected, strict=True):
            if hit:
                earliest = min(t for a, t in al_rows if a == s and h - horizon <= t < h)
                assert float(h - earliest) in leads
    for value in (prec.precision, rec.recall):
        assert math.isnan(value) or 0.0 <= value <= 1.0
    assert all(x >= lead for x in leads)


@settings(max_examples=150, deadline=None)
@given(episode_st, st.lists(st.tuples(sku_st, hour_st), max_size=12))
def test_labels_match_naive_definitions(
    ep_rows: list[tuple[int, int, int]], sample_rows: list[tuple[int, int]]
) -> None:
    eps, _ = build(ep_rows, [])
    skus = np.array([s for s, _ in sample_rows], dtype=np.int64)
    times = np.array([at(t) for _, t in sample_rows])
    with_ongoing = label_samples(skus, times, eps, HORIZON)
    starts_only = label_samples(skus, times, eps, HORIZON, include_ongoing=False)
    for i, (a, t) in enumerate(sample_rows):
        start = any(s == a and t < h <= t + 48 for s, h, _ in ep_rows)
        ongoing = any(s == a and h <= t < h + d for s, h, d in ep_rows)
        # positive-length episodes: "out of stock at some moment in (t, t + H]"
        out_in_window = any(
            s == a and d > 0 and h <= t + 48 and h + d > t for s, h, d in ep_rows
        ) or any(s == a and d == 0 and t < h <= t + 48 for s, h, d in ep_rows)
        assert starts_only[i] == int(start)
        assert with_ongoing[i] == int(start or ongoing) == int(out_in_window)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(sku_st, st.integers(0, 100), st.floats(0.0, 1.0)), max_size=40),
    st.sampled_from([0.3, 0.5, 0.7, 0.9]),
    st.sampled_from([0, 5, 24]),
)
def test_alerts_from_series_matches_the_naive_rule(
    rows: list[tuple[int, int, float]], threshold: float, dedup: int
) -> None:
    skus = np.array([s for s, _, _ in rows], dtype=np.int64)
    times = np.array([at(t) for _, t, _ in rows])
    probs = np.array([p for _, _, p in rows])
    out = alerts_from_series(skus, times, probs, threshold, dedup * H)
    expected = naive_alerts([(s, int(at(t)), p) for s, t, p in rows], threshold, dedup * H)
    got = sorted(zip(out.sku.tolist(), out.time_s.tolist(), out.probability.tolist(), strict=True))
    want = sorted((rows[i][0], at(rows[i][1]), rows[i][2]) for i in expected)
    assert got == want
    if dedup:
        assert count_duplicates(out, dedup * H) == 0
