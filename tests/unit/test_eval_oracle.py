"""The rate oracle (aurora_ray.evaluation.methods.RateOracle): the ceiling for any forecaster of
the demand level, on hand-made streams with known answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from aurora_ray.domain.calendar import WEEK_HOURS
from aurora_ray.domain.scoring import stockout_probability
from aurora_ray.domain.state import BatchOutput, ScoringParams
from aurora_ray.evaluation.methods import (
    ORACLE_LABEL,
    AuroraAnalytic,
    DemandTimeline,
    RateOracle,
    make_predictor,
)
from aurora_ray.evaluation.report import equal_precision, oracle_ceiling
from aurora_ray.evaluation.simulate import Policy, simulate

pytestmark = pytest.mark.unit

DAY = 86_400.0
H = 2 * DAY
W = 7 * DAY
TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"


def timeline(lines: list[tuple[str, float, float]], end_day: float = 100.0) -> DemandTimeline:
    """Lines as (sku, day, units) on a data span of [day 0, day ``end_day``)."""
    return DemandTimeline.from_lines(
        [s for s, _, _ in lines],
        np.array([d * DAY for _, d, _ in lines]),
        np.array([q for _, _, q in lines]),
        start_s=0.0,
        end_s=end_day * DAY,
    )


def rates(tl: DemandTimeline, sku: str, day: float) -> tuple[float, float]:
    rate, second = tl.window_rates([sku], np.array([day * DAY]), H, W)
    return float(rate[0]), float(second[0])


# Scoring at day 9: past window [2, 9), horizon [9, 11), future window [11, 18).
LINES = [
    ("A", 1.0, 10.0),  # before the past window
    ("A", 2.0, 3.0),  # exactly t - W: in (windows are half-open, [a, b))
    ("A", 5.0, 4.0),  # in the past window
    ("A", 9.0, 500.0),  # exactly t: in the horizon, left out
    ("A", 10.0, 100.0),  # inside the horizon: left out
    ("A", 11.0, 6.0),  # exactly t + H: in the future window
    ("A", 17.5, 2.0),  # in the future window
    ("A", 18.0, 50.0),  # exactly t + H + W: out
    ("B", 5.0, 1000.0),  # another SKU at the same times never counts for A
    ("B", 12.0, 1000.0),
]


def test_window_rate_is_the_window_sum_over_its_length_without_the_horizon() -> None:
    rate, second = rates(timeline(LINES), "A", 9.0)
    assert rate == pytest.approx((3 + 4 + 6 + 2) / (14 * DAY))
    assert second == pytest.approx((9 + 16 + 36 + 4) / (14 * DAY))


def test_window_rate_at_the_start_of_the_data_uses_what_remains_of_the_window() -> None:
    # t = day 3: past [-4, 3) clipped to [0, 3) (3 days), future [5, 12) (7 days).
    rate, _ = rates(timeline(LINES), "A", 3.0)
    assert rate == pytest.approx((10 + 3 + 4 + 500 + 100 + 6) / (10 * DAY))
    # t = 0: no past at all; the future window [2, 9) alone.
    rate, _ = rates(timeline(LINES), "A", 0.0)
    assert rate == pytest.approx((3 + 4) / (7 * DAY))


def test_window_rate_at_the_end_of_the_data_uses_what_remains_of_the_window() -> None:
    lines = [("A", 90.0, 7.0), ("A", 96.0, 70.0), ("A", 98.0, 14.0), ("A", 99.9, 1.0)]
    tl = timeline(lines, end_day=100.0)
    # t = 95: past [88, 95) (7 days), horizon [95, 97), future [97, 104) clipped to [97, 100).
    rate, _ = rates(tl, "A", 95.0)
    assert rate == pytest.approx((7 + 14 + 1) / (10 * DAY))
    # t = 99: the future window lies wholly after the data: the past alone.
    rate, _ = rates(tl, "A", 99.0)
    assert rate == pytest.approx((70 + 14) / (7 * DAY))
    # A line at or after end_s is not data; nor one before start_s.
    tl = DemandTimeline.from_lines(
        ["A", "A", "A"], np.array([-1.0, 50.0, 100.0]) * DAY, np.array([5.0, 7.0, 9.0]),
        start_s=0.0, end_s=100 * DAY,
    )  # fmt: skip
    assert rates(tl, "A", 52.0)[0] == pytest.approx(7 / (14 * DAY))
    assert rates(tl, "A", 95.0)[0] == pytest.approx(0.0)


def test_skus_do_not_leak_into_each_other_and_unknown_skus_have_no_demand() -> None:
    # B's first line sits at the start of the data, right after A's block on the shared axis.
    tl = timeline([("A", 99.0, 5.0), ("B", 0.0, 1000.0), ("B", 50.0, 1.0)])
    # t = 99.5: past [92.5, 99.5) holds A's line; the future lies after the data.
    assert rates(tl, "A", 99.5)[0] == pytest.approx(5 / (7 * DAY))
    assert rates(tl, "B", 1.0)[0] == pytest.approx(1000 / (8 * DAY))
    assert rates(tl, "NOPE", 50.0) == (0.0, 0.0)
    many = tl.window_rates(["A", "B", "A"], np.array([99.5, 1.0, 10.0]) * DAY, H, W)[0]
    np.testing.assert_allclose(many * DAY, [5 / 7, 1000 / 8, 0.0])


def test_timeline_rejects_bad_input_naming_the_line() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        DemandTimeline.from_lines(["A"], np.array([1.0, 2.0]), np.array([1.0]), start_s=0, end_s=9)
    with pytest.raises(ValueError, match=r"line 1: .*'B'"):
        DemandTimeline.from_lines(
            ["A", "B"], np.array([1.0, 2.0]), np.array([1.0, -3.0]), start_s=0, end_s=9
        )
    with pytest.raises(ValueError, match="must be after"):
        DemandTimeline.from_lines(["A"], np.array([1.0]), np.array([1.0]), start_s=9, end_s=9)
    with pytest.raises(ValueError, match="window_s"):
        timeline(LINES).window_rates(["A"], np.array([1.0]), H, 0.0)
    with pytest.raises(ValueError, match="needs the realised demand"):
        make_predictor("rate-oracle", TENANT)


# -- the oracle on the live fold ------------------------------------------------------------

START = datetime(2011, 1, 3, tzinfo=UTC)  # a Monday


def _stream(seed: int = 3) -> tuple[list[dict[str, object]], pd.DataFrame]:
    """A simulated stream of three SKUs over three weeks: sales, stock-outs, purchase orders
    and their deliveries, snapshots; and the demand lines it came from."""
    rng = np.random.default_rng(seed)
    rows = []
    for sku, per_day in (("10001", 6), ("10002", 3), ("10003", 1)):
        for day in range(21):
            for _ in range(int(rng.poisson(per_day))):
                minute = int(rng.integers(6 * 60, 20 * 60))
                qty = int(rng.choice([1, 2, 3, 12]))
                rows.append((sku, START + timedelta(days=day, minutes=minute), qty))
    rows.sort(key=lambda r: r[1])
    n = len(rows)
    demand = pd.DataFrame(
        {
            "invoice": pd.array([f"inv{k}" for k in range(n)], dtype="string"),
            "sku": pd.array([r[0] for r in rows], dtype="string"),
            "qty": np.array([r[2] for r in rows], dtype=np.int64),
            "ts": pd.to_datetime([r[1] for r in rows], utc=True),
            "price": np.full(n, 2.5),
            "customer": pd.array(["1"] * n, dtype="string"),
            "country": pd.array(["UK"] * n, dtype="string"),
        }
    )
    policies = {
        sku: Policy(sku, s, big_s, lead, 3.0, 2.0, 2.0, 7.0)
        for sku, s, big_s, lead in (("10001", 20, 45, 3), ("10002", 8, 25, 2), ("10003", 2, 6, 4))
    }
    result = simulate(
        demand, policies, START, START + timedelta(days=21), tenant_id=TENANT
    )  # fmt: skip
    return list(result.events), demand


def _feed(predictor: AuroraAnalytic, events: Sequence[dict[str, object]], chunk: int) -> None:
    for i in range(0, len(events), chunk):
        predictor.feed(events[i : i + chunk])


class _OwnRates(RateOracle):
    """The oracle's machinery with the fold's own rates: must reproduce Aurora exactly."""

    def rates(self, skus: Sequence[str], output: BatchOutput) -> tuple[np.ndarray, np.ndarray]:
        return output.event_rate_per_h / 3600.0, output.event_second_moment_per_h / 3600.0


def test_oracle_machinery_with_the_fold_rates_reproduces_the_live_scorer() -> None:
    events, demand = _stream()
    types = {e["event_type"] for e in events}
    assert {"stock.ordered", "stock.received", "stock.snapshot", "order.created"} <= types
    ramp = np.linspace(1.0, 2.0, WEEK_HOURS)  # a calendar, so that exposure counts too
    profile = tuple(float(x) for x in ramp / ramp.sum())
    params = ScoringParams(week_profile=profile)
    tl = DemandTimeline.from_lines(
        demand["sku"].astype(str).to_numpy(),
        demand["ts"].astype("int64").to_numpy() / 1e9,
        demand["qty"].to_numpy(np.float64),
        start_s=START.timestamp(),
        end_s=(START + timedelta(days=21)).timestamp(),
    )
    live = AuroraAnalytic(TENANT, params)
    mirror = _OwnRates(TENANT, tl, params)
    oracle = RateOracle(TENANT, tl, params)
    for predictor in (live, mirror, oracle):
        _feed(predictor, events, chunk=97)  # batches cut across days, ticks in between
    s1, t1, p1 = live.series.arrays()
    s2, t2, p2 = mirror.series.arrays()
    s3, t3, p3 = oracle.series.arrays()
    assert len(p1) > len(events) // 2  # events and timer ticks alike
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(p1, p2, rtol=1e-9, atol=1e-12, equal_nan=True)
    # The real oracle scores the same points, with its own probabilities.
    np.testing.assert_array_equal(s1, s3)
    np.testing.assert_array_equal(t1, t3)
    assert not np.allclose(p1, p3, equal_nan=True)


def test_oracle_probability_is_the_scorer_at_the_window_rate() -> None:
    """One SKU, flat week, no purchase orders: P(NB demand over H >= on hand) at the rate and
    second moment of the window around each point."""
    day = START.timestamp()
    envelopes: list[dict[str, object]] = [
        {"event_type": "sku.upserted", "at": 0.0, "payload": {"initial_stock": 30}},
        {"event_type": "order.created", "at": 9 * DAY + 3600, "payload": {"qty": 4}},
    ]
    events = []
    for k, e in enumerate(envelopes):
        moment = datetime.fromtimestamp(day + float(e["at"]), tz=UTC)  # type: ignore[arg-type]
        payload = {"sku": "A", "warehouse": "UK", **e["payload"]}  # type: ignore[dict-item]
        if e["event_type"] == "order.created":
            payload |= {"order_id": "o1", "price": 1.0, "currency": "GBP"}
        events.append(
            {
                "tenant_id": TENANT,
                "event_type": e["event_type"],
                "payload": payload,
                "event_id": f"e{k}",
                "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )
    # Realised demand: 14 units in the week before day 9, 600 inside the horizon (never seen),
    # 28 units in the week after it.
    lines = [("A", 5.0, 14.0), ("A", 9.0 + 1 / 24, 4.0), ("A", 10.0, 600.0), ("A", 13.0, 28.0)]
    tl = DemandTimeline.from_lines(
        ["A"] * 4,
        np.array([day + d * DAY for _, d, _ in lines]),
        np.array([q for _, _, q in lines]),
        start_s=day,
        end_s=day + 40 * DAY,
    )
    oracle = RateOracle(TENANT, tl, ScoringParams(timer_period_s=0.0), window_s=W)
    oracle.feed(events)
    _, times, probs = oracle.series.arrays()
    assert len(probs) == 2
    at_order = times[1] - day
    assert at_order == 9 * DAY + 3600
    rate = (14 + 28) / (14 * DAY)  # the order at t itself opens the horizon: left out
    second = (14**2 + 28**2) / (14 * DAY)
    want = stockout_probability(np.array([26.0]), np.array([rate * H]), np.array([second * H]))
    assert probs[1] == pytest.approx(float(want[0]))
    assert 0.01 < probs[1] < 0.99


def test_report_puts_the_oracle_beside_the_batch_and_aurora() -> None:
    batch = {
        "pr_curve": {"precision": [0.4, 0.5], "recall": [0.3, 0.2], "recall_drain": [0.4, 0.3]}
    }
    live = {
        "pr_curve": {"precision": [0.45, 0.6], "recall": [0.5, 0.3], "recall_drain": [0.8, 0.6]}
    }
    oracle = {
        "label": ORACLE_LABEL,
        "pr_curve": {"precision": [0.5, 0.7], "recall": [0.6, 0.5], "recall_drain": [0.9, 0.75]},
    }
    results = {
        "methods": {"nightly-batch": batch, "aurora-analytic": live},
        "reference": {"rate-oracle": oracle},
    }
    rows = oracle_ceiling(results)
    assert [r["precision_at_least"] for r in rows] == [0.4, 0.45, 0.5]
    top = rows[-1]
    assert (top["batch"], top["aurora"], top["oracle"]) == (0.2, 0.3, 0.6)
    assert top["oracle_ratio"] == pytest.approx(3.0)
    assert top["aurora_ratio"] == pytest.approx(1.5)
    assert top["aurora_share_of_oracle"] == pytest.approx(0.5)
    assert top["oracle_ratio_drain"] == pytest.approx(3.0)
    labelled = [r for r in equal_precision(results) if r["method"] == ORACLE_LABEL]
    assert len(labelled) == 3  # a reference row per level, under its label
    assert oracle_ceiling({"methods": {"nightly-batch": batch}}) == []
