"""POST /v1/ingest/backfill (upload or URI) and GET /v1/ingest/backfill/{id}: thin over
:mod:`aurora_ray.backfill_job`, which submits the Ray job and keeps its progress in Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aurora_ray.api_models import BackfillAccepted, BackfillStatusOut, BackfillUriIn, ErrorOut
from aurora_ray.auth import Principal
from aurora_ray.backfill_job import backfill_status, new_backfill_id, submit_backfill
from aurora_ray.backfill_requests import (
    dashboard_url,
    remote_source,
    save_upload,
    status_view,
    valid_backfill_id,
)
from serve.context import ApiContext
from serve.deps import auth_errors, context, require


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def router() -> APIRouter:
    api = APIRouter(tags=["backfill"])

    @api.post(
        "/ingest/backfill",
        status_code=202,
        response_model=BackfillAccepted,
        responses=auth_errors(
            {
                400: {
                    "model": ErrorOut,
                    "description": "no file and no URI, or a URI that is not remote",
                },
                415: {"model": ErrorOut, "description": "neither multipart/form-data nor JSON"},
                503: {
                    "model": ErrorOut,
                    "description": "the Ray job submission API or Redis is unavailable",
                },
            }
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "application/json": {"schema": BackfillUriIn.model_json_schema()},
                },
            }
        },
    )
    async def start_backfill(
        request: Request,
        who: Principal = Depends(require("events:write")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """Backfill history from an uploaded file (field `file`) or a remote URI; returns at
        once with the id to follow."""
        backfill_id = new_backfill_id()
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media == "multipart/form-data":
            try:
                form = await request.form()
            except HTTPException as exc:  # Starlette's own 400 of a body it cannot parse
                return _error(400, "bad_request", f"invalid multipart body: {exc.detail}")
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return _error(400, "bad_request", "the multipart body needs a file field `file`")
            source = str(
                await asyncio.to_thread(
                    save_upload, upload.file, upload.filename, ctx.settings, backfill_id
                )
            )
        elif media == "application/json":
            try:
                body = BackfillUriIn.model_validate_json(await request.body())
            except ValueError as exc:
                return _error(400, "bad_request", f'expected {{"uri": "..."}}: {exc}')
            try:
                source = remote_source(body.uri)
            except ValueError as exc:
                return _error(400, "bad_request", str(exc))
        else:
            return _error(415, "unsupported_media_type", "send multipart/form-data or JSON")
        try:
            _, job_id = await asyncio.to_thread(
                submit_backfill,
                ctx.settings,
                tenant_id=who.tenant_id,
                source=source,
                redis_client=ctx.store.client,
                dashboard_url=dashboard_url(ctx.settings),
                backfill_id=backfill_id,
            )
        except Exception as exc:
            return _error(503, "unavailable", f"the backfill could not be submitted: {exc}")
        status_url = str(request.url_for("backfill_status_get", backfill_id=backfill_id).path)
        return JSONResponse(
            {"id": backfill_id, "status_url": status_url, "job_id": job_id}, status_code=202
        )

    @api.get(
        "/ingest/backfill/{backfill_id}",
        name="backfill_status_get",
        response_model=BackfillStatusOut,
        responses=auth_errors(
            {404: {"model": ErrorOut, "description": "no such backfill for this tenant"}}
        ),
    )
    async def get_backfill(
        backfill_id: str,
        who: Principal = Depends(require("events:write")),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
    ) -> Any:
        """State, counts, progress (0..1) and where the rejected lines are."""
        if not valid_backfill_id(backfill_id):
            return _error(404, "not_found", f"no backfill {backfill_id} for this tenant")
        record = await asyncio.to_thread(
            backfill_status,
            ctx.settings,
            tenant_id=who.tenant_id,
            backfill_id=backfill_id,
            redis_client=ctx.store.client,
            dashboard_url=dashboard_url(ctx.settings),
        )
        if record is None:
            return _error(404, "not_found", f"no backfill {backfill_id} for this tenant")
        return BackfillStatusOut.model_validate(status_view(record)).model_dump()

    return api
