"""The closed loop that judges the action, with its cost (``aurora evaluate``'s replenishment).

The warm-up runs the shop's own (s, S) policy; from ``test_from`` each method orders instead
(:mod:`aurora_ray.evaluation.planners`), and each run reports, over the test period, stock-out
episodes, OOS SKU-days and lost units against what the shelf cost: mean units on hand
(time-weighted, summed over SKUs), units ordered and orders placed. Methods:

* ``shop``: the shop's own policy throughout (the protocol's simulation);
* ``expedite``: the shop's policy plus an expedite at every alert of Aurora's live scorer (the
  closed loop of the alerts; see :mod:`aurora_ray.evaluation.runner`);
* ``classical-nightly``, ``aurora``, ``perfect-foresight``: the planners.

A sweep of the service level draws the frontier of ``classical-nightly`` and ``aurora``:
episodes against mean units on hand. :func:`compare_frontiers` says whether one frontier lies
below the other at every inventory level both reach.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aurora_ray.domain.state import ScoringParams
from aurora_ray.evaluation.planners import (
    AuroraPlanner,
    ClassicalConfig,
    ClassicalNightly,
    PerfectForesight,
    Planner,
    planner_hook,
)
from aurora_ray.evaluation.simulate import Benchmark, Prepared, _to_ms, run_benchmark

__all__ = [
    "DEFAULT_SERVICE_LEVELS",
    "PLANNERS",
    "ReplenishmentConfig",
    "compare_frontiers",
    "loop_outcome",
    "make_planner",
    "replenishment",
    "run_planner",
]

PLANNERS = ("classical-nightly", "aurora", "perfect-foresight")
DEFAULT_SERVICE_LEVELS = (0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998)


@dataclass(frozen=True)
class ReplenishmentConfig:
    # The target service level of both policies (None: ScoringParams.service_level, Aurora's
    # live default); ``frontier`` sweeps ``service_levels`` (and that level) for both.
    service_level: float | None = None
    frontier: bool = True
    service_levels: tuple[float, ...] = DEFAULT_SERVICE_LEVELS
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    # The acceptance: episodes cut by this share against the shop's policy, with mean
    # units on hand at most this much higher.
    target_reduction: float = 0.35
    inventory_allowance: float = 0.10

    def __post_init__(self) -> None:
        levels = [*self.service_levels, *([self.service_level] if self.service_level else [])]
        bad = [a for a in levels if not 0.0 < a < 1.0]
        if bad:
            raise ValueError(f"service levels must be in (0, 1), got {bad}")


def loop_outcome(bench: Benchmark) -> dict[str, Any]:
    """What a closed-loop run achieved over the test period, and what it cost."""
    stats = bench.test_stats
    orders = bench.result.purchase_orders
    return {
        "stockout_episodes": stats.episodes,
        "oos_sku_days": stats.oos_sku_days,
        "oos_rate": stats.rate,
        "lost_units": stats.lost_units,
        "mean_on_hand": stats.mean_on_hand,
        "units_ordered": stats.units_ordered,
        "orders_placed": stats.orders_placed,
        "expedite_orders": int(orders["expedited"].sum()) if len(orders) else 0,
    }


def make_planner(
    name: str,
    prepared: Prepared,
    *,
    tenant_id: str,
    service_level: float,
    params: ScoringParams | None = None,
    classical: ClassicalConfig | None = None,
) -> Planner:
    if name == "aurora":
        base = params or ScoringParams()
        live = dataclasses.replace(base, recommendations=True, service_level=service_level)
        return AuroraPlanner(tenant_id, live)
    if name == "classical-nightly":
        return ClassicalNightly(sorted(prepared.policies), service_level, classical)
    if name == "perfect-foresight":
        return PerfectForesight(
            prepared.demand,
            prepared.policies,
            start_ms=_to_ms(prepared.start),
            end_ms=_to_ms(prepared.end),
        )
    raise ValueError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}")


def run_planner(prepared: Prepared, planner: Planner, *, tenant_id: str) -> dict[str, Any]:
    """One closed-loop run: the shop's policy until ``test_from``, the planner's orders after."""
    began = time.perf_counter()
    bench = run_benchmark(
        prepared,
        tenant_id=tenant_id,
        on_event=planner_hook(planner, act_from_ms=_to_ms(prepared.test_from)),
        keep_events=False,
        own_policy_until=prepared.test_from.to_pydatetime(),
    )
    out = loop_outcome(bench)
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def _with_reduction(outcome: dict[str, Any], shop: Mapping[str, Any]) -> dict[str, Any]:
    base, stock = shop["stockout_episodes"], shop["mean_on_hand"]
    outcome["reduction_vs_shop"] = 1 - outcome["stockout_episodes"] / base if base else None
    outcome["on_hand_vs_shop"] = outcome["mean_on_hand"] / stock - 1 if stock else None
    return outcome


def compare_frontiers(
    ours: Sequence[Mapping[str, Any]], theirs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Does ``ours`` have fewer episodes than ``theirs`` at every inventory level both reach?

    Each frontier is a list of points (``mean_on_hand``, ``stockout_episodes``), joined by
    straight lines in order of inventory. Every point of one frontier inside the other's
    inventory range is compared with the other at that inventory: ``holds`` when ours is lower
    at each (None when the ranges do not overlap). ``comparisons`` lists them."""

    def line(points: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        pts = sorted((float(p["mean_on_hand"]), float(p["stockout_episodes"])) for p in points)
        return np.array([x for x, _ in pts]), np.array([y for _, y in pts])

    ox, oy = line(ours)
    tx, ty = line(theirs)
    if not len(ox) or not len(tx):
        return {"holds": None, "overlap": None, "comparisons": []}
    lo, hi = max(ox.min(), tx.min()), min(ox.max(), tx.max())
    rows: list[dict[str, float]] = []
    for x, y in zip(ox, oy, strict=True):
        if lo <= x <= hi:
            rows.append({"mean_on_hand": x, "ours": y, "theirs": float(np.interp(x, tx, ty))})
    for x, y in zip(tx, ty, strict=True):
        if lo <= x <= hi:
            rows.append({"mean_on_hand": x, "ours": float(np.interp(x, ox, oy)), "theirs": y})
    rows.sort(key=lambda r: r["mean_on_hand"])
    if not rows:
        return {"holds": None, "overlap": None, "comparisons": []}
    return {
        "holds": all(r["ours"] < r["theirs"] for r in rows),
        "overlap": [lo, hi],
        "comparisons": rows,
    }


def replenishment(
    prepared: Prepared,
    *,
    tenant_id: str,
    shop: Mapping[str, Any],
    expedite: Mapping[str, Any] | None,
    params: ScoringParams | None = None,
    config: ReplenishmentConfig | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Every method's closed loop (``shop`` and ``expedite`` are given: they are the alert
    loop's runs), the frontiers with ``config.frontier``, and the acceptance verdicts."""
    config = config or ReplenishmentConfig()
    level = config.service_level or (params or ScoringParams()).service_level
    methods: dict[str, Any] = {"shop": dict(shop)}
    if expedite is not None:
        methods["expedite"] = dict(expedite)

    def run(name: str, service_level: float) -> dict[str, Any]:
        planner = make_planner(
            name,
            prepared,
            tenant_id=tenant_id,
            service_level=service_level,
            params=params,
            classical=config.classical,
        )
        progress(f"replenishment: {name} at service level {service_level}")
        out = run_planner(prepared, planner, tenant_id=tenant_id)
        out["service_level"] = service_level
        if isinstance(planner, ClassicalNightly):
            out["forecast_seconds"] = round(planner.fit_s, 1)
            out["nights"] = planner.nights
        return out

    for name in ("classical-nightly", "aurora"):
        methods[name] = run(name, level)
    progress("replenishment: perfect-foresight")
    methods["perfect-foresight"] = run_planner(
        prepared,
        make_planner("perfect-foresight", prepared, tenant_id=tenant_id, service_level=level),
        tenant_id=tenant_id,
    )
    for outcome in methods.values():
        _with_reduction(outcome, shop)
    results: dict[str, Any] = {
        "service_level": level,
        "classical": dataclasses.asdict(config.classical),
        "aurora_params": _aurora_params(params),
        "methods": methods,
    }
    if config.frontier:
        frontier: dict[str, list[dict[str, Any]]] = {}
        levels = sorted({*config.service_levels, level})
        for name in ("classical-nightly", "aurora"):
            points = []
            for alpha in levels:
                point = methods[name] if alpha == level else run(name, alpha)
                points.append(_with_reduction(dict(point), shop))
            frontier[name] = points
        results["frontier"] = frontier
    results["acceptance"] = _acceptance(results, shop, config)
    return results


def _aurora_params(params: ScoringParams | None) -> dict[str, float]:
    p = params or ScoringParams()
    return {
        "review_period_days": p.review_period_s / 86_400.0,
        "replenish_half_life_days": p.replenish_half_life_s / 86_400.0,
        "default_lead_time_days": p.default_lead_time_s / 86_400.0,
    }


def _acceptance(
    results: Mapping[str, Any], shop: Mapping[str, Any], config: ReplenishmentConfig
) -> dict[str, Any]:
    aurora = results["methods"]["aurora"]
    reduction = aurora["reduction_vs_shop"]
    extra = aurora["on_hand_vs_shop"]
    out: dict[str, Any] = {
        "target_reduction": config.target_reduction,
        "inventory_allowance": config.inventory_allowance,
        "reduction": reduction,
        "on_hand_vs_shop": extra,
        "target_met": bool(
            reduction is not None
            and extra is not None
            and reduction >= config.target_reduction
            and extra <= config.inventory_allowance
        ),
        "ceiling_reduction": results["methods"]["perfect-foresight"]["reduction_vs_shop"],
    }
    frontier = results.get("frontier")
    if frontier:
        out["aurora_below_classical"] = compare_frontiers(
            frontier["aurora"], frontier["classical-nightly"]
        )
        allowed = float(shop["mean_on_hand"]) * (1 + config.inventory_allowance)
        within = [p for p in frontier["aurora"] if p["mean_on_hand"] <= allowed]
        best = min(within, key=lambda p: p["stockout_episodes"], default=None)
        out["best_aurora_within_allowance"] = (
            None
            if best is None
            else {
                "service_level": best["service_level"],
                "stockout_episodes": best["stockout_episodes"],
                "reduction_vs_shop": best["reduction_vs_shop"],
                "on_hand_vs_shop": best["on_hand_vs_shop"],
            }
        )
    return out
