"""An inventory simulated around real demand: the event stream Aurora sees, and the ground truth.

Why: the UCI data records what customers ordered, not what was on the shelf, so stock-outs are
not in the data. To judge a stock-out predictor we give every SKU in scope a plausible
replenishment policy, sized only from its *training*-period demand (:func:`size_policies`), and
replay the real order lines of the simulated period against it (:func:`simulate`). The replay
knows the true on-hand at every instant, so it yields exact stock-out episodes, lost sales and
daily on-hand (the labels), and it writes what a retailer would have sent Aurora as ordinary
ingest envelopes (the input).

The model of the retailer, kept deliberately simple so that every number can be checked by hand:

* one warehouse (``"UK"``), one policy per SKU: a periodic-review (s, S) policy. Every day at
  ``review_hour`` (UTC) the inventory position (on hand + on order) is compared with the reorder
  point ``s``; at or below it, ``S - position`` units are ordered and land exactly ``L`` days
  later (``stock.received``), before any sale of that instant;
* ``s = ceil(mu * (L + R) + z * sigma * sqrt(L + R))`` and ``S = s + max(1, ceil(mu * C))``,
  with ``mu``/``sigma`` the mean and standard deviation of the SKU's daily demand in training
  (calendar days since its first sale, zero days included), review period ``R = 1`` day, and
  per-SKU draws of the lead time ``L``, the safety factor ``z`` and the cycle length ``C`` in days
  (seeded; a SKU's draws depend only on the seed and its code, not on which other SKUs are in
  scope). The spread of ``z`` gives some SKUs thin safety stock, so stock-outs happen at a
  realistic rate (see docs/evaluation.md for the measured rate);
* stock starts at ``S`` at the start of the simulated period (``sku.upserted`` with
  ``initial_stock``); an order line for ``q`` units with ``h`` on hand sells ``min(q, h)``
  (``order.created`` with the units sold, at the line's real time and price in GBP) and loses the
  rest; a line arriving at ``h == 0`` emits nothing. Stock is never negative;
* every ``snapshot_every_days`` days each SKU (staggered over the days) sends a ``stock.snapshot``
  with the true on-hand at the review time, as a periodic count would.

Closed loop: ``simulate(..., on_event=f)`` shows ``f`` every envelope as it is emitted, in
event-time order; ``f`` returns the SKUs to expedite at that event's time (an extra order of
``S - on_hand - on_order`` units, landing ``L`` days later), so a predictor under test can act on
what it has seen and nothing more.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from aurora_ray.evaluation.data import (
    TEST_FROM,
    CleaningReport,
    clean_demand,
    load_transactions,
    select_skus,
    split,
)
from aurora_ray.evaluation.metrics import Episodes

__all__ = [
    "DEFAULT_WARMUP",
    "Benchmark",
    "OnEvent",
    "Policy",
    "PolicyConfig",
    "Prepared",
    "SimulationResult",
    "StockoutStats",
    "build_benchmark",
    "episodes_of",
    "prepare_benchmark",
    "run_benchmark",
    "simulate",
    "size_policies",
    "stockout_stats",
    "write_ndjson",
]

DEFAULT_WARMUP: Final = timedelta(weeks=8)
"""How long the simulation runs before the test period by default: the scorer estimates demand
from the stream itself (72 h half-life), so it needs a history before it is judged."""

OnEvent = Callable[[Mapping[str, Any]], Iterable[str] | Mapping[str, int] | None]
"""Closed-loop hook: called with each emitted envelope (do not mutate it: it is the dict kept in
the result). It returns the SKUs to expedite at that event's time (a bare ``str`` is one SKU),
or a mapping ``{sku: units}`` of purchase orders to place at that time (a planner following
recommendations), or None/empty for none."""

_MS_PER_DAY: Final = 86_400_000
_MS_PER_H: Final = 3_600_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCY: Final = "GBP"

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PolicyConfig:
    """Ranges the per-SKU policy parameters are drawn from (uniformly; integers inclusive).

    The default safety factors were tuned once, on the whole UCI data with the default scope
    and seed, so that a few percent of SKU-days in the test period are out of stock (this tunes
    the simulated *environment*, never a predictor; see docs/evaluation.md).
    """

    lead_time_days: tuple[int, int] = (2, 5)
    safety_factor: tuple[float, float] = (2.0, 4.0)
    cycle_days: tuple[float, float] = (7.0, 21.0)
    review_days: int = 1
    history_days: int | None = None

    def __post_init__(self) -> None:
        lo, hi = self.lead_time_days
        if not 1 <= lo <= hi:
            raise ValueError("lead_time_days must be (lo, hi) with 1 <= lo <= hi")
        if not 0.0 <= self.safety_factor[0] <= self.safety_factor[1]:
            raise ValueError("safety_factor must be (lo, hi) with 0 <= lo <= hi")
        if not 0.0 < self.cycle_days[0] <= self.cycle_days[1]:
            raise ValueError("cycle_days must be (lo, hi) with 0 < lo <= hi")
        if self.review_days < 1:
            raise ValueError("review_days must be >= 1")


@dataclass(frozen=True)
class Policy:
    """The (s, S) policy of one SKU and the training statistics it was sized from."""

    sku: str
    reorder_point: int  # s: order when on hand + on order <= s
    order_up_to: int  # S: order up to this position; also the initial stock
    lead_time_days: int  # L: an order lands exactly L days after it is placed
    mean_daily: float  # mu, units per calendar day in training
    sd_daily: float  # sigma
    safety_factor: float  # z
    cycle_days: float  # C

    def __post_init__(self) -> None:
        if self.lead_time_days < 1:
            raise ValueError(f"{self.sku}: lead_time_days must be >= 1")
        if not 0 <= self.reorder_point < self.order_up_to:
            raise ValueError(f"{self.sku}: need 0 <= reorder_point < order_up_to")


def _utc(when: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _to_ms(when: datetime | pd.Timestamp) -> int:
    return int(_utc(when).value // 1_000_000)


def _ms_column(ts: pd.Series) -> I64:
    values: I64 = ts.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy(np.int64)
    return values


def _sku_rng(seed: int, sku: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(sku.encode("utf-8"))])


def size_policies(
    train: pd.DataFrame,
    skus: Sequence[str],
    *,
    until: datetime | None = None,
    config: PolicyConfig | None = None,
    seed: int = 0,
) -> dict[str, Policy]:
    """One (s, S) policy per SKU in ``skus``, from its demand in ``train`` only.

    Daily demand is summed per UTC calendar day, from the day of the SKU's first training sale
    up to ``until`` (exclusive; default: the day after the last training line, pass the start
    of the test period), days without a sale counting as 0. The lead time, safety factor and
    cycle length are drawn per SKU from ``config`` with a generator seeded by ``seed`` and the
    SKU code. A SKU without training sales raises :class:`ValueError`.
    """
    cfg = config or PolicyConfig()
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    if train.empty:
        raise ValueError("no training demand to size policies from")
    if until is not None:
        end_day = _utc(until).floor("D")
    else:
        end_day = train["ts"].max().floor("D") + pd.Timedelta(days=1)
    rows = train.loc[train["sku"].isin(wanted) & (train["ts"] < end_day), ["sku", "ts", "qty"]]
    daily = pd.DataFrame({"sku": rows["sku"], "day": rows["ts"].dt.floor("D"), "qty": rows["qty"]})
    per_day = daily.groupby(["sku", "day"], sort=False)["qty"].sum().reset_index()
    per_day["q2"] = per_day["qty"].astype(np.float64) ** 2
    first = per_day.groupby("sku")["day"].min()
    missing = [s for s in wanted if s not in first.index]
    if missing:
        raise ValueError(f"no training demand for {len(missing)} SKU(s), e.g. {missing[:5]}")
    if cfg.history_days is not None:
        cutoff = end_day - pd.Timedelta(days=cfg.history_days)
        first = first.clip(lower=cutoff)
        per_day = per_day.loc[per_day["day"] >= cutoff]
    sums = per_day.groupby("sku")[["qty", "q2"]].sum().reindex(first.index, fill_value=0)
    span_days = ((end_day - first) / pd.Timedelta(days=1)).clip(lower=1.0)
    mean = sums["qty"].astype(np.float64) / span_days
    var = (sums["q2"].astype(np.float64) / span_days - mean**2).clip(lower=0.0)

    out: dict[str, Policy] = {}
    cover = cfg.review_days
    for sku in wanted:
        rng = _sku_rng(seed, sku)
        lead = int(rng.integers(cfg.lead_time_days[0], cfg.lead_time_days[1] + 1))
        z = float(rng.uniform(*cfg.safety_factor))
        cycle = float(rng.uniform(*cfg.cycle_days))
        mu, sigma = float(mean[sku]), math.sqrt(float(var[sku]))
        horizon = lead + cover
        s = max(0, math.ceil(mu * horizon + z * sigma * math.sqrt(horizon)))
        up_to = s + max(1, math.ceil(mu * cycle))
        out[sku] = Policy(
            sku=sku,
            reorder_point=s,
            order_up_to=up_to,
            lead_time_days=lead,
            mean_daily=mu,
            sd_daily=sigma,
            safety_factor=z,
            cycle_days=cycle,
        )
    return out


@dataclass
class SimulationResult:
    """Everything :func:`simulate` produced: the stream and the ground truth.

    * ``events``: envelopes in emission (event-time) order, as dicts ready for NDJSON;
    * ``episodes``: ``sku, start, end`` (UTC): out of stock from ``start`` (the sale that took
      on-hand to 0) until ``end`` (the delivery that restocked it; NaT if still out at ``end``);
    * ``lost_sales``: one row per order line not served in full: ``ts, sku, invoice, requested,
      sold, lost``; ``lost_units`` is the total lost per SKU (every SKU in scope, 0 if none);
    * ``daily``: one row per SKU and UTC calendar day of the simulated period: ``on_hand_end``
      (at 24:00), ``on_hand_min`` (lowest at any instant of the day), ``out_of_stock``
      (``on_hand_min == 0``), ``lost_units`` and ``sold_units`` of the day;
    * ``purchase_orders``: ``placed, sku, qty, arrives, expedited, delivered`` for every
      replenishment order (``delivered`` is False if it lands at or after ``end``).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    policies: dict[str, Policy]
    events: list[dict[str, Any]]
    episodes: pd.DataFrame
    lost_sales: pd.DataFrame
    lost_units: dict[str, int]
    daily: pd.DataFrame
    purchase_orders: pd.DataFrame
    # Every change of on-hand (``ts_ms``, ``sku`` as an index into sorted(policies), ``on_hand``
    # after it) and the stock at ``start``: for time-weighted inventory.
    on_hand_changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    initial_on_hand: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    expedites_requested: int = 0
    expedites_placed: int = 0
    elapsed_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def episodes_of(result: SimulationResult) -> Episodes:
    """The ground-truth episodes as metric inputs (epoch seconds; an open episode ends at inf)."""
    ep = result.episodes
    start = ep["start"].astype("datetime64[ms, UTC]").astype("int64").to_numpy() / 1e3
    end = np.full(len(ep), np.inf)
    has_end = ~ep["end"].isna().to_numpy()
    end[has_end] = ep["end"][has_end].astype("datetime64[ms, UTC]").astype("int64").to_numpy() / 1e3
    return Episodes(sku=ep["sku"].astype(str).to_numpy(), start_s=start, end_s=end)


