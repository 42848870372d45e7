"""GET /v1/stock/recommendations, GET/PUT /v1/settings/replenishment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from aurora_ray.alerts_read import READ_SCOPE, IsoTime
from aurora_ray.api_models import (
    DetailOut,
    RecommendationOut,
    ReplenishmentOut,
    ReplenishmentUpdate,
)
from aurora_ray.auth import Principal
from aurora_ray.recommendations import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    RecommendationQuery,
    read_recommendations,
)
from serve.context import ApiContext
from serve.deps import auth_errors, context, require
from serve.routes_stock import link_next

DueBefore = Annotated[
    IsoTime | None, Query(description="only rows to order at or before this time (ISO 8601)")
]
MinRisk = Annotated[float | None, Query(ge=0, le=1, description="only rows at this risk or more")]


def _settings_out(ctx: ApiContext, tenant_id: str) -> dict[str, Any]:
    tenant = ctx.store.replenishment(tenant_id)
    defaults = ctx.settings
    return {
        "service_level": (
            defaults.service_level if tenant.service_level is None else tenant.service_level
        ),
        "default_lead_time_hours": (
            defaults.default_lead_time_hours
            if tenant.lead_time_hours is None
            else tenant.lead_time_hours
        ),
        "review_period_hours": (
            defaults.review_period_hours
            if tenant.review_period_hours is None
            else tenant.review_period_hours
        ),
        "skus": tenant.skus,
    }


def router() -> APIRouter:
    api = APIRouter()

    @api.get(
        "/stock/recommendations",
        response_model=list[RecommendationOut],
        tags=["stock"],
        responses=auth_errors({400: {"model": DetailOut, "description": "an invalid cursor"}}),
    )
    def list_recommendations(
        request: Request,
        response: Response,
        sku: str | None = None,
        warehouse: str | None = None,
        due_before: DueBefore = None,
        min_risk: MinRisk = None,
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="rows per page"),
        cursor: str | None = Query(None, description="from the Link rel=next header"),
        who: Principal = Depends(require(READ_SCOPE)),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Each SKU's live replenishment recommendation per warehouse: what to order, by when,
        and the risk of running out before an order placed now arrives. The earliest
        `order_by` first (rows with nothing to plan last); a `Link: <…>; rel="next"` header
        when there is more."""
        query = RecommendationQuery(sku, warehouse, due_before, min_risk, limit, cursor)
        try:
            page = read_recommendations(ctx.store, who.tenant_id, query)
        except ValueError as exc:
            raise HTTPException(400, detail=f"invalid cursor: {exc}") from exc
        if page.next_cursor:
            link_next(request, response, "cursor", page.next_cursor)
        return page.rows

    @api.get(
        "/settings/replenishment",
        response_model=ReplenishmentOut,
        tags=["settings"],
        responses=auth_errors(),
    )
    def get_replenishment(
        who: Principal = Depends(require(READ_SCOPE)),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """The target service level (with per-SKU overrides), the default lead time and the
        review period the tenant's recommendations use."""
        return _settings_out(ctx, who.tenant_id)

    @api.put(
        "/settings/replenishment",
        response_model=ReplenishmentOut,
        tags=["settings"],
        responses=auth_errors(
            {400: {"model": DetailOut, "description": "a body that is not JSON"}}
        ),
    )
    def put_replenishment(
        update: ReplenishmentUpdate,
        who: Principal = Depends(require("settings:write")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Set the tenant's service level, default lead time, review period and per-SKU service
        levels (`sku` or `sku@warehouse`, null removes one); shards apply them from their next
        micro-batch."""
        ctx.store.put_replenishment(
            who.tenant_id,
            values={
                "service_level": update.service_level,
                "lead_time_hours": update.default_lead_time_hours,
                "review_period_hours": update.review_period_hours,
            },
            per_sku=update.skus,
        )
        return _settings_out(ctx, who.tenant_id)

    return api
