"""POST /v1/ingest/events, and the 410 of the old /v1/ingest."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from aurora_ray.api_models import (
    NDJSON_REQUEST_BODY,
    DetailOut,
    ErrorOut,
    IngestAccepted,
    LineErrorOut,
)
from aurora_ray.auth import Principal
from aurora_ray.ingest import IngestError, deliver, read_request
from aurora_ray.ingest_keys import HEADER, Answer, IdempotencyKeys, answer_once, fingerprint
from serve.context import ApiContext
from serve.deps import auth_errors, context, require
from serve.limits import RATE_LIMITED, admit, refusal
from serve.metrics import ApiMetrics


def router(metrics: ApiMetrics) -> APIRouter:
    api = APIRouter(tags=["ingest"])

    @api.post(
        "/ingest/events",
        status_code=202,
        response_model=IngestAccepted,
        responses=auth_errors(
            {
                400: {
                    "model": list[LineErrorOut],
                    "description": "bad lines (or a bad Idempotency-Key); nothing was produced",
                },
                403: {
                    "model": DetailOut | ErrorOut,
                    "description": "the token lacks events:write, or a line's tenant_id is not"
                    " the token's (`forbidden_tenant`, with the `lines`)",
                },
                409: {
                    "model": ErrorOut,
                    "description": "a request with the same Idempotency-Key is still running",
                },
                413: {
                    "model": ErrorOut,
                    "description": "body over the size limit, or more events than the tenant's "
                    "events bucket ever holds (`over_rate_limit_capacity`: split the batch)",
                },
                415: {"model": ErrorOut, "description": "not NDJSON, or not gzip"},
                422: {
                    "model": ErrorOut,
                    "description": "the Idempotency-Key was used with another body",
                },
                **RATE_LIMITED,
                503: {
                    "model": ErrorOut,
                    "description": "the broker did not acknowledge; nothing may be assumed kept",
                },
            }
        ),
        openapi_extra={"requestBody": NDJSON_REQUEST_BODY},
    )
    async def ingest_events(
        request: Request,
        who: Principal = Depends(require("events:write", limited=False)),  # noqa: B008
        ctx: ApiContext = Depends(context),  # noqa: B008
        idempotency_key: str | None = Header(  # noqa: B008
            None,
            alias=HEADER,
            description="Send it again with the same body to get the first answer, not a copy",
        ),
    ) -> Any:
        """NDJSON events, one envelope a line (gzip accepted); all or nothing per request.

        With an `Idempotency-Key`, a retry of the same body is answered with the first answer
        (`Idempotent-Replayed: true`) and nothing is produced again; without one, the shards
        still apply each `event_id` once. See docs/architecture.md, "Delivery guarantees".

        Rate limited after validation: a request that would be accepted takes one request token
        and one events token per event; one refused for its content takes a request token."""
        if idempotency_key is None:
            return await _ingest(request, who, ctx, metrics)

        async def run() -> Answer:
            response = await _ingest(request, who, ctx, metrics)
            return Answer(response.status_code, bytes(response.body), dict(response.headers))

        answer = await answer_once(
            IdempotencyKeys(ctx.store, ttl_s=ctx.settings.idempotency_key_ttl_s),
            tenant_id=who.tenant_id,
            key=idempotency_key,
            request_print=fingerprint(
                await request.body(),
                content_type=request.headers.get("content-type"),
                content_encoding=request.headers.get("content-encoding"),
            ),
            run=run,
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return Response(answer.body, answer.status, headers, media_type="application/json")

    @api.get("/ingest", status_code=410, operation_id="ingest_gone_get")
    @api.post("/ingest", status_code=410, operation_id="ingest_gone_post")
    @api.put("/ingest", status_code=410, operation_id="ingest_gone_put")
    async def ingest_gone() -> JSONResponse:
        """Renamed in 1.0: use POST /v1/ingest/events."""
        return JSONResponse(
            {
                "error": "gone",
                "message": "/v1/ingest was renamed in 1.0; use POST /v1/ingest/events",
                "new_path": "/v1/ingest/events",
            },
            status_code=410,
        )

    return api


async def _ingest(
    request: Request, who: Principal, ctx: ApiContext, metrics: ApiMetrics
) -> Response:
    """Decode, validate, charge the rate limit, produce and wait for every acknowledgement."""
    try:
        prepared = read_request(
            await request.body(),
            content_length=request.headers.get("content-length"),
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            tenant_id=who.tenant_id,
            received_ms=int(time.time() * 1000),
            settings=ctx.settings,
        )
    except IngestError as exc:
        # Every line of a refused request counts (all or nothing); 1 if never parsed.
        lines = max(1, exc.rejected_lines)
        decision = await admit(request.scope, ctx, metrics, who.tenant_id)
        if not decision.allowed:
            metrics.refused(who.tenant_id, lines, "rate_limited")
            return refusal(decision)
        metrics.refused(who.tenant_id, lines, f"http_{exc.status}")
        return _answer(exc)
    decision = await admit(request.scope, ctx, metrics, who.tenant_id, events=prepared.accepted)
    if not decision.allowed:
        metrics.refused(who.tenant_id, prepared.accepted, "rate_limited")
        return refusal(decision)
    topic = ctx.settings.topic_for(who.tenant_id)
    try:
        await deliver(ctx.producer, topic, prepared, topic_exists=ctx.topic_exists)
    except IngestError as exc:
        if exc.rejected_lines:  # produced, not acknowledged
            metrics.refused(who.tenant_id, exc.rejected_lines, "broker")
        return _answer(exc)
    metrics.accepted(who.tenant_id, prepared.accepted)
    return JSONResponse({"accepted": prepared.accepted}, status_code=202, headers=prepared.headers)


def _answer(exc: IngestError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
