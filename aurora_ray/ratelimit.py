"""Per-tenant rate limits (ADR-010): token buckets shared by every API replica.

Each tenant has three buckets, checked together by one Lua script in Redis
(:mod:`aurora_ray.adapters.rate_limit`) that takes a request's tokens from all of them or from
none:

* ``requests``: every request a tenant's token passes takes one token (refill
  ``requests_per_s``, holding ``requests_burst_s`` seconds' worth);
* ``events_peak`` and ``events``: ``POST /v1/ingest/events`` also takes one token per event it
  would accept from both. ``events_peak`` refills at the peak rate and holds one second of it, so
  nothing goes faster; ``events`` refills at the sustained rate and holds
  ``(peak - sustained) x peak_s`` tokens, so the peak rate lasts ``peak_s`` seconds.

This module is the arithmetic (the script's rules, mirrored for the tests and for
``aurora tenants limits``) and :class:`RateLimiter`, which the API calls once a request. A request
the limiter refuses takes no token. When Redis does not answer within the timeout the request
passes (fail open), with a log line and a metric, and the replica does not ask again for
``rate_limit_retry_s``: a limiter must never be the reason the API is down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aurora_ray.settings import Settings

__all__ = [
    "BUCKETS",
    "MAX_RATE",
    "Bucket",
    "Decision",
    "RateLimiter",
    "TenantLimits",
    "decide",
    "take",
    "validate_overrides",
]

log = logging.getLogger(__name__)

BUCKETS: Final = ("requests", "events_peak", "events")
MAX_RATE: Final = 1e9  # tokens a second; beyond it a limit means nothing


@dataclass(frozen=True)
class Bucket:
    name: str
    rate: float  # tokens a second
    capacity: float  # the most tokens it holds

    def refill(self, level: float, elapsed_s: float) -> float:
        return min(self.capacity, level + max(0.0, elapsed_s) * self.rate)

    def wait_s(self, level: float, cost: float) -> float:
        """Seconds until the bucket holds ``cost`` tokens: 0 when it does, inf when it never
        can (``cost`` over its capacity)."""
        if cost > self.capacity:
            return math.inf
        return max(0.0, (cost - level) / self.rate)

    def full_in_s(self, level: float) -> float:
        return max(0.0, (self.capacity - level) / self.rate)


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's rates: the settings' defaults, each replaced by the tenant's override."""

    requests_per_s: float
    events_per_s: float
    events_peak_per_s: float
    overridden: frozenset[str] = frozenset()

    @classmethod
    def resolve(cls, settings: Settings, overrides: Mapping[str, float]) -> TenantLimits:
        """The script's rules: an overridden sustained rate without a peak of its own scales the
        default peak with it; the peak is never below the sustained rate."""
        rps = overrides.get("requests_per_s", settings.rate_limit_requests_per_s)
        eps = overrides.get("events_per_s", settings.rate_limit_events_per_s)
        peak = overrides.get("events_peak_per_s")
        if peak is None:
            peak = settings.rate_limit_events_peak_per_s
            if "events_per_s" in overrides:
                peak = eps * peak / settings.rate_limit_events_per_s
        return cls(rps, eps, max(peak, eps), frozenset(overrides))

    def buckets(self, settings: Settings) -> tuple[Bucket, Bucket, Bucket]:
        peak_capacity = max(1.0, self.events_peak_per_s)
        sustained_capacity = (self.events_peak_per_s - self.events_per_s) * (
            settings.rate_limit_events_peak_s
        )
        return (
            Bucket(
                "requests",
                self.requests_per_s,
                max(1.0, self.requests_per_s * settings.rate_limit_requests_burst_s),
            ),
            Bucket("events_peak", self.events_peak_per_s, peak_capacity),
            Bucket("events", self.events_per_s, max(peak_capacity, sustained_capacity)),
        )


