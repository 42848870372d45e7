"""HTTP load on 127.0.0.1 with aiohttp: closed-loop posts, paced posts, open-loop reads.

Open loop means requests leave at their scheduled times whatever the server does, and latency is
measured from the scheduled time, so a server that queues shows its queueing (no coordinated
omission). Every loop ends by its deadline; requests still open then count as timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = [
    "LoadResult",
    "closed_loop_gets",
    "closed_loop_posts",
    "open_loop_gets",
    "paced_posts",
    "run",
]

_INGEST = "/v1/ingest/events"


@dataclass
class LoadResult:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    accepted: int = 0  # events accepted (posts)
    # Events of posts whose outcome is unknown: the client gave up (timeout, connection error)
    # or the server answered 5xx (a 503 after the broker's acknowledgement timed out may still
    # have kept them). The topic holds between ``accepted`` and ``accepted + unsettled`` more.
    unsettled: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def run(coro: Any) -> Any:
    """Run a load coroutine on a fresh event loop (the caller is synchronous)."""
    return asyncio.run(coro)


def _post_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }


async def closed_loop_posts(
    base_url: str,
    token: str,
    bodies: Sequence[tuple[bytes, int]],
    *,
    clients: int,
    seconds: float,
    timeout_s: float = 30.0,
) -> LoadResult:
    """``clients`` connections each posting the next body as soon as the last one was answered,
    for ``seconds``. ``bodies`` are (gzip NDJSON, events) pairs, cycled."""
    cycle = itertools.cycle(bodies)
    headers = _post_headers(token)

    async def send(http: aiohttp.ClientSession, result: LoadResult) -> None:
        body, events = next(cycle)
        await _post(http, body, events, headers, result)

    return await _closed_loop(
        send, clients=clients, seconds=seconds, timeout_s=timeout_s, base_url=base_url
    )


async def closed_loop_gets(
    url: str,
    *,
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """``clients`` connections each sending the next GET as soon as the last one was answered,
    for ``seconds``: the most a server answers (its capacity), not its latency at a rate."""

    async def send(http: aiohttp.ClientSession, result: LoadResult) -> None:
        await _get(http, url, headers, result, since=time.perf_counter())

    return await _closed_loop(send, clients=clients, seconds=seconds, timeout_s=timeout_s)


async def _closed_loop(
    send: Callable[[aiohttp.ClientSession, LoadResult], Awaitable[None]],
    *,
    clients: int,
    seconds: float,
    timeout_s: float,
    base_url: str | None = None,
) -> LoadResult:
    """``clients`` connections each calling ``send`` again as soon as it returns, until
    ``seconds`` have passed."""
    result = LoadResult()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=clients)
    began = time.perf_counter()
    deadline = began + seconds

    async with aiohttp.ClientSession(base_url, timeout=timeout, connector=connector) as http:

        async def client() -> None:
            while time.perf_counter() < deadline:
                await send(http, result)

        await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - began
    return result


async def _get(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | None,
    result: LoadResult,
    *,
    since: float,
) -> None:
    """One GET, counted in ``result``; its latency runs from ``since`` (the scheduled time in an
    open loop, the send time in a closed one)."""
    try:
        async with http.get(url, headers=headers) as response:
            await response.read()
            result.count(response.status)
            if response.status == 200:
                result.ok += 1
            else:
                result.errors += 1
        result.latencies_ms.append((time.perf_counter() - since) * 1000)
    except TimeoutError:
        result.timeouts += 1
        # A lower bound, kept so that percentiles do not hide the requests that failed.
        result.latencies_ms.append((time.perf_counter() - since) * 1000)
    except aiohttp.ClientError:
        result.errors += 1
    result.requests += 1


async def _post(
    http: aiohttp.ClientSession,
    body: bytes,
    events: int,
    headers: dict[str, str],
    result: LoadResult,
) -> bool:
    """Post one ingest body and count its outcome in ``result``; True on 202."""
    sent = time.perf_counter()
    accepted = False
    try:
        async with http.post(_INGEST, data=body, headers=headers) as response:
            await response.read()
            result.count(response.status)
            if response.status == 202:
                result.ok += 1
                result.accepted += events
                accepted = True
            else:
                result.errors += 1
                if response.status >= 500:
                    result.unsettled += events
    except TimeoutError:
        result.timeouts += 1
        result.unsettled += events
    except aiohttp.ClientError:
        result.errors += 1
        result.unsettled += events
    result.requests += 1
    result.latencies_ms.append((time.perf_counter() - sent) * 1000)
    return accepted


async def paced_posts(
    base_url: str,
    token: str,
    next_body: Callable[[int], tuple[bytes, int]],
    *,
    rate: float,
    seconds: float,
    events_per_body: int,
    on_accepted: Callable[[int, float], None] = lambda _i, _t: None,
    max_in_flight: int = 16,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Post body ``i`` at ``start + i * events_per_body / rate`` (open loop, at most
    ``max_in_flight`` at once); ``on_accepted(i, perf_counter)`` runs at each 202."""
    result = LoadResult()
    headers = _post_headers(token)
    interval = events_per_body / rate
    total = int(seconds / interval)
    gate = asyncio.Semaphore(max_in_flight)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    began = time.perf_counter()

    async with aiohttp.ClientSession(base_url, timeout=timeout, connector=connector) as http:

        async def one(i: int) -> None:
            body, events = next_body(i)
            async with gate:
                if await _post(http, body, events, headers, result):
                    on_accepted(i, time.perf_counter())

        tasks = []
        for i in range(total):
            delay = began + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - began
    return result


async def open_loop_gets(
    url: str,
    *,
    rate: float,
    seconds: float,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    connections: int = 64,
) -> LoadResult:
    """GET ``url`` at ``rate`` per second for ``seconds``; latency from each scheduled time."""
    result = LoadResult()
    interval = 1.0 / rate
    total = int(seconds * rate)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=connections)
    began = time.perf_counter()

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:

        async def one(due: float) -> None:
            await _get(http, url, headers, result, since=due)

        tasks = []
        for i in range(total):
            due = began + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(due)))
        await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - began
    return result
