"""Turning a batch's scores into prediction records and alerts (the read model's rows).

A prediction record also carries the SKU's replenishment recommendation as of the same picture,
when the fold computes them: the recommendation is part of the SKU's live picture, so one
record, written in one command, holds both. It is stored compact, as the array ``rec`` laid
out as :data:`REC_LAYOUT` (numbers only, times in epoch ms), because every micro-batch rewrites
every touched SKU's record while few are read: the reader (``aurora_ray.recommendations``)
names the fields and formats the times. An alert carries the order it calls for
(``order_by``, ``recommended_qty``) and the 80 % interval of its stock-out time."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.replenish import Recommendations
from aurora_ray.domain.state import BatchOutput, SkuState

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

__all__ = [
    "REC_LAYOUT",
    "AlertRecord",
    "Outputs",
    "alert_id_for",
    "alert_ids_for",
    "build_outputs",
    "iso_utc",
    "iso_utc_many",
]

_MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z
#: The stored recommendation (``rec`` in a prediction record), one number each: units on order
#: that count, risk, order_by (epoch ms; null: no demand, nothing to plan), recommended
#: quantity, reorder point, order-up-to level, target service level, lead time (hours), its
#: source (an index into ``LEAD_SOURCES``), MOQ and case pack (0: none), and the p10 and p90 of
#: the stock-out time (epoch ms; null: none expected).
REC_LAYOUT: Final = (
    "on_order",
    "risk",
    "order_by_ms",
    "recommended_qty",
    "reorder_point",
    "order_up_to",
    "service_level",
    "lead_time_hours",
    "lead_source",
    "moq",
    "case_pack",
    "oos_p10_ms",
    "oos_p90_ms",
)
_ALERT_NAMESPACE = uuid.UUID("6f1c2b0e-4a57-4c41-9a55-2d9d3e1f7a10")


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 in UTC with a ``Z`` and millisecond precision."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_utc_many(
    epoch_s: NDArray[np.float64], *, none_if_out_of_range: bool = False
) -> list[str | None]:
    """:func:`iso_utc` of each value, formatted by numpy in one call (the same strings).

    ``datetime.fromtimestamp`` rounds the fraction to microseconds half to even, and
    :func:`iso_utc` then truncates to milliseconds; this does the same arithmetic on arrays.
    Values outside 1970..9999 go through :func:`iso_utc` one by one (or give ``None`` with
    ``none_if_out_of_range``, as :func:`_iso_or_none` does above 9999 and for NaN)."""
    values = np.asarray(epoch_s, dtype=np.float64)
    inside = np.isfinite(values) & (values >= 0.0) & (values < _MAX_EPOCH_S)
    safe = np.where(inside, values, 0.0)
    whole = np.trunc(safe)
    micros = np.rint((safe - whole) * 1e6)  # exact fraction (modf), then half-to-even
    carry = micros >= 1e6
    whole = whole + carry
    micros = np.where(carry, micros - 1e6, micros)
    millis = whole.astype(np.int64) * 1000 + (micros.astype(np.int64) // 1000)
    text = np.char.add(np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms"), "Z")
    out: list[str | None] = text.tolist()
    if not inside.all():
        for i in np.flatnonzero(~inside).tolist():
            value = float(values[i])
            out[i] = _iso_or_none(value) if none_if_out_of_range else iso_utc(value)
    return out


def alert_id_for(tenant_id: str, key: str, as_of_s: float) -> str:
    """Deterministic: the same SKU alerted at the same event time always has the same id."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{tenant_id}|{key}|{round(as_of_s * 1000)}"))


