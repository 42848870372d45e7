"""What the rate limiter costs (ADR-010), in one process on a real Valkey (and broker).

``python -m bench.limiter_cost [--checks 20000] [--requests 5000] [--ingest 300] [--rounds 3]``

1. **A check alone**, one after another on one event loop: Aurora's token-bucket script through
   the lean client (``RateLimiter.admit``: one ``EVALSHA``, the reply turned into the answer and
   its headers), beside the ``limits`` library when it is importable (its asyncio Redis storage
   with the coredis and the redis-py client; the sliding-window-counter strategy, the nearest to
   a token bucket, and the moving window): CPU µs a check (the loop's thread) and latency.
2. **GET /v1/stock/alerts** (10 alerts, the fast path) through the ASGI app, limiter on and off.
3. **POST /v1/ingest/events** (1 000 events a request, gzip) through the ASGI app, on and off.

For 2 and 3: CPU µs a request of the thread that runs the event loop (the limiter's work is all
there; librdkafka's own threads are not), median of ``--rounds`` alternating rounds. Load goes to
127.0.0.1 only; every loop is bounded by its count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aurora_ray.adapters.kafka import TopicAdmin
from aurora_ray.adapters.rate_limit import RateLimitScript
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import ALL_SCOPES
from aurora_ray.domain.alerts import AlertRecord, alert_id_for
from aurora_ray.embedded import start_tansu, start_valkey
from aurora_ray.ratelimit import RateLimiter
from aurora_ray.settings import Settings, load_settings
from bench.common import gzip_body, order_lines, percentiles

_SECRET = "bench-limiter-cost-" + "x" * 32


async def _measure(n: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    for _ in range(min(200, n)):  # warm up: connect, load the script
        await call()
    latencies: list[float] = []
    cpu0 = time.thread_time()
    for _ in range(n):
        start = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - start) * 1e6)
    cpu = (time.thread_time() - cpu0) / n * 1e6
    p = percentiles(latencies)
    return {"cpu_us": cpu, "p50_us": p["p50"], "p99_us": p["p99"]}


async def checks(settings: Settings, n: int) -> dict[str, dict[str, float] | str]:
    url = settings.redis_url
    tenant = str(uuid.uuid4())
    RedisStore(url).put_rate_limit_overrides(tenant, {"requests_per_s": 1e9})
    out: dict[str, dict[str, float] | str] = {}
    limiter = RateLimiter(settings, RateLimitScript(url, timeout=1.0))
    out["aurora: token buckets, Lua via the lean client (admit)"] = await _measure(
        n, lambda: limiter.admit(tenant)
    )
    out["aurora: the same, 1 000 events (ingest)"] = await _measure(
        n, lambda: limiter.admit(tenant, events=1_000)
    )
    try:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import (
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )
    except ImportError as exc:
        out["limits"] = f"not importable ({exc}); pip install 'limits[async-redis]' to compare"
        return out
    uri = "async+" + url
    item = RateLimitItemPerSecond(1_000_000_000)
    for implementation in ("coredis", "redispy"):
        storage = RedisStorage(uri, implementation=implementation)
        sliding = SlidingWindowCounterRateLimiter(storage)
        key = f"{tenant}-{implementation}"
        out[f"limits: sliding window counter, {implementation}"] = await _measure(
            n, lambda s=sliding, k=key: s.hit(item, k)
        )
    moving = MovingWindowRateLimiter(RedisStorage(uri, implementation="coredis"))
    small = RateLimitItemPerSecond(15_000)  # a moving window keeps one entry per hit
    out["limits: moving window (15 K/s), coredis"] = await _measure(
        n, lambda: moving.hit(small, tenant + "-moving")
    )
    return out


# -- through the ASGI app -----------------------------------------------------------------------
async def asgi_call(app: Any, method: str, path: str, headers: list[Any], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"limit=10" if method == "GET" else b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _app(settings: Settings) -> tuple[Any, Any]:
    from serve.api import create_api
    from serve.context import ApiContext
    from serve.metrics import ApiMetrics

    ctx = ApiContext.from_settings(settings)
    return create_api(ctx, ray_health=lambda: {"status": "ok"}, metrics=ApiMetrics()), ctx


async def through_app(settings: Settings, requests: int, ingest: int, rounds: int) -> Any:
    tenant = str(uuid.uuid4())
    store = RedisStore(settings.redis_url)
    store.put_rate_limit_overrides(
        tenant, {"requests_per_s": 1e9, "events_per_s": 1e9, "events_peak_per_s": 1e9}
    )
    now = time.time()
    alerts = [
        AlertRecord(
            alert_id=alert_id_for(tenant, f"S{i}@DE-HAM", now - i),
            sku=f"S{i}",
            warehouse="DE-HAM",
            probability=0.9,
            predicted_oos_at=None,
            as_of_s=now - i,
            created_s=now - i,
            model_version="analytic-nb-1",
        )
        for i in range(20)
    ]
    store.write_outputs(tenant, shard=0, predictions={}, alerts=alerts)
    TopicAdmin(settings.kafka_bootstrap).ensure_topic(settings.topic_for(tenant), 4)
    apps = {
        on: _app(settings.model_copy(update={"rate_limit_enabled": on})) for on in (True, False)
    }
    token = apps[True][1].issuer.issue(tenant_id=tenant, client_id="bench", scopes=ALL_SCOPES)
    auth = (b"authorization", f"Bearer {token}".encode())
    ndjson = [(b"content-type", b"application/x-ndjson"), (b"content-encoding", b"gzip")]
    lines = order_lines(tenant, 1_000, skus=1_000, seed=3)
    body = gzip_body(lines)
    results: dict[str, dict[bool, list[float]]] = {"alerts": {}, "ingest": {}}
    for _ in range(rounds):
        for on in (False, True):
            app = apps[on][0]
            for name, n, method, path, headers, payload, ok in (
                ("alerts", requests, "GET", "/v1/stock/alerts", [auth], b"", 200),
                ("ingest", ingest, "POST", "/v1/ingest/events", [auth, *ndjson], body, 202),
            ):
                status = await asgi_call(app, method, path, headers, payload)  # warm
                if status != ok:
                    raise RuntimeError(f"{name}: HTTP {status}")
                cpu0 = time.thread_time()
                for _ in range(n):
                    await asgi_call(app, method, path, headers, payload)
                per = (time.thread_time() - cpu0) / n * 1e6
                results[name].setdefault(on, []).append(per)
    for _, ctx in apps.values():
        ctx.producer.close()
    return {
        name: {
            "off_us": statistics.median(arms[False]),
            "on_us": statistics.median(arms[True]),
            "added_us": statistics.median(arms[True]) - statistics.median(arms[False]),
            "rounds_off": [round(x, 1) for x in arms[False]],
            "rounds_on": [round(x, 1) for x in arms[True]],
        }
        for name, arms in results.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=20_000, help="checks a variant")
    parser.add_argument("--requests", type=int, default=5_000, help="alerts reads a round")
    parser.add_argument("--ingest", type=int, default=300, help="ingest requests a round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aurora-limiter-") as tmp:
        valkey = start_valkey(Path(tmp))
        tansu = start_tansu(Path(tmp))
        try:
            settings = load_settings(
                data_dir=Path(tmp),
                redis_url=valkey.url,
                kafka_bootstrap=tansu.url,
                jwt_secret=_SECRET,
                rate_limit_timeout_s=1.0,
            )
            check_rows = asyncio.run(checks(settings, args.checks))
            app_rows = asyncio.run(through_app(settings, args.requests, args.ingest, args.rounds))
        finally:
            tansu.stop()
            valkey.stop()
    out = sys.stdout
    out.write(f"one check, {args.checks} in a row (CPU of the loop's thread; latency):\n")
    for name, row in check_rows.items():
        if isinstance(row, str):
            out.write(f"  {name}: {row}\n")
        else:
            out.write(
                f"  {name}: {row['cpu_us']:.1f} us CPU, p50 {row['p50_us']:.0f} us, "
                f"p99 {row['p99_us']:.0f} us\n"
            )
    out.write(f"through the ASGI app, CPU a request, median of {args.rounds} rounds:\n")
    for name, row in app_rows.items():
        out.write(
            f"  {name}: off {row['off_us']:.1f} us, on {row['on_us']:.1f} us, "
            f"added {row['added_us']:+.1f} us (off {row['rounds_off']}, on {row['rounds_on']})\n"
        )


if __name__ == "__main__":
    main()
