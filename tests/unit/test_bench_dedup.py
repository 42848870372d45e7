"""The dedup cost in the stream and e2e scenarios: the same measurement with the shards'
event-id window on and off, its ratio, and load whose ids are all distinct (no stack)."""

from __future__ import annotations

import gzip
import json

import pytest

from bench.common import Size
from bench.scenario_e2e import Measured, bodies, probe_sku, rows_for
from bench.scenario_stream import ratio, window_off_row

pytestmark = pytest.mark.unit
TENANT = "00000000-0000-0000-0000-0000000000e2"


def test_e2e_bodies_carry_distinct_ids_and_a_probe_every_nth_body() -> None:
    sent = bodies(TENANT, 120, skus=500, probe_every=8)
    assert len(sent) == 120
    events = [[json.loads(line) for line in gzip.decompress(b).splitlines()] for b in sent]
    assert all(len(body) == 1_000 for body in events)
    ids = [e["event_id"] for body in events for e in body if "event_id" in e]
    assert len(ids) == len(set(ids)) == 120 * 1_000 - 15  # the probes' ids are the API's
    probes = [
        (i, e) for i, body in enumerate(events) for e in body if e["payload"]["sku"][:5] == "PROBE"
    ]
    assert [i for i, _ in probes] == list(range(0, 120, 8))
    assert all(e["payload"] == {"sku": probe_sku(i), "warehouse": e["payload"]["warehouse"],
                                "on_hand": 0} for i, e in probes)  # fmt: skip
    orders = [
        e["occurred_at"] for body in events for e in body if e["event_type"] == "order.created"
    ]
    assert orders == sorted(orders)  # event time runs on across the generated chunks


def test_ratio_needs_both_figures() -> None:
    assert ratio(95.0, 100.0) == pytest.approx(0.95)
    assert ratio(None, 100.0) is None and ratio(95.0, None) is None
    assert ratio(95.0, float("nan")) is None and ratio(95.0, 0.0) is None


def test_stream_window_off_row_says_the_ratio_and_judges_it_in_the_full_run() -> None:
    size = Size.of(quick=False)
    row = window_off_row(size, 1, on=90_000.0, off=100_000.0, note="n")
    assert row.aurora == 100_000.0 and row.anchor == 90_000.0
    assert "event-id window off (idempotency_window_events=0); window on ÷ off = 0.90" in (
        row.metric
    )
    assert row.ok is True
    assert window_off_row(size, 1, on=85_000.0, off=100_000.0, note="").ok is False
    unmeasured = window_off_row(size, 1, on=None, off=100_000.0, note="")
    assert unmeasured.ok is None and "= –" in unmeasured.metric
    quick = window_off_row(Size.of(quick=True), 1, on=85_000.0, off=100_000.0, note="")
    assert (quick.ok, quick.target) == (None, "") and "= 0.85" in quick.metric


def _measured(*, window: bool, p50: float, p99: float, scored: float, cpu: float) -> Measured:
    steady = {"window_s": 22.5, "accepted_per_s": 30_000.0, "scored_per_s": scored,
              "backlog_start": 900.0, "backlog_end": 800.0}  # fmt: skip
    return Measured(
        window=window,
        latencies_ms=[p50] * 50 + [p99] * 2,
        steady=steady,
        overall=scored,
        shard_cpu_us=cpu,
        ok=True,
        reason="",
        details={"probes": 52, "drain_s": 0.4, "processed": 900_000, "primed_skus": 20_000,
                 "shards": 2, "event_ids_in_window": 920_000},
    )  # fmt: skip


def test_e2e_rows_give_each_figure_with_the_window_off_and_the_ratio() -> None:
    size = Size.of(quick=False)
    on = _measured(window=True, p50=540.0, p99=1_010.0, scored=30_100.0, cpu=8.4)
    off = _measured(window=False, p50=500.0, p99=1_000.0, scored=30_000.0, cpu=8.0)
    rows = rows_for(size, on, off)
    assert [r.aurora for r in rows[:3]] == [540.0, pytest.approx(1_010.0, rel=0.01), 30_100.0]
    assert rows[1].ok is True  # p99 <= 2 s at 30 K/s, judged on the default (window on)
    p50_off, p99_off, steady_off, cpu = rows[3:]
    assert p50_off.aurora == 500.0 and p50_off.anchor == 540.0
    assert p50_off.metric.endswith("window on ÷ off = 1.08")
    assert "event-id window off (idempotency_window_events=0)" in p99_off.metric
    assert steady_off.aurora == 30_000.0 and steady_off.anchor == 30_000.0
    assert steady_off.metric.endswith("window on ÷ off = 1.00")
    assert (cpu.unit, cpu.aurora, cpu.anchor, cpu.ok) == ("µs", 8.4, 8.0, True)
    assert cpu.metric.endswith("on ÷ off = 1.05")
    assert "920000 event ids in the window for 900000 events scored" in cpu.note
    dearer = _measured(window=True, p50=540.0, p99=1_010.0, scored=30_100.0, cpu=9.0)
    assert rows_for(size, dearer, off)[-1].ok is False  # 1.125 x the CPU
    assert rows_for(Size.of(quick=True), dearer, off)[-1].ok is None  # reported, not judged
