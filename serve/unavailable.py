"""A store that does not answer is a ``503``, never a ``500``.

Reads, the token grant and settings go to Redis. While Redis (or Valkey) is down or still loading
its data, every such request answers ``503 {"error": "unavailable"}`` with ``Retry-After``, which
clients and load balancers know to retry; nothing else changes (ingest does not need Redis and
keeps accepting events). An ASGI middleware, outside every other middleware of the app, so the
alerts fast path is covered too; once a response has started (a streamed export), the error
cannot change its status and is raised as it is."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_DOWN = (RedisConnectionError, RedisTimeoutError)  # BusyLoadingError is a ConnectionError
RETRY_AFTER_S = 5


class StoreUnavailable:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except _DOWN as exc:
            if started:
                raise
            log.warning("%s %s: Redis does not answer: %s", scope["method"], scope["path"], exc)
            response = JSONResponse(
                {"error": "unavailable", "message": "the store does not answer; retry later"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