def alert_ids_for(tenant_id: str, keys: Sequence[str], as_of_s: Sequence[float]) -> list[str]:
    """:func:`alert_id_for` of many alerts: the same ids, without a ``uuid.UUID`` object each.

    A UUIDv5 is the first 16 bytes of SHA-1(namespace + name) with the version (5) and variant
    bits set; building them here costs a third of what ``uuid.uuid5`` does."""
    out: list[str] = []
    prefix = _ALERT_NAMESPACE.bytes
    for key, as_of in zip(keys, as_of_s, strict=True):
        name = f"{tenant_id}|{key}|{round(as_of * 1000)}".encode()
        digest = bytearray(hashlib.sha1(prefix + name, usedforsecurity=False).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50
        digest[8] = (digest[8] & 0x3F) | 0x80
        h = digest.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


@dataclass(frozen=True)
class AlertRecord:
    alert_id: str
    sku: str
    warehouse: str
    probability: float
    predicted_oos_at: str | None
    as_of_s: float
    created_s: float
    model_version: str
    # The ISO forms of ``as_of_s`` and ``created_s`` when the builder already formatted them
    # (for a whole batch at once); empty: formatted on demand.
    as_of: str = ""
    created_at: str = ""
    # The replenishment the alert calls for, as of the same event (None: not recommended): the
    # latest time to order, how much, and the 80 % interval of the stock-out time (ISO, UTC).
    order_by: str | None = None
    recommended_qty: int | None = None
    predicted_oos_at_p10: str | None = None
    predicted_oos_at_p90: str | None = None

    @property
    def key(self) -> str:
        return f"{self.sku}@{self.warehouse}"

    def to_api(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "sku": self.sku,
            "warehouse": self.warehouse,
            "predicted_oos_at": self.predicted_oos_at,
            "probability": self.probability,
            "as_of": self.as_of or iso_utc(self.as_of_s),
            "created_at": self.created_at or iso_utc(self.created_s),
            "model_version": self.model_version,
            "order_by": self.order_by,
            "recommended_qty": self.recommended_qty,
            "predicted_oos_at_p10": self.predicted_oos_at_p10,
            "predicted_oos_at_p90": self.predicted_oos_at_p90,
        }


def _iso_or_none(epoch_s: float) -> str | None:
    return iso_utc(epoch_s) if math.isfinite(epoch_s) and epoch_s < _MAX_EPOCH_S else None


def _latest_picture(outputs: Sequence[BatchOutput]) -> tuple[I64, I64, I64]:
    """Where each scored row's latest picture lies across ``outputs`` (a batch and its timers,
    in order): (rows, index of the output, position in it), one entry per row."""
    rows = [o.rows for o in outputs]
    if not rows:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    which = np.concatenate([np.full(len(r), i, np.int64) for i, r in enumerate(rows)])
    where = np.concatenate([np.arange(len(r), dtype=np.int64) for r in rows])
    flat = np.concatenate(rows)
    shown = ~np.isnan(np.concatenate([o.probability for o in outputs]))
    flat, which, where = flat[shown], which[shown], where[shown]
    # The last occurrence of each row: unique over the reversed order keeps the first seen.
    _, first = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - first
    last.sort()  # in the order the rows were last scored
    return flat[last], which[last], where[last]


class Outputs(NamedTuple):
    """A micro-batch's read-model rows."""

    predictions: dict[str, dict[str, Any]]  # keyed sku@warehouse
    alerts: list[AlertRecord]
    # The rows whose record carries a recommendation, and its order_by (epoch s; inf: nothing
    # to plan): the shard keeps the due index from them. Empty when the fold does not recommend.
    order_by_rows: I64
    order_by_s: F64


def _gathered(outputs: Sequence[BatchOutput], which: I64, where: I64) -> Recommendations | None:
    """The recommendations of each row's latest picture (see :func:`_latest_picture`)."""
    parts = [o.recommendations for o in outputs]
    if not parts or any(p is None for p in parts):
        return None
    sizes = [len(o.rows) for o in outputs]
    at = np.cumsum([0, *sizes[:-1]])[which] + where
    values = {
        name: np.concatenate([getattr(p, name) for p in parts])[at]
        for name in Recommendations.__dataclass_fields__
    }
    return Recommendations(**values)


def _stored(r: Recommendations, moq: I64, case_pack: I64) -> list[tuple[Any, ...]]:
    """Each row's ``rec`` (:data:`REC_LAYOUT`, a tuple: encoded as a JSON array, and cheaper to
    make than a list); NaN becomes null in JSON."""
    columns = (
        r.on_order.astype(np.int64).tolist(),
        np.round(r.risk, 6).tolist(),
        np.round(r.order_by_s * 1000.0).tolist(),
        r.recommended_qty.astype(np.int64).tolist(),
        np.round(r.reorder_point, 3).tolist(),
        np.round(r.order_up_to, 3).tolist(),
        np.round(r.service_level, 6).tolist(),
        np.round(r.lead_time_s / 3600.0, 3).tolist(),
        r.lead_source.astype(np.int64).tolist(),
        moq.tolist(),
        case_pack.tolist(),
        np.round(r.oos_p10_s * 1000.0).tolist(),
        np.round(r.oos_p90_s * 1000.0).tolist(),
    )
    return list(zip(*columns, strict=True))


def build_outputs(
    state: SkuState,
    outputs: Sequence[BatchOutput],
    *,
    tenant_id: str,
    model_version: str,
    now_s: float,
) -> Outputs:
    """Prediction records of the SKUs a micro-batch scored (keyed ``sku@warehouse``, the latest
    picture of each across the batch's outputs, with its recommendation), every alert raised,
    in order, and the recommendations' order_by (see :class:`Outputs`)."""
    predictions: dict[str, dict[str, Any]] = {}
    order_by_rows, order_by_s = np.empty(0, np.int64), np.empty(0, np.float64)
    rows, which, where = _latest_picture(outputs)
    if len(rows):

        def gather(name: str) -> F64:
            columns = [getattr(o, name) for o in outputs]
            offsets = np.cumsum([0] + [len(c) for c in columns[:-1]])
            return np.concatenate(columns)[offsets[which] + where]

        keys = state.keys
        on_hand = state.cols["on_hand"][rows].tolist()
        rates = gather("demand_rate_per_h").tolist()
        probabilities = gather("probability").tolist()
        oos_text = iso_utc_many(gather("predicted_oos_s"), none_if_out_of_range=True)
        as_of_text = iso_utc_many(gather("as_of_s"))
        for j, row in enumerate(rows.tolist()):
            key = keys[row]
            sku, warehouse = key.rsplit("@", 1)
            predictions[key] = {
                "sku": sku,
                "warehouse": warehouse,
                "on_hand": on_hand[j],
                "demand_rate_per_hour": round(rates[j], 6),
                "probability": round(probabilities[j], 6),
                "predicted_oos_at": oos_text[j],
                "model_version": model_version,
                "as_of": as_of_text[j],
            }
        recommended = _gathered(outputs, which, where)
        if recommended is not None:
            # The row's MOQ and case pack are the state's: nothing after its latest picture
            # changed them (an upsert would have been a later picture).
            stored = _stored(
                recommended,
                state.cols["moq"][rows].astype(np.int64),
                state.cols["case_pack"][rows].astype(np.int64),
            )
            for record, rec in zip(predictions.values(), stored, strict=True):
                record["rec"] = rec
            order_by_rows = rows
            order_by_s = np.where(np.isnan(recommended.order_by_s), np.inf, recommended.order_by_s)
    alerts = _alert_records(
        state, outputs, tenant_id=tenant_id, model_version=model_version, now_s=now_s
    )
    return Outputs(predictions, alerts, order_by_rows, order_by_s)


def _alert_records(
    state: SkuState,
    outputs: Sequence[BatchOutput],
    *,
    tenant_id: str,
    model_version: str,
    now_s: float,
) -> list[AlertRecord]:
    """Every alert the outputs raised, in order, with the order each calls for."""
    alert_rows = np.concatenate([o.alert_rows for o in outputs]) if outputs else np.empty(0)
    if not len(alert_rows):
        return []
    as_of_s = np.concatenate([o.alert_as_of_s for o in outputs])
    probability = np.concatenate([o.alert_probability for o in outputs]).tolist()
    oos = iso_utc_many(
        np.concatenate([o.alert_predicted_oos_s for o in outputs]), none_if_out_of_range=True
    )
    as_of_text = iso_utc_many(as_of_s)
    created_at = iso_utc(now_s)
    alert_keys = [state.keys[row] for row in alert_rows.tolist()]
    as_of_list = as_of_s.tolist()
    ids = alert_ids_for(tenant_id, alert_keys, as_of_list)
    n = len(alert_keys)
    due: list[str | None] = [None] * n
    qty: list[int | None] = [None] * n
    p10, p90 = due, due
    plans = [o.alert_recommendations for o in outputs]
    if all(p is not None for p in plans):

        def joined(name: str) -> F64:
            return np.concatenate([getattr(p, name) for p in plans])

        due = iso_utc_many(joined("order_by_s"), none_if_out_of_range=True)
        qty = joined("recommended_qty").astype(np.int64).tolist()
        p10 = iso_utc_many(joined("oos_p10_s"), none_if_out_of_range=True)
        p90 = iso_utc_many(joined("oos_p90_s"), none_if_out_of_range=True)
    alerts: list[AlertRecord] = []
    for i, (key, p) in enumerate(zip(alert_keys, probability, strict=True)):
        sku, warehouse = key.rsplit("@", 1)
        alerts.append(
            AlertRecord(
                alert_id=ids[i],
                sku=sku,
                warehouse=warehouse,
                probability=round(p, 6),
                predicted_oos_at=oos[i],
                as_of_s=as_of_list[i],
                created_s=now_s,
                model_version=model_version,
                as_of=str(as_of_text[i]),
                created_at=created_at,
                order_by=due[i],
                recommended_qty=qty[i],
                predicted_oos_at_p10=p10[i],
                predicted_oos_at_p90=p90[i],
            )
        )
    return alerts
