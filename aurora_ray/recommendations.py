"""``GET /v1/stock/recommendations``: the read side of the replenishment recommendations.

The shards store each SKU's recommendation compactly inside its prediction record (``rec``,
laid out as :data:`aurora_ray.domain.alerts.REC_LAYOUT`) and keep the tenant's due index, the
rows ordered by ``order_by`` (see :meth:`RedisStore.due_rows`). Here the stored numbers get
their names and the times their ISO form, and the filters are applied. Without Ray or FastAPI,
so the route (``serve.routes_replenish``) stays a shell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.alerts import REC_LAYOUT, iso_utc
from aurora_ray.domain.replenish import LEAD_SOURCES

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "RecommendationPage",
    "RecommendationQuery",
    "parse_cursor",
    "read_recommendations",
    "recommendation_row",
]

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
_MAX_EPOCH_MS: Final = 253402300799_000.0  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class RecommendationQuery:
    sku: str | None = None
    warehouse: str | None = None
    due_before: datetime | None = None  # order_by at or before (with a time zone)
    min_risk: float | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class RecommendationPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def _iso_ms(value: float | None) -> str | None:
    if value is None or not math.isfinite(value) or not 0 <= value < _MAX_EPOCH_MS:
        return None
    return iso_utc(value / 1000.0)


def recommendation_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """A prediction record's recommendation as the API's row; None for a record without one
    (written before recommendations, or with them off)."""
    stored = record.get("rec")
    if stored is None:
        return None
    rec = dict(zip(REC_LAYOUT, stored, strict=False))
    source = rec.get("lead_source")
    return {
        "sku": record["sku"],
        "warehouse": record["warehouse"],
        "as_of": record["as_of"],
        "on_hand": record["on_hand"],
        "on_order": rec.get("on_order"),
        "risk": rec.get("risk"),
        "order_by": _iso_ms(rec.get("order_by_ms")),
        "recommended_qty": rec.get("recommended_qty"),
        "reorder_point": rec.get("reorder_point"),
        "order_up_to": rec.get("order_up_to"),
        "service_level": rec.get("service_level"),
        "lead_time_hours": rec.get("lead_time_hours"),
        "lead_time_source": LEAD_SOURCES[source] if source is not None else None,
        "moq": rec.get("moq") or None,
        "case_pack": rec.get("case_pack") or None,
        "predicted_oos_at_p10": _iso_ms(rec.get("oos_p10_ms")),
        "predicted_oos_at_p90": _iso_ms(rec.get("oos_p90_ms")),
    }


def parse_cursor(text: str) -> tuple[float, str]:
    """A page cursor, ``<order_by ms or inf>:<sku>@<warehouse>`` (``ValueError`` if bad)."""
    score_text, sep, member = text.partition(":")
    score = float(score_text)
    if not sep or "@" not in member or math.isnan(score):
        raise ValueError(f"expected <order_by ms>:<sku>@<warehouse>, got {text!r}")
    return score, member


def _cursor_text(after: tuple[float, str]) -> str:
    score, member = after
    return f"{'inf' if math.isinf(score) else repr(score)}:{member}"


def read_recommendations(
    store: RedisStore, tenant_id: str, query: RecommendationQuery
) -> RecommendationPage:
    """One page of the tenant's recommendations, the earliest ``order_by`` first (rows with
    nothing to plan last), ties by SKU and warehouse. ``ValueError`` for a bad cursor."""
    after = parse_cursor(query.cursor) if query.cursor else None
    due_ms = math.inf if query.due_before is None else query.due_before.timestamp() * 1000.0
    min_risk = query.min_risk

    def accept(record: dict[str, Any]) -> bool:
        rec = record.get("rec")
        if rec is None:
            return False
        if min_risk is not None and not (rec[1] is not None and rec[1] >= min_risk):
            return False
        # The record is fresher than the index (written every batch): it decides due_before.
        return query.due_before is None or (rec[2] is not None and rec[2] <= due_ms)

    records, next_after = store.due_rows(
        tenant_id,
        sku=query.sku,
        warehouse=query.warehouse,
        max_ms=due_ms,
        limit=query.limit,
        after=after,
        accept=accept,
    )
    rows = [row for row in map(recommendation_row, records) if row is not None]
    return RecommendationPage(rows, _cursor_text(next_after) if next_after else None)
