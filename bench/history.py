"""A realistic, seeded event history for the backfill and retrain scenarios, generated with numpy.

What :func:`generate_history` simulates, per SKU (every draw from one seeded generator):

* a demand rate from a log-normal spread (a few fast SKUs, most slow), orders at uniform random
  times (a Poisson process) with 1–3 units each, over ``days`` of event time from ``start_s``;
* a periodic-review replenishment: every ``review_days`` (each SKU at its own phase) a
  ``stock.received`` tops the stock up to the SKU's order-up-to level, which covers 0.9–1.7 of
  an average period's demand; a ``stock.snapshot`` sets that level at the start;
* lost sales: an order that meets an empty shelf is not placed, the order that empties it takes
  what is left, so a SKU stays out of stock at 0 until its next receipt.

All events are sorted by event time (monotone over the whole file) and cut to exactly ``n``; the
cut shortens the history a little. Lines are built column-wise with pyarrow (no per-line Python),
so 5 M lines take seconds. Event ids are ``<prefix>-<n>``, the same for the same seed, so a second
backfill of the same file finds every event already applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["History", "generate_history"]

_T0_S = 1_748_854_800.0  # 2025-06-02T09:00:00Z, as bench.common's streams
_WAREHOUSES = ("DE-HAM", "DE-BER", "FR-PAR", "NL-AMS")
_DAY_S = 86_400.0
_OVERSHOOT = 1.25  # demand is drawn for a longer window, then the history is cut to n events


@dataclass
class History:
    """The NDJSON bytes of the history (one event a line, ``\\n``-terminated) and its shape."""

    data: pa.Buffer
    events: int
    orders: int
    receipts: int
    snapshots: int
    skus: int
    first_s: float
    last_s: float
    stockout_share: float  # of SKU-time out of stock, over the history's span
    on_hand: dict[tuple[str, str], int]  # (sku, warehouse) -> on hand after the last event
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def span_days(self) -> float:
        return (self.last_s - self.first_s) / _DAY_S

    def write(self, path: Path) -> Path:
        with open(path, "wb") as out:
            out.write(memoryview(self.data))
        return path

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "orders": self.orders,
            "receipts": self.receipts,
            "snapshots": self.snapshots,
            "skus": self.skus,
            "span_days": round(self.span_days, 2),
            "stockout_share": round(self.stockout_share, 4),
            **self.stats,
        }


def _strings(values: Any) -> pa.Array:
    return pc.cast(pa.array(values), pa.large_string())


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars (pyarrow, no per-row Python)."""
    cols = [
        p if isinstance(p, pa.Array | pa.ChunkedArray) else pa.scalar(p, pa.large_string())
        for p in parts
    ]
    return pc.binary_join_element_wise(*cols, pa.scalar("", pa.large_string()))


def _iso(ts_ms: np.ndarray[Any, Any]) -> pa.Array:
    text = np.datetime_as_string(ts_ms.astype("datetime64[ms]")).astype("S23")
    return pc.cast(pa.array(text, pa.binary(23)), pa.large_string())


