"""Live equals replay, for the recommendations: a stream sent through the HTTP API, Kafka and
the ``TenantShard`` actors gives, through ``GET /v1/stock/recommendations`` and
``GET /v1/stock/alerts``, exactly the rows and the alerts' orders of the same events folded
offline (``fold_with_timers`` and ``build_outputs``, the partition of each event as the
producer picks it), as the evaluation's ``--through-pipeline`` check does for the alerts."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import msgspec
import pytest

from aurora_ray.adapters.kafka import partition_for
from aurora_ray.domain.alerts import build_outputs
from aurora_ray.domain.events import ShardBatch
from aurora_ray.domain.state import SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.ingest import prepare_ingest
from aurora_ray.recommendations import recommendation_row
from aurora_ray.stream import scoring_params
from aurora_ray.testing import (
    ndjson,
    order,
    sku_upserted,
    stock_ordered,
    stock_received,
    stock_snapshot,
    wait_for,
)
from tests.integration.helpers import next_link, parse_ts

pytestmark = pytest.mark.integration

HOUR = 3600.0


def lumpy_stream(tid: str, *, t0: float, seed: int) -> list[dict[str, Any]]:
    """Ten SKUs in two warehouses over six days of event time (timers fire each midnight):
    lumpy orders (mostly 1-2 units, now and then 20), lead times given on some upserts (one in
    a catalogue-only upsert after the stock), purchase orders received on others, a snapshot,
    and a SKU that runs out (alerts)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    skus = [(f"L-{i}", "DE-HAM" if i % 2 else "FR-PAR") for i in range(10)]
    for i, (sku, wh) in enumerate(skus):
        extra = {"lead_time_hours": 24 + 12 * i, "moq": 10, "case_pack": 6} if i % 3 == 0 else {}
        stock = 15 if i == 1 else 200 + 20 * i
        events.append(sku_upserted(tid, sku, wh, stock, at=t0, **extra))
    events.append(sku_upserted(tid, "L-4", "FR-PAR", None, at=t0 + 30 * HOUR, lead_time_hours=40))
    for sku, wh in skus[5:8]:
        placed = t0 + rng.uniform(1, 20) * HOUR
        lead = rng.uniform(30, 90) * HOUR
        events.append(stock_ordered(tid, sku, wh, 60, at=placed, expected_at=placed + 72 * HOUR))
        events.append(stock_received(tid, sku, wh, 60, at=placed + lead))
    events.append(
        stock_ordered(tid, "L-9", "DE-HAM", 40, at=t0 + 100 * HOUR, expected_at=t0 + 160 * HOUR)
    )
    events.append(stock_snapshot(tid, "L-2", "FR-PAR", 120, at=t0 + 50 * HOUR))
    for n in range(600):
        sku, wh = skus[rng.randrange(len(skus))]
        qty = 20 if rng.random() < 0.03 else rng.choice((1, 1, 2))
        at = t0 + rng.uniform(0, 144) * HOUR
        events.append(order(tid, sku, wh, qty, at=at, order_id=f"o-{n}"))
    return sorted(events, key=lambda e: e["occurred_at"])


def offline(settings: Any, tid: str, body: bytes) -> tuple[list[dict[str, Any]], set[tuple]]:
    """The same events folded in one process: the rows and the alerts' orders."""
    prepared = prepare_ingest(body, tenant_id=tid, received_ms=int(time.time() * 1000))
    partitions = [partition_for(key, settings.partitions_per_topic) for key, _ in prepared.records]
    batch = ShardBatch()
    batch.add([value for _, value in prepared.records], partitions)
    assert not batch.refused
    state = SkuState()
    outputs = fold_with_timers(state, batch.records, batch.partitions, scoring_params(settings))
    built = build_outputs(state, outputs, tenant_id=tid, model_version="m", now_s=time.time())
    decode = msgspec.json.decode  # the stored record, as the API reads it back
    rows = [recommendation_row(decode(msgspec.json.encode(p))) for p in built.predictions.values()]
    order_of = {
        f"{r['sku']}@{r['warehouse']}": (
            math.inf if r["order_by"] is None else parse_ts(r["order_by"])
        )
        for r in rows
        if r is not None
    }
    kept = sorted(
        (r for r in rows if r is not None),
        key=lambda r: (order_of[f"{r['sku']}@{r['warehouse']}"], f"{r['sku']}@{r['warehouse']}"),
    )
    alerts = {_alert_order(a.to_api()) for a in built.alerts}
    return kept, alerts


def _alert_order(alert: dict[str, Any]) -> tuple:
    return (
        alert["sku"],
        alert["warehouse"],
        alert["as_of"],
        alert["order_by"],
        alert["recommended_qty"],
        alert["predicted_oos_at_p10"],
        alert["predicted_oos_at_p90"],
    )


def _pages(client: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    response = client.get(path, **params)
    for _ in range(100):
        assert response.status_code == 200, response.text
        out.extend(response.json())
        link = next_link(response)
        if link is None:
            return out
        response = client.http.get(link, headers={"Authorization": f"Bearer {client.token()}"})
    raise AssertionError("pagination does not end")


def test_live_recommendations_equal_the_offline_replay(stack, make_tenant) -> None:
    tenant = make_tenant("reco-live")
    api, tid = tenant.client, tenant.tenant_id
    events = lumpy_stream(tid, t0=time.time() - 20 * 24 * HOUR, seed=16)
    for start in range(0, len(events), 150):  # several requests, several micro-batches
        chunk = events[start : start + 150]
        assert api.post_events(ndjson(chunk)) == len(chunk)

    def processed() -> bool:
        shards = api.get("/v1/status/tenant").json()["shards"]
        return sum(int(s.get("events") or 0) for s in shards) >= len(events)

    wait_for(processed, timeout=120, what="the shards to fold every event")
    expected, expected_alerts = offline(stack.settings, tid, ndjson(events))
    assert len(expected) == 10 and expected_alerts

    # The rows are there at once; their order follows within the due index's refresh.
    def agree() -> list[dict[str, Any]] | None:
        live = _pages(api, "/v1/stock/recommendations", limit=3)
        return live if live == expected else None

    try:
        wait_for(agree, timeout=30, what="the live rows to equal the replay's")
    except AssertionError as exc:
        live = _pages(api, "/v1/stock/recommendations", limit=3)
        diff = [(a, b) for a, b in zip(live, expected, strict=False) if a != b]
        raise AssertionError(
            f"{len(live)} live rows, {len(expected)} replayed; first diff {diff[:1]}"
        ) from exc
    assert {r["lead_time_source"] for r in expected} == {"given", "learned", "default"}
    live_alerts = {_alert_order(a) for a in _pages(api, "/v1/stock/alerts", limit=1000)}
    assert live_alerts == expected_alerts
