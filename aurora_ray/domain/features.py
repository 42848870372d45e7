"""The feature function: one per-event feature matrix for the live fold and for training.

Built from the fold's own per-event outputs (:class:`BatchOutput` ``event_*``), so a learned
scorer sees exactly what the shards compute, and training and serving cannot drift apart.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.state import BatchOutput

__all__ = ["FEATURE_NAMES", "event_features"]

FEATURE_NAMES: Final = (
    "analytic_probability",
    "on_hand",
    "rate_per_hour",
    "second_moment_per_hour",
    "log_hours_of_cover",
    "dispersion",
    "hour_of_day",
    "day_of_week",
)
_MAX_COVER_H = 1e4


def event_features(output: BatchOutput) -> NDArray[np.float64]:
    """One row per scored event (``output.event_*`` order), columns as in ``FEATURE_NAMES``."""
    rate = output.event_rate_per_h
    on_hand = output.event_on_hand
    positive = rate > 0
    safe_rate = np.where(positive, rate, 1.0)
    cover = np.where(positive, np.maximum(on_hand, 0.0) / safe_rate, _MAX_COVER_H)
    dispersion = np.where(positive, output.event_second_moment_per_h / safe_rate, 1.0)
    t = output.event_as_of_s
    return np.column_stack(
        [
            output.event_probability,
            on_hand,
            rate,
            output.event_second_moment_per_h,
            np.log1p(np.minimum(cover, _MAX_COVER_H)),
            dispersion,
            (t / 3600.0) % 24.0,
            (t / 86400.0 + 3.0) % 7.0,  # 1970-01-01 was a Thursday: Monday = 0
        ]
    )
