"""Turning a batch's scores into prediction records and alerts (the read model's rows)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aurora_ray.domain.state import BatchOutput, SkuState

__all__ = ["AlertRecord", "build_outputs", "iso_utc", "alert_id_for"]

_MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z
_ALERT_NAMESPACE = uuid.UUID("6f1c2b0e-4a57-4c41-9a55-2d9d3e1f7a10")


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 in UTC with a ``Z`` and millisecond precision."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
    on_hand = state.cols["on_hand"]
    for i, row in enumerate(output.rows.tolist()):
        probability = float(output.probability[i])
        if math.isnan(probability):
            continue
        key = state.keys[row]
        sku, warehouse = key.rsplit("@", 1)
        predictions[key] = {
            "sku": sku,
            "warehouse": warehouse,
            "on_hand": int(on_hand[row]),
            "demand_rate_per_hour": round(float(output.demand_rate_per_h[i]), 6),
            "probability": round(probability, 6),
            "predicted_oos_at": _iso_or_none(float(output.predicted_oos_s[i])),
            "model_version": model_version,
            "as_of": iso_utc(float(output.as_of_s[i])),
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
