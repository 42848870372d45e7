"""GET /v1/stock/alerts, GET /v1/stock/predictions, GET/PUT /v1/settings/thresholds."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from aurora_ray.adapters.redis_store import AlertPage
from aurora_ray.alerts_read import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    READ_SCOPE,
    AlertQuery,
    IsoTime,
    read_alerts,
)
from aurora_ray.api_models import (
    AlertOut,
    DetailOut,
    PredictionOut,
    ThresholdsOut,
    ThresholdUpdate,
)
from aurora_ray.auth import Principal
from serve.context import ApiContext
from serve.deps import auth_errors, context, require

_json = msgspec.json.Encoder()

ALERTS_PATH = "/stock/alerts"

# GET /stock/alerts' parameters, with the bounds its fast path checks too (aurora_ray.alerts_read).
Since = Annotated[IsoTime | None, Query(description="alerts created at or after (ISO 8601)")]
MinProbability = Annotated[float | None, Query(ge=0, le=1)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(description="from the Link rel=next header")]


def link_next(request: Request, response: Response, name: str, value: str) -> None:
    params = {k: v for k, v in request.query_params.items() if k != name}
    params[name] = value
    response.headers["Link"] = f'<{request.url.replace(query=urlencode(params))}>; rel="next"'


def router() -> APIRouter:
    api = APIRouter()

    @api.get(
        ALERTS_PATH,
        response_model=list[AlertOut],
        tags=["stock"],
        responses=auth_errors({400: {"model": DetailOut, "description": "an invalid cursor"}}),
    )
    async def list_alerts(
        request: Request,
        sku: str | None = None,
        warehouse: str | None = None,
        since: Since = None,
        min_probability: MinProbability = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        who: Principal = Depends(require(READ_SCOPE)),  # noqa: B008
    ) -> Any:
        """Alerts of the token's tenant, newest first; a `Link: <…>; rel="next"` when there is
        more."""
        ctx: ApiContext = request.app.state.ctx  # not a dependency: one level less to solve
        query = AlertQuery(sku, warehouse, since, min_probability, limit, cursor)
        try:
            page = await read_alerts(ctx.store, who.tenant_id, query)
        except ValueError as exc:
            raise HTTPException(400, detail=f"invalid cursor: {exc}") from exc
        return alerts_response(request, page)

    @api.get(
        "/stock/predictions",
        response_model=list[PredictionOut],
        tags=["stock"],
        responses=auth_errors(),
    )
    def list_predictions(
        request: Request,
        response: Response,
        sku: str | None = None,
        warehouse: str | None = None,
        limit: int = Query(1000, ge=1, le=10000, description="SKUs per page"),
        after: str | None = Query(None, description="from the Link rel=next header"),
        who: Principal = Depends(require(READ_SCOPE)),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Each matching SKU's live picture: stock, demand rate, probability, as of event time;
        ordered by SKU, with a `Link: <…>; rel="next"` header when there is more."""
        rows, next_after = ctx.store.predictions(
            who.tenant_id, sku=sku, warehouse=warehouse, limit=limit, after=after
        )
        if next_after:
            link_next(request, response, "after", next_after)
        return rows

    @api.get(
        "/settings/thresholds",
        response_model=ThresholdsOut,
        tags=["settings"],
        responses=auth_errors(),
    )
    def get_thresholds(
        who: Principal = Depends(require(READ_SCOPE)),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        default, per_sku = ctx.store.thresholds(who.tenant_id)
        return {"default": default or ctx.settings.default_threshold, "skus": per_sku}

    @api.put(
        "/settings/thresholds",
        response_model=ThresholdsOut,
        tags=["settings"],
        responses=auth_errors(
            {400: {"model": DetailOut, "description": "a body that is not JSON"}}
        ),
    )
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


def alerts_response(request: Request, page: AlertPage) -> Response:
    """The page as JSON, with a ``Link: <…>; rel="next"`` when there is more."""
    # The stored alerts are AlertOut's fields already: encode them as they are, without a
    # second validation of each one (the hot read path; response_model documents it).
    out = Response(_json.encode(page.alerts), media_type="application/json")
    if page.next_cursor:
        link_next(request, out, "cursor", page.next_cursor)
    return out
