"""The vectorised formatting of the shard's outputs gives exactly the per-value strings."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.domain.alerts import _iso_or_none, iso_utc, iso_utc_many

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
