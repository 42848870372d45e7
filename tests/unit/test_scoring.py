"""The analytic stock-out scorer (aurora_ray.domain.scoring)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from aurora_ray.domain.scoring import score, stockout_probability

pytestmark = pytest.mark.unit


def prob(on_hand: float, mean: float, var: float) -> float:
    out = stockout_probability(np.array([on_hand]), np.array([mean]), np.array([var]))
    assert out.shape == (1,)
    return float(out[0])


@pytest.mark.parametrize(
    ("k", "mu"),
    [(1, 0.5), (1, 10.0), (5, 3.2), (10, 10.0), (50, 40.0), (480, 480.0), (500, 420.0),
     (3, 50.0), (1000, 900.0), (20, 0.01)],
)
def test_poisson_when_variance_equals_mean(k: int, mu: float) -> None:
    expected = stats.poisson.sf(k - 1, mu)  # P(X >= k)
    assert prob(k, mu, mu) == pytest.approx(expected, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize(("k", "mu"), [(5, 3.2), (50, 40.0)])
def test_variance_below_mean_is_treated_as_poisson(k: int, mu: float) -> None:
    expected = stats.poisson.sf(k - 1, mu)
    assert prob(k, mu, 0.5 * mu) == pytest.approx(expected, rel=1e-9)
    assert prob(k, mu, 0.0) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("k", "m", "v"),
    [(1, 0.5, 1.0), (5, 3.2, 6.4), (10, 10.0, 30.0), (50, 40.0, 44.0), (100, 60.0, 600.0),
     (480, 480.0, 960.0), (500, 420.0, 4200.0), (3, 50.0, 51.0), (2, 0.1, 5.0)],
)
def test_negative_binomial_when_overdispersed(k: int, m: float, v: float) -> None:
    r = m * m / (v - m)
    p = m / v
    dist = stats.nbinom(r, p)
    assert dist.mean() == pytest.approx(m)
    assert dist.var() == pytest.approx(v)
    assert prob(k, m, v) == pytest.approx(dist.sf(k - 1), rel=1e-8, abs=1e-14)


def test_vectorised_over_mixed_rows() -> None:
    on_hand = np.array([0.0, -3.0, 10.0, 10.0, 10.0, 7.0])
    mean = np.array([5.0, 5.0, 0.0, 8.0, 8.0, 8.0])
    var = np.array([5.0, 5.0, 0.0, 8.0, 20.0, 8.0])
    out = stockout_probability(on_hand, mean, var)
    expected = [
        1.0,
        1.0,
        0.0,
        stats.poisson.sf(9, 8.0),
        stats.nbinom(64.0 / 12.0, 8.0 / 20.0).sf(9),
        stats.poisson.sf(6, 8.0),
    ]
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("on_hand", [0.0, -1.0, -1000.0])
@pytest.mark.parametrize(("mean", "var"), [(0.0, 0.0), (5.0, 5.0), (5.0, 50.0)])
def test_no_stock_means_certain_stockout(on_hand: float, mean: float, var: float) -> None:
    assert prob(on_hand, mean, var) == 1.0


@pytest.mark.parametrize("on_hand", [1.0, 10.0, 1e6])
def test_no_demand_with_stock_means_no_stockout(on_hand: float) -> None:
    assert prob(on_hand, 0.0, 0.0) == 0.0
    assert prob(on_hand, 0.0, 3.0) == 0.0


# --------------------------------------------------------------------------- properties

_stock = st.integers(min_value=-10, max_value=2000)
_mean = st.floats(min_value=0.0, max_value=2000.0, allow_nan=False)
_dispersion = st.one_of(st.just(1.0), st.floats(min_value=1.01, max_value=50.0))


@settings(max_examples=100, deadline=None)
@given(on_hand=_stock, mean=_mean, dispersion=_dispersion)
def test_probability_is_in_unit_interval(on_hand: int, mean: float, dispersion: float) -> None:
    p = prob(on_hand, mean, mean * dispersion)
    assert 0.0 <= p <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    on_hand=st.lists(_stock, min_size=2, max_size=20),
    mean=_mean,
    dispersion=_dispersion,
)
def test_probability_non_increasing_in_on_hand(
    on_hand: list[int], mean: float, dispersion: float
) -> None:
    stock = np.array(sorted(on_hand), dtype=np.float64)
    n = len(stock)
    out = stockout_probability(stock, np.full(n, mean), np.full(n, mean * dispersion))
    assert np.all(np.diff(out) <= 1e-12), out


@settings(max_examples=100, deadline=None)
@given(on_hand=_stock, means=st.lists(_mean, min_size=2, max_size=20))
def test_probability_non_decreasing_in_mean(on_hand: int, means: list[float]) -> None:
    mean = np.array(sorted(means))
    n = len(mean)
    out = stockout_probability(np.full(n, float(on_hand)), mean, mean.copy())
    assert np.all(np.diff(out) >= -1e-12), out


# --------------------------------------------------------------------------- score()


def test_score_predicts_stockout_time_from_rate() -> None:
    on_hand = np.array([100.0, 100.0, 0.0, -5.0, 50.0])
    rate = np.array([0.01, 0.0, 0.01, 0.01, 0.5])
    as_of = np.array([1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0])
    scores = score(
        on_hand=on_hand, rate=rate, second_moment_rate=rate, as_of_s=as_of, horizon_s=3600.0
    )
    assert scores.predicted_oos_s[0] == pytest.approx(1_000.0 + 100.0 / 0.01)
    assert np.isnan(scores.predicted_oos_s[1])  # no demand: no stock-out expected
    assert scores.predicted_oos_s[2] == pytest.approx(3_000.0)  # already out
    assert scores.predicted_oos_s[3] == pytest.approx(4_000.0)  # negative stock: now
    assert scores.predicted_oos_s[4] == pytest.approx(5_000.0 + 100.0)
    np.testing.assert_allclose(scores.demand_mean, rate * 3600.0)


def test_score_probability_uses_horizon_mean_and_variance() -> None:
    on_hand = np.array([40.0, 40.0, 40.0])
    rate = np.array([1 / 100.0, 1 / 100.0, 0.0])  # 36 units per hour
    rate2 = np.array([1 / 100.0, 3 / 100.0, 0.0])  # unit orders / orders of mixed size
    scores = score(
        on_hand=on_hand, rate=rate, second_moment_rate=rate2,
        as_of_s=np.zeros(3), horizon_s=3600.0,
    )
    assert scores.probability[0] == pytest.approx(stats.poisson.sf(39, 36.0), rel=1e-9)
    m, v = 36.0, 108.0
    assert scores.probability[1] == pytest.approx(
        stats.nbinom(m * m / (v - m), m / v).sf(39), rel=1e-8
    )
    assert scores.probability[2] == 0.0
    # Lumpier orders with the same mean widen the distribution: more tail above the mean.
    assert scores.probability[1] > scores.probability[0]


@settings(max_examples=75, deadline=None)
@given(
    on_hand=st.floats(min_value=0.0, max_value=1e6),
    rate=st.floats(min_value=1e-6, max_value=100.0),
    as_of=st.floats(min_value=0.0, max_value=4e9),
)
def test_score_predicted_time_property(on_hand: float, rate: float, as_of: float) -> None:
    scores = score(
        on_hand=np.array([on_hand]), rate=np.array([rate]), second_moment_rate=np.array([rate]),
        as_of_s=np.array([as_of]), horizon_s=48 * 3600.0,
    )
    assert scores.predicted_oos_s[0] == pytest.approx(as_of + on_hand / rate, rel=1e-12)
    assert scores.predicted_oos_s[0] >= as_of
