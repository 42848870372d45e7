"""Data-quality rules applied at write time (the schema document's SLA table).

* ``fact_order``: a price that is null or ≤ 0 fails the whole write, naming every offending row;
* ``fact_prediction``: a day partition with more than 0.1 % null probabilities is quarantined;
* ingestion delay (``ingested_at − order_ts``) over the limit is reported for an operator alert;
* the warehouse sink reads a topic record's order (or SKU) fields with :func:`order_fields`
  (:func:`sku_fields`): a record whose fields the tables cannot take is refused alone, with a
  reason naming the field, before it reaches a write (another producer's record, not the API's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from aurora_ray.domain.events import MAX_PRICE  # fact_order.price is DECIMAL(10, 2)

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "MAX_NULL_PROBABILITY_SHARE",
    "MAX_ORDER_ID_CHARS",
    "MAX_PRICE",
    "DataQualityError",
    "BadRow",
    "OrderFields",
    "SkuFields",
    "check_prices",
    "max_delay_s",
    "null_probability_reason",
    "order_fields",
    "sku_fields",
]

MAX_NULL_PROBABILITY_SHARE: Final = 0.001  # 0.1 %
_MAX_ROWS_IN_MESSAGE: Final = 20
MAX_ORDER_ID_CHARS: Final = 128  # the API's bound on an order id
INT32_MIN: Final = -(2**31)  # fact_order.qty and dim_sku.initial_stock are INT32
INT32_MAX: Final = 2**31 - 1


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


# -- a topic record's fields, as the warehouse tables take them ---------------------------------
class OrderFields(msgspec.Struct):
    """The payload fields of an ``order.created`` that fact_order takes, with its bounds: an
    order id of 1-128 characters or an integer, a price in (0, 99 999 999.99] (DECIMAL(10, 2)),
    a currency of three capital letters (the API's rule; it also checks ISO 4217), checked by
    :func:`order_fields`."""

    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ORDER_ID_CHARS)] | int
    price: Annotated[float, msgspec.Meta(gt=0, le=MAX_PRICE)]
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]  # letters: see below


class SkuFields(msgspec.Struct):
    """The payload fields of a ``sku.upserted`` that dim_sku takes (each may be left out)."""

    category: str | None = None
    brand: str | None = None
    initial_stock: Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)] | None = None


_order_decoder = msgspec.json.Decoder(OrderFields)
_sku_decoder = msgspec.json.Decoder(SkuFields)


def order_fields(payload: bytes | msgspec.Raw, qty: int) -> OrderFields:
    """An order's payload fields (and its ``qty``, read from the record) as fact_order takes
    them; ``ValueError`` naming the field otherwise (msgspec's own message, e.g. "Expected
    `float`, got `str` - at `$.price`"). Whatever else a payload makes the decoder raise (a
    ``RecursionError`` for JSON nested past the interpreter's limit) is the caller's to catch."""
    try:
        fields = _order_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"order.created payload: {exc}") from None
    # Three capital letters, checked here: a pattern in the Meta costs ~0.4 µs a record, 3x
    # the whole decode. An integer order id has at most 20 digits (msgspec reads 64 bits).
    currency = fields.currency
    if not (currency.isascii() and currency.isalpha() and currency.isupper()):
        raise ValueError(f"order.created payload: currency {currency!r} is not 3 capital letters")
    if fields.price < 0.005 and round(fields.price, 2) <= 0:  # stored with 2 decimals
        raise ValueError(f"order.created payload: price {fields.price!r} rounds to 0.00")
    if not INT32_MIN <= qty <= INT32_MAX:
        raise ValueError(f"order.created qty {qty} does not fit fact_order.qty (INT32)")
    return fields


def sku_fields(payload: bytes | msgspec.Raw) -> SkuFields:
    """A ``sku.upserted`` payload's fields as dim_sku takes them; ``ValueError`` naming the
    field otherwise (other exceptions as for :func:`order_fields`)."""
    try:
        return _sku_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"sku.upserted payload: {exc}") from None
