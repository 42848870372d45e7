"""POST /v1/ingest/events, and the 410 of the old /v1/ingest."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from aurora_ray.adapters.kafka import DeliveryError
from aurora_ray.api_models import DetailOut, ErrorOut, EventIn, IngestAccepted, LineErrorOut
from aurora_ray.auth import Principal
from aurora_ray.ingest import IngestError, decode_body, prepare_ingest
from aurora_ray.ingest_keys import HEADER, Answer, IdempotencyKeys, answer_once, fingerprint
from serve.context import ApiContext
from serve.deps import auth_errors, context, require
from serve.limits import RATE_LIMITED, admit, refusal
from serve.metrics import ApiMetrics

log = logging.getLogger(__name__)
# Above the producer's own bound (BatchProducer.ack_timeout_s, 35 s, itself above librdkafka's
# message.timeout.ms): a 503 comes after the delivery was given up, not while it goes on.
_PRODUCE_TIMEOUT_S = 40.0
_EXAMPLE_LINE = {
    "tenant_id": "0b7c4f7e-8d6f-4a53-9d0e-3c1f2b8a9e10",
    "event_type": "order.created",
    "event_id": "ord-1001-1",
    "occurred_at": "2025-06-02T09:00:00Z",
    "payload": {
        "sku": "SKU-123",
        "warehouse": "DE-HAM",
        "order_id": "1001",
        "qty": 2,
        "price": 19.99,
        "currency": "EUR",
    },
}


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
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "array",
                            "minItems": 1,
                            "items": EventIn.model_json_schema(),
                            "description": "NDJSON: one envelope a line (the array of the"
                            " lines); `Content-Encoding: gzip` accepted",
                        },
                        "example": [_EXAMPLE_LINE],
                    }
                },
            }
        },
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
    """Decode, validate, produce and wait for every acknowledgement."""
    settings = ctx.settings
    received_ms = int(time.time() * 1000)
    try:
        length = int(request.headers.get("content-length") or 0)
        if length > settings.max_body_bytes:
            raise IngestError(413, {"error": "payload_too_large", "message": "body too large"})
        body = decode_body(
            await request.body(),
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            max_bytes=settings.max_body_bytes,
        )
        prepared = prepare_ingest(
            body,
            tenant_id=who.tenant_id,
            received_ms=received_ms,
            max_errors=settings.max_error_lines,
            max_skew_ms=round(settings.max_event_skew_s * 1000),
        )
    except IngestError as exc:
        # Every line of a refused request counts (all or nothing); 1 if never parsed.
        lines = max(1, exc.rejected_lines)
        decision = await admit(request.scope, ctx, metrics, who.tenant_id)
        if not decision.allowed:
            metrics.refused(who.tenant_id, lines, "rate_limited")
            return refusal(decision)
        metrics.refused(who.tenant_id, lines, f"http_{exc.status}")
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
    decision = await admit(request.scope, ctx, metrics, who.tenant_id, events=prepared.accepted)
    if not decision.allowed:
        metrics.refused(who.tenant_id, prepared.accepted, "rate_limited")
        return refusal(decision)
    topic = settings.topic_for(who.tenant_id)
    try:
        exists = ctx.topic_exists(topic)
    except Exception:  # the broker cannot even be asked
        log.warning("topic metadata of %s unavailable", topic, exc_info=True)
        return _unavailable("the broker does not answer")
    if not exists:
        return _unavailable("the tenant's topic is not ready yet")
    future = ctx.producer.produce_batch(topic, prepared.records)
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), _PRODUCE_TIMEOUT_S)
    except (DeliveryError, TimeoutError):
        log.warning("the broker did not acknowledge a batch of %s", topic, exc_info=True)
        metrics.refused(who.tenant_id, prepared.accepted, "broker")
        return _unavailable(
            "the broker did not acknowledge the events; nothing may be assumed kept"
        )
    metrics.accepted(who.tenant_id, prepared.accepted)
    return JSONResponse({"accepted": prepared.accepted}, status_code=202, headers=prepared.headers)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": "unavailable", "message": message}, status_code=503, headers={"Retry-After": "5"}
    )
