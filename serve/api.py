"""The FastAPI application: every route under /v1, plus /status at the root and OpenAPI at /docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from aurora_ray import __version__
from serve import (
    routes_auth,
    routes_backfill,
    routes_export,
    routes_ingest,
    routes_replenish,
    routes_status,
    routes_stock,
)
from serve.context import ApiContext
from serve.fast_alerts import FastAlerts
from serve.limits import RATE_LIMITED, RateLimited, RateLimitHeaders, on_rate_limited
from serve.metrics import ApiMetrics
from serve.unavailable import StoreUnavailable

DESCRIPTION = """Real-time per-SKU stock-out prediction.

Authenticate with OAuth2 client credentials (`POST /v1/oauth/token`) and send the token as
`Authorization: Bearer <token>`. A token sees only its own tenant."""


def create_api(
    ctx: ApiContext,
    *,
    ray_health: Callable[[], dict[str, Any]],
    metrics: ApiMetrics,
    fast_reads: bool = True,
) -> FastAPI:
    """The API. ``fast_reads``: answer ``GET /v1/stock/alerts`` through its fast path
    (``serve.fast_alerts.FastAlerts``), which gives the same answers; off only to compare."""
    app = FastAPI(
        title="Aurora API",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        servers=[{"url": "/", "description": "this server; the API lives under /v1"}],
    )
    app.state.ctx = ctx
    app.state.metrics = metrics
    app.include_router(routes_auth.router(), prefix="/v1")
    health = routes_status.router(ray_health)
    app.include_router(health, prefix="/v1")
    app.include_router(routes_ingest.router(metrics), prefix="/v1")
    # Every route a tenant's token reaches is rate limited (ADR-010).
    app.include_router(routes_backfill.router(), prefix="/v1", responses=RATE_LIMITED)
    app.include_router(routes_stock.router(), prefix="/v1", responses=RATE_LIMITED)
    app.include_router(routes_replenish.router(), prefix="/v1", responses=RATE_LIMITED)
    app.include_router(routes_export.router(), prefix="/v1", responses=RATE_LIMITED)
    app.add_exception_handler(RateLimited, on_rate_limited)
    # Inside the fast path, which puts the headers on its own answers.
    app.add_middleware(RateLimitHeaders)
    if fast_reads:
        app.add_middleware(FastAlerts, ctx=ctx, metrics=metrics)
    app.add_middleware(StoreUnavailable)  # added last: outside every other middleware
    # Health checks also answer at the root, outside the versioned API.
    root_status = next(r for r in health.routes if isinstance(r, APIRoute) and r.path == "/status")
    assert isinstance(root_status, APIRoute)  # noqa: S101 - narrows the type for mypy
    app.add_api_route("/status", root_status.endpoint, methods=["GET"], include_in_schema=False)
    return app
