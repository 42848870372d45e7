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
        """Add the last score of every SKU scored by ``outputs`` (one micro-batch, in order).

        Rows come in the order each SKU was first scored in the batch, each with its last
        score; gathered with numpy, only the id, the names and the rounding are per row."""
        picked: list[tuple[BatchOutput, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        for output in outputs:
            if len(output.rows) == 0:
                continue
            event_rows = output.event_rows
            # The last event of each row: event arrays are grouped by row.
            unique, first_in_reversed = np.unique(event_rows[::-1], return_index=True)
            last_event = len(event_rows) - 1 - first_in_reversed
            where = np.searchsorted(unique, output.rows)
            where = np.minimum(where, max(len(unique) - 1, 0))
            has_event = (
                (unique[where] == output.rows) if len(unique) else np.zeros(len(output.rows), bool)
            )
            keep = np.flatnonzero(has_event & ~np.isnan(output.probability))
            if len(keep):
                picked.append((output, keep, last_event[where[keep]]))
        if not picked:
            return 0
        rows_all = np.concatenate([output.rows[keep] for output, keep, _ in picked])
        # Last score of each row, rows in order of their first score (as a dict would keep).
        unique, first = np.unique(rows_all, return_index=True)
        _, last_rev = np.unique(rows_all[::-1], return_index=True)
        last = (len(rows_all) - 1 - last_rev)[np.argsort(first, kind="stable")]
        as_of = np.concatenate([o.as_of_s[k] for o, k, _ in picked])[last]
        oos = np.concatenate([o.predicted_oos_s[k] for o, k, _ in picked])[last]
        probability = np.concatenate([o.probability[k] for o, k, _ in picked])[last]
        on_hand = np.concatenate([o.event_on_hand[e] for o, _, e in picked])[last]
        features = np.concatenate([event_features(o)[e].astype("<f4") for o, _, e in picked])[last]
        width = features.shape[1] * features.itemsize
        blob = np.ascontiguousarray(features).tobytes()
        at_us = np.round(as_of * 1e6).astype(np.int64).tolist()
        oos_us = np.round(np.nan_to_num(oos, nan=0.0) * 1e6).astype(np.int64).tolist()
        oos_nan = np.isnan(oos).tolist()
        keys = state.keys
        tenant = self.tenant_id
        rows = self._rows
        for j, row in enumerate(rows_all[last].tolist()):
            sku, warehouse = keys[row].rsplit("@", 1)
            rows["prediction_id"].append(
                prediction_id(tenant, sku, warehouse, at_us[j], model_version)
            )
            rows["sku_id"].append(sku)
            rows["warehouse_id"].append(warehouse)
            rows["feature_vector"].append(blob[j * width : (j + 1) * width])
        rows["predicted_at"].extend(at_us)
        rows["predicted_oos_at"].extend(
            None if nan else us for nan, us in zip(oos_nan, oos_us, strict=True)
        )
        rows["probability"].extend(round(p, 3) for p in probability.tolist())
        rows["model_version"].extend([model_version] * len(last))
        rows["on_hand"].extend(on_hand.tolist())
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
