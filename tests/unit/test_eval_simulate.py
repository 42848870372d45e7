"""The inventory simulated around real demand (aurora_ray.evaluation.simulate)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aurora_ray.demo_stream import to_ndjson
from aurora_ray.domain.events import parse_ndjson
from aurora_ray.evaluation.data import TEST_FROM
from aurora_ray.evaluation.simulate import (
    Policy,
    PolicyConfig,
    SimulationResult,
    build_benchmark,
    simulate,
    size_policies,
    stockout_stats,
    write_ndjson,
)

pytestmark = pytest.mark.unit

TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
DAY0 = datetime(2011, 1, 3, tzinfo=UTC)  # a Monday; reviews at 05:00 UTC
# The shared data folder sits beside the repository (as in CI).
REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail.parquet"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def demand(lines: list[tuple[str, datetime, int]], price: float = 2.5) -> pd.DataFrame:
    """A cleaned-demand frame from (sku, time, qty) lines, in the given order."""
    n = len(lines)
    return pd.DataFrame(
        {
            "invoice": pd.array([f"inv{k}" for k in range(n)], dtype="string"),
            "sku": pd.array([sku for sku, _, _ in lines], dtype="string"),
            "qty": np.array([q for _, _, q in lines], dtype=np.int64),
            "ts": pd.to_datetime([t for _, t, _ in lines], utc=True),
            "price": np.full(n, price),
            "customer": pd.array(["1"] * n, dtype="string"),
            "country": pd.array(["UK"] * n, dtype="string"),
        }
    )


def policy(sku: str, s: int, up_to: int, lead: int) -> Policy:
    return Policy(
        sku=sku,
        reorder_point=s,
        order_up_to=up_to,
        lead_time_days=lead,
        mean_daily=1.0,
        sd_daily=1.0,
        safety_factor=1.0,
        cycle_days=7.0,
    )


def run(
    lines: list[tuple[str, datetime, int]],
    policies: list[Policy],
    days: int = 4,
    **kwargs: Any,
) -> SimulationResult:
    kwargs.setdefault("snapshot_every_days", 0)
    return simulate(
        demand(lines),
        {p.sku: p for p in policies},
        DAY0,
        DAY0 + timedelta(days=days),
        tenant_id=TENANT,
        **kwargs,
    )


def of_type(result: SimulationResult, event_type: str) -> list[dict[str, Any]]:
    return [e for e in result.events if e["event_type"] == event_type]


def replay(events: list[dict[str, Any]]) -> dict[str, int]:
    """On-hand per SKU from the stream alone; checks it never goes negative and snapshots."""
    on_hand: dict[str, int] = {}
    for e in events:
        p = e["payload"]
        if e["event_type"] == "sku.upserted":
            on_hand[p["sku"]] = p["initial_stock"]
        elif e["event_type"] == "order.created":
            on_hand[p["sku"]] -= p["qty"]
            assert on_hand[p["sku"]] >= 0
        elif e["event_type"] == "stock.received":
            on_hand[p["sku"]] += p["qty"]
        elif e["event_type"] == "stock.snapshot":
            assert p["on_hand"] == on_hand[p["sku"]]
    return on_hand


# -- the hand-made case ---------------------------------------------------------------------------

HAND_LINES = [
    ("A", at(0, 10), 6),  # sells 6: 4 left
    ("A", at(0, 11), 6),  # sells 4, loses 2: out of stock from 11:00
    ("A", at(0, 12), 3),  # loses 3, emits nothing
    ("A", at(2, 10), 1),  # loses 1
    ("A", at(3, 6), 2),  # after the delivery of day 3 05:00: sells 2
]
HAND_POLICIES = [policy("A", s=2, up_to=10, lead=2), policy("B", s=1, up_to=5, lead=3)]


def test_lost_sales_are_counted_exactly() -> None:
    result = run(HAND_LINES, HAND_POLICIES)
    lost = result.lost_sales
    assert lost["requested"].tolist() == [6, 3, 1]
    assert lost["sold"].tolist() == [4, 0, 0]
    assert lost["lost"].tolist() == [2, 3, 1]
    assert lost["ts"].tolist() == [pd.Timestamp(t) for t in (at(0, 11), at(0, 12), at(2, 10))]
    assert result.lost_units == {"A": 6, "B": 0}
    orders = of_type(result, "order.created")
    assert [e["payload"]["qty"] for e in orders] == [6, 4, 2]
    assert [e["occurred_at"] for e in orders] == [
        stamp(at(d, h)) for d, h in ((0, 10), (0, 11), (3, 6))
    ]
    assert orders[0]["payload"]["price"] == 2.5 and orders[0]["payload"]["currency"] == "GBP"
    assert orders[0]["payload"]["order_id"] == "inv0"
    assert replay(result.events) == {"A": 8, "B": 5}


def test_stock_out_episode_times_are_exact() -> None:
    result = run(HAND_LINES, HAND_POLICIES)
    episodes = result.episodes
    assert episodes["sku"].tolist() == ["A"]
    assert episodes["start"].tolist() == [pd.Timestamp(at(0, 11))]
    assert episodes["end"].tolist() == [pd.Timestamp(at(3, 5))]  # the delivery that restocked


def test_a_sale_that_empties_the_shelf_starts_an_episode_without_loss() -> None:
    result = run([("A", at(1, 9, 30), 10)], [policy("A", s=2, up_to=10, lead=2)], days=5)
    assert result.episodes["start"].tolist() == [pd.Timestamp(at(1, 9, 30))]
    assert result.episodes["end"].tolist() == [pd.Timestamp(at(4, 5))]  # review day 2, L=2
    assert result.lost_sales.empty and result.lost_units == {"A": 0}


def test_an_episode_still_open_at_the_end_has_no_end() -> None:
    result = run([("A", at(2, 9), 10)], [policy("A", s=2, up_to=10, lead=3)], days=4)
    assert result.episodes["start"].tolist() == [pd.Timestamp(at(2, 9))]
    assert result.episodes["end"].isna().all()
    orders = result.purchase_orders
    assert orders["delivered"].tolist() == [False]  # lands on day 6, after the end


def test_daily_truth_and_stockout_stats() -> None:
    result = run(HAND_LINES, HAND_POLICIES)
    a = result.daily.loc[result.daily["sku"] == "A"]
    assert a["day"].tolist() == [pd.Timestamp(at(d, 0)) for d in range(4)]
    assert a["on_hand_end"].tolist() == [0, 0, 0, 8]
    assert a["on_hand_min"].tolist() == [0, 0, 0, 0]  # day 3: empty until 05:00
    assert a["out_of_stock"].tolist() == [True, True, True, True]
    assert a["lost_units"].tolist() == [5, 0, 1, 0]
    assert a["sold_units"].tolist() == [10, 0, 0, 2]
    b = result.daily.loc[result.daily["sku"] == "B"]
    assert b["on_hand_end"].tolist() == [5] * 4 and not b["out_of_stock"].any()

    stats = stockout_stats(result)
    assert (stats.skus, stats.days, stats.sku_days, stats.oos_sku_days) == (2, 4, 8, 4)
    assert stats.rate == 0.5
    assert stats.time_share == pytest.approx(66 / (2 * 4 * 24))  # day 0 11:00 -> day 3 05:00
    assert (stats.episodes, stats.lost_units, stats.lost_lines, stats.sold_units) == (1, 6, 3, 12)
    later = stockout_stats(result, at(2, 0))
    assert (later.days, later.oos_sku_days, later.episodes, later.lost_units) == (2, 2, 0, 1)
    assert later.time_share == pytest.approx(29 / (2 * 2 * 24))


# -- deliveries, reviews, the closed loop ---------------------------------------------------------


def test_review_orders_up_to_s_and_delivery_lands_after_the_lead_time() -> None:
    result = run(HAND_LINES, HAND_POLICIES)
    orders = result.purchase_orders
    assert orders["sku"].tolist() == ["A"]
    assert orders["placed"].tolist() == [pd.Timestamp(at(1, 5))]  # first review after the loss
    assert orders["arrives"].tolist() == [pd.Timestamp(at(3, 5))]
    assert orders["qty"].tolist() == [10]  # S - (on hand 0 + on order 0)
    assert not orders["expedited"].any() and orders["delivered"].all()
    received = of_type(result, "stock.received")
    assert [(e["occurred_at"], e["payload"]["qty"]) for e in received] == [(stamp(at(3, 5)), 10)]
    assert received[0]["payload"] == {"sku": "A", "warehouse": "UK", "qty": 10}


def test_each_purchase_order_is_sent_when_placed_with_its_landing_time() -> None:
    result = run(HAND_LINES, HAND_POLICIES)
    [ordered] = of_type(result, "stock.ordered")
    assert ordered["occurred_at"] == stamp(at(1, 5))  # sent at the review that placed it
    assert ordered["payload"] == {
        "sku": "A", "warehouse": "UK", "qty": 10, "expected_at": stamp(at(3, 5)),
    }
    assert ordered["event_id"] == "eval-po-A-0"
    types = [e["event_type"] for e in result.events]
    assert types.index("stock.ordered") < types.index("stock.received")
    assert result.counts["stock.ordered"] == 1


def test_purchase_orders_can_be_left_out_of_the_stream() -> None:
    result = run(HAND_LINES, HAND_POLICIES, purchase_orders=False)
    assert of_type(result, "stock.ordered") == []
    assert len(result.purchase_orders) == 1  # still placed and delivered
    assert len(of_type(result, "stock.received")) == 1


def test_deliveries_arrive_exactly_lead_time_days_after_the_order() -> None:
    rng = np.random.default_rng(3)
    pols = [policy(f"S{k}", s=6, up_to=20, lead=1 + k % 4) for k in range(8)]
    lines = [
        (f"S{int(rng.integers(0, 8))}", DAY0 + timedelta(minutes=int(m)), int(rng.integers(1, 6)))
        for m in np.sort(rng.integers(0, 30 * 24 * 60, 600))
    ]
    result = run(lines, pols, days=30)
    orders = result.purchase_orders
    assert len(orders) > 20
    lead = orders["sku"].map({p.sku: timedelta(days=p.lead_time_days) for p in pols})
    assert (orders["arrives"] - orders["placed"] == lead).all()
    assert (orders["placed"].dt.hour == 5).all()  # the daily review
    delivered = orders.loc[orders["delivered"]]
    received = of_type(result, "stock.received")
    arrivals = zip(delivered["sku"], delivered["arrives"], strict=True)
    assert sorted((e["payload"]["sku"], e["occurred_at"]) for e in received) == sorted(
        (sku, stamp(t.to_pydatetime())) for sku, t in arrivals
    )


def test_a_delivery_is_in_stock_for_a_sale_at_the_same_instant() -> None:
    lines = [("A", at(0, 9), 10), ("A", at(3, 5), 4)]
    result = run(lines, [policy("A", s=2, up_to=10, lead=2)])
    assert [e["event_type"] for e in result.events[-2:]] == ["stock.received", "order.created"]
    assert result.lost_sales.empty


def test_expedite_places_an_order_that_arrives_after_the_lead_time() -> None:
    seen: list[str] = []

    def on_event(event: Mapping[str, Any]) -> list[str] | None:
        seen.append(str(event["event_type"]))
        if event["event_type"] == "order.created" and event["occurred_at"] == stamp(at(0, 10)):
            return ["A", "A"]  # the second asks again with the position already at S
        return None

    lines = [("A", at(0, 10), 7), ("A", at(1, 12), 2)]
    result = run(lines, [policy("A", s=2, up_to=10, lead=2)], on_event=on_event)
    orders = result.purchase_orders
    assert orders["expedited"].tolist() == [True]
    assert orders["placed"].tolist() == [pd.Timestamp(at(0, 10))]
    assert orders["arrives"].tolist() == [pd.Timestamp(at(2, 10))]
    assert orders["qty"].tolist() == [7]  # S - on hand 3 - on order 0
    assert (result.expedites_requested, result.expedites_placed) == (2, 1)
    received = of_type(result, "stock.received")
    assert [(e["occurred_at"], e["payload"]["qty"]) for e in received] == [(stamp(at(2, 10)), 7)]
    assert replay(result.events) == {"A": 8}
    # The hook saw every envelope, in order, including the initial catalogue.
    assert seen == [e["event_type"] for e in result.events]


def test_a_hook_may_return_a_bare_sku() -> None:
    lines = [("A", at(0, 10), 7)]
    hook = lambda e: "A" if e["event_type"] == "order.created" else None  # noqa: E731
    result = run(lines, [policy("A", s=2, up_to=10, lead=2)], on_event=hook)
    assert result.purchase_orders["qty"].tolist() == [7]
    assert result.expedites_placed == 1


def test_expediting_an_unknown_sku_is_an_error() -> None:
    with pytest.raises(ValueError, match="no policy"):
        run(HAND_LINES, HAND_POLICIES, on_event=lambda e: ["nope"])


def test_snapshots_carry_true_on_hand_staggered_over_days() -> None:
    result = run(HAND_LINES, HAND_POLICIES, days=4, snapshot_every_days=2)
    snaps = of_type(result, "stock.snapshot")
    got = [(e["payload"]["sku"], e["occurred_at"], e["payload"]["on_hand"]) for e in snaps]
    assert got == [
        ("A", stamp(at(0, 5)), 10),
        ("B", stamp(at(1, 5)), 5),
        ("A", stamp(at(2, 5)), 0),
        ("B", stamp(at(3, 5)), 5),
    ]
    replay(result.events)


def test_the_stream_is_valid_ingest_ndjson_in_time_order() -> None:
    result = run(HAND_LINES, HAND_POLICIES, snapshot_every_days=1)
    batch = parse_ndjson(to_ndjson(result.events), tenant_id=TENANT, received_ms=1_893_456_000_000)
    assert batch.errors == [] and len(batch.events) == len(result.events)
    times = [e.ts_ms for e in batch.events]
    assert times == sorted(times)
    ids = [e["event_id"] for e in result.events]
    assert len(set(ids)) == len(ids)
    upserts = of_type(result, "sku.upserted")
    assert [e["payload"] for e in upserts] == [
        {"sku": "A", "warehouse": "UK", "initial_stock": 10},
        {"sku": "B", "warehouse": "UK", "initial_stock": 5},
    ]
    assert all(e["occurred_at"] == stamp(DAY0) for e in upserts)


def test_stock_is_never_negative() -> None:
    rng = np.random.default_rng(11)
    pols = [policy(f"S{k}", s=int(rng.integers(0, 5)), up_to=int(rng.integers(6, 15)), lead=2)
            for k in range(10)]  # fmt: skip
    minutes = np.sort(rng.integers(0, 20 * 24 * 60, 2_000))
    lines = [
        (f"S{int(rng.integers(0, 10))}", DAY0 + timedelta(minutes=int(m)), int(rng.integers(1, 9)))
        for m in minutes
    ]
    result = run(lines, pols, days=20, snapshot_every_days=3)
    final = replay(result.events)
    assert (result.daily["on_hand_min"] >= 0).all()
    last_day = result.daily.loc[result.daily["day"] == result.daily["day"].max()]
    assert dict(zip(last_day["sku"], last_day["on_hand_end"], strict=True)) == final
    assert len(result.episodes) > 0 and result.lost_sales["lost"].gt(0).all()
    assert sum(result.lost_units.values()) == int(result.daily["lost_units"].sum())


def test_lines_outside_the_period_or_scope_are_ignored() -> None:
    lines = [("A", at(-1, 10), 5), ("Z", at(0, 10), 5), ("A", at(4, 0), 5), ("A", at(0, 9), 1)]
    result = run(lines, [policy("A", s=2, up_to=10, lead=2)], days=4)
    orders = of_type(result, "order.created")
    assert [e["event_id"] for e in orders] == ["eval-o-3"]  # the row's position in the frame


# -- policies and determinism --------------------------------------------------------------------


def test_policy_sizing_from_training_demand() -> None:
    train = demand([("A", at(0, 10), 4), ("A", at(0, 15), 6)])  # 10 units on day 0, 0 on day 1
    config = PolicyConfig(lead_time_days=(3, 3), safety_factor=(1.0, 1.0), cycle_days=(4.0, 4.0))
    pol = size_policies(train, ["A"], until=at(2, 0), config=config)["A"]
    assert pol.mean_daily == 5.0 and pol.sd_daily == 5.0
    assert pol.lead_time_days == 3
    assert pol.reorder_point == 30  # ceil(5 * (3 + 1) + 1 * 5 * sqrt(4))
    assert pol.order_up_to == 50  # s + ceil(5 * 4)


def test_policy_sizing_with_a_recent_history_window() -> None:
    train = demand([("A", at(0, 10), 40), ("A", at(9, 10), 10)])
    config = PolicyConfig(history_days=5)
    pol = size_policies(train, ["A"], until=at(10, 0), config=config)["A"]
    assert pol.mean_daily == 2.0  # the 10 units of day 9 over the last 5 days


def test_policy_sizing_needs_training_demand() -> None:
    train = demand([("A", at(0, 10), 4)])
    with pytest.raises(ValueError, match="no training demand"):
        size_policies(train, ["A", "B"])
    assert size_policies(train, []) == {}


def test_policies_are_deterministic_for_a_seed_and_independent_of_scope() -> None:
    rng = np.random.default_rng(5)
    lines = [
        (f"S{int(rng.integers(0, 6))}", DAY0 + timedelta(minutes=int(m)), int(rng.integers(1, 9)))
        for m in np.sort(rng.integers(0, 60 * 24 * 60, 1_500))
    ]
    train = demand(lines)
    skus = [f"S{k}" for k in range(6)]
    first = size_policies(train, skus, seed=7)
    assert first == size_policies(train, skus, seed=7)
    assert first != size_policies(train, skus, seed=8)
    assert size_policies(train, ["S3"], seed=7)["S3"] == first["S3"]
    lo, hi = PolicyConfig().lead_time_days
    assert all(lo <= p.lead_time_days <= hi for p in first.values())

    start, end = DAY0 + timedelta(days=30), DAY0 + timedelta(days=60)
    runs = [simulate(train, first, start, end, tenant_id=TENANT) for _ in range(2)]
    assert runs[0].events == runs[1].events
    pd.testing.assert_frame_equal(runs[0].daily, runs[1].daily)
    pd.testing.assert_frame_equal(runs[0].episodes, runs[1].episodes)


def test_write_ndjson_plain_and_gzip(tmp_path: Path) -> None:
    result = run(HAND_LINES, HAND_POLICIES, snapshot_every_days=1)
    plain, packed = tmp_path / "events.ndjson", tmp_path / "events.ndjson.gz"
    assert write_ndjson(result.events, plain) == len(result.events)
    assert write_ndjson(result.events, packed) == len(result.events)
    assert plain.read_bytes() == to_ndjson(result.events)
    with gzip.open(packed, "rt", encoding="utf-8") as fh:
        assert [json.loads(line) for line in fh] == result.events


def test_bad_arguments_are_refused() -> None:
    pols = {"A": policy("A", s=2, up_to=10, lead=2)}
    with pytest.raises(ValueError):
        simulate(demand(HAND_LINES), pols, DAY0, DAY0, tenant_id=TENANT)
    with pytest.raises(ValueError):
        simulate(demand(HAND_LINES), pols, DAY0, at(1, 0), tenant_id="not-a-guid")
    with pytest.raises(ValueError):
        policy("A", s=10, up_to=10, lead=2)
    with pytest.raises(ValueError):
        PolicyConfig(lead_time_days=(0, 2))


# -- the real data --------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_real_data_lands_at_a_realistic_stockout_rate() -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} is not present")
    bench = build_benchmark(REAL_DATA, tenant_id=TENANT, keep_events=False)
    stats = bench.test_stats
    assert 0.01 <= stats.rate <= 0.10, stats
    assert stats.days == 100 and stats.skus == len(bench.skus) > 1_000
    assert bench.result.start == pd.Timestamp(TEST_FROM) - pd.Timedelta(weeks=8)
    assert bench.result.counts["order.created"] > 100_000


def test_evaluation_imports_no_infrastructure_clients() -> None:
    program = (
        "import sys, aurora_ray.evaluation.data, aurora_ray.evaluation.simulate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ray', 'confluent_kafka', 'redis'))\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
