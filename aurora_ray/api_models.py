"""Request and response schemas of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

__all__ = [
    "AlertOut",
    "BackfillAccepted",
    "BackfillStatusOut",
    "BackfillUriIn",
    "ComponentOut",
    "DetailOut",
    "ErrorOut",
    "EventIn",
    "IngestAccepted",
    "LineErrorOut",
    "NDJSON_REQUEST_BODY",
    "OAuthErrorOut",
    "OperatorStatusOut",
    "PredictionOut",
    "RateLimitedOut",
    "RecommendationOut",
    "ReplenishmentOut",
    "ReplenishmentUpdate",
    "ShardStatusOut",
    "StatusOut",
    "TenantStatusOut",
    "ThresholdsOut",
    "ThresholdUpdate",
    "TokenOut",
]


class AlertOut(BaseModel):
    alert_id: str
    sku: str
    warehouse: str
    predicted_oos_at: str | None = Field(description="UTC, ISO 8601 with Z")
    probability: float = Field(ge=0, le=1)
    as_of: str = Field(description="event time at which the alert was raised")
    created_at: str
    model_version: str
    # The order the alert calls for, as of the same event (GET /v1/stock/recommendations).
    # Absent on alerts written before recommendations; null when they are off.
    order_by: str | None = Field(
        None, description="the latest time to order at the target service level (UTC)"
    )
    recommended_qty: int | None = Field(
        None, description="units to order then (MOQ and case pack applied; 0: none needed)"
    )
    predicted_oos_at_p10: str | None = Field(
        None, description="the stock-out time's 10th percentile: 80 % of outcomes lie between"
    )
    predicted_oos_at_p90: str | None = Field(None, description="its 90th percentile")


class RecommendationOut(BaseModel):
    """A SKU's replenishment recommendation in a warehouse, live (see the README)."""

    sku: str
    warehouse: str
    as_of: str = Field(description="event time the recommendation reflects")
    on_hand: int
    on_order: int = Field(description="units on order that count (stock.ordered, not received)")
    risk: float = Field(
        ge=0, le=1, description="P(a stock-out before an order placed now could arrive)"
    )
    order_by: str | None = Field(
        description="latest time to order so that the service level holds; as_of when it is "
        "due now; null without demand (nothing to plan)"
    )
    recommended_qty: int = Field(
        description="units to order at order_by: up to order_up_to, rounded up to the case "
        "pack, at least the MOQ; 0 without demand"
    )
    reorder_point: float = Field(description="service-level quantile of demand over the lead time")
    order_up_to: float = Field(
        description="service-level quantile of demand over the lead time plus review period"
    )
    service_level: float = Field(description="the target: the SKU's override or the tenant's")
    lead_time_hours: float
    lead_time_source: Literal["given", "learned", "default"] = Field(
        description="given: lead_time_hours on sku.upserted; learned: the SKU's own purchase "
        "orders (stock.ordered to stock.received); default: the tenant's default"
    )
    moq: int | None = Field(description="minimum order quantity (null: none)")
    case_pack: int | None = Field(description="units per case (null: single units)")
    predicted_oos_at_p10: str | None = Field(
        description="the stock-out time's 10th percentile, on hand and what lands before it"
    )
    predicted_oos_at_p90: str | None = Field(description="its 90th percentile")


class PredictionOut(BaseModel):
    sku: str
    warehouse: str
    on_hand: int
    demand_rate_per_hour: float
    probability: float
    predicted_oos_at: str | None
    model_version: str
    as_of: str = Field(description="event time the prediction reflects")


class EventIn(BaseModel):
    """One line of ``POST /v1/ingest/events``, for the OpenAPI document only: the route reads
    NDJSON itself (``aurora_ray.domain.events``), line by line, with the bounds the README
    lists."""

    tenant_id: UUID = Field(description="the token's tenant (another one is refused with 403)")
    event_type: str = Field(
        min_length=1,
        max_length=64,
        description="order.created, order.cancelled, stock.received, stock.adjusted,"
        " stock.snapshot, sku.upserted or stock.ordered; other types are kept, not scored",
    )
    payload: dict[str, Any] = Field(description="an object; its fields by type: see the README")
    event_id: str | None = Field(
        None, min_length=1, max_length=128, description="a UUID is drawn when missing"
    )
    occurred_at: datetime | None = Field(
        None,
        description="ISO 8601 with a zone, from 2000-01-01 to the server's clock plus the"
        " allowed skew; default: when the request arrived",
    )


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

#: The OpenAPI request body of ``POST /v1/ingest/events``: NDJSON, described as the array of its
#: lines (schemathesis writes it back one a line).
NDJSON_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/x-ndjson": {
            "schema": {
                "type": "array",
                "minItems": 1,
                "items": EventIn.model_json_schema(),
                "description": "NDJSON: one envelope a line (the array of the lines);"
                " `Content-Encoding: gzip` accepted",
            },
            "example": [_EXAMPLE_LINE],
        }
    },
}


class IngestAccepted(BaseModel):
    accepted: int


class LineErrorOut(BaseModel):
    line: int
    field: str
    message: str


class RateLimitedOut(BaseModel):
    """A refusal of the tenant's rate limit (ADR-010): ``429`` to retry after ``Retry-After``
    seconds, ``413`` for a request that no bucket could ever hold."""

    error: Literal["rate_limited", "over_rate_limit_capacity"]
    bucket: Literal["requests", "events_peak", "events"] = Field(
        description="the bucket that refused: requests, events_peak (the peak events/s, one "
        "second's worth) or events (the sustained events/s and its burst allowance)"
    )
    limit: int = Field(description="the most tokens the bucket holds (RateLimit-Limit)")
    rate_per_s: float = Field(description="tokens the bucket gains a second")
    message: str