def generate_history(
    tenant_id: str,
    n: int,
    *,
    skus: int | None = None,
    days: float = 75.0,
    review_days: float = 7.0,
    seed: int = 7,
    start_s: float = _T0_S,
    id_prefix: str | None = None,
) -> History:
    """Exactly ``n`` events (``n`` ≥ 2 × SKUs): a snapshot per SKU, then orders and receipts.

    ``skus`` defaults to one SKU per 250 events (at most 20 000, at least 20)."""
    s_count = skus or int(min(20_000, max(20, n // 250)))
    if n < 2 * s_count:
        raise ValueError(f"{n} events are too few for {s_count} SKUs (need 2 per SKU)")
    rng = np.random.default_rng(seed)
    prefix = id_prefix or f"h{seed}"

    # Per SKU: demand weight (log-normal: a long tail of slow SKUs, a few fast), review phase,
    # order-up-to level in units of the average period's demand, price.
    weight = rng.lognormal(0.0, 1.2, s_count)
    weight /= weight.sum()
    phase = rng.uniform(0.0, review_days, s_count)
    cover = rng.uniform(0.9, 1.7, s_count)
    price_cents = np.round(rng.lognormal(3.0, 0.8, s_count) * 100).clip(50, 9_999_999)

    gen_days = days * _OVERSHOOT
    demand = int((n - s_count) * _OVERSHOOT)
    per_sku = rng.multinomial(demand, weight)
    sku = np.repeat(np.arange(s_count, dtype=np.int64), per_sku)
    t_days = rng.uniform(0.0, gen_days, demand)
    qty = rng.choice(np.array([1, 2, 3], np.int64), size=demand, p=[0.7, 0.2, 0.1])
    mean_qty = 1.4
    rate_per_day = per_sku / gen_days
    level = np.maximum(1, np.ceil(rate_per_day * review_days * mean_qty * cover)).astype(np.int64)

    # Periods between reviews: the boundaries of SKU s lie at j * review_days - phase[s].
    period = np.floor((t_days + phase[sku]) / review_days).astype(np.int64)
    periods = int(np.floor((gen_days + review_days) / review_days)) + 1
    group = sku * periods + period
    order = np.lexsort((t_days, group))
    sku, t_days, qty, period, group = (
        sku[order],
        t_days[order],
        qty[order],
        period[order],
        group[order],
    )
    # Units asked within each (SKU, period) before each order; lost sales beyond the level.
    cum = np.cumsum(qty)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    before_group = np.repeat(cum[starts] - qty[starts], np.diff(np.r_[starts, len(group)]))
    asked_before = cum - qty - before_group
    room = level[sku] - asked_before
    placed = room > 0
    qty = np.minimum(qty, room)
    sku, t_days, qty = sku[placed], t_days[placed], qty[placed]
    period, group = period[placed], group[placed]
    left = level[sku] - (asked_before[placed] + qty)  # on hand after the order
    empties = left == 0

    # Receipts at each boundary: what the period before sold (the shelf is back at its level).
    sold = np.bincount(group, weights=qty, minlength=s_count * periods).reshape(s_count, periods)
    j = np.arange(1, periods)
    at_days = j[None, :] * review_days - phase[:, None]
    r_mask = (at_days > 0) & (at_days < gen_days) & (sold[:, :-1] > 0)
    r_sku = np.broadcast_to(np.arange(s_count)[:, None], at_days.shape)[r_mask]
    r_days = at_days[r_mask]
    r_qty = sold[:, :-1][r_mask].astype(np.int64)

    # All events in event time (snapshots first), cut to n.
    kind = np.r_[
        np.zeros(s_count, np.int8), np.ones(len(sku), np.int8), np.full(len(r_sku), 2, np.int8)
    ]
    all_sku = np.r_[np.arange(s_count), sku, r_sku]
    all_ms = np.r_[
        np.full(s_count, start_s * 1000 - 1000),
        start_s * 1000 + t_days * _DAY_S * 1000,
        start_s * 1000 + r_days * _DAY_S * 1000,
    ].astype(np.int64)
    all_qty = np.r_[level, qty, r_qty]
    if len(all_ms) < n:
        raise RuntimeError(f"generated {len(all_ms)} events, fewer than {n}")
    by_time = np.argsort(all_ms, kind="stable")[:n]
    kind, all_sku, all_ms, all_qty = (
        kind[by_time],
        all_sku[by_time],
        all_ms[by_time],
        all_qty[by_time],
    )
    last_s = float(all_ms[-1]) / 1000.0
    # The truth after folding every event: the snapshot's level, plus receipts, minus orders.
    signed = np.where(kind == 1, -all_qty, all_qty)
    final = np.bincount(all_sku, weights=signed, minlength=s_count).astype(np.int64)

    # Share of SKU-time out of stock within the kept span: from each emptying order to the
    # SKU's next boundary (or the end).
    end_days = (last_s - start_s) / _DAY_S
    out_from = t_days[empties]
    out_to = np.minimum((period[empties] + 1) * review_days - phase[sku[empties]], end_days)
    out_days = np.clip(out_to - out_from, 0.0, None)[out_from < end_days].sum()
    share = float(out_days / (s_count * max(end_days, 1e-9)))

    lines = _format(tenant_id, prefix, kind, all_sku, all_ms, all_qty, price_cents)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + 2]
    data = lines.buffers()[2].slice(int(offsets[0]))
    counts = np.bincount(kind, minlength=3)
    return History(
        data=data,
        events=n,
        orders=int(counts[1]),
        receipts=int(counts[2]),
        snapshots=int(counts[0]),
        skus=s_count,
        first_s=start_s,
        last_s=last_s,
        stockout_share=share,
        on_hand={
            (f"SKU-{s:07d}", _WAREHOUSES[s % 4]): int(v) for s, v in enumerate(final.tolist())
        },
        stats={"stockouts": int(np.count_nonzero(out_from < end_days))},
    )


def _format(
    tenant_id: str,
    prefix: str,
    kind: np.ndarray[Any, Any],
    sku: np.ndarray[Any, Any],
    ts_ms: np.ndarray[Any, Any],
    qty: np.ndarray[Any, Any],
    price_cents: np.ndarray[Any, Any],
) -> pa.Array:
    """The lines, in the given order, as one large_string array whose values end in ``\\n``."""
    n = len(kind)
    s_count = len(price_cents)
    sku_names = _strings([f"SKU-{s:07d}" for s in range(s_count)])
    houses = _strings([_WAREHOUSES[s % 4] for s in range(s_count)])
    prices = _strings([f"{c / 100:.2f}" for c in price_cents])
    head = f'{{"tenant_id":"{tenant_id}","event_id":"{prefix}-'
    parts, positions = [], []
    for code, (event_type, tail) in enumerate(
        (
            ("stock.snapshot", '","on_hand":'),
            ("order.created", None),
            ("stock.received", '","qty":'),
        )
    ):
        where = np.flatnonzero(kind == code)
        if not len(where):
            continue
        index = pa.array(sku[where])
        ids, qty_col = _strings(where), _strings(qty[where])
        common = [head, ids, '","occurred_at":"', _iso(ts_ms[where]), 'Z","event_type":"',
                  event_type, '","payload":{"sku":"', sku_names.take(index), '","warehouse":"',
                  houses.take(index)]  # fmt: skip
        if tail is not None:
            parts.append(_join(*common, tail, qty_col, "}}\n"))
        else:
            parts.append(_join(
                *common, '","order_id":"o-', ids, '","qty":', qty_col, ',"price":',
                prices.take(index), ',"currency":"EUR","channel":"web"}}\n',
            ))  # fmt: skip
        positions.append(where)
    lines = pa.concat_arrays(parts).take(pa.array(np.argsort(np.concatenate(positions))))
    assert len(lines) == n  # noqa: S101
    return lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
