"""GET /v1/exports/alerts.csv and GET /v1/exports/predictions.csv: thin over
:mod:`aurora_ray.export`, streamed chunk by chunk (the body never sits whole in memory)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.api_models import ErrorOut
from aurora_ray.auth import Principal
from aurora_ray.export import (
    ALERT_COLUMNS,
    PREDICTION_COLUMNS,
    CsvExport,
    ExportFilter,
    ExportParamError,
    export_alerts,
    export_predictions,
    parse_filter,
)
from serve.context import ApiContext
from serve.deps import auth_errors, context, require

_CSV = "text/csv; charset=utf-8"
_ERRORS = auth_errors(
    {
        200: {"content": {"text/csv": {}}, "description": "CSV, UTF-8 with a BOM, a header row"},
        422: {
            "model": ErrorOut,
            "description": 'a bad parameter: `{"error": "invalid_parameter", "field", "message"}`',
        },
        503: {"model": ErrorOut, "description": "Redis does not answer"},
    }
)

# Filters the two exports share, as text so that a bad value gets the API's error envelope.
_SINCE = Query(None, description="at or after, ISO 8601 with a zone (e.g. 2025-06-02T09:00:00Z)")
_UNTIL = Query(None, description="before, ISO 8601 with a zone")
_MIN_P = Query(None, description="a number in [0, 1]: rows with a probability at least this")
_FORMAT = (
    "UTF-8 with a BOM, RFC 4180 (CRLF, quoted fields), a header row, times in UTC ISO 8601 with"
    " `Z`; text starting with `=`, `+`, `-`, `@`, a tab or CR gets a leading `'`. Columns: "
)
_ALERTS_DOC = (
    "The token's tenant's alerts as CSV, oldest first (by `created_at`); `since` and `until` "
    "bound `created_at` (since <= t < until). "
    + _FORMAT
    + ", ".join(f"`{c}`" for c in ALERT_COLUMNS)
    + "."
)
_PREDICTIONS_DOC = (
    "The latest prediction of each SKU and warehouse as CSV, ordered by SKU then warehouse; "
    "`since` and `until` bound `as_of` (since <= t < until). "
    + _FORMAT
    + ", ".join(f"`{c}`" for c in PREDICTION_COLUMNS)
    + "."
)


def _error(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _stream(export: CsvExport, tenant_id: str) -> StreamingResponse:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{export.kind}-{tenant_id}-{stamp}.csv"
    return StreamingResponse(
        iter(export),
        media_type=_CSV,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _respond(
    make: Callable[[RedisStore, str, ExportFilter], CsvExport],
    ctx: ApiContext,
    who: Principal,
    since: str | None,
    until: str | None,
    sku: str | None,
    warehouse: str | None,
    min_probability: str | None,
) -> Any:
    """The export ``make`` builds for the token's tenant, streamed; or the error naming what is
    wrong (422) or that Redis does not answer (503)."""
    try:
        flt = parse_filter(
            since=since,
            until=until,
            sku=sku,
            warehouse=warehouse,
            min_probability=min_probability,
        )
        export = make(ctx.store, who.tenant_id, flt)
    except ExportParamError as exc:
        return _error(422, "invalid_parameter", str(exc), exc.param)
    except redis.RedisError as exc:
        return _error(503, "unavailable", f"Redis does not answer: {exc}")
    return _stream(export, who.tenant_id)


def router() -> APIRouter:
    api = APIRouter()

    @api.get(
        "/exports/alerts.csv",
        tags=["exports"],
        description=_ALERTS_DOC,
        response_class=StreamingResponse,
        responses=_ERRORS,
    )
    def export_alerts_csv(
        since: str | None = _SINCE,
        until: str | None = _UNTIL,
        sku: str | None = None,
        warehouse: str | None = None,
        min_probability: str | None = _MIN_P,
        who: Principal = Depends(require("alerts:read")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        return _respond(export_alerts, ctx, who, since, until, sku, warehouse, min_probability)

    @api.get(
        "/exports/predictions.csv",
        tags=["exports"],
        description=_PREDICTIONS_DOC,
        response_class=StreamingResponse,
        responses=_ERRORS,
    )
    def export_predictions_csv(
        since: str | None = _SINCE,
        until: str | None = _UNTIL,
        sku: str | None = None,
        warehouse: str | None = None,
        min_probability: str | None = _MIN_P,
        who: Principal = Depends(require("alerts:read")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        return _respond(export_predictions, ctx, who, since, until, sku, warehouse, min_probability)

    return api
