"""Hot swap under live traffic: a model promoted mid-stream is picked up by the running shard
between micro-batches (no restart, no event lost: every SKU's on hand equals the truth), the
alerts after it carry its version, and a rollback brings the analytic scorer back."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import pytest

from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.features import FEATURE_NAMES
from aurora_ray.models.registry import ModelRegistry, ModelVersion
from aurora_ray.models.store import ModelStore
from aurora_ray.models.training import fit, sha256_hex
from aurora_ray.testing import ndjson, order, sku_upserted, stock_received, stock_snapshot, wait_for
from tests.integration.helpers import all_alert_pages, parse_ts

pytestmark = pytest.mark.integration
H = 3600.0
N_SKUS = 40
BATCH = 500


def _stream(tenant_id: str, t0: float, n: int, truth: dict[str, int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(n):
        at = t0 + i * 60.0  # a minute apart
        s = rng.randrange(N_SKUS)
        sku, key = f"SKU-{s:02d}", f"SKU-{s:02d}@DE-HAM"
        if rng.random() < 0.8:
            qty = rng.randint(1, 3)
            events.append(order(tenant_id, sku, "DE-HAM", qty, at=at, order_id=f"o-{seed}-{i}"))
            truth[key] -= qty
        else:
            qty = rng.randint(1, 5)
            events.append(stock_received(tenant_id, sku, "DE-HAM", qty, at=at))
            truth[key] += qty
    return events


def _post(tenant: Any, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), BATCH):
        tenant.client.post_events(ndjson(events[i : i + BATCH]))


def _processed(store: RedisStore, tenant_id: str, n: int) -> None:
    wait_for(
        lambda: store.counters(tenant_id).get("events_processed", 0) >= n,
        timeout=180,
        interval=0.2,
        what=f"{n} events processed",
    )


def _register_always_alert(stack: Any, tenant_id: str) -> str:
    """A booster that says ~1 for every row: every scored SKU alerts under it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(200, len(FEATURE_NAMES)))
    booster = fit(x, np.ones(200), FEATURE_NAMES, rounds=5, margin=False)
    data = bytes(booster.save_raw("ubj"))
    version = "xgb-test-always"
    uri = ModelStore(stack.settings.warehouse_uri).write(tenant_id, version, data)
    registry = ModelRegistry(
        RedisStore(stack.settings.redis_url), baseline_version=stack.settings.model_version
    )
    registry.register(
        tenant_id,
        ModelVersion(
            version=version, trained_at="2025-06-02T00:00:00Z", window_start="", window_end="",
            feature_names=list(FEATURE_NAMES), metrics={}, artifact_uri=uri,
            sha256=sha256_hex(data),
        ),  # fmt: skip
    )
    return version


def test_promote_mid_stream_swaps_the_scorer_without_losing_events(stack, make_tenant) -> None:
    tenant = make_tenant("hot-swap")
    tid = tenant.tenant_id
    store = RedisStore(stack.settings.redis_url)
    registry = ModelRegistry(store, baseline_version=stack.settings.model_version)
    baseline = stack.settings.model_version
    t0 = time.time() - 30 * 24 * H
    truth = {f"SKU-{s:02d}@DE-HAM": 5_000 for s in range(N_SKUS)}  # plenty: no analytic alert
    first = [sku_upserted(tid, f"SKU-{s:02d}", "DE-HAM", 5_000, at=t0) for s in range(N_SKUS)]
    first += _stream(tid, t0 + 60, 2_000, truth, seed=1)
    _post(tenant, first)
    _processed(store, tid, len(first))
    version = _register_always_alert(stack, tid)
    assert registry.promote(tid, version) == baseline
    t_half = t0 + 60 + 2_000 * 60.0

    second = _stream(tid, t_half + 2 * 24 * H, 2_000, truth, seed=2)
    _post(tenant, second)
    _processed(store, tid, len(first) + len(second))

    # Rollback: the analytic scorer again; a SKU set to zero stock alerts under it.
    assert registry.rollback(tid) == baseline
    t_third = t_half + 6 * 24 * H
    third = [stock_snapshot(tid, "SKU-00", "DE-HAM", 0, at=t_third)]
    third.append(order(tid, "SKU-00", "DE-HAM", 1, at=t_third + 60, order_id="o-last"))
    truth["SKU-00@DE-HAM"] = -1
    _post(tenant, third)
    total = len(first) + len(second) + len(third)
    _processed(store, tid, total)

    predictions = tenant.client.get("/v1/stock/predictions", limit=10_000).json()
    on_hand = {f"{p['sku']}@{p['warehouse']}": p["on_hand"] for p in predictions}
    assert on_hand == truth
    assert store.counters(tid)["events_processed"] == total  # none lost, none twice

    alerts = [
        a for page in all_alert_pages(stack.base_url, tenant.client.token(), limit=1000)
        for a in page
    ]  # fmt: skip
    cut = t_third - 1.0  # as_of is rounded to the millisecond
    before = [a for a in alerts if parse_ts(a["as_of"]) < t_half]
    during = [a for a in alerts if t_half <= parse_ts(a["as_of"]) < cut]
    after = [a for a in alerts if parse_ts(a["as_of"]) >= cut]
    assert all(a["model_version"] == baseline for a in before)
    assert during, "the promoted model raised no alert"
    assert {a["model_version"] for a in during} == {version}, [
        (a["sku"], a["as_of"], a["probability"], a["model_version"])
        for a in during
        if a["model_version"] != version
    ][:5]
    assert after and {a["model_version"] for a in after} == {baseline}
    health = wait_for(  # the shard reports its health about once a second
        lambda: (h := store.shard_health(tid, 1)[0]).get("model_version") == baseline and h,
        timeout=30,
        interval=0.2,
        what="the shard's health to show the rolled-back version",
    )
    assert not health.get("model_error")
