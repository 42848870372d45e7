"""The Parquet warehouse: tables, data-quality rules, idempotent writes, reads and retention.

Pure core (pyarrow only, no Ray): the ``WarehouseSink`` actor, the shards, and the backfill and
retrain jobs all go through :class:`Warehouse`.
"""

from aurora_ray.warehouse.quality import BadRow, DataQualityError
from aurora_ray.warehouse.schema import (
    DAY_COLUMNS,
    DIM_SKU,
    DIM_TENANT,
    FACT_ORDER,
    FACT_PREDICTION,
    SCHEMAS,
    TABLES,
    TENANT_SETTINGS,
    prediction_id,
)
from aurora_ray.warehouse.store import RemovedPartition, RetentionReport, Warehouse, WriteResult

__all__ = [
    "DAY_COLUMNS",
    "DIM_SKU",
    "DIM_TENANT",
    "FACT_ORDER",
    "FACT_PREDICTION",
    "SCHEMAS",
    "TABLES",
    "TENANT_SETTINGS",
    "BadRow",
    "DataQualityError",
    "RemovedPartition",
    "RetentionReport",
    "Warehouse",
    "WriteResult",
    "prediction_id",
]
