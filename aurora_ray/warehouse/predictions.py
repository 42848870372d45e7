"""fact_prediction rows from a shard: one row per scored SKU per micro-batch, at checkpoints.

A micro-batch can score a SKU many times (every event, and event-time timers); the warehouse keeps
the last score of each SKU in the batch, with its feature vector (the shard's own feature function,
:func:`aurora_ray.domain.features.event_features`), to keep the volume proportional to SKUs, not to
events. SKUs whose stock is unknown have no probability and are not written.

Idempotency: the rows are written at the shard's checkpoint, before the checkpoint is saved, with a
``batch_id`` made from the offsets the batch *started* at (the previous checkpoint's). After a crash
the shard replays from that checkpoint, so its next flush starts at the same offsets and replaces
the same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aurora_ray.domain.features import event_features
from aurora_ray.domain.state import BatchOutput, SkuState
from aurora_ray.warehouse.schema import prediction_id
from aurora_ray.warehouse.store import Warehouse, WriteResult

__all__ = ["PredictionBuffer", "shard_batch_id"]

_MAX_READABLE_ID = 160


def shard_batch_id(shard: int, start_offsets: Mapping[int, int]) -> str:
    """``shard{n}-{p}.{offset}_…`` from the offsets a batch started at (a digest when long)."""
    body = "_".join(f"{p}.{o}" for p, o in sorted(start_offsets.items())) or "start"
    if len(body) > _MAX_READABLE_ID:
        body = hashlib.blake2b(body.encode(), digest_size=12).hexdigest()
    return f"shard{shard}-{body}"


class PredictionBuffer:
    """Rows waiting for the shard's next checkpoint. Not thread-safe: the shard loop owns it."""

    def __init__(self, warehouse: Warehouse, tenant_id: str, *, shard: int) -> None:
        self.warehouse = warehouse
        self.tenant_id = tenant_id
        self.shard = shard
        self.start_offsets: dict[int, int] = {}
        self._rows: dict[str, list[Any]] = _empty()
        self.written = 0

    def __len__(self) -> int:
        return len(self._rows["sku_id"])

    def reset(self, start_offsets: Mapping[int, int]) -> None:
        """Forget buffered rows (they will be replayed) and start a batch at these offsets."""
        self.start_offsets = dict(start_offsets)
        self._rows = _empty()

    def append(self, state: SkuState, outputs: Sequence[BatchOutput], *, model_version: str) -> int:
        """Add the last score of every SKU scored by ``outputs`` (one micro-batch, in order)."""
        last: dict[int, tuple[BatchOutput, int, int]] = {}  # row -> (output, row index, event idx)
        for output in outputs:
            if len(output.rows) == 0:
                continue
            event_rows = output.event_rows
            # The last event of each row: event arrays are grouped by row.
            reversed_rows = event_rows[::-1]
            unique, first_in_reversed = np.unique(reversed_rows, return_index=True)
            last_event = dict(
                zip(
                    unique.tolist(), (len(event_rows) - 1 - first_in_reversed).tolist(), strict=True
                )
            )
            for i, row in enumerate(output.rows.tolist()):
                if row in last_event and not np.isnan(output.probability[i]):
                    last[row] = (output, i, last_event[row])
        if not last:
            return 0
        features_of: dict[int, np.ndarray[Any, Any]] = {}
        rows = self._rows
        for row, (output, i, event) in last.items():
            key = id(output)
            if key not in features_of:
                features_of[key] = event_features(output).astype("<f4")
            sku, warehouse = state.keys[row].rsplit("@", 1)
            at_us = int(round(float(output.as_of_s[i]) * 1e6))
            oos = float(output.predicted_oos_s[i])
            rows["prediction_id"].append(
                prediction_id(self.tenant_id, sku, warehouse, at_us, model_version)
            )
            rows["sku_id"].append(sku)
            rows["warehouse_id"].append(warehouse)
            rows["predicted_at"].append(at_us)
            rows["predicted_oos_at"].append(None if np.isnan(oos) else int(round(oos * 1e6)))
            rows["probability"].append(round(float(output.probability[i]), 3))
            rows["model_version"].append(model_version)
            rows["feature_vector"].append(features_of[key][event].tobytes())
            rows["on_hand"].append(float(output.event_on_hand[event]))
        return len(last)

    def table(self) -> pa.Table:
        ts = pa.timestamp("us", tz="UTC")
        rows = self._rows
        return pa.table(
            {
                "prediction_id": pa.array(rows["prediction_id"], pa.int64()),
                "sku_id": pa.array(rows["sku_id"], pa.string()),
                "warehouse_id": pa.array(rows["warehouse_id"], pa.string()),
                "predicted_at": pa.array(rows["predicted_at"], pa.int64()).cast(ts),
                "predicted_oos_at": pa.array(rows["predicted_oos_at"], pa.int64()).cast(ts),
                "probability": pa.array(rows["probability"], pa.float64()),
                "model_version": pa.array(rows["model_version"], pa.string()),
                "feature_vector": pa.array(rows["feature_vector"], pa.binary()),
                "on_hand": pa.array(rows["on_hand"], pa.float64()),
            }
        )

    def flush(self, next_offsets: Mapping[int, int]) -> WriteResult | None:
        """Write the buffered rows (call before the checkpoint is saved); the next batch starts
        at ``next_offsets``."""
        result = None
        if len(self):
            batch_id = shard_batch_id(self.shard, self.start_offsets)
            result = self.warehouse.write_fact_prediction(
                self.tenant_id, self.table(), batch_id=batch_id
            )
            self.written += result.rows
        self.reset(next_offsets)
        return result


def _empty() -> dict[str, list[Any]]:
    names = (
        "prediction_id",
        "sku_id",
        "warehouse_id",
        "predicted_at",
        "predicted_oos_at",
        "probability",
        "model_version",
        "feature_vector",
        "on_hand",
    )
    return {n: [] for n in names}
