"""How long the fuzz tests run: bounded for CI, longer on demand.

Every fuzz test takes its Hypothesis settings from :func:`fuzz_settings`. In CI (``FUZZ_SCALE``
unset) each property runs its own ``max_examples`` from a fixed seed, so a run is reproducible and
stays within the suite's time budget. ``FUZZ_SCALE=N`` multiplies every ``max_examples`` by N and
draws new inputs on every run (Hypothesis keeps the failures it found in ``.hypothesis/`` and
replays them first), e.g. ``FUZZ_SCALE=50 make fuzz`` for a longer hunt on a workstation."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ_SCALE", "fuzz_settings"]


def _scale() -> float:
    raw = os.environ.get("FUZZ_SCALE", "").strip()
    try:
        value = float(raw) if raw else 1.0
    except ValueError as exc:
        raise ValueError(f"FUZZ_SCALE must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"FUZZ_SCALE must be above 0, got {raw!r}")
    return value


FUZZ_SCALE = _scale()


def fuzz_settings(max_examples: int, *, deadline_ms: int = 2_000, **extra: Any) -> settings:
    """Settings of one fuzz property: ``max_examples`` scaled by ``FUZZ_SCALE``, derandomised
    unless scaled, and, in longer hunts, a per-example deadline far above what an example takes
    (an example that takes longer is itself a finding: a slow path an attacker could use)."""
    return settings(
        max_examples=max(1, round(max_examples * FUZZ_SCALE)),
        # In the suite (FUZZ_SCALE 1) no deadline: a loaded CI machine must not fail a run; a
        # longer hunt keeps it, since a slow example there is a finding.
        deadline=None if FUZZ_SCALE == 1.0 else timedelta(milliseconds=deadline_ms),
        derandomize=FUZZ_SCALE == 1.0,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **extra,
    )
