"""PSI and the drift report on known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.models.drift import drift_report, histogram, psi, reference_histograms

pytestmark = pytest.mark.unit


def test_psi_of_known_proportions() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="shape"):
        psi([0.5, 0.5], [1.0])


def test_histogram_bins_at_the_edges() -> None:
    assert histogram([0, 1, 2, 3], [1.5]).tolist() == [0.5, 0.5]
    assert histogram([1.0], [1.0]).tolist() == [0.0, 1.0]  # an edge belongs to the right bin


def test_same_distribution_is_stable_and_a_shift_is_flagged() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, size=(20_000, 2))
    reference = reference_histograms(train, ["a", "b"])
    assert len(reference["a"]["edges"]) == 9
    assert np.allclose(reference["a"]["proportions"], 0.1, atol=0.01)
    same = drift_report(reference, rng.normal(0, 1, size=(5_000, 2)), ["a", "b"])
    assert same["max_psi"] < 0.02 and same["status"] == "ok"
    shifted = np.column_stack([rng.normal(1, 1, 5_000), rng.normal(0, 1, 5_000)])
    report = drift_report(
        reference, shifted, ["a", "b"], outcome_probabilities=[0.9, 0.1], outcome_labels=[1, 0]
    )
    assert report["psi"]["a"] > 0.25 > report["psi"]["b"]
    assert report["status"] == "shift"
    assert report["ece"] == pytest.approx(0.1)
