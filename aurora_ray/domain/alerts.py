"""Turning a batch's scores into prediction records and alerts (the read model's rows)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aurora_ray.domain.state import BatchOutput, SkuState

__all__ = ["AlertRecord", "build_outputs", "iso_utc", "iso_utc_many", "alert_id_for"]

_MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z
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
            "as_of": iso_utc(self.as_of_s),
            "created_at": iso_utc(self.created_s),
            "model_version": self.model_version,
        }


def _iso_or_none(epoch_s: float) -> str | None:
    return iso_utc(epoch_s) if math.isfinite(epoch_s) and epoch_s < _MAX_EPOCH_S else None


def build_outputs(
    state: SkuState,
    output: BatchOutput,
    *,
    tenant_id: str,
    model_version: str,
    now_s: float,
) -> tuple[dict[str, dict[str, Any]], list[AlertRecord]]:
    """Prediction records of the scored SKUs (keyed ``sku@warehouse``) and the alerts raised."""
    predictions: dict[str, dict[str, Any]] = {}
    shown = np.flatnonzero(~np.isnan(output.probability))
    if len(shown):
        rows = output.rows[shown]
        keys = state.keys
        on_hand = state.cols["on_hand"][rows].tolist()
        rates = output.demand_rate_per_h[shown].tolist()
        probabilities = output.probability[shown].tolist()
        oos_text = iso_utc_many(output.predicted_oos_s[shown], none_if_out_of_range=True)
        as_of_text = iso_utc_many(output.as_of_s[shown])
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
    alerts: list[AlertRecord] = []
    for i, row in enumerate(output.alert_rows.tolist()):
        key = state.keys[row]
        sku, warehouse = key.rsplit("@", 1)
        as_of = float(output.alert_as_of_s[i])
        alerts.append(
            AlertRecord(
                alert_id=alert_id_for(tenant_id, key, as_of),
                sku=sku,
                warehouse=warehouse,
                probability=round(float(output.alert_probability[i]), 6),
                predicted_oos_at=_iso_or_none(float(output.alert_predicted_oos_s[i])),
                as_of_s=as_of,
                created_s=now_s,
                model_version=model_version,
            )
        )
    return predictions, alerts
