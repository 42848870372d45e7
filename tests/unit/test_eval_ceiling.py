"""Ceiling measurements of the evaluation, on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.evaluation import metrics as m
from aurora_ray.evaluation.report import equal_precision, recall_at_precision
from aurora_ray.evaluation.runner import _false_alerts_in_transit, _Truth

pytestmark = pytest.mark.unit

H = 48 * 3600.0


def test_recall_at_precision_takes_the_best_qualifying_threshold() -> None:
    curve = {"precision": [0.3, 0.5, 0.7, float("nan")], "recall": [0.6, 0.4, 0.2, 0.0]}
    assert recall_at_precision(curve, 0.5) == 0.4
    assert recall_at_precision(curve, 0.1) == 0.6
    assert recall_at_precision(curve, 0.7) == 0.2
    assert np.isnan(recall_at_precision(curve, 0.8))


def test_equal_precision_compares_at_the_batch_best_precision() -> None:
    batch = {
        "pr_curve": {"precision": [0.4, 0.5], "recall": [0.3, 0.2], "recall_drain": [0.4, 0.3]}
    }
    live = {
        "pr_curve": {"precision": [0.45, 0.6], "recall": [0.5, 0.4], "recall_drain": [0.8, 0.6]}
    }
    rows = equal_precision({"methods": {"nightly-batch": batch, "aurora-analytic": live}})
    top = [r for r in rows if r["precision_at_least"] == 0.5]
    assert len(top) == 1
    assert top[0]["recall"] == 0.4 and top[0]["batch_recall"] == 0.2
    assert top[0]["ratio_recall"] == pytest.approx(2.0)
    assert top[0]["ratio_recall_drain"] == pytest.approx(2.0)
    assert {r["precision_at_least"] for r in rows} == {0.4, 0.45, 0.5}


def test_false_alerts_with_a_delivery_on_its_way_are_counted() -> None:
    episodes = m.Episodes(
        sku=np.array(["A", "B"]),
        start_s=np.array([100.0 * 3600, 10.0 * 3600]),
        end_s=np.array([120.0 * 3600, 20.0 * 3600]),
    )
    truth = _Truth(
        episodes=episodes,
        test_episodes=episodes,
        test_from_s=0.0,
        end_s=1e9,
        inbound={
            # C: ordered at 0 h, lands at 30 h, within 48 h of the alert at 5 h: averted.
            "C": (np.array([0.0]), np.array([30.0 * 3600])),
            # D: ordered only after the alert: does not count.
            "D": (np.array([6.0 * 3600]), np.array([30.0 * 3600])),
        },
    )
    alerts = m.Alerts(
        sku=np.array(["A", "B", "C", "D"]),
        time_s=np.array([60.0, 12.0, 5.0, 5.0]) * 3600,  # A followed at 100 h; B ongoing
        probability=np.ones(4),
    )
    false, in_transit = _false_alerts_in_transit(alerts, truth, H)
    assert (false, in_transit) == (2, 1)
