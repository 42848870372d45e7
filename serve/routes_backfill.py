"""POST /v1/ingest/backfill (upload or URI) and GET /v1/ingest/backfill/{id}: thin over
:mod:`aurora_ray.backfill_job`, which submits the Ray job and keeps its progress in Redis."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from aurora_ray.api_models import ErrorOut
from aurora_ray.auth import Principal
from aurora_ray.backfill_job import backfill_status, new_backfill_id, submit_backfill
from serve.context import ApiContext
from serve.deps import auth_errors, context, require

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "abfss://", "az://")


class BackfillUriIn(BaseModel):
    uri: str = Field(description="NDJSON(.gz) or Parquet on a remote filesystem, e.g. s3://b/k")


class BackfillAccepted(BaseModel):
    id: str
    status_url: str
    job_id: str = Field(description="the Ray job's submission id")


class BackfillStatusOut(BaseModel):
    id: str
    state: Literal[
        "submitted", "validating", "deduplicating", "producing", "folding",
        "succeeded", "failed",
    ]  # fmt: skip
    progress: float = Field(ge=0, le=1)
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = Field(0, description="skipped: repeated in the file or applied before")
    duplicates_in_file: int = 0
    duplicates_applied: int = 0
    written: int = Field(0, description="fact_order rows")
    produced: int = Field(0, description="events on the tenant topic, for the shards")
    rejects: str | None = Field(None, description="NDJSON file: line, reason, raw")
    error: str | None = None
    source: str | None = None
    job_id: str | None = None
    folded: bool | None = Field(None, description="the shards read everything produced")


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _dashboard_url(ctx: ApiContext) -> str:
    """The configured dashboard, else the one this Ray cluster registered, else the default."""
    settings = ctx.settings
    if "ray_dashboard_url" in settings.model_fields_set:
        return settings.ray_dashboard_url
    try:
        from ray._private import ray_constants
        from ray.experimental import internal_kv

        found = internal_kv._internal_kv_get(
            ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
        )
        if found:
            return f"http://{found.decode()}"
    except Exception:  # noqa: S110 - not inside Ray: the setting's default
        pass
    return settings.ray_dashboard_url


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def upload_name(filename: str | None) -> str:
    """A local file name for an upload: the client's, reduced to safe characters and its last
    100 (the extension tells the backfill the format), never ``..`` or hidden."""
    name = _UNSAFE.sub("_", Path(filename or "").name)[-100:].lstrip(".")
    return name or "events.ndjson"


def _save_upload(upload: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / upload_name(upload.filename)
    with open(target, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)
    return target


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
            folder = ctx.settings.data_dir.resolve() / "backfill" / backfill_id
            source = str(await asyncio.to_thread(_save_upload, upload, folder))
        elif media == "application/json":
            try:
                body = BackfillUriIn.model_validate_json(await request.body())
            except ValueError as exc:
                return _error(400, "bad_request", f'expected {{"uri": "..."}}: {exc}')
            if not body.uri.startswith(_REMOTE_SCHEMES):
                return _error(
                    400,
                    "bad_request",
                    f"uri must be one of {', '.join(_REMOTE_SCHEMES)}; upload local files",
                )
            source = body.uri
        else:
            return _error(415, "unsupported_media_type", "send multipart/form-data or JSON")
        try:
            _, job_id = await asyncio.to_thread(
                submit_backfill,
                ctx.settings,
                tenant_id=who.tenant_id,
                source=source,
                redis_client=ctx.store.client,
                dashboard_url=_dashboard_url(ctx),
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
        if not _ID.match(backfill_id):
            return _error(404, "not_found", f"no backfill {backfill_id} for this tenant")
        record = await asyncio.to_thread(
            backfill_status,
            ctx.settings,
            tenant_id=who.tenant_id,
            backfill_id=backfill_id,
            redis_client=ctx.store.client,
            dashboard_url=_dashboard_url(ctx),
        )
        if record is None:
            return _error(404, "not_found", f"no backfill {backfill_id} for this tenant")
        record["folded"] = bool(int(record["folded"])) if record.get("folded") else None
        record["error"] = record.get("error") or None
        return BackfillStatusOut.model_validate(record).model_dump()

    return api
