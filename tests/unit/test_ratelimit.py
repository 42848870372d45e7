"""The rate limiter's arithmetic (aurora_ray.ratelimit): buckets, the tenant's rates and their
capacities, the all-or-nothing take, the answer and its headers, fail open; and its settings."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from aurora_ray.ratelimit import (
    Bucket,
    RateLimiter,
    TenantLimits,
    decide,
    take,
    validate_overrides,
)
from aurora_ray.settings import Settings

pytestmark = pytest.mark.unit


def settings(**overrides: Any) -> Settings:
    fields = Settings.model_fields.items()
    defaults = {n: f.get_default(call_default_factory=True) for n, f in fields}
    return Settings(**{**defaults, **overrides})


# -- one bucket ------------------------------------------------------------------------------------
def test_a_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    bucket = Bucket("requests", rate=10.0, capacity=25.0)
    assert bucket.refill(0.0, 1.0) == 10.0
    assert bucket.refill(5.0, 0.5) == 10.0
    assert bucket.refill(20.0, 10.0) == 25.0  # never above capacity
    assert bucket.refill(7.0, -3.0) == 7.0  # a clock that went back adds nothing


def test_wait_is_the_time_until_the_cost_is_there_and_infinite_over_capacity() -> None:
    bucket = Bucket("events", rate=4.0, capacity=10.0)
    assert bucket.wait_s(10.0, 3.0) == 0.0
    assert bucket.wait_s(1.0, 3.0) == pytest.approx(0.5)
    assert bucket.wait_s(0.0, 10.0) == pytest.approx(2.5)
    assert bucket.wait_s(10.0, 10.5) == math.inf
    assert bucket.full_in_s(2.0) == pytest.approx(2.0)
    assert bucket.full_in_s(10.0) == 0.0


# -- a tenant's rates and buckets ------------------------------------------------------------------
def test_the_defaults_are_the_product_documents() -> None:
    s = settings()
    limits = TenantLimits.resolve(s, {})
    requests, peak, sustained = limits.buckets(s)
    assert (requests.rate, requests.capacity) == (15_000, 15_000)
    assert (peak.rate, peak.capacity) == (45_000, 45_000)
    assert (sustained.rate, sustained.capacity) == (30_000, (45_000 - 30_000) * 300)
    assert limits.overridden == frozenset()


def test_45k_events_a_second_last_5_minutes_and_nothing_goes_faster() -> None:
    """Both event buckets together: at 45 K/s the sustained bucket empties after 300 s; above
    45 K/s the peak bucket refuses within a second."""
    s = settings()
    buckets = TenantLimits.resolve(s, {}).buckets(s)[1:]

    def seconds_at(rate_per_s: float, limit_s: int) -> int:
        levels = [b.capacity for b in buckets]
        for second in range(limit_s):
            levels = [b.refill(lv, 1.0) for b, lv in zip(buckets, levels, strict=True)]
            code, levels_after = take(buckets, levels, (rate_per_s, rate_per_s))
            if code != 1:
                return second
            levels = list(levels_after)
        return limit_s

    # 300 s in continuous time; taking each second's tokens at its start costs ~2 of them.
    assert 297 <= seconds_at(45_000, 400) <= 300
    assert seconds_at(30_000, 3_600) == 3_600  # sustained: forever
    assert seconds_at(46_000, 10) == 0


def test_a_tenants_overrides_replace_the_defaults_and_scale_the_peak() -> None:
    s = settings()
    limits = TenantLimits.resolve(s, {"requests_per_s": 100.0, "events_per_s": 1_000.0})
    assert (limits.requests_per_s, limits.events_per_s) == (100.0, 1_000.0)
    assert limits.events_peak_per_s == pytest.approx(1_500.0)  # the default 45/30 ratio
    assert limits.overridden == {"requests_per_s", "events_per_s"}
    _, peak, sustained = limits.buckets(s)
    assert peak.capacity == pytest.approx(1_500.0)
    assert sustained.capacity == pytest.approx(500.0 * 300)

    explicit = TenantLimits.resolve(s, {"events_per_s": 10.0, "events_peak_per_s": 50.0})
    assert explicit.events_peak_per_s == 50.0
    only_peak = TenantLimits.resolve(s, {"events_peak_per_s": 10.0})  # below the default 30 K
    assert only_peak.events_peak_per_s == only_peak.events_per_s == 30_000


def test_capacities_never_refuse_a_request_that_the_peak_admits() -> None:
    s = settings(rate_limit_events_peak_s=0)
    limits = TenantLimits.resolve(s, {"requests_per_s": 0.01, "events_per_s": 0.5})
    requests, peak, sustained = limits.buckets(s)
    assert requests.capacity == 1.0  # one request always fits
    assert peak.capacity == 1.0
    assert sustained.capacity >= peak.capacity


def test_overrides_are_validated() -> None:
    assert validate_overrides({"requests_per_s": 5, "events_per_s": None}) == {
        "requests_per_s": 5.0
    }
    for bad in (0, -1, math.inf, math.nan, 2e9, True, "5"):
        with pytest.raises(ValueError, match="requests_per_s"):
            validate_overrides({"requests_per_s": bad})  # type: ignore[dict-item]


# -- take: all or nothing --------------------------------------------------------------------------
BUCKETS = (
    Bucket("requests", 10.0, 10.0),
    Bucket("events_peak", 100.0, 100.0),
    Bucket("events", 50.0, 1_000.0),
)


def test_take_takes_from_every_bucket_or_from_none() -> None:
    code, levels = take(BUCKETS, (10.0, 100.0, 1_000.0), (1, 60, 60))
    assert (code, levels) == (1, (9.0, 40.0, 940.0))
    code, after = take(BUCKETS, levels, (1, 60, 60))  # the peak bucket lacks 20
    assert (code, after) == (0, levels)
    code, after = take(BUCKETS, (0.5, 100.0, 1_000.0), (1, 0, 0))  # no request token
    assert (code, after) == (0, (0.5, 100.0, 1_000.0))


def test_a_cost_over_a_capacity_can_never_pass() -> None:
    code, after = take(BUCKETS, (10.0, 100.0, 1_000.0), (1, 101, 101))
    assert (code, after) == (-1, (10.0, 100.0, 1_000.0))
    code, _ = take(BUCKETS, (0.0, 0.0, 0.0), (1, 101, 101))  # -1 even when also empty
    assert code == -1


# -- the answer ------------------------------------------------------------------------------------
def test_an_admitted_request_reports_the_bucket_with_the_smallest_share_left() -> None:
    decision = decide(BUCKETS, (9.0, 40.0, 940.0), (1, 60, 60), 1)
    assert decision.allowed and decision.bucket is BUCKETS[1]
    assert decision.headers == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "40",
        "RateLimit-Reset": "1",  # 60 tokens at 100/s
    }
    only_requests = decide(BUCKETS, (9.0, 40.0, 940.0), (1, 0, 0), 1)
    assert only_requests.bucket is BUCKETS[0]
    assert only_requests.headers["RateLimit-Remaining"] == "9"


def test_a_refusal_names_the_bucket_that_waits_longest_with_retry_after() -> None:
    # requests lacks 0.5 (0.05 s), the peak bucket 30 (0.3 s), the sustained one 500 (10 s).
    decision = decide(BUCKETS, (0.5, 30.0, 100.0), (1, 60, 600), 0)
    assert not decision.allowed and decision.status == 429
    assert decision.bucket is BUCKETS[2]
    assert decision.retry_after_s == 10
    assert decision.headers["Retry-After"] == "10"
    assert decision.headers["RateLimit-Limit"] == "1000"
    assert decision.headers["RateLimit-Remaining"] == "100"
    assert decision.headers["RateLimit-Reset"] == "18"  # 900 tokens at 50/s
    body = decision.body()
    assert body["error"] == "rate_limited" and body["bucket"] == "events"
    assert (body["limit"], body["rate_per_s"]) == (1000, 50.0)
    # Whole seconds, at least 1: a client that waits that long finds its tokens there.
    short = decide(BUCKETS, (0.9, 100.0, 1_000.0), (1, 0, 0), 0)
    assert short.retry_after_s == 1 and short.bucket is BUCKETS[0]


def test_a_request_over_a_capacity_is_413_with_a_message_to_split_it() -> None:
    decision = decide(BUCKETS, (10.0, 100.0, 1_000.0), (1, 250, 250), -1)
    assert not decision.allowed and decision.status == 413
    assert decision.retry_after_s is None and "Retry-After" not in decision.headers
    body = decision.body()
    assert body["error"] == "over_rate_limit_capacity" and body["bucket"] == "events_peak"
    assert "split it into batches of at most 100 events" in body["message"]
    assert "250 events" in body["message"]


# -- the limiter: the script's reply, failing open -------------------------------------------------
class Script:
    def __init__(self, reply: list[Any] | Exception) -> None:
        self.reply = reply
        self.calls: list[tuple[str, int, int]] = []

    async def take(
        self, tenant_id: str, *, requests: int, events: int, defaults: Sequence[float]
    ) -> list[Any]:
        self.calls.append((tenant_id, requests, events))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def reply(code: int, levels: Sequence[float]) -> list[bytes]:
    out = [str(code).encode()]
    for bucket, level in zip(BUCKETS, levels, strict=True):
        out += [repr(bucket.rate).encode(), repr(bucket.capacity).encode(), repr(level).encode()]
    return out


def test_the_limiter_reads_the_scripts_reply() -> None:
    script = Script(reply(0, [3.0, 100.0, 1_000.0]))
    limiter = RateLimiter(settings(), script)
    decision = asyncio.run(limiter.admit("t1", events=0))
    assert script.calls == [("t1", 1, 0)]
    assert not decision.allowed and decision.bucket == BUCKETS[0]
    assert decision.remaining == 3 and not decision.failed_open


def test_without_redis_the_limiter_fails_open_and_waits_before_asking_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    script = Script(TimeoutError("no reply within 0.1 s"))
    limiter = RateLimiter(settings(rate_limit_retry_s=2.0), script, clock=lambda: now[0])
    decision = asyncio.run(limiter.admit("t1", events=5))
    assert decision.allowed and decision.failed_open and decision.headers == {}
    assert "rate limiter unavailable" in caplog.text
    asyncio.run(limiter.admit("t1"))
    assert len(script.calls) == 1  # within retry_s: not asked
    now[0] += 2.5
    script.reply = reply(1, [9.0, 100.0, 1_000.0])
    decision = asyncio.run(limiter.admit("t1"))
    assert len(script.calls) == 2 and decision.allowed and not decision.failed_open


def test_a_disabled_limiter_asks_nothing() -> None:
    script = Script(reply(0, [0.0, 0.0, 0.0]))
    limiter = RateLimiter(settings(rate_limit_enabled=False), script)
    decision = asyncio.run(limiter.admit("t1", events=10))
    assert decision.allowed and not decision.failed_open and script.calls == []


# -- settings --------------------------------------------------------------------------------------
def test_rate_limit_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="must not be below rate_limit_events_per_s"):
        settings(rate_limit_events_per_s=50_000)
    for name, value in (
        ("rate_limit_requests_per_s", 0),
        ("rate_limit_events_per_s", -1),
        ("rate_limit_requests_burst_s", 0),
        ("rate_limit_timeout_s", 0),
        ("rate_limit_events_peak_s", -1),
    ):
        with pytest.raises(ValidationError, match=name):
            settings(**{name: value})
    assert settings(rate_limit_events_peak_per_s=30_000).rate_limit_events_peak_per_s == 30_000
