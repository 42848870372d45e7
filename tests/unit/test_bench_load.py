"""bench.load's post accounting: events of a 202 are accepted; those of a request whose outcome
is unknown (given up, cut, answered 5xx) are unsettled; a 4xx refused them (nothing produced)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from bench.load import LoadResult, _post


async def _answers(statuses: list[int | str]) -> LoadResult:
    """Post once per entry to a server on 127.0.0.1 that answers with that status, or sleeps
    past the client's timeout ("slow"), or drops the connection ("cut")."""
    plan = iter(statuses)

    async def ingest(request: web.Request) -> web.StreamResponse:
        await request.read()
        step = next(plan)
        if step == "slow":
            await asyncio.sleep(2.0)
        if step == "cut":
            assert request.transport is not None
            request.transport.close()
        return web.json_response({}, status=step if isinstance(step, int) else 202)

    app = web.Application()
    app.router.add_post("/v1/ingest/events", ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    result = LoadResult()
    timeout = aiohttp.ClientTimeout(total=0.5)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", timeout=timeout) as http:
            for _ in statuses:
                await _post(http, b"x", 1_000, {}, result)
    finally:
        await runner.cleanup()
    return result


def test_posts_count_accepted_refused_and_unsettled_events() -> None:
    result = asyncio.run(_answers([202, 400, 429, 503, "slow", "cut", 202]))
    assert result.requests == 7
    assert result.accepted == 2_000
    assert result.timeouts == 1
    assert result.unsettled == 3_000  # the 503, the timeout, the cut connection
    assert result.statuses == {202: 2, 400: 1, 429: 1, 503: 1}
