"""Issue 15: retrain after a backfill has something to learn from. A 300-SKU, 42-day history
(112 645 events) backfilled as a Ray job, folded in full micro-batches, then retrained: the
training rows are the SKUs' scores at fixed steps of event time (ADR-011), not one per
micro-batch, so the fast fold leaves as many rows as a slow one would (it left 138 rows and no
stock-out before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from aurora_ray.backfill_job import backfill_status, submit_backfill, wait_backfill
from aurora_ray.models.retrain import labelled_rows, run_retrain
from aurora_ray.testing import wait_for
from aurora_ray.warehouse import FACT_PREDICTION, Warehouse
from bench.history import generate_history

pytestmark = pytest.mark.integration


def test_a_backfilled_history_leaves_enough_training_rows(
    stack: Any, make_tenant: Any, tmp_path: Path
) -> None:
    import time

    import ray

    began = time.monotonic()

    def note(what: str) -> None:  # shown on failure, or with -s
        print(f"{time.monotonic() - began:6.1f} s  {what}")  # noqa: T201

    tenant = make_tenant("backfill-retrain")
    tid = tenant.tenant_id
    history = generate_history(tid, 112_645, skus=300, days=42.0, seed=15)
    source = tmp_path / "history.ndjson"
    source.write_bytes(history.data.to_pybytes())
    client = redis.Redis.from_url(stack.settings.redis_url)
    backfill_id, _job = submit_backfill(
        stack.settings, tenant_id=tid, source=str(source), redis_client=client,
        dashboard_url=stack.dashboard_url,
    )  # fmt: skip
    record = wait_backfill(
        lambda: backfill_status(
            stack.settings,
            tenant_id=tid,
            backfill_id=backfill_id,
            redis_client=client,
            dashboard_url=stack.dashboard_url,
        ),  # fmt: skip
        timeout_s=300,
        interval_s=0.5,
    )
    assert record is not None and record["state"] == "succeeded", record
    note("backfilled and folded")
    shard = ray.get_actor(f"tenant:{tid}:0", namespace="aurora")
    ray.get(shard.checkpoint.remote(), timeout=60)  # the rows since the last checkpoint too

    warehouse = Warehouse.from_settings(stack.settings)
    rows = wait_for(
        lambda: warehouse.read(FACT_PREDICTION, tid).num_rows or None,
        timeout=30,
        interval=0.5,
        what="fact_prediction rows",
    )
    # One row per SKU and hour with a score (events, ~9 a SKU a day, and the daily timers'
    # re-scores): ~85 000 here; one per SKU and micro-batch left 138.
    assert rows >= 50_000, rows
    note(f"{rows} fact_prediction rows")
    frame = labelled_rows(stack.settings, tid)
    note(f"{len(frame)} labelled rows")
    assert int(frame["label"].sum()) >= 100, "the history's stock-outs must show in the labels"
    result = run_retrain(stack.settings, tenant_id=tid, promote=False, frame=frame, max_rows=60_000)
    note(f"retrained: {result.decision}")
    assert result.version and result.metrics, result
