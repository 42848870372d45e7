"""The bench's generated history (bench/history.py): seeded, exactly n valid lines in event-time
order over weeks, with replenishments, stock-outs and a consistent final on-hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurora_ray.backfill import validate_chunk
from bench.history import generate_history

pytestmark = pytest.mark.unit
TENANT = "3f1c1f8e-3b8a-4d0e-9a56-b4c4c0f1ba0f"


def test_same_seed_same_bytes_and_exactly_n_lines() -> None:
    a = generate_history(TENANT, 20_000, days=60.0, seed=3)
    b = generate_history(TENANT, 20_000, days=60.0, seed=3)
    c = generate_history(TENANT, 20_000, days=60.0, seed=4)
    assert bytes(a.data) == bytes(b.data) != bytes(c.data)
    lines = bytes(a.data).split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == 20_000 == a.events
    assert a.snapshots + a.orders + a.receipts == a.events
    assert a.skus == 80 and a.snapshots == 80


def test_lines_validate_in_event_time_order_over_weeks() -> None:
    history = generate_history(TENANT, 20_000, days=60.0, seed=5)
    table = validate_chunk(
        bytes(history.data), first_line=1, tenant_id=TENANT, received_ms=1_893_456_000_000
    )
    assert table.column("ok").to_pylist() == [True] * 20_000
    ts = np.asarray(table.column("ts_ms").to_pylist())
    assert np.all(np.diff(ts) >= 0)  # monotone across the whole file
    assert 50.0 <= history.span_days <= 60.0 and (ts[-1] - ts[0]) / 86_400_000 > 50
    types = table.column("event_type").to_pylist()
    assert types[: history.snapshots] == ["stock.snapshot"] * history.snapshots
    assert len(set(table.column("event_id").to_pylist())) == 20_000
    assert 0.001 < history.stockout_share < 0.1


def test_final_on_hand_is_the_fold_of_the_lines() -> None:
    history = generate_history(TENANT, 10_000, days=30.0, seed=6)
    on_hand: dict[tuple[str, str], int] = {}
    for line in bytes(history.data).splitlines():
        event = json.loads(line)
        p = event["payload"]
        key = (p["sku"], p["warehouse"])
        if event["event_type"] == "stock.snapshot":
            on_hand[key] = p["on_hand"]
        elif event["event_type"] == "stock.received":
            on_hand[key] += p["qty"]
        else:
            on_hand[key] -= p["qty"]
            assert on_hand[key] >= 0, "lost sales: an order never takes more than the shelf"
    assert on_hand == history.on_hand
    assert any(v == 0 for v in on_hand.values()) or history.stats["stockouts"] > 0
