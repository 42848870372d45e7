"""The demand calendar: fitting hour-of-week shares and the exposure of a horizon."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurora_ray.domain.calendar import (
    WEEK_HOURS,
    exposure,
    fit_week_profile,
    hour_of_week,
    validate_week_profile,
)
from aurora_ray.domain.events import parse_ndjson
from aurora_ray.domain.state import EventBatch, ScoringParams, SkuState, apply_batch
from aurora_ray.testing import order, sku_upserted

pytestmark = pytest.mark.unit

HOUR = 3600.0
MONDAY = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday


def test_hour_of_week_starts_on_monday_midnight_utc() -> None:
    assert hour_of_week(MONDAY) == pytest.approx(0.0)
    assert hour_of_week(MONDAY + 5 * 24 * HOUR + 90 * 60) == pytest.approx(121.5)  # Saturday
    assert hour_of_week(MONDAY + 7 * 24 * HOUR) == pytest.approx(0.0)


def test_fit_counts_units_per_hour_with_an_even_floor() -> None:
    # Sales only on Mondays 09:00-10:00: that hour holds (almost) the whole week.
    ts = MONDAY + 9 * HOUR + np.arange(10) * 7 * 24 * HOUR
    profile = fit_week_profile(ts, np.full(10, 3.0))
    assert len(profile) == WEEK_HOURS
    assert sum(profile) == pytest.approx(1.0)
    assert profile[9] == pytest.approx(0.98 + 0.02 / WEEK_HOURS)
    assert profile[10] == pytest.approx(0.02 / WEEK_HOURS)


def test_fit_without_sales_is_flat_and_lengths_must_match() -> None:
    assert fit_week_profile(np.empty(0), np.empty(0)) == tuple([1 / WEEK_HOURS] * WEEK_HOURS)
    with pytest.raises(ValueError, match="differ in length"):
        fit_week_profile(np.ones(2), np.ones(3))


def test_validate_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="168 hourly shares, got 3"):
        validate_week_profile([1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        validate_week_profile([-1.0] + [1.0] * 167)
    assert sum(validate_week_profile([2.0] * WEEK_HOURS)) == pytest.approx(1.0)


def test_flat_week_or_no_profile_has_exposure_one() -> None:
    t = MONDAY + np.array([0.0, 13.5, 100.0]) * HOUR
    assert np.allclose(exposure(t, 48 * HOUR, None), 1.0)
    flat = tuple([1 / WEEK_HOURS] * WEEK_HOURS)
    assert np.allclose(exposure(t, 48 * HOUR, flat), 1.0)


def test_exposure_follows_the_calendar_and_averages_one_over_the_week() -> None:
    # Open Monday-Friday 08:00-18:00 evenly, closed at weekends.
    shares = np.zeros(WEEK_HOURS)
    for day in range(5):
        shares[day * 24 + 8 : day * 24 + 18] = 1.0
    profile = validate_week_profile(shares)
    friday_evening = MONDAY + (4 * 24 + 18) * HOUR
    tuesday_morning = MONDAY + (24 + 8) * HOUR
    weekend = exposure(np.array([friday_evening]), 48 * HOUR, profile)[0]
    weekday = exposure(np.array([tuesday_morning]), 48 * HOUR, profile)[0]
    assert weekend == pytest.approx(0.0)  # Friday 18:00 to Sunday 18:00: closed throughout
    assert weekday == pytest.approx((20 / 50) / (48 / 168))  # two open days of five
    # Over every start hour of a week, a horizon holds a flat week's demand on average.
    starts = MONDAY + np.arange(0, WEEK_HOURS, 0.25) * HOUR
    assert exposure(starts, 48 * HOUR, profile).mean() == pytest.approx(1.0, rel=1e-6)
    # Horizons longer than a week wrap around.
    assert exposure(np.array([tuesday_morning]), 2 * 168 * HOUR, profile)[0] == pytest.approx(1.0)


def test_the_fold_scores_a_closed_weekend_as_no_demand() -> None:
    shares = np.zeros(WEEK_HOURS)
    for day in range(5):
        shares[day * 24 + 8 : day * 24 + 18] = 1.0
    tenant = "00000000-0000-0000-0000-000000000001"

    def probability(profile: tuple[float, ...] | None, at: float) -> float:
        # One unit every 6 h for 10 days, the last at ``at``: 4 left, 8 expected in 48 h.
        events = [sku_upserted(tenant, "A", "W", 44, at=at - 10 * 24 * HOUR)]
        events += [
            order(tenant, "A", "W", 1, at=at - k * 6 * HOUR, order_id=f"o{k}")
            for k in reversed(range(40))
        ]
        parsed = parse_ndjson(
            "\n".join(json.dumps(e) for e in events).encode(),
            tenant_id=tenant,
            received_ms=1_893_456_000_000,
        )
        assert not parsed.errors
        params = ScoringParams(week_profile=profile)
        output = apply_batch(SkuState(), EventBatch.from_events(parsed.events), params)
        return float(output.probability[0])

    friday_evening = MONDAY + 2 * 7 * 24 * HOUR + (4 * 24 + 18) * HOUR
    flat = probability(None, friday_evening)
    closed = probability(validate_week_profile(shares), friday_evening)
    assert closed < 0.05 < flat