def _stamp(ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _stamps(ms: I64) -> list[str]:
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [f"{s}Z" for s in text.tolist()]


def simulate(
    demand: pd.DataFrame,
    policies: Mapping[str, Policy],
    start: datetime,
    end: datetime,
    *,
    tenant_id: str,
    on_event: OnEvent | None = None,
    warehouse: str = "UK",
    review_hour: int = 5,
    snapshot_every_days: int = 7,
    id_prefix: str = "eval",
    keep_events: bool = True,
    purchase_orders: bool = True,
    own_policy_until: datetime | None = None,
) -> SimulationResult:
    """Replay the order lines of ``demand`` in ``[start, end)`` against the SKUs' policies.

    Only SKUs in ``policies`` take part (their lines in ``demand``; other lines are ignored).
    Order of things at one instant: deliveries due, then snapshots and the daily review (at
    ``review_hour``), then order lines in the order of ``demand`` (clean_demand sorts by time,
    ties in file order). ``on_event`` sees every envelope right after it is emitted, including
    the initial ``sku.upserted``; SKUs it returns are expedited at that event's time
    (quantity ``S - on_hand - on_order``; nothing if that is <= 0). Raises :class:`ValueError`
    for a SKU it returns that has no policy.

    Event ids are deterministic and do not depend on the closed loop's decisions for the
    events both runs share: ``{id_prefix}-sku-{sku}``, ``{id_prefix}-o-{row}`` (row: position of
    the line in ``demand``), ``{id_prefix}-rcv-{sku}-{n}`` (n-th delivery of the SKU) and
    ``{id_prefix}-snap-{sku}-{day}`` (day index from the start). ``order_id`` is the invoice.
    With ``keep_events=False`` the envelopes are only passed to ``on_event`` (saves memory).
    With ``purchase_orders`` every order placed with the supplier is sent as it is placed
    (``stock.ordered`` with its quantity and ``expected_at``, the time it will land; id
    ``{id_prefix}-po-{sku}-{n}``, n-th order of the SKU), as a retailer's ERP would.

    ``own_policy_until``: from this instant on, the shop's own daily review orders nothing and
    only the hook's orders (a mapping returned by ``on_event``) replenish: the planner follows a
    method's recommendations instead of the (s, S) policy. None: the policy runs throughout.
    """
    started = time.perf_counter()
    uuid.UUID(tenant_id)  # a GUID, as ingest requires
    if not policies:
        raise ValueError("no policies: nothing to simulate")
    if not 0 <= review_hour < 24:
        raise ValueError("review_hour must be in 0..23")
    if snapshot_every_days < 0:
        raise ValueError("snapshot_every_days must be >= 0 (0: no snapshots)")
    start_ts, end_ts = _utc(start), _utc(end)
    if end_ts <= start_ts:
        raise ValueError("end must be after start")
    start_ms, end_ms = _to_ms(start_ts), _to_ms(end_ts)
    policy_until_ms = end_ms if own_policy_until is None else _to_ms(_utc(own_policy_until))

    skus = sorted(policies)
    index = {s: i for i, s in enumerate(skus)}
    n = len(skus)
    pols = [policies[s] for s in skus]
    reorder = [p.reorder_point for p in pols]
    up_to = [p.order_up_to for p in pols]
    lead_ms = [p.lead_time_days * _MS_PER_DAY for p in pols]
    on_hand = list(up_to)
    on_order = [0] * n

    # Order lines of the period, in time order (ties: input order).
    rows = np.arange(len(demand), dtype=np.int64)
    t_all = _ms_column(demand["ts"])
    in_scope = demand["sku"].isin(skus).to_numpy(dtype=bool)
    sel = rows[in_scope & (t_all >= start_ms) & (t_all < end_ms)]
    sel = sel[np.argsort(t_all[sel], kind="stable")]
    sale_t: list[int] = t_all[sel].tolist()
    sale_i: list[int] = [index[s] for s in demand["sku"].to_numpy(dtype=object)[sel].tolist()]
    sale_q: list[int] = demand["qty"].to_numpy(dtype=np.int64)[sel].tolist()
    sale_p: list[float] = demand["price"].to_numpy(dtype=np.float64)[sel].tolist()
    sale_inv: list[str] = [str(v) for v in demand["invoice"].to_numpy(dtype=object)[sel]]
    sale_row: list[int] = sel.tolist()
    sale_stamp = _stamps(np.asarray(sale_t, dtype=np.int64))
    n_sales = len(sale_t)

    # Review instants: every day at review_hour, from the first one at or after start.
    first_day_ms = (start_ms // _MS_PER_DAY) * _MS_PER_DAY
    first_tick = first_day_ms + review_hour * _MS_PER_H
    if first_tick < start_ms:
        first_tick += _MS_PER_DAY
    ticks = list(range(first_tick, end_ms, _MS_PER_DAY))
    snap_groups: list[list[int]] = []
    if snapshot_every_days:
        snap_groups = [[] for _ in range(snapshot_every_days)]
        for i in range(n):
            snap_groups[i % snapshot_every_days].append(i)

    events: list[dict[str, Any]] = []
    keep = keep_events
    hooked = on_event is not None
    pending: list[tuple[int, int, int, int]] = []  # (arrives, purchase order row, SKU, qty)
    po_placed: list[int] = []
    po_sku: list[int] = []
    po_qty: list[int] = []
    po_arrives: list[int] = []
    po_expedited: list[bool] = []
    po_delivered: list[bool] = []
    deliveries_of = [0] * n
    orders_of = [0] * n
    ch_t: list[int] = []  # every change of on-hand: time, SKU, on-hand after
    ch_i: list[int] = []
    ch_v: list[int] = []
    lost_t: list[int] = []
    lost_i: list[int] = []
    lost_inv: list[str] = []
    lost_req: list[int] = []
    lost_sold: list[int] = []
    ep_start: list[int | None] = [None] * n
    ep_sku: list[int] = []
    ep_t0: list[int] = []
    ep_t1: list[int] = []
    sold_t: list[int] = []
    sold_i: list[int] = []
    sold_q: list[int] = []
    counts = {
        "sku.upserted": 0,
        "order.created": 0,
        "stock.received": 0,
        "stock.snapshot": 0,
        "stock.ordered": 0,
    }
    requested = 0
    placed_expedites = 0

    def place(i: int, now: int, qty: int, expedited: bool) -> None:
        on_order[i] += qty
        arrives = now + lead_ms[i]
        po = len(po_placed)
        po_placed.append(now)
        po_sku.append(i)
        po_qty.append(qty)
        po_arrives.append(arrives)
        po_expedited.append(expedited)
        po_delivered.append(False)
        heapq.heappush(pending, (arrives, po, i, qty))
        if purchase_orders:
            counts["stock.ordered"] += 1
            emit(
                {
                    "tenant_id": tenant_id,
                    "event_type": "stock.ordered",
                    "payload": {
                        "sku": skus[i],
                        "warehouse": warehouse,
                        "qty": qty,
                        "expected_at": _stamp(arrives),
                    },
                    "event_id": f"{id_prefix}-po-{skus[i]}-{orders_of[i]}",
                    "occurred_at": _stamp(now),
                },
                now,
            )
            orders_of[i] += 1

    def react(event: dict[str, Any], now: int) -> None:
        nonlocal requested, placed_expedites
        if on_event is None:
            return
        chosen = on_event(event)
        if not chosen:
            return
        if isinstance(chosen, Mapping):
            for sku, units in chosen.items():
                i = index.get(sku)
                if i is None:
                    raise ValueError(f"on_event ordered {sku!r}, which has no policy")
                if units > 0:
                    place(i, now, int(units), False)
            return
        for sku in [chosen] if isinstance(chosen, str) else chosen:
            i = index.get(sku)
            if i is None:
                raise ValueError(f"on_event asked to expedite {sku!r}, which has no policy")
            requested += 1
            qty = up_to[i] - on_hand[i] - on_order[i]
            if qty > 0:
                place(i, now, qty, True)
                placed_expedites += 1

    def emit(event: dict[str, Any], now: int) -> None:
        if keep:
            events.append(event)
        if hooked:
            react(event, now)

    def deliver(upto_ms: int) -> None:
        while pending and pending[0][0] <= upto_ms:
            arrives, po, i, qty = heapq.heappop(pending)
            before = on_hand[i]
            on_hand[i] = before + qty
            on_order[i] -= qty
            po_delivered[po] = True
            ch_t.append(arrives)
            ch_i.append(i)
            ch_v.append(before + qty)
            opened = ep_start[i]
            if opened is not None:
                ep_sku.append(i)
                ep_t0.append(opened)
                ep_t1.append(arrives)
                ep_start[i] = None
            n_th = deliveries_of[i]
            deliveries_of[i] = n_th + 1
            counts["stock.received"] += 1
            emit(
                {
                    "tenant_id": tenant_id,
                    "event_type": "stock.received",
                    "payload": {"sku": skus[i], "warehouse": warehouse, "qty": qty},
                    "event_id": f"{id_prefix}-rcv-{skus[i]}-{n_th}",
                    "occurred_at": _stamp(arrives),
                },
                arrives,
            )

    # The catalogue, with the initial stock, at start.
    start_stamp = _stamp(start_ms)
    for i, sku in enumerate(skus):
        counts["sku.upserted"] += 1
        emit(
            {
                "tenant_id": tenant_id,
                "event_type": "sku.upserted",
                "payload": {"sku": sku, "warehouse": warehouse, "initial_stock": up_to[i]},
                "event_id": f"{id_prefix}-sku-{sku}",
                "occurred_at": start_stamp,
            },
            start_ms,
        )

    j = 0
    for tick in [*ticks, end_ms]:
        # Order lines before this review instant; deliveries due before each of them first.
        while j < n_sales and sale_t[j] < tick:
            now = sale_t[j]
            if pending and pending[0][0] <= now:
                deliver(now)
            i = sale_i[j]
            q = sale_q[j]
            h = on_hand[i]
            if h >= q:
                sold = q
            else:
                sold = h
                lost_t.append(now)
                lost_i.append(i)
                lost_inv.append(sale_inv[j])
                lost_req.append(q)
                lost_sold.append(h)
            if sold > 0:
                left = h - sold
                on_hand[i] = left
                ch_t.append(now)
                ch_i.append(i)
                ch_v.append(left)
                sold_t.append(now)
                sold_i.append(i)
                sold_q.append(sold)
                if left == 0:
                    ep_start[i] = now
                counts["order.created"] += 1
                emit(
                    {
                        "tenant_id": tenant_id,
                        "event_type": "order.created",
                        "payload": {
                            "order_id": sale_inv[j],
                            "sku": skus[i],
                            "warehouse": warehouse,
                            "qty": sold,
                            "price": sale_p[j],
                            "currency": _CURRENCY,
                        },
                        "event_id": f"{id_prefix}-o-{sale_row[j]}",
                        "occurred_at": sale_stamp[j],
                    },
                    now,
                )
            j += 1
        if tick >= end_ms:
            break
        deliver(tick)
        day = (tick - first_day_ms) // _MS_PER_DAY
        stamp = _stamp(tick)
        if snap_groups:
            for i in snap_groups[(-day) % snapshot_every_days]:
                counts["stock.snapshot"] += 1
                emit(
                    {
                        "tenant_id": tenant_id,
                        "event_type": "stock.snapshot",
                        "payload": {"sku": skus[i], "warehouse": warehouse, "on_hand": on_hand[i]},
                        "event_id": f"{id_prefix}-snap-{skus[i]}-{day}",
                        "occurred_at": stamp,
                    },
                    tick,
                )
        if tick < policy_until_ms:
            for i in range(n):
                position = on_hand[i] + on_order[i]
                if position <= reorder[i]:
                    place(i, tick, up_to[i] - position, False)
    deliver(end_ms - 1)

    # Ground truth tables.
    for i in range(n):
        opened = ep_start[i]
        if opened is not None:
            ep_sku.append(i)
            ep_t0.append(opened)
            ep_t1.append(-1)
    sku_arr = np.asarray(skus, dtype=object)
    episodes = _episodes_frame(sku_arr, ep_sku, ep_t0, ep_t1)
    lost_sales = pd.DataFrame(
        {
            "ts": _ms_to_ts(np.asarray(lost_t, dtype=np.int64)),
            "sku": pd.array(sku_arr[np.asarray(lost_i, dtype=np.int64)], dtype="string"),
            "invoice": pd.array(lost_inv, dtype="string"),
            "requested": np.asarray(lost_req, dtype=np.int64),
            "sold": np.asarray(lost_sold, dtype=np.int64),
        }
    )
    lost_sales["lost"] = lost_sales["requested"] - lost_sales["sold"]
    lost_per = np.zeros(n, dtype=np.int64)
    np.add.at(lost_per, np.asarray(lost_i, dtype=np.int64), lost_sales["lost"].to_numpy())
    daily = _daily_frame(
        sku_arr,
        np.asarray(up_to, dtype=np.int64),
        first_day_ms,
        end_ms,
        changes=(ch_t, ch_i, ch_v),
        lost=(lost_t, lost_i, lost_sales["lost"].to_numpy(np.int64)),
        sold=(sold_t, sold_i, sold_q),
    )
    purchase_orders = pd.DataFrame(
        {
            "placed": _ms_to_ts(np.asarray(po_placed, dtype=np.int64)),
            "sku": pd.array(sku_arr[np.asarray(po_sku, dtype=np.int64)], dtype="string"),
            "qty": np.asarray(po_qty, dtype=np.int64),
            "arrives": _ms_to_ts(np.asarray(po_arrives, dtype=np.int64)),
            "expedited": np.asarray(po_expedited, dtype=bool),
            "delivered": np.asarray(po_delivered, dtype=bool),
        }
    )
    return SimulationResult(
        start=start_ts,
        end=end_ts,
        policies={s: policies[s] for s in skus},
        events=events,
        episodes=episodes,
        lost_sales=lost_sales,
        lost_units=dict(zip(skus, lost_per.tolist(), strict=True)),
        daily=daily,
        purchase_orders=purchase_orders,
        on_hand_changes=pd.DataFrame(
            {
                "ts_ms": np.asarray(ch_t, dtype=np.int64),
                "sku": np.asarray(ch_i, dtype=np.int64),
                "on_hand": np.asarray(ch_v, dtype=np.int64),
            }
        ),
        initial_on_hand=np.asarray(up_to, dtype=np.int64),
        expedites_requested=requested,
        expedites_placed=placed_expedites,
        elapsed_s=time.perf_counter() - started,
        counts=counts,
    )


def _ms_to_ts(ms: I64) -> pd.Series:
    return pd.Series(pd.to_datetime(ms, unit="ms", utc=True)).astype("datetime64[ns, UTC]")


def _episodes_frame(
    sku_arr: NDArray[np.object_], ep_sku: list[int], ep_t0: list[int], ep_t1: list[int]
) -> pd.DataFrame:
    t1 = np.asarray(ep_t1, dtype=np.int64)
    end = _ms_to_ts(np.where(t1 < 0, 0, t1))
    end[t1 < 0] = pd.NaT
    frame = pd.DataFrame(
        {
            "sku": pd.array(sku_arr[np.asarray(ep_sku, dtype=np.int64)], dtype="string"),
            "start": _ms_to_ts(np.asarray(ep_t0, dtype=np.int64)),
            "end": end,
        }
    )
    return frame.sort_values(["start", "sku"], kind="stable").reset_index(drop=True)


def _daily_frame(
    sku_arr: NDArray[np.object_],
    initial: I64,
    first_day_ms: int,
    end_ms: int,
    *,
    changes: tuple[list[int], list[int], list[int]],
    lost: tuple[list[int], list[int], I64],
    sold: tuple[list[int], list[int], list[int]],
) -> pd.DataFrame:
    """Per SKU and day: on-hand at 24:00 and its minimum over the day, lost and sold units."""
    n = sku_arr.size
    n_days = max(1, -(-(end_ms - first_day_ms) // _MS_PER_DAY))
    t = np.asarray(changes[0], dtype=np.int64)
    i = np.asarray(changes[1], dtype=np.int64)
    v = np.asarray(changes[2], dtype=np.int64)
    key = i * n_days + (t - first_day_ms) // _MS_PER_DAY
    last = np.full(n * n_days, -1, dtype=np.int64)
    low = np.full(n * n_days, np.iinfo(np.int64).max, dtype=np.int64)
    if key.size:
        order = np.argsort(key, kind="stable")  # changes were logged in time order
        key_s, v_s = key[order], v[order]
        bounds = np.flatnonzero(np.diff(key_s)) + 1
        firsts = np.concatenate(([0], bounds))
        lasts = np.concatenate((bounds - 1, [key_s.size - 1]))
        last[key_s[firsts]] = v_s[lasts]
        low[key_s[firsts]] = np.minimum.reduceat(v_s, firsts)
    last_grid = last.reshape(n, n_days)
    low_grid = low.reshape(n, n_days)
    # Carry the last known value forward; before any change the SKU holds its initial stock.
    cols = np.where(last_grid >= 0, np.arange(n_days), -1)
    np.maximum.accumulate(cols, axis=1, out=cols)
    rows = np.arange(n)[:, None]
    end_grid = np.where(cols >= 0, last_grid[rows, np.maximum(cols, 0)], initial[:, None])
    start_grid = np.concatenate((initial[:, None], end_grid[:, :-1]), axis=1)
    min_grid = np.minimum(start_grid, low_grid)

    def per_day(times: list[int], idx: list[int], qty: Sequence[int] | I64) -> I64:
        grid = np.zeros(n * n_days, dtype=np.int64)
        if len(times):
            k = (
                np.asarray(idx, dtype=np.int64) * n_days
                + (np.asarray(times, dtype=np.int64) - first_day_ms) // _MS_PER_DAY
            )
            np.add.at(grid, k, np.asarray(qty, dtype=np.int64))
        return grid

    day_ms = first_day_ms + np.arange(n_days, dtype=np.int64) * _MS_PER_DAY
    return pd.DataFrame(
        {
            "sku": pd.array(np.repeat(sku_arr, n_days), dtype="string"),
            "day": _ms_to_ts(np.tile(day_ms, n)),
            "on_hand_end": end_grid.ravel(),
            "on_hand_min": min_grid.ravel(),
            "out_of_stock": min_grid.ravel() == 0,
            "lost_units": per_day(*lost),
            "sold_units": per_day(*sold),
        }
    )


@dataclass(frozen=True)
class StockoutStats:
    """Stock-out figures of a simulation over a window of whole UTC days.

    ``rate`` is the share of SKU-days with any moment at zero on-hand; ``time_share`` the share
    of SKU-time spent at zero; ``episodes`` counts episodes starting in the window.
    """

    skus: int
    days: int
    sku_days: int
    oos_sku_days: int
    rate: float
    time_share: float
    episodes: int
    lost_units: int
    lost_lines: int
    sold_units: int
    # Inventory and ordering over the window: units on hand summed over the SKUs and averaged
    # over time (time-weighted), units ordered and purchase orders placed in the window.
    mean_on_hand: float = math.nan
    units_ordered: int = 0
    orders_placed: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "skus": self.skus,
            "days": self.days,
            "sku_days": self.sku_days,
            "oos_sku_days": self.oos_sku_days,
            "rate": self.rate,
            "time_share": self.time_share,
            "episodes": self.episodes,
            "lost_units": self.lost_units,
            "lost_lines": self.lost_lines,
            "sold_units": self.sold_units,
            "mean_on_hand": self.mean_on_hand,
            "units_ordered": self.units_ordered,
            "orders_placed": self.orders_placed,
        }


def stockout_stats(
    result: SimulationResult, start: datetime | None = None, end: datetime | None = None
) -> StockoutStats:
    """Stock-out figures over the days from ``start`` (floored to a day) to ``end``.

    Defaults: the whole simulated period. For the protocol, ``start`` is the start of the test
    period, so the warm-up never counts.
    """
    lo = _utc(start).floor("D") if start is not None else result.start.floor("D")
    hi = _utc(end) if end is not None else result.end
    daily = result.daily
    window = daily.loc[(daily["day"] >= lo) & (daily["day"] < hi)]
    n_skus = len(result.policies)
    n_days = int(window["day"].nunique())
    sku_days = len(window)
    oos = int(window["out_of_stock"].sum())
    ep = result.episodes
    ep_start = ep["start"]
    ep_end = ep["end"].fillna(result.end).clip(upper=hi)
    overlap = (ep_end - ep_start.clip(lower=lo)).clip(lower=pd.Timedelta(0))
    total_s = (hi - max(lo, result.start)).total_seconds() * n_skus
    lost = result.lost_sales
    in_lost = (lost["ts"] >= lo) & (lost["ts"] < hi)
    orders = result.purchase_orders
    placed = orders["placed"] if len(orders) else pd.Series([], dtype="datetime64[ns, UTC]")
    in_orders = (placed >= lo) & (placed < hi)
    return StockoutStats(
        skus=n_skus,
        days=n_days,
        sku_days=sku_days,
        oos_sku_days=oos,
        rate=oos / sku_days if sku_days else math.nan,
        time_share=float(overlap.dt.total_seconds().sum()) / total_s if total_s > 0 else math.nan,
        episodes=int(((ep_start >= lo) & (ep_start < hi)).sum()),
        lost_units=int(lost.loc[in_lost, "lost"].sum()),
        lost_lines=int(in_lost.sum()),
        sold_units=int(window["sold_units"].sum()),
        mean_on_hand=_mean_on_hand(result, _to_ms(max(lo, result.start)), _to_ms(hi)),
        units_ordered=int(orders.loc[in_orders, "qty"].sum()) if len(orders) else 0,
        orders_placed=int(in_orders.sum()),
    )


def _mean_on_hand(result: SimulationResult, lo_ms: int, hi_ms: int) -> float:
    """Units on hand summed over the SKUs, time-weighted over ``[lo_ms, hi_ms)``."""
    if hi_ms <= lo_ms or result.initial_on_hand.size == 0:
        return math.nan
    n = result.initial_on_hand.size
    changes = result.on_hand_changes
    start_ms = _to_ms(result.start)
    # Each SKU's piecewise-constant on-hand: its initial stock from the start, then each change.
    t = np.concatenate((np.full(n, start_ms, np.int64), changes["ts_ms"].to_numpy(np.int64)))
    i = np.concatenate((np.arange(n, dtype=np.int64), changes["sku"].to_numpy(np.int64)))
    v = np.concatenate((result.initial_on_hand, changes["on_hand"].to_numpy(np.int64)))
    order = np.lexsort((t, i))  # by SKU, then time (stable: changes were logged in time order)
    t, i, v = t[order], i[order], v[order]
    until = np.r_[t[1:], hi_ms]
    until[np.r_[i[1:] != i[:-1], True]] = hi_ms  # a SKU's last value holds to the end
    overlap = np.clip(until, lo_ms, hi_ms) - np.clip(t, lo_ms, hi_ms)
    return float((v.astype(np.float64) * overlap).sum() / (hi_ms - lo_ms))


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def write_ndjson(events: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write envelopes as NDJSON (one compact object per line, UTF-8); returns the count.

    A ``.gz`` suffix writes gzip. The lines are what ``POST /v1/ingest/events`` accepts.
    """
    path = Path(path)
    count = 0
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="\n") as gz:
            for event in events:
                gz.write(_encode(event))
                gz.write("\n")
                count += 1
        return count
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for event in events:
            fh.write(_encode(event))
            fh.write("\n")
            count += 1
    return count


@dataclass
class Benchmark:
    """The whole protocol on one file: cleaning, split, scope, policies and the simulation."""

    report: CleaningReport
    train: pd.DataFrame
    test: pd.DataFrame
    skus: list[str]
    policies: dict[str, Policy]
    result: SimulationResult
    test_stats: StockoutStats
    test_from: pd.Timestamp


@dataclass(frozen=True)
class Prepared:
    """Everything a simulation of the protocol needs before it runs: the cleaned demand, the
    split, the scope and the policies, and the simulated period. One of these serves any number
    of closed-loop runs (a planner under test may read it: the perfect-foresight ceiling reads
    the future demand)."""

    demand: pd.DataFrame
    report: CleaningReport
    train: pd.DataFrame
    test: pd.DataFrame
    skus: list[str]
    policies: dict[str, Policy]
    test_from: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp


def prepare_benchmark(
    path: Path,
    *,
    test_from: datetime = TEST_FROM,
    warmup: timedelta = DEFAULT_WARMUP,
    end: datetime | None = None,
    min_active_days: int = 30,
    config: PolicyConfig | None = None,
    seed: int = 0,
) -> Prepared:
    """Load, clean (caps fitted before ``test_from``), split, scope and size the policies.

    The simulated period runs from ``test_from - warmup`` to ``end`` (default: midnight after
    the last order line)."""
    cut = _utc(test_from)
    if end is not None and _utc(end) <= cut:
        raise ValueError(f"end ({end}) must be after test_from ({test_from})")
    demand, report = clean_demand(load_transactions(path), cap_fit_before=cut.to_pydatetime())
    train, test = split(demand, cut.to_pydatetime())
    skus = select_skus(train, min_active_days)
    policies = size_policies(train, skus, until=cut.to_pydatetime(), config=config, seed=seed)
    stop = _utc(end) if end is not None else demand["ts"].max().floor("D") + pd.Timedelta(days=1)
    return Prepared(
        demand=demand,
        report=report,
        train=train,
        test=test,
        skus=skus,
        policies=policies,
        test_from=cut,
        start=cut - pd.Timedelta(warmup),
        end=stop,
    )


def run_benchmark(
    prepared: Prepared,
    *,
    tenant_id: str,
    on_event: OnEvent | None = None,
    keep_events: bool = True,
    purchase_orders: bool = True,
    own_policy_until: datetime | None = None,
) -> Benchmark:
    """Simulate the prepared protocol; ``test_stats`` covers ``[test_from, end)`` only.

    ``own_policy_until`` (e.g. ``test_from``): from then on the shop orders only what
    ``on_event`` tells it to (see :func:`simulate`)."""
    result = simulate(
        prepared.demand,
        prepared.policies,
        prepared.start.to_pydatetime(),
        prepared.end.to_pydatetime(),
        tenant_id=tenant_id,
        on_event=on_event,
        keep_events=keep_events,
        purchase_orders=purchase_orders,
        own_policy_until=own_policy_until,
    )
    stats = stockout_stats(result, prepared.test_from.to_pydatetime(), prepared.end.to_pydatetime())
    return Benchmark(
        report=prepared.report,
        train=prepared.train,
        test=prepared.test,
        skus=prepared.skus,
        policies=prepared.policies,
        result=result,
        test_stats=stats,
        test_from=prepared.test_from,
    )


def build_benchmark(
    path: Path,
    *,
    tenant_id: str,
    test_from: datetime = TEST_FROM,
    warmup: timedelta = DEFAULT_WARMUP,
    end: datetime | None = None,
    min_active_days: int = 30,
    config: PolicyConfig | None = None,
    seed: int = 0,
    on_event: OnEvent | None = None,
    keep_events: bool = True,
    purchase_orders: bool = True,
    own_policy_until: datetime | None = None,
) -> Benchmark:
    """Load, clean (caps fitted before ``test_from``), split, scope, size and simulate.

    The simulation runs from ``test_from - warmup`` (stock starts at S then) to ``end``
    (default: midnight after the last order line), and ``test_stats`` covers ``[test_from,
    end)`` only. ``own_policy_until``: see :func:`simulate`.
    """
    prepared = prepare_benchmark(
        path,
        test_from=test_from,
        warmup=warmup,
        end=end,
        min_active_days=min_active_days,
        config=config,
        seed=seed,
    )
    return run_benchmark(
        prepared,
        tenant_id=tenant_id,
        on_event=on_event,
        keep_events=keep_events,
        purchase_orders=purchase_orders,
        own_policy_until=own_policy_until,
    )
