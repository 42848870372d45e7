"""Data-quality rules applied at write time (the schema document's SLA table).

* ``fact_order``: a price that is null or ≤ 0 fails the whole write, naming every offending row;
* ``fact_prediction``: a day partition with more than 0.1 % null probabilities is quarantined;
* ingestion delay (``ingested_at − order_ts``) over the limit is reported for an operator alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MAX_NULL_PROBABILITY_SHARE",
    "DataQualityError",
    "BadRow",
    "check_prices",
    "max_delay_s",
    "null_probability_reason",
]

MAX_NULL_PROBABILITY_SHARE: Final = 0.001  # 0.1 %
_MAX_ROWS_IN_MESSAGE: Final = 20


@dataclass(frozen=True)
class BadRow:
    index: int  # 0-based row of the table given to the write
    event_id: str | None
    sku: str | None
    price: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "sku": self.sku,
            "price": self.price,
        }


class DataQualityError(ValueError):
    """A write refused by a data-quality rule; nothing of it was written."""

    def __init__(self, message: str, rows: list[BadRow]) -> None:
        super().__init__(message)
        self.rows = rows


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def check_prices(table: pa.Table, *, table_name: str = "fact_order") -> None:
    """Raise :class:`DataQualityError` when any price is null or ≤ 0."""
    if "price" not in table.column_names:
        raise DataQualityError(f"{table_name}: the column 'price' is missing", [])
    price = pc.cast(table.column("price"), pa.float64())
    bad_mask = pc.fill_null(pc.less_equal(price, 0.0), True)
    bad = pc.indices_nonzero(bad_mask).to_pylist()
    if not bad:
        return
    prices = table.column("price").take(bad).to_pylist()
    event_ids = (
        table.column("event_id").take(bad).to_pylist()
        if "event_id" in table.column_names
        else [None] * len(bad)
    )
    skus = (
        table.column("sku_id").take(bad).to_pylist()
        if "sku_id" in table.column_names
        else [None] * len(bad)
    )
    rows = [
        BadRow(index=i, event_id=e, sku=s, price=float(p) if p is not None else None)
        for i, e, s, p in zip(bad, event_ids, skus, prices, strict=True)
    ]
    shown = "; ".join(
        f"row {r.index} (event_id={r.event_id}, sku={r.sku}, price={r.price})"
        for r in rows[:_MAX_ROWS_IN_MESSAGE]
    )
    more = (
        f"; and {len(rows) - _MAX_ROWS_IN_MESSAGE} more" if len(rows) > _MAX_ROWS_IN_MESSAGE else ""
    )
    raise DataQualityError(
        f"{table_name}: {len(rows)} of {len(table)} rows have a price that is null or <= 0, "
        f"nothing was written: {shown}{more}",
        rows,
    )


def null_probability_reason(table: pa.Table) -> str | None:
    """Why a prediction partition must be quarantined, or None when it may be published."""
    n = len(table)
    if n == 0:
        return None
    nulls = table.column("probability").null_count
    probability = table.column("probability")
    if pa.types.is_floating(probability.type):
        nulls += int(pc.sum(pc.is_nan(pc.fill_null(probability, 0.0))).as_py() or 0)
    if nulls / n > MAX_NULL_PROBABILITY_SHARE:
        return (
            f"{nulls} of {n} probabilities are null ({nulls / n:.3%}), "
            f"over the {MAX_NULL_PROBABILITY_SHARE:.1%} limit"
        )
    return None


def max_delay_s(table: pa.Table) -> float | None:
    """The largest ``ingested_at − order_ts`` in seconds (None when there is nothing to compare)."""
    if len(table) == 0 or "ingested_at" not in table.column_names:
        return None
    delay = pc.subtract(
        pc.cast(table.column("ingested_at"), pa.int64()),
        pc.cast(table.column("order_ts"), pa.int64()),
    )
    top = pc.max(delay).as_py()
    return None if top is None else top / 1e6
