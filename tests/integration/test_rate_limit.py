"""The rate limiter's Lua script against a real Valkey (no Ray, no broker): the buckets it builds
are the core's, two "replicas" at once never get more through than a bucket allows, a tenant's
override applies from the next request, and a Redis that does not answer lets requests through
(fail open) within the timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aurora_ray.adapters.rate_limit import RateLimitScript, buckets_key, limits_key
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.embedded import start_valkey
from aurora_ray.ratelimit import BUCKETS, RateLimiter, TenantLimits
from aurora_ray.settings import Settings
from tests.integration._services import closed_port_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    valkey = start_valkey(Path(tmp_path_factory.mktemp("ratelimit")))
    try:
        yield valkey.url
    finally:
        valkey.stop()


def settings(redis_url: str, **overrides: Any) -> Settings:
    fields = Settings.model_fields.items()
    defaults = {n: f.get_default(call_default_factory=True) for n, f in fields}
    return Settings(**{**defaults, "redis_url": redis_url, **overrides})


def limiter(redis_url: str, **overrides: Any) -> RateLimiter:
    s = settings(redis_url, **overrides)
    return RateLimiter(s, RateLimitScript(redis_url, timeout=s.rate_limit_timeout_s))


def tenant() -> str:
    return str(uuid.uuid4())


async def admit_n(rl: RateLimiter, tenant_id: str, n: int, events: int = 0) -> list[Any]:
    return [await rl.admit(tenant_id, events=events) for _ in range(n)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"requests_per_s": 7.0},
        {"events_per_s": 1_000.0},
        {"events_per_s": 10.0, "events_peak_per_s": 50.0},
        {"events_peak_per_s": 10.0},
        {"requests_per_s": 0.01, "events_per_s": 0.5},
    ],
)
def test_the_scripts_buckets_are_the_cores(redis_url: str, overrides: dict[str, float]) -> None:
    s = settings(redis_url, rate_limit_events_peak_s=60)
    tid = tenant()
    store = RedisStore(redis_url)
    if overrides:
        store.put_rate_limit_overrides(tid, overrides)
    script = RateLimitScript(redis_url, timeout=1.0)
    rl = RateLimiter(s, script)
    reply = asyncio.run(script.take(tid, requests=1, events=0, defaults=rl.defaults))
    got = [float(reply[1 + 3 * i + j]) for i in range(3) for j in (0, 1)]
    want = TenantLimits.resolve(s, overrides).buckets(s)
    assert [b.name for b in want] == list(BUCKETS)
    assert got == pytest.approx([x for b in want for x in (b.rate, b.capacity)])
    assert int(reply[0]) == 1


def test_a_tenant_gets_its_bucket_and_then_429_with_retry_after(redis_url: str) -> None:
    rl = limiter(redis_url)
    tid = tenant()
    RedisStore(redis_url).put_rate_limit_overrides(tid, {"requests_per_s": 0.1})  # holds 1
    first, second = asyncio.run(admit_n(rl, tid, 2))
    assert first.allowed and first.headers["RateLimit-Remaining"] == "0"
    assert first.headers["RateLimit-Limit"] == "1"
    assert not second.allowed and second.status == 429 and second.bucket.name == "requests"
    assert 9 <= int(second.headers["Retry-After"]) <= 10  # 1 token at 0.1/s
    # Events: the peak bucket holds 10; 10 pass, then 1 more waits; 11 at once never pass.
    tid = tenant()
    RedisStore(redis_url).put_rate_limit_overrides(
        tid, {"events_per_s": 1.0, "events_peak_per_s": 10.0}
    )
    ok, refused = asyncio.run(admit_n(rl, tid, 2, events=10))
    assert ok.allowed and ok.bucket.name == "events_peak"
    assert not refused.allowed and refused.bucket.name == "events_peak"
    assert refused.retry_after_s == 1
    too_many = asyncio.run(rl.admit(tid, events=11))
    assert too_many.status == 413 and too_many.retry_after_s is None
    # A refused request took nothing: the request bucket (15 K) still holds all but one.
    reply = asyncio.run(rl.script.take(tid, requests=0, events=0, defaults=rl.defaults))
    assert float(reply[3]) == pytest.approx(14_999, abs=1)


@pytest.mark.parametrize("bucket", ["requests", "events_peak"])
def test_two_replicas_at_once_never_let_more_through_than_the_bucket(
    redis_url: str, bucket: str
) -> None:
    """Two limiters, each with its own connection on its own thread and event loop (as two
    Serve replicas), hammer one tenant: what they admit together never exceeds the bucket's
    capacity plus its refill over the elapsed time, and the bucket is used in full."""
    tid = tenant()
    if bucket == "requests":
        rate, costs = 200.0, (0, 0)
        overrides = {"requests_per_s": rate}
    else:
        rate, costs = 4_000.0, (7, 13)
        overrides = {"requests_per_s": 1e6, "events_per_s": 2_000.0, "events_peak_per_s": rate}
    RedisStore(redis_url).put_rate_limit_overrides(tid, overrides)
    s = settings(redis_url, rate_limit_events_peak_s=1.0)
    taken: dict[int, float] = {}  # tokens admitted, per replica

    def replica(index: int, events: int) -> None:
        rl = RateLimiter(s, RateLimitScript(redis_url, timeout=2.0))
        decisions = asyncio.run(admit_n(rl, tid, 600, events=events))
        assert not any(d.failed_open for d in decisions)
        taken[index] = sum(events or 1 for d in decisions if d.allowed)

    start = time.monotonic()
    threads = [threading.Thread(target=replica, args=ic) for ic in enumerate(costs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    assert len(taken) == 2
    total = sum(taken.values())
    capacity = rate  # both buckets hold one second's worth here
    assert total <= capacity + rate * elapsed + max(costs), (total, elapsed)
    assert total >= capacity - max(costs), (total, elapsed)
    assert all(taken[i] < 600 * (c or 1) for i, c in enumerate(costs))  # each was refused some


def test_a_tenants_override_applies_from_the_next_request(redis_url: str) -> None:
    from aurora_ray.tenants import set_tenant_limits, tenant_limits

    s = settings(redis_url)
    store = RedisStore(redis_url)
    tid = tenant()
    store.put_tenant(tid, {"name": "limits"})
    rl = limiter(redis_url)
    assert asyncio.run(rl.admit(tid)).allowed
    limits = set_tenant_limits(s, store, tid, requests_per_s=0.05)
    assert limits.requests_per_s == 0.05 and limits.overridden == {"requests_per_s"}
    # The 14,999 tokens left are clamped to the new capacity, 1: one passes, the next does not.
    after = asyncio.run(admit_n(rl, tid, 2))
    assert [d.allowed for d in after] == [True, False]
    assert after[1].headers["RateLimit-Limit"] == "1"
    assert tenant_limits(s, store, tid) == limits
    set_tenant_limits(s, store, tid, reset=True)
    assert tenant_limits(s, store, tid).overridden == frozenset()
    assert asyncio.run(rl.admit(tid)).allowed
    # Bad input names what is wrong; nothing is stored.
    with pytest.raises(ValueError, match="events_peak_per_s .* below events_per_s"):
        set_tenant_limits(s, store, tid, events_per_s=100.0, events_peak_per_s=50.0)
    with pytest.raises(ValueError, match="requests_per_s"):
        set_tenant_limits(s, store, tid, requests_per_s=-3.0)
    with pytest.raises(ValueError, match="nothing to set"):
        set_tenant_limits(s, store, tid)
    with pytest.raises(LookupError, match="no tenant"):
        set_tenant_limits(s, store, tenant(), requests_per_s=5.0)
    assert store.rate_limit_overrides(tid) == {}


def test_an_idle_tenants_buckets_expire_once_full(redis_url: str) -> None:
    tid = tenant()
    RedisStore(redis_url).put_rate_limit_overrides(tid, {"requests_per_s": 1_000.0})
    client = RedisStore(redis_url).client
    began = time.monotonic()
    asyncio.run(limiter(redis_url).admit(tid))
    ttl = client.pttl(buckets_key(tid))
    elapsed_ms = (time.monotonic() - began) * 1000
    # Full again after 1 ms (and the events buckets: untouched): the script sets an expiry of
    # about a second, which has run down by the time it is read on a loaded machine.
    assert 1_000 <= ttl + elapsed_ms + 1 and ttl <= 2_100, (ttl, elapsed_ms)
    assert client.exists(limits_key(tid))


def test_redis_refusing_connections_fails_open(redis_url: str) -> None:
    rl = limiter(closed_port_url())
    decision = asyncio.run(rl.admit(tenant(), events=5))
    assert decision.allowed and decision.failed_open


def test_redis_that_never_answers_fails_open_within_the_timeout() -> None:
    """A server that accepts the connection and never replies (a hung Redis): the request passes
    after the limiter's timeout, and the next ones pass at once for rate_limit_retry_s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        rl = limiter(url, rate_limit_timeout_s=0.2, rate_limit_retry_s=30)

        async def run() -> list[tuple[Any, float]]:
            out = []
            for _ in range(3):
                start = time.monotonic()
                out.append((await rl.admit(tenant()), time.monotonic() - start))
            return out

        (first, t1), (second, t2), (third, t3) = asyncio.run(run())
    assert first.failed_open and second.failed_open and third.failed_open
    assert 0.15 <= t1 < 2.0
    assert t2 < 0.15 and t3 < 0.15  # answered without waiting out the 0.2 s timeout again
