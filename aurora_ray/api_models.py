"""Request and response schemas of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "AlertOut",
    "IngestAccepted",
    "LineErrorOut",
    "PredictionOut",
    "RateLimitedOut",
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


class ThresholdUpdate(BaseModel):
    default: float | None = Field(None, gt=0, le=1, description="tenant default threshold")
    skus: dict[str, float | None] = Field(
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
