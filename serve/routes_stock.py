"""GET /v1/stock/alerts, GET /v1/stock/predictions, GET/PUT /v1/settings/thresholds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from aurora_ray.adapters.redis_store import AlertPage
from aurora_ray.api_models import AlertOut, PredictionOut, ThresholdsOut, ThresholdUpdate
from aurora_ray.auth import AuthError, Principal
from serve.context import ApiContext
from serve.deps import context, require

_json = msgspec.json.Encoder()

ALERTS_PATH = "/stock/alerts"
_READ_SCOPE = "alerts:read"

# The query parameters of GET /stock/alerts, declared once: the route's signature (and so the
# OpenAPI schema) and its fast path (FastAlerts) validate with the same types.
Since = Annotated[datetime | None, Query(description="alerts created at or after (ISO 8601)")]
MinProbability = Annotated[float | None, Query(ge=0, le=1)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(description="from the Link rel=next header")]
_SINCE: TypeAdapter[datetime | None] = TypeAdapter(Since)
_MIN_PROBABILITY: TypeAdapter[float | None] = TypeAdapter(MinProbability)
_LIMIT: TypeAdapter[int] = TypeAdapter(Limit)
_ALERT_PARAMS = frozenset({"sku", "warehouse", "since", "min_probability", "limit", "cursor"})


def _link_next(request: Request, response: Response, name: str, value: str) -> None:
    params = {k: v for k, v in request.query_params.items() if k != name}
    params[name] = value
    response.headers["Link"] = f'<{request.url.replace(query=urlencode(params))}>; rel="next"'


def router() -> APIRouter:
    api = APIRouter()

    @api.get(ALERTS_PATH, response_model=list[AlertOut], tags=["stock"])
    async def list_alerts(
        request: Request,
        sku: str | None = None,
        warehouse: str | None = None,
        since: Since = None,
        min_probability: MinProbability = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        who: Principal = Depends(require(_READ_SCOPE)),  # noqa: B008
    ) -> Any:
        """Alerts of the token's tenant, newest first; a `Link: <…>; rel="next"` when there is
        more."""
        ctx: ApiContext = request.app.state.ctx  # not a dependency: one level less to solve
        if since is not None and since.tzinfo is None:
            raise HTTPException(422, detail="since must carry a time zone, e.g. ...Z")
        try:
            page = await _read_alerts(
                ctx, who, sku, warehouse, since, min_probability, limit, cursor
            )
        except ValueError as exc:
            raise HTTPException(400, detail=f"invalid cursor: {exc}") from exc
        return _alerts_response(request, page)

    @api.get("/stock/predictions", response_model=list[PredictionOut], tags=["stock"])
    def list_predictions(
        request: Request,
        response: Response,
        sku: str | None = None,
        warehouse: str | None = None,
        limit: int = Query(1000, ge=1, le=10000, description="SKUs per page"),
        after: str | None = Query(None, description="from the Link rel=next header"),
        who: Principal = Depends(require("alerts:read")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Each matching SKU's live picture: stock, demand rate, probability, as of event time;
        ordered by SKU, with a `Link: <…>; rel="next"` header when there is more."""
        rows, next_after = ctx.store.predictions(
            who.tenant_id, sku=sku, warehouse=warehouse, limit=limit, after=after
        )
        if next_after:
            _link_next(request, response, "after", next_after)
        return rows

    @api.get("/settings/thresholds", response_model=ThresholdsOut, tags=["settings"])
    def get_thresholds(
        who: Principal = Depends(require("alerts:read")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        default, per_sku = ctx.store.thresholds(who.tenant_id)
        return {"default": default or ctx.settings.default_threshold, "skus": per_sku}

    @api.put("/settings/thresholds", response_model=ThresholdsOut, tags=["settings"])
    def put_thresholds(
        update: ThresholdUpdate,
        who: Principal = Depends(require("settings:write")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Set the tenant default and per-SKU thresholds (`sku` or `sku@warehouse`)."""
        ctx.store.put_thresholds(who.tenant_id, default=update.default, per_sku=update.skus)
        default, per_sku = ctx.store.thresholds(who.tenant_id)
        return {"default": default or ctx.settings.default_threshold, "skus": per_sku}

    return api


async def _read_alerts(
    ctx: ApiContext,
    who: Principal,
    sku: str | None,
    warehouse: str | None,
    since: datetime | None,
    min_probability: float | None,
    limit: int,
    cursor: str | None,
) -> AlertPage:
    return await ctx.store.alerts_async(
        who.tenant_id,
        sku=sku,
        warehouse=warehouse,
        since_ms=since.timestamp() * 1000 if since else None,
        min_probability=min_probability,
        limit=limit,
        cursor=cursor,
    )


def _alerts_response(request: Request, page: AlertPage) -> Response:
    # The stored alerts are AlertOut's fields already: encode them as they are, without a
    # second validation of each one (the hot read path; response_model documents it).
    out = Response(_json.encode(page.alerts), media_type="application/json")
    if page.next_cursor:
        _link_next(request, out, "cursor", page.next_cursor)
    return out


class FastAlerts:
    """``GET /v1/stock/alerts`` without FastAPI's per-request machinery: the hottest read.

    FastAPI solves a route's dependencies and parameters anew for every request, about 170 µs of
    CPU here (measured in-process), several times what the read itself costs. This ASGI
    middleware answers the request it can accept in full, with the route's own parameter types,
    token check, store call and response. Anything else (no token or a bad one, a missing scope,
    a value the types refuse, a repeated or unknown parameter, another method or path, a bad
    cursor) goes on to the application and its FastAPI route, which gives the documented answer
    or error; the route also stays the one in the OpenAPI schema."""

    def __init__(self, app: ASGIApp, ctx: ApiContext, path: str = "/v1" + ALERTS_PATH) -> None:
        self.app = app
        self.ctx = ctx
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = None
        if scope["type"] == "http" and scope["method"] == "GET" and self._route_path(scope):
            response = await self._answer(scope)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _route_path(self, scope: Scope) -> bool:
        """Is this the route's path, as the router would match it (below any root path)?"""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return path == self.path

    async def _answer(self, scope: Scope) -> Response | None:
        request = Request(scope)
        query = request.query_params
        if len(query.multi_items()) != len(query) or not _ALERT_PARAMS.issuperset(query):
            return None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return None
        try:
            who = self.ctx.issuer.verify(credentials)
            since = _SINCE.validate_python(query.get("since"))
            min_probability = _MIN_PROBABILITY.validate_python(query.get("min_probability"))
            limit = _LIMIT.validate_python(query["limit"]) if "limit" in query else 100
        except (AuthError, ValidationError):
            return None
        if _READ_SCOPE not in who.scopes or (since is not None and since.tzinfo is None):
            return None
        try:
            page = await _read_alerts(
                self.ctx,
                who,
                query.get("sku"),
                query.get("warehouse"),
                since,
                min_probability,
                limit,
                query.get("cursor"),
            )
        except ValueError:
            return None
        return _alerts_response(request, page)
