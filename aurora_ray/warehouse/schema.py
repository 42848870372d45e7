"""Warehouse tables and their pyarrow schemas (the warehouse schema doc, rev. 1.3, extended).

Deviations from the schema document, on purpose:

* ``fact_order.order_id`` is a string (our API accepts string order ids), not BIGINT; ``event_id``
  (the event's id, for deduplication), ``warehouse_id`` and ``ingested_at`` are added.
* ``fact_prediction`` adds ``warehouse_id`` (a SKU is scored per warehouse), ``predicted_at`` (the
  event time the score reflects), ``on_hand`` (lets the retrain job label stock-outs) and the day
  column ``prediction_date``. ``probability`` is NUMERIC(4,3) in the document; it is stored as
  float64 rounded to 3 decimals. ``feature_vector`` holds float32 little-endian values in
  :data:`aurora_ray.domain.features.FEATURE_NAMES` order.
* ``dim_sku`` adds ``warehouse_id`` (``initial_stock`` is per warehouse).
* ``tenant_settings`` is a snapshot of the thresholds (``sku_id`` null: the tenant default).

Files never hold the partition columns (``tenant_id`` and the day column): they come from the
hive path, as usual for hive-partitioned data.
"""

from __future__ import annotations

import hashlib
from typing import Final

import pyarrow as pa

__all__ = [
    "DAY_COLUMNS",
    "DIM_SKU",
    "DIM_TENANT",
    "FACT_ORDER",
    "FACT_PREDICTION",
    "SCHEMAS",
    "TABLES",
    "TENANT_SETTINGS",
    "file_schema",
    "partition_schema",
    "prediction_id",
]

FACT_ORDER: Final = "fact_order"
FACT_PREDICTION: Final = "fact_prediction"
DIM_SKU: Final = "dim_sku"
DIM_TENANT: Final = "dim_tenant"
TENANT_SETTINGS: Final = "tenant_settings"
TABLES: Final = (FACT_ORDER, FACT_PREDICTION, DIM_SKU, DIM_TENANT, TENANT_SETTINGS)

_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: Final[dict[str, pa.Schema]] = {
    FACT_ORDER: pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("order_id", pa.string()),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("sku_id", pa.string(), nullable=False),
            pa.field("warehouse_id", pa.string()),
            pa.field("qty", pa.int32()),
            pa.field("price", pa.decimal128(10, 2)),
            pa.field("currency", pa.string()),
            pa.field("order_ts", _TS, nullable=False),
            pa.field("order_date", pa.date32(), nullable=False),
            pa.field("ingested_at", _TS),
        ]
    ),
    FACT_PREDICTION: pa.schema(
        [
            pa.field("prediction_id", pa.int64(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("sku_id", pa.string(), nullable=False),
            pa.field("warehouse_id", pa.string()),
            pa.field("predicted_at", _TS, nullable=False),
            pa.field("predicted_oos_at", _TS),
            pa.field("probability", pa.float64()),
            pa.field("model_version", pa.string()),
            pa.field("feature_vector", pa.binary()),
            pa.field("on_hand", pa.float64()),
            pa.field("prediction_date", pa.date32(), nullable=False),
        ]
    ),
    DIM_SKU: pa.schema(
        [
            pa.field("sku_id", pa.string(), nullable=False),
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("warehouse_id", pa.string()),
            pa.field("category", pa.string()),
            pa.field("brand", pa.string()),
            pa.field("initial_stock", pa.int32()),
        ]
    ),
    DIM_TENANT: pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("region", pa.string()),
            pa.field("tier", pa.string()),
            pa.field("created_at", _TS),
        ]
    ),
    TENANT_SETTINGS: pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("sku_id", pa.string()),  # null: the tenant default
            pa.field("threshold", pa.float64()),
            pa.field("horizon_hours", pa.float64()),
            pa.field("updated_at", _TS),
        ]
    ),
}

DAY_COLUMNS: Final[dict[str, str]] = {FACT_ORDER: "order_date", FACT_PREDICTION: "prediction_date"}
# The timestamp a missing day column is derived from.
DAY_SOURCES: Final[dict[str, str]] = {FACT_ORDER: "order_ts", FACT_PREDICTION: "predicted_at"}


def partition_schema(table_name: str) -> pa.Schema:
    """The hive partition fields of a table: tenant_id, then its day column (if any)."""
    schema = SCHEMAS[table_name]
    names = ["tenant_id", *([DAY_COLUMNS[table_name]] if table_name in DAY_COLUMNS else [])]
    return pa.schema([schema.field(n).with_nullable(True) for n in names])


def file_schema(table_name: str) -> pa.Schema:
    """What a Parquet file of the table holds: the schema without the partition columns."""
    schema = SCHEMAS[table_name]
    for name in partition_schema(table_name).names:
        schema = schema.remove(schema.get_field_index(name))
    return schema


def prediction_id(
    tenant_id: str, sku_id: str, warehouse_id: str, predicted_at_us: int, model_version: str
) -> int:
    """A deterministic 63-bit id: the same prediction replayed gets the same id."""
    text = f"{tenant_id}\x1f{sku_id}\x1f{warehouse_id}\x1f{predicted_at_us}\x1f{model_version}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF
