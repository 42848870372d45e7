"""The closed loop that judges the action: planners, their hook, the runs and the frontiers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aurora_ray.domain.state import ScoringParams
from aurora_ray.evaluation.data import CleaningReport
from aurora_ray.evaluation.planners import (
    AuroraPlanner,
    ClassicalConfig,
    ClassicalNightly,
    PerfectForesight,
    StreamBook,
    planner_hook,
)
from aurora_ray.evaluation.replenishment import (
    ReplenishmentConfig,
    compare_frontiers,
    loop_outcome,
    replenishment,
    run_planner,
)
from aurora_ray.evaluation.simulate import (
    Policy,
    Prepared,
    _to_ms,
    run_benchmark,
    simulate,
)

pytestmark = pytest.mark.unit

TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
DAY0 = datetime(2011, 1, 3, tzinfo=UTC)  # a Monday; the shop reviews at 05:00 UTC
HOUR_MS = 3_600_000


def at(day: float, hour: float = 0.0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour)


def ms(moment: datetime) -> int:
    return _to_ms(moment)


def demand(lines: list[tuple[str, datetime, int]]) -> pd.DataFrame:
    n = len(lines)
    return pd.DataFrame(
        {
            "invoice": pd.array([f"inv{k}" for k in range(n)], dtype="string"),
            "sku": pd.array([s for s, _, _ in lines], dtype="string"),
            "qty": np.array([q for _, _, q in lines], dtype=np.int64),
            "ts": pd.to_datetime([t for _, t, _ in lines], utc=True),
            "price": np.full(n, 2.5),
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


def steady_lines(sku: str, days: int, qty: int, hours: tuple[int, ...]) -> list[Any]:
    return [(sku, at(d, h), qty) for d in range(days) for h in hours]


def prepared(
    lines: list[tuple[str, datetime, int]],
    policies: list[Policy],
    *,
    takeover_day: int,
    days: int,
) -> Prepared:
    frame = demand(sorted(lines, key=lambda line: line[1]))
    return Prepared(
        demand=frame,
        report=CleaningReport(
            rows_in=len(frame),
            removed={},
            rows_out=len(frame),
            recased_rows=0,
            capped_rows=0,
            capped_units=0,
            units_before_cap=int(frame["qty"].sum()),
            units_out=int(frame["qty"].sum()),
            skus_out=len(policies),
            cap_multiple=50.0,
            cap_floor=100,
        ),
        train=frame.iloc[:0],
        test=frame,
        skus=[p.sku for p in policies],
        policies={p.sku: p for p in policies},
        test_from=pd.Timestamp(at(takeover_day)),
        start=pd.Timestamp(DAY0),
        end=pd.Timestamp(at(days)),
    )


class Recorder:
    """A planner that records what it was shown and orders from a script."""

    name = "recorder"

    def __init__(self, script: Mapping[int, dict[str, int]] | None = None) -> None:
        self.script = dict(script or {})
        self.decisions: list[tuple[int, int]] = []  # (decision time, events observed before)
        self.observed: list[Mapping[str, Any]] = []

    def observe(self, event: Mapping[str, Any]) -> None:
        self.observed.append(event)

    def decide(self, now_ms: int) -> dict[str, int]:
        self.decisions.append((now_ms, len(self.observed)))
        return self.script.pop(len(self.decisions) - 1, {})


# -- the hook ------------------------------------------------------------------------------------


def test_the_hook_decides_at_the_first_event_of_each_new_hour_from_takeover_on() -> None:
    lines = [
        ("A", at(0, 10), 1),
        ("A", at(0, 10.5), 1),
        ("A", at(1, 10.25), 1),  # a new hour, after takeover: a decision before it is observed
        ("A", at(1, 10.75), 1),  # same hour: none
        ("A", at(1, 12.1), 1),  # a new hour: a decision
    ]
    recorder = Recorder()
    simulate(
        demand(lines),
        {"A": policy("A", 0, 50, 2)},
        DAY0,
        at(2),
        tenant_id=TENANT,
        snapshot_every_days=0,
        on_event=planner_hook(recorder, act_from_ms=ms(at(1))),
        own_policy_until=at(1),
    )
    assert [t for t, _ in recorder.decisions] == [ms(at(1, 10.25)), ms(at(1, 12.1))]
    # Each decision sees only the events before it (the upsert and the earlier sales), not
    # the one that triggers it.
    assert [n for _, n in recorder.decisions] == [3, 5]


def test_orders_a_planner_returns_are_placed_sent_and_land_after_the_lead_time() -> None:
    lines = [("A", at(0, 9), 1), ("A", at(1, 9), 1), ("A", at(2, 9), 1), ("A", at(4, 9), 1)]
    recorder = Recorder({0: {"A": 7}})
    result = simulate(
        demand(lines),
        {"A": policy("A", 5, 10, 2)},
        DAY0,
        at(5),
        tenant_id=TENANT,
        snapshot_every_days=0,
        on_event=planner_hook(recorder, act_from_ms=ms(at(1))),
        own_policy_until=at(1),
    )
    orders = result.purchase_orders
    # The shop's own review orders nothing from takeover on: only the planner's order.
    assert orders["qty"].tolist() == [7]
    assert orders["placed"].tolist() == [pd.Timestamp(at(1, 9))]
    assert orders["arrives"].tolist() == [pd.Timestamp(at(3, 9))]
    sent = [e for e in recorder.observed if e["event_type"] == "stock.ordered"]
    assert [e["payload"]["qty"] for e in sent] == [7]
    received = [e for e in recorder.observed if e["event_type"] == "stock.received"]
    assert [e["occurred_at"] for e in received] == ["2011-01-06T09:00:00.000Z"]


def test_the_stream_book_follows_stock_orders_and_daily_sales() -> None:
    book = StreamBook(["A", "B"])
    stamp = "2011-01-03T10:00:00.000Z"
    for kind, payload in (
        ("sku.upserted", {"sku": "A", "initial_stock": 10}),
        ("order.created", {"sku": "A", "qty": 3}),
        ("stock.ordered", {"sku": "A", "qty": 5, "expected_at": "2011-01-06T10:00:00.000Z"}),
        ("stock.received", {"sku": "A", "qty": 5}),
        ("stock.snapshot", {"sku": "B", "on_hand": 4}),
        ("order.created", {"sku": "Z", "qty": 3}),  # out of scope: ignored
    ):
        book.observe({"event_type": kind, "payload": payload, "occurred_at": stamp})
    assert book.on_hand.tolist() == [12.0, 4.0]
    assert book.on_order.tolist() == [0.0, 0.0]
    assert book.lead_s[0] == 3 * 86_400.0 and np.isnan(book.lead_s[1])
    day = ms(DAY0) // 86_400_000
    assert book.sold(day - 1, day + 2).tolist() == [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]


# -- the planners --------------------------------------------------------------------------------


def test_perfect_foresight_serves_every_line_after_its_first_lead_time() -> None:
    lines = [
        *steady_lines("A", 30, 4, (9, 14)),
        *[("A", at(d, 11), 40) for d in (12, 19, 26)],  # lumpy lines it knows are coming
        *steady_lines("B", 30, 1, (10,)),
    ]
    policies = [policy("A", 10, 30, 3), policy("B", 2, 6, 2)]
    prep = prepared(lines, policies, takeover_day=7, days=30)
    planner = PerfectForesight(prep.demand, prep.policies, start_ms=ms(at(0)), end_ms=ms(at(30)))
    bench = run_benchmark(
        prep,
        tenant_id=TENANT,
        on_event=planner_hook(planner, act_from_ms=ms(at(7))),
        keep_events=False,
        own_policy_until=at(7),
    )
    # Only the shop's stock serves the first lead time (3 days) after the takeover; from then
    # on every line is served and no shelf touches 0.
    settled = pd.Timestamp(at(10))
    assert not (bench.result.episodes["start"] >= settled).any()
    assert not (bench.result.lost_sales["ts"] >= settled).any()
    # Just in time: less on the shelf than the shop's policy holds.
    shop = loop_outcome(run_benchmark(prep, tenant_id=TENANT))
    assert loop_outcome(bench)["mean_on_hand"] < shop["mean_on_hand"]


def test_perfect_foresight_orders_what_comes_until_the_next_order_lands() -> None:
    lines = [("A", at(0, 9), 1), ("A", at(2, 9), 1), ("A", at(4, 10), 5), ("A", at(6, 9), 1)]
    frame = demand(lines)
    planner = PerfectForesight(
        frame, {"A": policy("A", 1, 3, 3)}, start_ms=ms(DAY0), end_ms=ms(at(8))
    )
    planner.observe(
        {
            "event_type": "sku.upserted",
            "payload": {"sku": "A", "initial_stock": 3},
            "occurred_at": "2011-01-03T00:00:00.000Z",
        }
    )
    # At day 1 05:00 the next decision is the line of day 2 09:00, whose order lands on day 5
    # 09:00: the lines of day 2 and day 4 (1 + 5) plus one unit, less the 3 on hand.
    assert planner.decide(ms(at(1, 5))) == {"A": 4}


def test_the_classical_policy_plans_once_a_day_after_the_review_hour() -> None:
    config = ClassicalConfig(model="CrostonSBA", window_days=28, review_period_days=7.0)
    planner = ClassicalNightly(["A"], 0.95, config)
    planner.observe(
        {
            "event_type": "sku.upserted",
            "payload": {"sku": "A", "initial_stock": 40},
            "occurred_at": "2011-01-03T00:00:00.000Z",
        }
    )
    for d in range(20):
        planner.observe(
            {
                "event_type": "order.created",
                "payload": {"sku": "A", "qty": 2},
                "occurred_at": f"2011-01-{3 + d:02d}T10:00:00.000Z",
            }
        )
    day20 = ms(at(20))
    assert planner.decide(day20 + 4 * HOUR_MS) == {}  # before the review hour
    first = planner.decide(day20 + 5 * HOUR_MS)
    assert planner.decide(day20 + 9 * HOUR_MS) == {}  # once a day
    # All 40 units sold, nothing on order: 2 units a day over L + 1 + R = 7 + 1 + 7 days, plus
    # the safety stock of a series without spread (Croston SBA's 0.95 bias: slightly under).
    assert first.keys() == {"A"} and 27 <= first["A"] <= 32
    assert planner.nights == 1


def test_the_classical_forecast_follows_an_intermittent_series() -> None:
    slow = ClassicalNightly(["A", "B", "C"], 0.9, ClassicalConfig(tsb_alpha_p=0.1))
    sales = np.zeros((3, 56))
    sales[0, ::4] = 8.0  # 2 units/day, every fourth day (the last one 3 days ago)
    sales[1, :] = 3.0
    level, sigma = slow.forecast(sales)
    assert level[0] == pytest.approx(2.0, rel=0.35) and sigma[0] > 2.0
    assert level[1] == pytest.approx(3.0, rel=0.01) and sigma[1] == pytest.approx(0.0, abs=0.2)
    assert level[2] == 0.0 and sigma[2] == 0.0
    # The default's fast demand probability: three quiet days and the level is near 0; right
    # after a sale it is near the size of a sale.
    fast = ClassicalNightly(["A"], 0.9)
    assert fast.forecast(sales[:1])[0][0] < 0.1
    assert fast.forecast(sales[:1, :-3])[0][0] == pytest.approx(8.0 * 0.9, rel=0.1)


def test_aurora_follows_its_recommendations_and_never_orders_twice() -> None:
    lines = [*steady_lines("A", 40, 3, (9, 13, 17)), *steady_lines("B", 40, 1, (11,))]
    policies = [policy("A", 20, 60, 3), policy("B", 5, 15, 2)]
    prep = prepared(lines, policies, takeover_day=14, days=40)
    params = ScoringParams(service_level=0.98, review_period_s=7 * 86_400.0)
    planner = AuroraPlanner(TENANT, params)
    out = run_planner(prep, planner, tenant_id=TENANT)
    assert out["stockout_episodes"] == 0 and out["orders_placed"] > 0
    # Each order covers about the review period: no SKU orders again before its last order
    # has landed (the stock on order counts in the recommendation).
    bench = run_benchmark(
        prep,
        tenant_id=TENANT,
        on_event=planner_hook(AuroraPlanner(TENANT, params), act_from_ms=ms(at(14))),
        keep_events=False,
        own_policy_until=at(14),
    )
    orders = bench.result.purchase_orders
    after = orders[orders["placed"] >= pd.Timestamp(at(14))]
    for _sku, mine in after.groupby("sku"):
        placed, arrives = mine["placed"].tolist(), mine["arrives"].tolist()
        assert all(p >= a for p, a in zip(placed[1:], arrives[:-1], strict=False))


def test_the_aurora_planner_needs_recommendations() -> None:
    with pytest.raises(ValueError, match="recommendations"):
        AuroraPlanner(TENANT, ScoringParams(recommendations=False))


def test_bad_classical_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        ClassicalConfig(model="ETS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="service_level"):
        ClassicalNightly(["A"], 1.0)
    with pytest.raises(ValueError, match="service levels"):
        ReplenishmentConfig(service_levels=(0.9, 1.2))


# -- the runs and the frontiers ------------------------------------------------------------------


def test_replenishment_runs_every_method_and_judges_the_target() -> None:
    lines = [
        *steady_lines("A", 35, 3, (9, 13, 17)),
        *[("A", at(d, 11), 30) for d in (16, 23, 30)],
        *steady_lines("B", 35, 1, (11,)),
    ]
    policies = [policy("A", 12, 30, 3), policy("B", 3, 8, 2)]
    prep = prepared(lines, policies, takeover_day=14, days=35)
    shop = loop_outcome(run_benchmark(prep, tenant_id=TENANT))
    results = replenishment(
        prep,
        tenant_id=TENANT,
        shop=shop,
        expedite=None,
        config=ReplenishmentConfig(
            service_level=0.95,
            service_levels=(0.9,),
            classical=ClassicalConfig(window_days=14),
        ),
    )
    methods = results["methods"]
    assert list(methods) == ["shop", "classical-nightly", "aurora", "perfect-foresight"]
    for outcome in methods.values():
        for key in ("stockout_episodes", "oos_sku_days", "lost_units", "mean_on_hand",
                    "units_ordered", "orders_placed", "reduction_vs_shop"):  # fmt: skip
            assert key in outcome
    assert methods["shop"]["reduction_vs_shop"] == 0.0
    assert methods["perfect-foresight"]["stockout_episodes"] <= shop["stockout_episodes"]
    # The frontier sweeps the levels and the chosen one, whose run it reuses.
    assert [p["service_level"] for p in results["frontier"]["aurora"]] == [0.9, 0.95]
    assert results["frontier"]["aurora"][1]["mean_on_hand"] == methods["aurora"]["mean_on_hand"]
    acc = results["acceptance"]
    reduction = 1 - methods["aurora"]["stockout_episodes"] / shop["stockout_episodes"]
    assert acc["reduction"] == pytest.approx(reduction)
    assert acc["target_met"] == (reduction >= 0.35 and acc["on_hand_vs_shop"] <= 0.10)
    assert "aurora_below_classical" in acc


def test_frontiers_are_compared_at_every_shared_inventory_level() -> None:
    def pts(*xy: tuple[float, float]) -> list[dict[str, float]]:
        return [{"mean_on_hand": x, "stockout_episodes": y} for x, y in xy]

    ours = pts((100, 50), (200, 20), (300, 10))
    below = compare_frontiers(ours, pts((150, 60), (250, 30), (400, 5)))
    assert below["holds"] is True and below["overlap"] == [150.0, 300.0]
    # Ours at 150 (interpolated 35) and 200, 250 (15), 300 against theirs: four comparisons.
    assert [r["mean_on_hand"] for r in below["comparisons"]] == [150, 200, 250, 300]
    crossing = compare_frontiers(ours, pts((150, 30), (300, 12)))
    assert crossing["holds"] is False
    apart = compare_frontiers(ours, pts((500, 1), (600, 0)))
    assert apart == {"holds": None, "overlap": None, "comparisons": []}


def test_a_tied_point_does_not_count_as_fewer_episodes() -> None:
    same = [{"mean_on_hand": 100.0, "stockout_episodes": 10.0}]
    assert compare_frontiers(same, same)["holds"] is False


def test_replenishment_reuses_the_given_shop_and_expedite_outcomes() -> None:
    lines = steady_lines("A", 20, 2, (9, 15))
    prep = prepared(lines, [policy("A", 6, 20, 2)], takeover_day=10, days=20)
    shop = loop_outcome(run_benchmark(prep, tenant_id=TENANT))
    expedite = 0.123  # a marker: the given outcome is reported as it is
    results = replenishment(
        prep,
        tenant_id=TENANT,
        shop=shop,
        expedite={**shop, "marker": expedite},
        config=ReplenishmentConfig(service_level=0.9, frontier=False),
    )
    assert results["methods"]["expedite"]["marker"] == expedite
    assert results["methods"]["shop"]["stockout_episodes"] == shop["stockout_episodes"]
    assert "frontier" not in results and "aurora_below_classical" not in results["acceptance"]
