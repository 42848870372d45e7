"""The lean asyncio Redis client of the alerts read (aurora_ray.adapters.resp) on a real Valkey:
replies, error replies, a timeout that leaves the connection in order, a dropped connection,
SELECT from the URL, and the store's read through it equal to the blocking client's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.adapters.resp import RespClient, supports
from aurora_ray.domain.alerts import AlertRecord, alert_id_for
from aurora_ray.embedded import start_valkey

pytestmark = pytest.mark.integration


def _loop_factories() -> list[Any]:
    """The standard event loop, and uvloop's (what Serve replicas run), when installed."""
    factories: list[Any] = [asyncio.new_event_loop]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with Serve
        return factories
    return [*factories, uvloop.new_event_loop]


Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=_loop_factories(), ids=lambda f: f.__module__.split(".")[0])
def run(request: pytest.FixtureRequest) -> Runner:
    def runner(coroutine: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=request.param) as loop_runner:
            loop_runner.run(coroutine)

    return runner


@pytest.fixture(scope="module")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_valkey(Path(tmp_path_factory.mktemp("resp")))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def test_replies_errors_and_select(valkey_url: str, run: Runner) -> None:
    blocking = redis.Redis.from_url(valkey_url.replace("/0", "/3"))
    blocking.set("resp:key", b"in db 3")

    async def main() -> None:
        client = RespClient(valkey_url.replace("/0", "/3"))
        assert await client.call("GET", "resp:key") == b"in db 3"
        assert await client.call("GET", "resp:missing") is None
        await client.call("DEL", "resp:list")  # each event loop's run starts afresh
        assert await client.call("RPUSH", "resp:list", "a", "b") == 2
        assert await client.call("LRANGE", "resp:list", 0, -1) == [b"a", b"b"]
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await client.call("GET", "resp:list")
        # Many calls in flight on the one connection get their own replies.
        replies = await asyncio.gather(*(client.call("ECHO", str(i)) for i in range(200)))
        assert replies == [str(i).encode() for i in range(200)]
        client.close()

    run(main())
    assert supports(valkey_url) and not supports("rediss://127.0.0.1:1/0")


def test_a_timed_out_call_leaves_the_next_replies_in_order(valkey_url: str, run: Runner) -> None:
    async def main() -> None:
        client = RespClient(valkey_url, timeout=0.2)
        with pytest.raises(redis.exceptions.TimeoutError):
            await client.call("BLPOP", "resp:never", 1)  # Valkey answers after 1 s
        client.timeout = 5.0
        assert await client.call("ECHO", "after") == b"after"
        client.close()

    run(main())


def test_a_dropped_connection_fails_its_calls_and_is_made_again(
    valkey_url: str, run: Runner
) -> None:
    admin = redis.Redis.from_url(valkey_url)

    async def main() -> None:
        client = RespClient(valkey_url)
        name = f"resp-{time.monotonic_ns()}"
        await client.call("CLIENT", "SETNAME", name)
        pending = asyncio.ensure_future(client.call("BLPOP", "resp:never-either", 5))
        await asyncio.sleep(0.1)
        killed = await asyncio.to_thread(admin.client_kill_filter, _type=None, skipme=True)
        assert killed >= 1
        with pytest.raises(redis.exceptions.ConnectionError):
            await pending
        assert await client.call("ECHO", "again") == b"again"
        client.close()

    run(main())


def test_no_server_is_a_connection_error(run: Runner) -> None:
    async def main() -> None:
        with pytest.raises(redis.exceptions.ConnectionError, match="cannot connect"):
            await RespClient("redis://127.0.0.1:1/0", timeout=2).call("PING")

    run(main())


def test_the_alerts_read_equals_the_blocking_one(valkey_url: str, run: Runner) -> None:
    store = RedisStore(valkey_url)
    tenant = "resp-tenant"
    now = time.time()
    alerts = [
        AlertRecord(
            alert_id=alert_id_for(tenant, f"S{i}@W{i % 2}", now - i),
            sku=f"S{i}",
            warehouse=f"W{i % 2}",
            probability=0.5 + i / 100,
            predicted_oos_at=None,
            as_of_s=now - i,
            created_s=now - i // 3,
            model_version="m",
        )
        for i in range(40)
    ]
    store.write_outputs(tenant, shard=0, predictions={}, alerts=alerts)
    queries = [
        {"limit": 5},
        {"limit": 100},
        {"limit": 3, "warehouse": "W1"},
        {"limit": 4, "min_probability": 0.8},
        {"limit": 2, "sku": "S7"},
        {"limit": 10, "since_ms": (now - 5) * 1000},
    ]

    async def main() -> None:
        for query in queries:
            page = await store.alerts_async(tenant, **query)  # type: ignore[arg-type]
            assert page == store.alerts(tenant, **query), query  # type: ignore[arg-type]
            if page.next_cursor:
                again = await store.alerts_async(tenant, **query, cursor=page.next_cursor)  # type: ignore[arg-type]
                assert again == store.alerts(tenant, **query, cursor=page.next_cursor)  # type: ignore[arg-type]

    run(main())
