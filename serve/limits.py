"""Rate limits on the HTTP side (ADR-010): admit a request through the replica's limiter
(``aurora_ray.ratelimit``), answer a refusal, and put the ``RateLimit-*`` headers on the
responses of the requests it admitted.

The decision of a request is kept in its ASGI scope, so that a request is charged once however
it is answered (the alerts fast path hands what it cannot answer to the FastAPI route, which
then does not charge it again), and so that ``RateLimitHeaders`` finds it when the response
starts."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aurora_ray.api_models import RateLimitedOut
from aurora_ray.ratelimit import Decision
from serve.context import ApiContext
from serve.metrics import ApiMetrics

SCOPE_KEY: Final = "aurora.rate_limit"

_HEADER_DOC = {
    "Retry-After": "whole seconds until the refused bucket holds this request's tokens",
    "RateLimit-Limit": "the most tokens the bucket holds",
    "RateLimit-Remaining": "tokens left in it",
    "RateLimit-Reset": "seconds until it is full again",
}
# OpenAPI entries of the limited routes.
RATE_LIMITED: Final[dict[int | str, dict[str, Any]]] = {
    429: {
        "model": RateLimitedOut,
        "description": "over the tenant's rate limit; nothing was done. Retry after "
        "`Retry-After` seconds (admitted requests carry the RateLimit-* headers too)",
        "headers": {
            name: {"description": doc, "schema": {"type": "integer"}}
            for name, doc in _HEADER_DOC.items()
        },
    }
}


class RateLimited(Exception):  # noqa: N818 - an answer, not a failure
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.body()["message"])
        self.decision = decision


async def admit(
    scope: Scope, ctx: ApiContext, metrics: ApiMetrics, tenant_id: str, *, events: int = 0
) -> Decision:
    """Charge the request (and ``events``) to the tenant; never raises."""
    decision = await ctx.limiter.admit(tenant_id, events=events)
    scope[SCOPE_KEY] = decision
    if decision.failed_open:
        metrics.failed_open()
    elif not decision.allowed and decision.bucket is not None:
        metrics.rate_limited(tenant_id, decision.bucket.name)
    return decision


def refusal(decision: Decision) -> Response:
    """``429`` with ``Retry-After``, or ``413`` for a request no bucket could ever hold."""
    return JSONResponse(decision.body(), status_code=decision.status, headers=decision.headers)


async def on_rate_limited(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)  # noqa: S101 - registered for RateLimited only
    return refusal(exc.decision)


def raw_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]


class RateLimitHeaders:
    """ASGI middleware: the admitted request's ``RateLimit-*`` headers on its response (the
    routes return their own ``Response`` objects, which a dependency cannot add headers to)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision: Decision | None = scope.get(SCOPE_KEY)
                if decision is not None and decision.allowed and decision.headers:
                    headers = [*message.get("headers", ()), *raw_headers(decision)]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
