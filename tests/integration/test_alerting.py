"""Acceptance (a): a SKU selling steadily toward zero is alerted with probability >= 0.9 at least
24 h (event time) before it runs out; a SKU with ample stock is not alerted."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from aurora_ray.testing import ndjson, order, sku_upserted, wait_for

pytestmark = pytest.mark.integration

HOUR = 3600.0


def _parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_steady_seller_is_alerted_a_day_ahead_and_ample_stock_is_not(make_tenant) -> None:
    tenant = make_tenant("steady")
    api = tenant.client
    response = api.put("/v1/settings/thresholds", json={"skus": {"DRAIN": 0.9}})
    assert response.status_code == 200, response.text
    assert response.json()["skus"] == {"DRAIN": 0.9}

    t0 = time.time() - 30 * 24 * HOUR  # event time in the past: 100 h of history
    stock, per_hour = 1000, 10  # DRAIN runs out after 100 h
    api.post_events(
        ndjson(
            [
                sku_upserted(tenant.tenant_id, "DRAIN", "DE-HAM", stock, at=t0),
                sku_upserted(tenant.tenant_id, "PLENTY", "DE-HAM", 1_000_000, at=t0),
            ]
        )
    )
    zero_at = t0 + stock / per_hour * HOUR
    # Four hours of event time a request: the stream sees a realistic sequence of micro-batches.
    for block in range(25):
        events = []
        for i in range(4 * per_hour):
            at = t0 + block * 4 * HOUR + (i + 1) * HOUR / per_hour
            for sku in ("DRAIN", "PLENTY"):
                events.append(
                    order(tenant.tenant_id, sku, "DE-HAM", 1, at=at, order_id=f"{sku}-{block}-{i}")
                )
        assert api.post_events(ndjson(events)) == len(events)

    def caught_up():
        # Both SKUs: they sit on different partitions, and one can be folded before the other.
        drain = api.get("/v1/stock/predictions", sku="DRAIN").json()
        plenty = api.get("/v1/stock/predictions", sku="PLENTY").json()
        done = drain and plenty and drain[0]["on_hand"] == 0
        return done and plenty[0]["on_hand"] == 1_000_000 - 1000 and drain

    [drain] = wait_for(caught_up, timeout=90, what="the shard to score every event")
    assert drain["probability"] == 1.0

    alerts = api.alerts(sku="DRAIN")
    assert alerts, "DRAIN was never alerted"
    first = min(alerts, key=lambda a: a["as_of"])
    assert first["probability"] >= 0.9
    lead_h = (zero_at - _parse(first["as_of"])) / HOUR
    assert lead_h >= 24, f"alerted only {lead_h:.1f} h before the stock-out"
    assert abs(_parse(first["predicted_oos_at"]) - zero_at) < 6 * HOUR
    assert first["model_version"]
    assert first["predicted_oos_at"].endswith("Z") and first["created_at"].endswith("Z")

    assert api.alerts(sku="PLENTY") == []
    [plenty] = api.get("/v1/stock/predictions", sku="PLENTY").json()
    assert plenty["on_hand"] == 1_000_000 - 1000
    assert plenty["probability"] < 0.01