#: A JSON number: pydantic's lax mode would also take `true` or `"0.5"` for a float.
Threshold = Annotated[float, Strict()]


class ThresholdUpdate(BaseModel):
    default: Threshold | None = Field(None, gt=0, le=1, description="tenant default threshold")
    skus: dict[str, Threshold | None] = Field(
        default_factory=dict,
        description="per-SKU thresholds keyed by `sku` or `sku@warehouse`; null removes one",
    )

    @field_validator("skus")
    @classmethod
    def _in_range(cls, skus: dict[str, float | None]) -> dict[str, float | None]:
        for key, value in skus.items():
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"threshold of {key!r} must be in (0, 1], got {value}")
        return skus


class ThresholdsOut(BaseModel):
    default: float
    skus: dict[str, float]


#: A target service level: at least 0.5 (below, the "safety" stock would be negative) and
#: below 1 (a certain supply needs infinite stock).
ServiceLevel = Annotated[float, Strict(), Field(ge=0.5, lt=1)]
#: At most a leap year, as a SKU's own ``lead_time_hours`` on sku.upserted.
Hours = Annotated[float, Strict(), Field(le=8784)]


class ReplenishmentUpdate(BaseModel):
    """What to change of the tenant's replenishment settings; a field left out (or null) is
    kept."""

    model_config = ConfigDict(extra="forbid")

    service_level: ServiceLevel | None = Field(
        None, description="the tenant's target service level, 0.5 <= level < 1"
    )
    default_lead_time_hours: Annotated[Hours, Field(gt=0)] | None = Field(
        None, description="lead time of a SKU with neither a given nor a learned one"
    )
    review_period_hours: Annotated[Hours, Field(ge=0)] | None = Field(
        None, description="how long an order must last after it lands (0: continuous review)"
    )
    skus: dict[str, ServiceLevel | None] = Field(
        default_factory=dict,
        description="per-SKU service levels keyed by `sku` or `sku@warehouse`; null removes one",
    )

    @field_validator("skus")
    @classmethod
    def _keys(cls, skus: dict[str, float | None]) -> dict[str, float | None]:
        for key in skus:
            if not key or len(key) > 128 + 1 + 64:
                raise ValueError(f"{key[:200]!r} is not a `sku` or `sku@warehouse`")
        return skus


class ReplenishmentOut(BaseModel):
    """The settings in force: the tenant's, or the deployment's defaults."""

    service_level: float
    default_lead_time_hours: float
    review_period_hours: float
    skus: dict[str, float] = Field(description="per-SKU service levels")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    scope: str


class ComponentOut(BaseModel):
    status: Literal["ok", "down"]
    reason: str | None = Field(None, description="why it is down, in general terms")


class StatusOut(BaseModel):
    """The public health check: the shared infrastructure only, no tenant."""

    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, ComponentOut] = Field(description="`ray`, `redis`, `kafka`")
    down: list[str] | None = Field(None, description="the components that are down (503)")


class ShardStatusOut(BaseModel):
    shard: int
    name: str = Field(description="the shard's Ray actor, `tenant:<tenant_id>:<n>`")
    status: Literal["ok", "starting", "down"] = Field(
        description="`starting`: no heartbeat yet since the tenant was created or the shard's "
        "actor (re)started, within the grace period; `down`: heartbeat stale, or none in time"
    )
    heartbeat_age_s: float | None
    lag: int | None = Field(None, description="records between its offsets and the end")
    last_checkpoint: float | None = Field(None, description="Unix time")
    events: int | None = Field(None, description="records processed since it started")
    model_error: str | None = None
    dead_letters: int | None = Field(None, description="records dead-lettered since it started")
    duplicates: int | None = Field(None, description="repeated event ids dropped since it started")
    warehouse_error: str | None = Field(
        None, description="why its fact_prediction rows cannot be written (None: they can)"
    )


class TenantStatusOut(BaseModel):
    tenant_id: str
    status: Literal["ok", "starting", "degraded"] = Field(
        description="`degraded` when a shard is down or the topic is missing"
    )
    version: str
    topic: dict[str, str] = Field(description='`{"status": "ok" | "missing"}`')
    shards: list[ShardStatusOut]
    warehouse: dict[str, object] = Field(
        description='the warehouse sink: `{"status": "ok"}`; `"failing"` with `error`, `since`, '
        "`attempts`, `buffered` while its writes fail (the tenant is then degraded); or "
        '`"delayed"` with `max_delay_s`, `limit_s` and `at` when its last batch was ingested '
        "later than the limit"
    )
    model: dict[str, object] = Field(description="`active` version and its latest `drift`")


class OperatorStatusOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, dict[str, object]] = Field(
        description="`ray`, `redis`, `kafka` with the errors themselves"
    )
    shards: dict[str, object] = Field(description="`total`, and the names `down` and `starting`")
    tenants: dict[str, TenantStatusOut]
    missing_topics: list[str] | None = None
    warehouse_failing: list[str] | None = Field(
        None, description="tenants whose warehouse sink cannot write"
    )
    down: list[str] | None = Field(
        None, description="components down, `shards` when a shard is, `topics` when one is missing"
    )


class ErrorOut(BaseModel):
    """A refusal of the API's own: a code and a sentence (some add fields, e.g. ``field``)."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class DetailOut(BaseModel):
    """A refusal of the bearer token or its scope (``WWW-Authenticate: Bearer`` on a 401)."""

    detail: str


class OAuthErrorOut(BaseModel):
    """RFC 6749 section 5.2."""

    error: Literal["invalid_request", "invalid_client", "invalid_scope", "unsupported_grant_type"]
    error_description: str


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