def validate_overrides(values: Mapping[str, float | None]) -> dict[str, float]:
    """The overrides to store (``None`` drops one): each a finite rate in (0, 1e9] a second;
    ``ValueError`` naming the first that is not."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value) or not 0 < value <= MAX_RATE:
            raise ValueError(f"{name}: must be a number above 0 and at most {MAX_RATE:.0e}")
        out[name] = float(value)
    return out


def take(
    buckets: Sequence[Bucket], levels: Sequence[float], costs: Sequence[float]
) -> tuple[int, tuple[float, ...]]:
    """The script's rule on refilled levels: ``(1, levels - costs)`` when every bucket holds its
    cost, ``(0, levels)`` when one does not, ``(-1, levels)`` when a cost exceeds a capacity (it
    can never pass). All or nothing: a refused request takes no token."""
    code = 1
    for bucket, level, cost in zip(buckets, levels, costs, strict=True):
        if cost > bucket.capacity:
            code = -1
        elif code == 1 and cost > level:
            code = 0
    if code != 1:
        return code, tuple(levels)
    return 1, tuple(level - cost for level, cost in zip(levels, costs, strict=True))


@dataclass(frozen=True)
class Decision:
    """A request's answer from the limiter. ``bucket`` is the one the headers describe: the
    refusing one, or, when allowed, the one of those it drew on with the smallest share left."""

    allowed: bool
    bucket: Bucket | None = None
    remaining: int = 0
    reset_s: int = 0  # until the bucket is full again
    retry_after_s: int | None = None  # refusals only; None when it can never pass
    cost: float = 0.0
    failed_open: bool = False  # Redis did not answer: allowed without a limit
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """429 to retry later, 413 for a request larger than the bucket (never passes)."""
        return 413 if self.retry_after_s is None else 429

    def body(self) -> dict[str, Any]:
        """The refusal's JSON: the same for a given tenant and request, whenever it is asked."""
        assert self.bucket is not None  # noqa: S101 - refusals always name their bucket
        bucket = self.bucket
        unit = "requests" if bucket.name == "requests" else "events"
        limit = {"bucket": bucket.name, "limit": int(bucket.capacity), "rate_per_s": bucket.rate}
        if self.retry_after_s is None:
            return {
                "error": "over_rate_limit_capacity",
                **limit,
                "message": f"this request carries {self.cost:.0f} {unit}, more than the "
                f"{bucket.name} bucket ever holds ({int(bucket.capacity)}): split it into "
                f"batches of at most {int(bucket.capacity)} {unit}",
            }
        return {
            "error": "rate_limited",
            **limit,
            "message": f"over the tenant's {bucket.name} rate limit ({bucket.rate:g} {unit}/s, "
            f"bursts up to {int(bucket.capacity)}); retry after the Retry-After header's seconds",
        }


ALLOWED_UNLIMITED: Final = Decision(allowed=True)
FAILED_OPEN: Final = Decision(allowed=True, failed_open=True)


def decide(
    buckets: Sequence[Bucket], levels: Sequence[float], costs: Sequence[float], code: int
) -> Decision:
    """The answer to a script's reply: ``levels`` after taking (``code`` 1) or as found."""
    used = [(b, lv, c) for b, lv, c in zip(buckets, levels, costs, strict=True) if c > 0]
    if code == 1:
        bucket, level, _ = min(used, key=lambda u: u[1] / u[0].capacity)
        retry: int | None = 0
    elif code == 0:
        bucket, level, cost = max(used, key=lambda u: u[0].wait_s(u[1], u[2]))
        retry = max(1, math.ceil(bucket.wait_s(level, cost)))
    else:
        bucket, level, _ = next(u for u in used if u[2] > u[0].capacity)
        retry = None
    cost = next(c for b, _, c in used if b is bucket)
    remaining = max(0, math.floor(level))
    reset = math.ceil(bucket.full_in_s(level))
    headers = {
        "RateLimit-Limit": str(int(bucket.capacity)),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset),
    }
    if code == 0:
        headers["Retry-After"] = str(retry)
    return Decision(
        allowed=code == 1,
        bucket=bucket,
        remaining=remaining,
        reset_s=reset,
        retry_after_s=None if code == -1 else retry,
        cost=cost,
        headers=headers,
    )


class BucketScript(Protocol):
    async def take(
        self, tenant_id: str, *, requests: int, events: int, defaults: Sequence[float]
    ) -> list[Any]: ...


class RateLimiter:
    """The API's limiter: one script call a request, on the caller's event loop."""

    def __init__(
        self,
        settings: Settings,
        script: BucketScript,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = settings.rate_limit_enabled
        self.retry_s = settings.rate_limit_retry_s
        self.script = script
        self.clock = clock
        self.defaults = (
            settings.rate_limit_requests_per_s,
            settings.rate_limit_requests_burst_s,
            settings.rate_limit_events_per_s,
            settings.rate_limit_events_peak_per_s,
            settings.rate_limit_events_peak_s,
        )
        self._skip_until = 0.0

    async def admit(self, tenant_id: str, *, events: int = 0) -> Decision:
        """Take one request token and ``events`` event tokens, or refuse; never raises."""
        if not self.enabled:
            return ALLOWED_UNLIMITED
        if self._skip_until and self.clock() < self._skip_until:
            return FAILED_OPEN
        try:
            reply = await self.script.take(
                tenant_id, requests=1, events=events, defaults=self.defaults
            )
            numbers = [float(x) for x in reply[1:]]
            buckets = [Bucket(BUCKETS[i], numbers[3 * i], numbers[3 * i + 1]) for i in range(3)]
            levels = [numbers[3 * i + 2] for i in range(3)]
            return decide(buckets, levels, (1, events, events), int(reply[0]))
        except Exception as exc:  # Redis down, slow, or an odd reply: fail open
            self._skip_until = self.clock() + self.retry_s
            log.warning(
                "rate limiter unavailable, requests pass unlimited for %.1f s: %r",
                self.retry_s,
                exc,
            )
            return FAILED_OPEN
