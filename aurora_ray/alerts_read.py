"""``GET /v1/stock/alerts``, the API's hottest read: its parameters, token check and store read,
shared by the FastAPI route (``serve.routes_stock``) and the route's fast path
(``serve.fast_alerts.FastAlerts``), so that both answer the same."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

from pydantic import AwareDatetime, BeforeValidator, Field, TypeAdapter, ValidationError

from aurora_ray.adapters.redis_store import AlertPage, RedisStore
from aurora_ray.auth import AuthError, Principal, TokenIssuer

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "READ_SCOPE",
    "AlertQuery",
    "IsoTime",
    "accepted_query",
    "bearer_principal",
    "read_alerts",
]

READ_SCOPE: Final = "alerts:read"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
PARAMS: Final = frozenset({"sku", "warehouse", "since", "min_probability", "limit", "cursor"})


def _not_a_number(value: object) -> object:
    """Pydantic takes a number (or a numeric string) as a Unix time; the API documents ISO 8601
    only, and its schema says ``date-time``."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
    elif not isinstance(value, int | float):
        return value
    raise ValueError("an ISO 8601 time with a zone (e.g. 2025-06-02T09:00:00Z), not a number")


#: A time as the API's parameters take it: ISO 8601 with a zone (a naive one is a 422 in
#: FastAPI's shape, like every other bad parameter of the route).
IsoTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]

# The route declares the same bounds through FastAPI's Query (serve.routes_stock).
_SINCE: TypeAdapter[datetime | None] = TypeAdapter(IsoTime | None)
_MIN_PROBABILITY: TypeAdapter[float | None] = TypeAdapter(
    Annotated[float | None, Field(ge=0, le=1)]
)
_LIMIT: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_LIMIT)])


@dataclass(frozen=True)
class AlertQuery:
    sku: str | None = None
    warehouse: str | None = None
    since: datetime | None = None  # with a time zone
    min_probability: float | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def accepted_query(items: Sequence[tuple[str, str]]) -> AlertQuery | None:
    """The query when every parameter is known, given once, and valid as the route's types take
    it; None otherwise (the route then names what is wrong)."""
    query = dict(items)
    if len(query) != len(items) or not PARAMS.issuperset(query):
        return None
    try:
        since = _SINCE.validate_python(query.get("since"))
        min_probability = _MIN_PROBABILITY.validate_python(query.get("min_probability"))
        limit = _LIMIT.validate_python(query["limit"]) if "limit" in query else DEFAULT_LIMIT
    except ValidationError:
        return None
    return AlertQuery(
        query.get("sku"), query.get("warehouse"), since, min_probability, limit, query.get("cursor")
    )


def bearer_principal(authorization: str, issuer: TokenIssuer, scope: str) -> Principal | None:
    """The principal of an ``Authorization: Bearer <token>`` header holding ``scope``, read as
    FastAPI's ``HTTPBearer`` reads it; None for anything else (the route answers 401 or 403)."""
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    try:
        who = issuer.verify(credentials)
    except AuthError:
        return None
    return who if scope in who.scopes else None


async def read_alerts(store: RedisStore, tenant_id: str, query: AlertQuery) -> AlertPage:
    """One page of the tenant's alerts, newest first (``ValueError`` for a bad cursor)."""
    return await store.alerts_async(
        tenant_id,
        sku=query.sku,
        warehouse=query.warehouse,
        since_ms=query.since.timestamp() * 1000 if query.since else None,
        min_probability=query.min_probability,
        limit=query.limit,
        cursor=query.cursor,
    )
