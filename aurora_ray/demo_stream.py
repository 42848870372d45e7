"""A deterministic, simulated order/stock event stream for demos, load tests and checks.

Why this module exists: a live demo (and the bench) needs a stream that looks like a real tenant
(hundreds of SKUs in several warehouses, with steady, daily-seasonal and lumpy demand and
restocking) *and* that reliably raises stock-out alerts within a minute of wall time. Customer
data cannot be shipped and uniform random noise never exercises the scorer, so this module
simulates a small retail operation in EVENT time and writes what happens as ordinary ingest
envelopes (``sku.upserted``, ``order.created``, ``stock.received``, ``stock.snapshot``).

How: the simulation advances in fixed steps of ``event_hours_per_step`` hours of event time.
In each step every SKU that still has stock receives Poisson-distributed orders at its current
rate (seasonal SKUs follow a daily cosine), each order sells at most what is left (a stock-out
loses the rest of the demand, so stock never goes negative), ~1 % of the events are
``stock.snapshot`` records carrying the true on-hand, and restocking SKUs follow an (s, S) policy
reviewed at the end of every step, with deliveries arriving ``lead_time_h`` later. "Draining"
SKUs sell fast from an initial stock that covers only 1.5-2.3 days and are never restocked, so
they run out during a demo and must be alerted. Each step is computed with a handful of numpy calls
and only the final dict building is per event.

With the default catalogue (600 SKUs) the stream carries ~1 600-1 700 events per event-hour on
average (1 400-2 000 over the daily cycle, less once the draining SKUs are empty), so 120 000
events (a 60-second demo at 2 000 events/s) span ~3 days of event time (70-82 h over seeds 1-8);
every draining SKU is alerted by the scorer within ~30 s of such a demo and empty by ~55 s.

Everything is deterministic for a given catalogue, start, step and seed: event ids are
``f"{id_prefix}-{n}"`` and the sequence does not depend on how :meth:`DemoStream.next_events`
calls are sized. ``DemoStream.on_hand`` is the true stock after the events returned so far, so a
caller can compare it with what the system inferred.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PATTERNS",
    "DemoSku",
    "DemoStream",
    "Pattern",
    "demo_catalogue",
    "mean_order_size",
    "to_ndjson",
]

Pattern = Literal["steady", "seasonal", "intermittent", "draining"]
PATTERNS: Final[tuple[Pattern, ...]] = ("steady", "seasonal", "intermittent", "draining")
_MIX: Final = (0.40, 0.25, 0.20, 0.15)  # share of each pattern, in PATTERNS order

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

# Regular orders (steady, seasonal, draining): mostly 1-3 units.
_REGULAR_SIZES: Final[I64] = np.array([1, 2, 3, 4, 5, 6], dtype=np.int64)
_REGULAR_PROBS: Final[F64] = np.array([0.60, 0.25, 0.10, 0.02, 0.015, 0.015])
_REGULAR_CDF: Final[F64] = np.cumsum(_REGULAR_PROBS)
_REGULAR_MEAN: Final = float(_REGULAR_SIZES @ _REGULAR_PROBS)
_REGULAR_M2: Final = float((_REGULAR_SIZES**2) @ _REGULAR_PROBS)
# Intermittent orders are rare and lumpy: 2 + Geometric(p) units (3, 4, ...; mean 8).
_LUMPY_P: Final = 1.0 / 6.0
_LUMPY_MEAN: Final = 2.0 + 1.0 / _LUMPY_P
_LUMPY_M2: Final = (1.0 - _LUMPY_P) / _LUMPY_P**2 + _LUMPY_MEAN**2

_CATEGORIES: Final = (
    "beverages", "snacks", "household", "personal-care", "frozen", "pet", "baby", "electronics",
)  # fmt: skip
_BRANDS: Final = (
    "Acme", "Borealis", "Cobalt", "Dunmore", "Evergreen", "Fjord",
    "Granite", "Helios", "Ivory", "Juniper", "Kestrel", "Lumen",
)  # fmt: skip
_CURRENCY_BY_COUNTRY: Final = {
    "US": "USD", "GB": "GBP", "UK": "GBP", "CH": "CHF", "CA": "CAD", "AU": "AUD", "JP": "JPY",
    "PL": "PLN", "SE": "SEK", "DK": "DKK", "NO": "NOK", "CZ": "CZK", "MX": "MXN", "BR": "BRL",
}  # fmt: skip
_WAREHOUSE_RE: Final = re.compile(r"^[^@\s]{1,64}$")

_ORDER: Final = 0
_RECEIVED: Final = 1
_SNAPSHOT: Final = 2
_MS_PER_H: Final = 3_600_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def mean_order_size(pattern: Pattern) -> tuple[float, float]:
    """(E[Q], E[Q^2]) of the order size of a pattern: units per order and its second moment."""
    if pattern == "intermittent":
        return _LUMPY_MEAN, _LUMPY_M2
    return _REGULAR_MEAN, _REGULAR_M2


@dataclass(frozen=True)
class DemoSku:
    """One SKU in one warehouse and the demand/restock behaviour the simulator gives it.

    ``base_rate_per_h`` is the mean demand in units per event-hour (seasonal SKUs swing around it
    by ``seasonal_amplitude`` over a day, peaking at ``peak_hour_utc``). A SKU restocks when
    ``order_up_to > 0``: when on-hand plus on-order falls to ``reorder_point`` it orders up to
    ``order_up_to``, delivered ``lead_time_h`` later. Draining SKUs have ``order_up_to == 0``.
    """

    sku: str
    warehouse: str
    pattern: Pattern
    base_rate_per_h: float
    price: float
    initial_stock: int
    reorder_point: int
    order_up_to: int
    lead_time_h: float
    category: str
    brand: str
    currency: str = "EUR"
    seasonal_amplitude: float = 0.0
    peak_hour_utc: float = 18.0

    @property
    def key(self) -> str:
        """The state key of the SKU, ``sku@warehouse``."""
        return f"{self.sku}@{self.warehouse}"

    @property
    def restocks(self) -> bool:
        return self.order_up_to > 0

    @property
    def order_rate_per_h(self) -> float:
        """Mean number of orders per event-hour."""
        return self.base_rate_per_h / mean_order_size(self.pattern)[0]


def _currency_for(warehouse: str) -> str:
    return _CURRENCY_BY_COUNTRY.get(warehouse.split("-", 1)[0].upper(), "EUR")


def _split_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Largest-remainder split of n into parts proportional to shares (sums to exactly n)."""
    raw = [n * s / sum(shares) for s in shares]
    counts = [math.floor(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def demo_catalogue(
    n_skus: int = 600, warehouses: tuple[str, ...] = ("DE-HAM", "US-NYC"), seed: int = 7
) -> list[DemoSku]:
    """``n_skus`` SKUs in total, dealt round-robin over ``warehouses``, deterministic for a seed.

    The mix is 40 % steady, 25 % seasonal, 20 % intermittent and 15 % draining (exact counts by
    largest remainder). Regular SKUs average ~3.4 orders/h (~5.6 units/h), intermittent ones
    0.12-0.35 orders/h of ~8 units, draining ones ~5 orders/h with an initial stock covering
    36-56 h of demand and no restocking. Restocking SKUs keep a reorder point covering the lead
    time (12-36 h) plus 60-96 h of demand (1-2 weeks for the lumpy intermittent ones) plus two
    standard deviations, so their stock rarely falls below the scorer's 48 h horizon and they
    seldom run out or alert.
    """
    if n_skus < 1:
        raise ValueError("n_skus must be at least 1")
    if not warehouses:
        raise ValueError("at least one warehouse is needed")
    for wh in warehouses:
        if not _WAREHOUSE_RE.match(wh):
            raise ValueError(f"invalid warehouse {wh!r}: 1-64 characters, no '@' or whitespace")
    rng = np.random.default_rng(seed)
    counts = _split_counts(n_skus, _MIX)
    kinds = rng.permutation(np.repeat(np.arange(len(PATTERNS)), counts))

    regular_orders = np.clip(rng.lognormal(math.log(3.0), 0.5, n_skus), 0.5, 12.0)
    lumpy_orders = rng.uniform(0.12, 0.35, n_skus)
    draining_orders = np.clip(rng.lognormal(math.log(5.0), 0.2, n_skus), 3.5, 7.0)
    prices = np.round(np.clip(rng.lognormal(math.log(18.0), 0.8, n_skus), 0.99, 499.0), 2)
    categories = rng.integers(0, len(_CATEGORIES), n_skus)
    brands = rng.integers(0, len(_BRANDS), n_skus)
    lead_times = rng.integers(12, 37, n_skus).astype(np.float64)
    safety_h = rng.uniform(60.0, 96.0, n_skus)
    cycle_h = rng.uniform(48.0, 120.0, n_skus)
    slow_safety_h = rng.uniform(168.0, 336.0, n_skus)  # intermittent: 1-2 weeks of cover
    slow_cycle_h = rng.uniform(168.0, 336.0, n_skus)
    fill = rng.uniform(0.3, 1.0, n_skus)
    cover_h = rng.uniform(36.0, 56.0, n_skus)
    amplitudes = rng.uniform(0.5, 0.85, n_skus)
    peaks = rng.uniform(11.0, 21.0, n_skus)

    width = max(5, len(str(n_skus)))
    out: list[DemoSku] = []
    for i in range(n_skus):
        pattern = PATTERNS[int(kinds[i])]
        warehouse = warehouses[i % len(warehouses)]
        size_mean, size_m2 = mean_order_size(pattern)
        if pattern == "intermittent":
            orders_h = float(lumpy_orders[i])
        elif pattern == "draining":
            orders_h = float(draining_orders[i])
        else:
            orders_h = float(regular_orders[i])
        rate = round(orders_h * size_mean, 4)
        if pattern == "draining":
            initial = max(1, round(rate * float(cover_h[i])))
            rop, up_to, lead = 0, 0, 0.0
        else:
            lead = float(lead_times[i])
            slow = pattern == "intermittent"
            cover = float(slow_safety_h[i] if slow else safety_h[i])
            cycle = float(slow_cycle_h[i] if slow else cycle_h[i])
            sd_lead = math.sqrt(orders_h * size_m2 * lead)
            rop = math.ceil(rate * (lead + cover) + 2.0 * sd_lead)
            up_to = rop + max(1, math.ceil(rate * cycle))
            initial = rop + round(float(fill[i]) * (up_to - rop))
        seasonal = pattern == "seasonal"
        out.append(
            DemoSku(
                sku=f"SKU-{i + 1:0{width}d}",
                warehouse=warehouse,
                pattern=pattern,
                base_rate_per_h=rate,
                price=float(prices[i]),
                initial_stock=int(initial),
                reorder_point=int(rop),
                order_up_to=int(up_to),
                lead_time_h=lead,
                category=_CATEGORIES[int(categories[i])],
                brand=_BRANDS[int(brands[i])],
                currency=_currency_for(warehouse),
                seasonal_amplitude=round(float(amplitudes[i]), 3) if seasonal else 0.0,
                peak_hour_utc=round(float(peaks[i]), 2) if seasonal else 18.0,
            )
        )
    return out


def _format_ms(ms: I64) -> list[str]:
    stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [f"{s}Z" for s in stamps.tolist()]


class DemoStream:
    """Simulates the catalogue in event time and hands out its events in order.

    ``event_hours_per_step`` is the simulation step: demand rates are held constant within a
    step, restock reviews happen at its end and deliveries land at the start of a step. It does
    not set how much event time an event takes; that follows from the SKUs' rates (about
    2.2 s of event time per event for the default catalogue).
    """

    def __init__(
        self,
        catalogue: Sequence[DemoSku],
        tenant_id: str,
        start: datetime,
        event_hours_per_step: float = 0.25,
        seed: int = 7,
        *,
        snapshot_fraction: float = 0.01,
        id_prefix: str = "demo",
    ) -> None:
        if not catalogue:
            raise ValueError("the catalogue is empty")
        keys = [s.key for s in catalogue]
        if len(set(keys)) != len(keys):
            raise ValueError("the catalogue has duplicate sku@warehouse keys")
        uuid.UUID(tenant_id)  # raises ValueError unless a GUID
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if not 0.0 <= snapshot_fraction < 0.5:
            raise ValueError("snapshot_fraction must be in [0, 0.5)")
        dt_ms = round(event_hours_per_step * _MS_PER_H)
        if dt_ms < 2:
            raise ValueError("event_hours_per_step is too small")

        self.catalogue: tuple[DemoSku, ...] = tuple(catalogue)
        self.tenant_id = tenant_id
        self.start = start.astimezone(UTC)
        self.event_hours_per_step = event_hours_per_step
        self.seed = seed
        self.snapshot_fraction = snapshot_fraction
        self.id_prefix = id_prefix
        self.clock: datetime = self.start

        n = len(self.catalogue)
        self._n = n
        self._keys = keys
        self._skus = [s.sku for s in self.catalogue]
        self._warehouses = [s.warehouse for s in self.catalogue]
        self._prices = [s.price for s in self.catalogue]
        self._currencies = [s.currency for s in self.catalogue]
        self._arange: I64 = np.arange(n, dtype=np.int64)
        self._order_rate: F64 = np.array([s.order_rate_per_h for s in self.catalogue])
        self._amplitude: F64 = np.array([s.seasonal_amplitude for s in self.catalogue])
        self._peak_h: F64 = np.array([s.peak_hour_utc for s in self.catalogue])
        self._lumpy = np.array([s.pattern == "intermittent" for s in self.catalogue])
        self._restocks = np.array([s.restocks for s in self.catalogue])
        self._rop: I64 = np.array([s.reorder_point for s in self.catalogue], dtype=np.int64)
        self._up_to: I64 = np.array([s.order_up_to for s in self.catalogue], dtype=np.int64)
        self._lead_steps = [
            max(0, round(s.lead_time_h / event_hours_per_step)) for s in self.catalogue
        ]
        initial = np.array([s.initial_stock for s in self.catalogue], dtype=np.int64)
        if (initial < 0).any():
            raise ValueError("initial_stock must be >= 0")

        self._rng = np.random.default_rng([seed, 0xA0A0])
        self._start_ms = (self.start - _EPOCH) // timedelta(milliseconds=1)
        self._dt_ms = dt_ms
        self._step = 0
        self._stock: I64 = initial.copy()  # truth at the end of the generated steps
        self._on_order: I64 = np.zeros(n, dtype=np.int64)
        self._deliveries: dict[int, tuple[list[int], list[int]]] = {}
        self._truth: I64 = initial.copy()  # truth after the events handed out so far
        # Generated, not yet handed out: time (ms), kind, SKU row, qty or on_hand.
        self._buf_t: I64 = np.empty(0, dtype=np.int64)
        self._buf_kind: I64 = np.empty(0, dtype=np.int64)
        self._buf_idx: I64 = np.empty(0, dtype=np.int64)
        self._buf_val: I64 = np.empty(0, dtype=np.int64)
        self._event_counter = 0
        self._order_counter = 0

    # -- public -------------------------------------------------------------------------------

    @property
    def on_hand(self) -> dict[str, int]:
        """True stock per ``sku@warehouse`` after the events returned so far (a fresh dict)."""
        return dict(zip(self._keys, self._truth.tolist(), strict=True))

    @property
    def events_emitted(self) -> int:
        """Number of events returned by :meth:`next_events` so far."""
        return self._event_counter

    def initial_events(self) -> list[dict[str, Any]]:
        """One ``sku.upserted`` per SKU, at ``start``, carrying its initial stock."""
        stamp = _format_ms(np.array([self._start_ms], dtype=np.int64))[0]
        return [
            {
                "tenant_id": self.tenant_id,
                "event_type": "sku.upserted",
                "payload": {
                    "sku": s.sku,
                    "warehouse": s.warehouse,
                    "category": s.category,
                    "brand": s.brand,
                    "initial_stock": s.initial_stock,
                },
                "event_id": f"{self.id_prefix}-sku-{i}",
                "occurred_at": stamp,
            }
            for i, s in enumerate(self.catalogue)
        ]

    def next_events(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` events in non-decreasing ``occurred_at`` order."""
        if n <= 0:
            return []
        while self._buf_t.size < n:
            self._generate(n - self._buf_t.size)
        t, kind, idx, val = (
            self._buf_t[:n],
            self._buf_kind[:n],
            self._buf_idx[:n],
            self._buf_val[:n],
        )
        self._buf_t, self._buf_kind = self._buf_t[n:], self._buf_kind[n:]
        self._buf_idx, self._buf_val = self._buf_idx[n:], self._buf_val[n:]

        delta = np.where(kind == _ORDER, -val, np.where(kind == _RECEIVED, val, 0))
        np.add.at(self._truth, idx, delta)
        self.clock = _EPOCH + timedelta(milliseconds=int(t[-1]))
        return self._to_dicts(t, kind, idx, val)

    # -- simulation ---------------------------------------------------------------------------

    def _generate(self, wanted: int) -> None:
        """Simulate steps until at least ``wanted`` new events are buffered."""
        chunks: list[tuple[I64, I64, I64, I64]] = [
            (self._buf_t, self._buf_kind, self._buf_idx, self._buf_val)
        ]
        produced = 0
        while produced < wanted:
            chunk = self._step_once()
            size = chunk[0].size
            if size:
                produced += size
                chunks.append(chunk)
            elif not self._deliveries and not ((self._stock > 0) & (self._order_rate > 0)).any():
                raise RuntimeError("the simulation has no more events: every SKU is sold out")
        self._buf_t = np.concatenate([c[0] for c in chunks])
        self._buf_kind = np.concatenate([c[1] for c in chunks])
        self._buf_idx = np.concatenate([c[2] for c in chunks])
        self._buf_val = np.concatenate([c[3] for c in chunks])

    def _step_once(self) -> tuple[I64, I64, I64, I64]:
        rng, n, step, dt_ms = self._rng, self._n, self._step, self._dt_ms
        t0 = self._start_ms + step * dt_ms
        self._step += 1

        # 1. Deliveries due now land at the start of the step, before any sale in it.
        due = self._deliveries.pop(step, None)
        if due is not None:
            d_idx = np.array(due[0], dtype=np.int64)
            d_qty = np.array(due[1], dtype=np.int64)
            np.add.at(self._stock, d_idx, d_qty)
            np.subtract.at(self._on_order, d_idx, d_qty)
        else:
            d_idx = d_qty = np.empty(0, dtype=np.int64)

        # 2. Orders: Poisson counts per SKU at the rate of the step's midpoint; none without stock.
        hour_of_day = ((t0 + dt_ms / 2) / _MS_PER_H) % 24.0
        phase = 2.0 * np.pi * (hour_of_day - self._peak_h) / 24.0
        multiplier = np.maximum(1.0 + self._amplitude * np.cos(phase), 0.0)
        lam = self._order_rate * multiplier * (dt_ms / _MS_PER_H) * (self._stock > 0)
        counts = rng.poisson(lam)
        o_idx = np.repeat(self._arange, counts)
        m = o_idx.size
        pick = np.minimum(np.searchsorted(_REGULAR_CDF, rng.random(m), side="right"), 5)
        sizes = _REGULAR_SIZES[pick]
        lumpy = self._lumpy[o_idx]
        n_lumpy = int(lumpy.sum())
        if n_lumpy:
            sizes[lumpy] = 2 + rng.geometric(_LUMPY_P, n_lumpy)

        # 3. Snapshots of random SKUs, about snapshot_fraction of all events.
        odds = self.snapshot_fraction / (1.0 - self.snapshot_fraction)
        k = int(rng.binomial(m, odds)) if m else 0
        s_idx = rng.integers(0, n, k, dtype=np.int64)

        idx = np.concatenate([o_idx, s_idx])
        req = np.concatenate([sizes, np.zeros(k, dtype=np.int64)])
        kind = np.concatenate(
            [np.full(m, _ORDER, dtype=np.int64), np.full(k, _SNAPSHOT, dtype=np.int64)]
        )
        times = t0 + 1 + (rng.random(m + k) * (dt_ms - 1)).astype(np.int64)

        # 4. Sell in time order per SKU, never more than is left. Within a SKU, the cumulative
        # units sold after row i are min(requested so far, stock), so on_hand = max(stock - cum, 0).
        order = np.lexsort((kind, times, idx))
        idx, req, kind, times = idx[order], req[order], kind[order], times[order]
        cum = np.cumsum(req)
        if idx.size:
            first = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
            lengths = np.diff(np.append(first, idx.size))
            cum = cum - np.repeat(cum[first] - req[first], lengths)
        stock = self._stock[idx]
        after = np.maximum(stock - cum, 0)
        sold = np.maximum(stock - (cum - req), 0) - after
        is_order = kind == _ORDER
        val = np.where(is_order, sold, after)
        keep = ~is_order | (sold > 0)
        idx, kind, times, val = idx[keep], kind[keep], times[keep], val[keep]
        sold_kept = np.where(kind == _ORDER, val, 0)
        self._stock -= np.bincount(idx, weights=sold_kept, minlength=n).astype(np.int64)

        # Stable sort by time keeps each SKU's rows in the order the stock was computed in.
        by_time = np.argsort(times, kind="stable")
        out_t = np.concatenate([np.full(d_idx.size, t0, dtype=np.int64), times[by_time]])
        out_kind = np.concatenate([np.full(d_idx.size, _RECEIVED, dtype=np.int64), kind[by_time]])
        out_idx = np.concatenate([d_idx, idx[by_time]])
        out_val = np.concatenate([d_qty, val[by_time]])

        # 5. Restock review at the end of the step: (s, S) on inventory position.
        position = self._stock + self._on_order
        for i in np.flatnonzero(self._restocks & (position <= self._rop)).tolist():
            qty = int(self._up_to[i] - position[i])
            if qty <= 0:
                continue
            self._on_order[i] += qty
            arrival = self._deliveries.setdefault(step + 1 + self._lead_steps[i], ([], []))
            arrival[0].append(i)
            arrival[1].append(qty)
        return out_t, out_kind, out_idx, out_val

    def _to_dicts(self, t: I64, kind: I64, idx: I64, val: I64) -> list[dict[str, Any]]:
        tenant, prefix = self.tenant_id, self.id_prefix
        skus, whs, prices, currencies = self._skus, self._warehouses, self._prices, self._currencies
        counter, order_counter = self._event_counter, self._order_counter
        out: list[dict[str, Any]] = []
        append = out.append
        for stamp, k, i, v in zip(
            _format_ms(t), kind.tolist(), idx.tolist(), val.tolist(), strict=True
        ):
            if k == _ORDER:
                event_type = "order.created"
                payload: dict[str, Any] = {
                    "order_id": f"{prefix}-o{order_counter}",
                    "sku": skus[i],
                    "warehouse": whs[i],
                    "qty": v,
                    "price": prices[i],
                    "currency": currencies[i],
                }
                order_counter += 1
            elif k == _RECEIVED:
                event_type = "stock.received"
                payload = {"sku": skus[i], "warehouse": whs[i], "qty": v}
            else:
                event_type = "stock.snapshot"
                payload = {"sku": skus[i], "warehouse": whs[i], "on_hand": v}
            append(
                {
                    "tenant_id": tenant,
                    "event_type": event_type,
                    "payload": payload,
                    "event_id": f"{prefix}-{counter}",
                    "occurred_at": stamp,
                }
            )
            counter += 1
        self._event_counter, self._order_counter = counter, order_counter
        return out


_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_ndjson(events: list[dict[str, Any]]) -> bytes:
    """Events as NDJSON: one compact JSON object per line, each line ending in a newline."""
    if not events:
        return b""
    return ("\n".join(map(_json_encode, events)) + "\n").encode("utf-8")
