"""Request and response schemas of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

__all__ = [
    "AlertOut",
    "DetailOut",
    "ErrorOut",
    "EventIn",
    "IngestAccepted",
    "LineErrorOut",
    "OAuthErrorOut",
    "PredictionOut",
    "StatusOut",
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


class IngestAccepted(BaseModel):
    accepted: int


class LineErrorOut(BaseModel):
    line: int
    field: str
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


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    scope: str


class StatusOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, dict[str, object]]


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
