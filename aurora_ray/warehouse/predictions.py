"""fact_prediction rows from a shard: a SKU's score at fixed steps of event time, at checkpoints.

The fold scores a SKU at every event and every event-time timer. The warehouse keeps, per SKU,
the first score in each step of ``prediction_row_hours`` of event time (an hour by default), with
its feature vector (the shard's own feature function,
:func:`aurora_ray.domain.features.event_features`) and the stock on hand after that event
(ADR-011). The rows are a function of each SKU's event sequence alone: where the micro-batches
fall, and so how fast a shard folds (a live trickle or a backfill's full batches), does not
change them, and neither does a replay. The SKU's last step written lives in the state
(``pred_step``) and travels with its checkpoints. SKUs whose stock is unknown have no
probability and are not written.

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

__all__ = ["DEFAULT_STEP_S", "PredictionBuffer", "shard_batch_id"]

_MAX_READABLE_ID = 160
DEFAULT_STEP_S = 3600.0


def shard_batch_id(shard: int, start_offsets: Mapping[int, int]) -> str:
    """``shard{n}-{p}.{offset}_…`` from the offsets a batch started at (a digest when long)."""
    body = "_".join(f"{p}.{o}" for p, o in sorted(start_offsets.items())) or "start"
    if len(body) > _MAX_READABLE_ID:
        body = hashlib.blake2b(body.encode(), digest_size=12).hexdigest()
    return f"shard{shard}-{body}"


def step_picks(state: SkuState, output: BatchOutput, step_s: float) -> np.ndarray[Any, Any]:
    """Indexes of ``output``'s events that open a new step of event time for their SKU (the
    first known score of each SKU in each step after the SKU's last row), in event order; moves
    the SKUs' ``pred_step`` on."""
    rows, score = output.event_rows, output.event_score
    if not len(rows):
        return np.empty(0, np.int64)
    steps = np.floor(output.event_as_of_s / step_s).astype(np.int64)
    last_step: np.ndarray[Any, np.dtype[np.int64]] = state.cols["pred_step"]  # type: ignore[assignment]
    candidates = np.flatnonzero(~np.isnan(score) & (steps > last_step[rows]))
    if not len(candidates):
        return candidates
    # A SKU's events are in order with non-decreasing as_of: group by SKU (stable) and keep the
    # first of each (SKU, step) run.
    order = candidates[np.argsort(rows[candidates], kind="stable")]
    r, k = rows[order], steps[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (r[1:] != r[:-1]) | (k[1:] != k[:-1])
    picked = np.sort(order[first])
    np.maximum.at(last_step, rows[picked], steps[picked])
    return picked


class PredictionBuffer:
    """Rows waiting for the shard's next checkpoint. Not thread-safe: the shard loop owns it."""

    def __init__(
        self, warehouse: Warehouse, tenant_id: str, *, shard: int, step_s: float = DEFAULT_STEP_S
    ) -> None:
        self.warehouse = warehouse
        self.tenant_id = tenant_id
        self.shard = shard
        self.step_s = step_s
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
        """Add the rows ``outputs`` (one micro-batch's, in order) open: a SKU's first score in
        each new step of event time (:func:`step_picks`). Gathered with numpy; only the id, the
        names and the rounding are per row."""
        picked = [(o, idx) for o in outputs if len(idx := step_picks(state, o, self.step_s))]
        if not picked:
            return 0
        rows_all = np.concatenate([o.event_rows[idx] for o, idx in picked])
        as_of = np.concatenate([o.event_as_of_s[idx] for o, idx in picked])
        oos = np.concatenate([_event_oos(o)[idx] for o, idx in picked])
        probability = np.concatenate([o.event_score[idx] for o, idx in picked])
        on_hand = np.concatenate([o.event_on_hand[idx] for o, idx in picked])
        features = np.concatenate([event_features(o)[idx].astype("<f4") for o, idx in picked])
        width = features.shape[1] * features.itemsize
        blob = np.ascontiguousarray(features).tobytes()
        at_us = np.round(as_of * 1e6).astype(np.int64).tolist()
        oos_us = np.round(np.nan_to_num(oos, nan=0.0) * 1e6).astype(np.int64).tolist()
        oos_nan = np.isnan(oos).tolist()
        keys = state.keys
        tenant = self.tenant_id
        rows = self._rows
        for j, row in enumerate(rows_all.tolist()):
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
        rows["model_version"].extend([model_version] * len(rows_all))
        rows["on_hand"].extend(on_hand.tolist())
        return len(rows_all)

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
        at ``next_offsets``. When the write fails, the rows stay buffered (the next flush
        writes them with the later ones, under the same batch id) and the error is raised."""
        result = None
        if len(self):
            batch_id = shard_batch_id(self.shard, self.start_offsets)
            result = self.warehouse.write_fact_prediction(
                self.tenant_id, self.table(), batch_id=batch_id
            )
            self.written += result.rows
        self.reset(next_offsets)
        return result

    def drop_oldest(self, keep: int) -> int:
        """Keep only the newest ``keep`` rows (a bound while the warehouse fails); returns how
        many were dropped."""
        dropped = max(0, len(self) - keep)
        if dropped:
            for name, values in self._rows.items():
                self._rows[name] = values[dropped:]
        return dropped


def _event_oos(output: BatchOutput) -> np.ndarray[Any, Any]:
    """Per-event predicted stock-out times (older outputs built by hand may lack them)."""
    if len(output.event_predicted_oos_s) == len(output.event_rows):
        return output.event_predicted_oos_s
    return np.full(len(output.event_rows), np.nan)


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
