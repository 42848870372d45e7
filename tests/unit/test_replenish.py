"""Replenishment recommendations: the pure maths (domain/replenish.py) and the fold's inputs to it
(lead times given, learned or defaulted; MOQ and case pack; batch boundaries)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from aurora_ray.domain.events import parse_ndjson
from aurora_ray.domain.replenish import (
    LEAD_DEFAULT,
    LEAD_GIVEN,
    LEAD_LEARNED,
    demand_quantile,
    lead_times,
    recommend,
)
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers

TENANT = "00000000-0000-0000-0000-0000000000a1"
DAY = 86_400.0


@pytest.mark.parametrize("shape", [0.2, 0.5, 1.0, 3.0, 30.0])
@pytest.mark.parametrize("level", [0.9, 0.98, 0.995])
def test_demand_quantile_is_the_gamma_quantile(shape: float, level: float) -> None:
    scale = 4.0
    mean, var = np.array([shape * scale]), np.array([shape * scale * scale])
    exact = scale * special.gammaincinv(shape, level)
    assert demand_quantile(mean, var, level)[0] == pytest.approx(exact, rel=0.025)


def test_demand_quantile_without_demand_is_zero_and_lumpier_is_higher() -> None:
    mean = np.array([0.0, 10.0, 10.0])
    var = np.array([0.0, 10.0, 400.0])  # Poisson, then lumpy (few large lines)
    q = demand_quantile(mean, var, 0.98)
    assert q[0] == 0.0
    assert q[2] > q[1] > 10.0


def test_lead_time_sources_in_order_given_learned_default() -> None:
    mean, var, source = lead_times(
        given_s=np.array([3 * DAY, np.nan, np.nan]),
        learned_n=np.array([4, 3, 0]),
        learned_mean_s=np.array([9 * DAY, 5 * DAY, 0.0]),
        learned_m2=np.array([1.0, 2 * DAY * DAY, 0.0]),
        default_s=7 * DAY,
    )
    assert source.tolist() == [LEAD_GIVEN, LEAD_LEARNED, LEAD_DEFAULT]
    assert mean.tolist() == [3 * DAY, 5 * DAY, 7 * DAY]
    assert var[1] == pytest.approx(DAY * DAY)  # m2 / (n - 1)
    assert var[0] == 0.0 and var[2] == 0.0


def _recommend(**overrides: object) -> object:
    args: dict[str, object] = {
        "as_of_s": np.array([0.0]),
        "on_hand": np.array([100.0]),
        "inbound_qty": np.array([0.0]),
        "inbound_due_s": np.array([np.nan]),
        "rate": np.array([10.0 / DAY]),
        "second_moment_rate": np.array([50.0 / DAY]),
        "lead_mean_s": np.array([5 * DAY]),
        "lead_var_s2": np.array([0.0]),
        "lead_source": np.array([LEAD_GIVEN], dtype=np.int8),
        "service_level": np.array([0.98]),
        "review_period_s": 7 * DAY,
        "moq": np.array([0]),
        "case_pack": np.array([0]),
    }
    args.update(overrides)
    return recommend(**args)  # type: ignore[arg-type]


def test_plenty_of_stock_orders_later_the_cycle_quantity() -> None:
    r = _recommend(on_hand=np.array([500.0]))
    assert r.order_by_s[0] > 0  # in the future
    expected_wait = (500.0 - r.reorder_point[0]) / (10.0 / DAY)
    assert r.order_by_s[0] == pytest.approx(expected_wait)
    # What to order when that time comes: up to S from the reorder point.
    assert r.recommended_qty[0] == int(np.ceil(r.order_up_to[0] - r.reorder_point[0]))
    assert r.risk[0] < 0.01


def test_below_the_reorder_point_the_order_is_due_now_and_tops_up() -> None:
    r = _recommend(on_hand=np.array([20.0]))
    assert r.order_by_s[0] == 0.0
    assert r.recommended_qty[0] == int(np.ceil(r.order_up_to[0] - 20.0))
    assert r.risk[0] > 0.5


def test_stock_on_order_counts_so_following_twice_never_orders_twice() -> None:
    first = _recommend(on_hand=np.array([20.0]))
    qty = float(first.recommended_qty[0])
    after = _recommend(
        on_hand=np.array([20.0]),
        inbound_qty=np.array([qty]),
        inbound_due_s=np.array([5 * DAY]),
    )
    assert after.order_by_s[0] > 0.0  # no longer due
    # The position is at the order-up-to level: the next order is only the next cycle's.
    assert after.recommended_qty[0] <= qty


def test_case_pack_and_moq_round_up() -> None:
    r = _recommend(on_hand=np.array([20.0]), moq=np.array([100]), case_pack=np.array([12]))
    assert r.recommended_qty[0] % 12 == 0
    assert r.recommended_qty[0] >= 108  # the MOQ in whole cases
    none = _recommend(rate=np.array([0.0]), second_moment_rate=np.array([0.0]), moq=np.array([50]))
    assert none.recommended_qty[0] == 0  # no demand: nothing to order, MOQ or not
    assert np.isnan(none.order_by_s[0])


def test_stockout_interval_brackets_the_expected_time() -> None:
    r = _recommend(on_hand=np.array([100.0]))
    expected = 100.0 / (10.0 / DAY)
    assert r.oos_p10_s[0] < expected < r.oos_p90_s[0]
    # A delivery landing before the shelf empties pushes the interval out.
    later = _recommend(
        on_hand=np.array([100.0]), inbound_qty=np.array([200.0]), inbound_due_s=np.array([DAY])
    )
    assert later.oos_p10_s[0] > r.oos_p10_s[0]


def _events(lines: list[dict[str, object]]) -> list[object]:
    body = "\n".join(json.dumps(line) for line in lines).encode()
    parsed = parse_ndjson(body, tenant_id=TENANT, received_ms=1_800_000_000_000)
    assert not parsed.errors, parsed.errors
    return list(parsed.events)


def _line(kind: str, at: str, payload: dict[str, object], n: int) -> dict[str, object]:
    return {
        "tenant_id": TENANT,
        "event_type": kind,
        "event_id": f"e{n}",
        "occurred_at": at,
        "payload": {"warehouse": "W", **payload},
    }


def _history() -> list[dict[str, object]]:
    lines = [
        _line("sku.upserted", "2026-01-01T00:00:00Z", {"sku": "A", "initial_stock": 100}, 0),
        _line(
            "sku.upserted",
            "2026-01-01T00:00:00Z",
            {"sku": "B", "initial_stock": 100, "lead_time_hours": 36, "case_pack": 6},
            1,
        ),
        _line("sku.upserted", "2026-01-01T00:00:00Z", {"sku": "C", "initial_stock": 100}, 2),
        _line(
            "stock.ordered",
            "2026-01-01T06:00:00Z",
            {"sku": "A", "qty": 40, "expected_at": "2026-01-04T06:00:00Z"},
            3,
        ),
        _line("stock.received", "2026-01-04T08:00:00Z", {"sku": "A", "qty": 40}, 4),
    ]
    n = 10
    for day in range(1, 10):
        for sku in "ABC":
            at = f"2026-01-{day:02d}T12:00:00Z"
            payload = {"sku": sku, "order_id": f"o{n}", "qty": 6, "price": 1.0, "currency": "EUR"}
            lines.append(_line("order.created", at, payload, n))
            n += 1
    return sorted(lines, key=lambda line: str(line["occurred_at"]))


def _fold(events: list[object], cut: list[int]) -> tuple[SkuState, dict[str, dict[str, float]]]:
    state, params = SkuState(), ScoringParams()
    latest: dict[str, dict[str, float]] = {}
    bounds = [0, *cut, len(events)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        chunk = events[lo:hi]
        for out in fold_with_timers(state, chunk, [0] * len(chunk), params):  # type: ignore[arg-type]
            rec = out.recommendations
            assert rec is not None
            for i, row in enumerate(out.rows.tolist()):
                latest[state.keys[row]] = {
                    "order_by": float(rec.order_by_s[i]),
                    "qty": float(rec.recommended_qty[i]),
                    "lead": float(rec.lead_time_s[i]),
                    "source": float(rec.lead_source[i]),
                    "risk": float(rec.risk[i]),
                }
    return state, latest


def test_the_fold_learns_lead_times_and_reads_given_ones() -> None:
    state, latest = _fold(_events(_history()), [])
    a, b, c = (latest[f"{sku}@W"] for sku in "ABC")
    assert a["source"] == LEAD_LEARNED and a["lead"] == pytest.approx(74 * 3600.0)
    assert b["source"] == LEAD_GIVEN and b["lead"] == pytest.approx(36 * 3600.0)
    assert c["source"] == LEAD_DEFAULT and c["lead"] == pytest.approx(7 * DAY)
    assert b["qty"] % 6 == 0
    row = state.index["A@W"]
    assert state.col("lead_n")[row] == 1 and state.col("inbound_qty")[row] == 0


def test_recommendations_do_not_depend_on_batch_boundaries() -> None:
    events = _events(_history())
    _, whole = _fold(events, [])
    for cut in ([1], [3, 4], list(range(1, len(events)))):
        _, split = _fold(events, cut)
        assert split.keys() == whole.keys()
        for key, values in whole.items():
            assert split[key] == pytest.approx(values), (cut, key)


def test_a_catalogue_only_upsert_sets_replenishment_data_not_stock() -> None:
    lines = _history()
    lines.append(
        _line("sku.upserted", "2026-01-09T13:00:00Z", {"sku": "C", "moq": 50, "case_pack": 10}, 99)
    )
    state, latest = _fold(_events(lines), [])
    row = state.index["C@W"]
    assert state.col("moq")[row] == 50 and state.col("case_pack")[row] == 10
    assert state.col("on_hand")[row] == 100 - 9 * 6  # untouched by the upsert
    assert latest["C@W"]["qty"] == 0 or latest["C@W"]["qty"] >= 50


def test_marginal_stock_is_where_one_more_unit_buys_the_given_risk() -> None:
    from scipy import stats

    from aurora_ray.domain.replenish import marginal_stock

    mean = np.array([20.0, 20.0, 3.0])
    var = np.array([40.0, 2000.0, 30.0])  # small lines, large lines, a slow lumpy SKU
    lam = 1e-3
    x = marginal_stock(mean, var, lam)
    shape, scale = mean**2 / var, var / mean
    density = stats.gamma.pdf(x, shape, scale=scale)
    assert density[0] == pytest.approx(lam, rel=1e-6)
    assert density[2] == pytest.approx(lam, rel=1e-6)
    levels = stats.gamma.cdf(x, shape, scale=scale)
    assert levels[0] > levels[1]  # small lines get the higher service level
    assert marginal_stock(np.array([0.0]), np.array([0.0]), lam)[0] == 0.0


def test_the_marginal_rule_applies_where_no_sku_service_level_is_set() -> None:
    base = _recommend(on_hand=np.array([20.0]))
    marginal = _recommend(on_hand=np.array([20.0]), risk_per_unit=1e-4)
    kept = _recommend(on_hand=np.array([20.0]), risk_per_unit=1e-4, quantile_rule=np.array([True]))
    assert kept.reorder_point[0] == base.reorder_point[0]
    assert marginal.reorder_point[0] != base.reorder_point[0]
    assert marginal.order_up_to[0] == pytest.approx(
        marginal.reorder_point[0] + 10.0 / DAY * 7 * DAY
    )
