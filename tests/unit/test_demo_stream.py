"""Tests of the simulated demo stream: catalogue, determinism, stock truth, pacing, validity."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aurora_ray.demo_stream import (
    PATTERNS,
    DemoSku,
    DemoStream,
    demo_catalogue,
    mean_order_size,
    to_ndjson,
)
from aurora_ray.domain.events import parse_ndjson

pytestmark = pytest.mark.unit

TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
START = datetime(2025, 5, 31, 22, 0, tzinfo=UTC)
DEMO_EVENTS = 120_000
STAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _key(event: dict[str, Any]) -> str:
    return f"{event['payload']['sku']}@{event['payload']['warehouse']}"


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass
class Demo:
    catalogue: list[DemoSku]
    stream: DemoStream
    initial: list[dict[str, Any]]
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def demo() -> Demo:
    """The default 60-second demo: 600 SKUs, 120 K events."""
    catalogue = demo_catalogue()
    stream = DemoStream(catalogue, TENANT, START)
    initial = stream.initial_events()
    events = stream.next_events(DEMO_EVENTS)
    return Demo(catalogue, stream, initial, events)


# -- catalogue ----------------------------------------------------------------------------------


def test_default_catalogue_size_mix_and_warehouses() -> None:
    catalogue = demo_catalogue()
    assert len(catalogue) == 600
    assert len({s.key for s in catalogue}) == 600
    assert Counter(s.pattern for s in catalogue) == {
        "steady": 240,
        "seasonal": 150,
        "intermittent": 120,
        "draining": 90,
    }
    assert Counter(s.warehouse for s in catalogue) == {"DE-HAM": 300, "US-NYC": 300}
    by_wh = Counter((s.warehouse, s.pattern) for s in catalogue)
    assert all(by_wh[("DE-HAM", p)] > 0 and by_wh[("US-NYC", p)] > 0 for p in PATTERNS)
    currencies = {s.warehouse: s.currency for s in catalogue}
    assert currencies == {"DE-HAM": "EUR", "US-NYC": "USD"}


def test_catalogue_restock_policies() -> None:
    for s in demo_catalogue():
        assert s.base_rate_per_h > 0 and s.price > 0 and s.initial_stock > 0
        assert s.category and s.brand
        if s.pattern == "draining":
            assert not s.restocks
            assert s.reorder_point == 0 and s.order_up_to == 0
            cover_h = s.initial_stock / s.base_rate_per_h
            assert 35.0 <= cover_h <= 57.0
        else:
            assert s.restocks
            assert 0 < s.reorder_point < s.order_up_to
            assert s.reorder_point <= s.initial_stock <= s.order_up_to
            assert 12.0 <= s.lead_time_h <= 36.0
            # Stock at the reorder point covers the lead time and the 48 h scoring horizon.
            assert s.reorder_point >= s.base_rate_per_h * (s.lead_time_h + 48.0)
        if s.pattern == "seasonal":
            assert 0.0 < s.seasonal_amplitude < 1.0
        else:
            assert s.seasonal_amplitude == 0.0
        if s.pattern == "intermittent":
            assert s.order_rate_per_h < 0.5
            assert mean_order_size(s.pattern)[0] > 5


def test_catalogue_other_sizes_and_warehouses() -> None:
    three = demo_catalogue(n_skus=10, warehouses=("DE-HAM", "US-NYC", "GB-LON"), seed=1)
    assert len(three) == 10
    assert Counter(s.warehouse for s in three) == {"DE-HAM": 4, "US-NYC": 3, "GB-LON": 3}
    assert Counter(s.pattern for s in three) == {
        "steady": 4,
        "seasonal": 3,
        "intermittent": 2,
        "draining": 1,
    }
    assert {s.currency for s in three if s.warehouse == "GB-LON"} == {"GBP"}
    for n in (1, 2, 3, 7, 601):
        assert len(demo_catalogue(n_skus=n)) == n


@pytest.mark.parametrize(
    "kwargs",
    [{"n_skus": 0}, {"warehouses": ()}, {"warehouses": ("DE HAM",)}, {"warehouses": ("a@b",)}],
)
def test_catalogue_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        demo_catalogue(**kwargs)


def test_stream_rejects_bad_arguments() -> None:
    catalogue = demo_catalogue(n_skus=10)
    with pytest.raises(ValueError):
        DemoStream(catalogue, "not-a-guid", START)
    with pytest.raises(ValueError):
        DemoStream(catalogue, TENANT, datetime(2025, 5, 31, 22))  # noqa: DTZ001
    with pytest.raises(ValueError):
        DemoStream(catalogue, TENANT, START, event_hours_per_step=0.0)
    with pytest.raises(ValueError):
        DemoStream([], TENANT, START)
    with pytest.raises(ValueError):
        DemoStream([*catalogue, catalogue[0]], TENANT, START)


# -- determinism --------------------------------------------------------------------------------


def test_same_seed_same_catalogue_and_events() -> None:
    assert demo_catalogue(seed=3) == demo_catalogue(seed=3)
    assert demo_catalogue(seed=3) != demo_catalogue(seed=4)
    catalogue = demo_catalogue(n_skus=200, seed=3)
    a = DemoStream(catalogue, TENANT, START, seed=11)
    b = DemoStream(catalogue, TENANT, START, seed=11)
    assert a.initial_events() == b.initial_events()
    assert a.next_events(5000) == b.next_events(5000)
    assert a.on_hand == b.on_hand and a.clock == b.clock
    c = DemoStream(catalogue, TENANT, START, seed=12)
    assert c.next_events(5000) != DemoStream(catalogue, TENANT, START, seed=11).next_events(5000)


def test_events_do_not_depend_on_how_they_are_requested() -> None:
    catalogue = demo_catalogue(n_skus=100)
    whole = DemoStream(catalogue, TENANT, START)
    pieces = DemoStream(catalogue, TENANT, START)
    expected = whole.next_events(4000)
    got: list[dict[str, Any]] = []
    for n in (1, 999, 0, 1500, 7, 1493):
        got.extend(pieces.next_events(n))
    assert got == expected
    assert pieces.on_hand == whole.on_hand and pieces.clock == whole.clock
    assert pieces.events_emitted == whole.events_emitted == 4000


# -- the 120 K-event demo -----------------------------------------------------------------------


def test_events_are_ordered_and_well_formed(demo: Demo) -> None:
    stamps = [e["occurred_at"] for e in demo.events]
    assert all(STAMP_RE.match(s) for s in stamps)
    assert stamps == sorted(stamps)  # fixed-width UTC stamps sort like times
    assert _parse_stamp(stamps[0]) >= START
    assert demo.stream.clock == _parse_stamp(stamps[-1])
    assert {e["occurred_at"] for e in demo.initial} == {"2025-05-31T22:00:00.000Z"}
    assert [e["event_type"] for e in demo.initial] == ["sku.upserted"] * 600

    ids = [e["event_id"] for e in demo.initial + demo.events]
    assert len(set(ids)) == len(ids)
    assert demo.events[0]["event_id"] == "demo-0"
    assert demo.events[-1]["event_id"] == f"demo-{DEMO_EVENTS - 1}"
    orders = [e["payload"]["order_id"] for e in demo.events if e["event_type"] == "order.created"]
    assert len(set(orders)) == len(orders)
    assert {e["tenant_id"] for e in demo.events} == {TENANT}


def test_event_mix(demo: Demo) -> None:
    types = Counter(e["event_type"] for e in demo.events)
    assert set(types) == {"order.created", "stock.received", "stock.snapshot"}
    assert 0.005 < types["stock.snapshot"] / DEMO_EVENTS < 0.015
    assert types["stock.received"] > 100

    pattern = {s.key: s.pattern for s in demo.catalogue}
    sizes: dict[str, list[int]] = {}
    for e in demo.events:
        if e["event_type"] == "order.created":
            sizes.setdefault(pattern[_key(e)], []).append(e["payload"]["qty"])
    regular = sizes["steady"] + sizes["seasonal"] + sizes["draining"]
    assert sum(q <= 3 for q in regular) / len(regular) > 0.9
    assert min(sizes["intermittent"]) >= 3
    assert sum(sizes["intermittent"]) / len(sizes["intermittent"]) > 5


def test_event_time_pace_suits_a_60_second_demo(demo: Demo) -> None:
    span_h = (demo.stream.clock - START) / timedelta(hours=1)
    assert 48.0 <= span_h <= 96.0  # 2-4 days of event time in 120 K events
    assert 1250.0 <= DEMO_EVENTS / span_h <= 2500.0
    first_10k_h = (_parse_stamp(demo.events[9_999]["occurred_at"]) - START) / timedelta(hours=1)
    assert 1400.0 <= 10_000 / first_10k_h <= 2500.0


def test_on_hand_is_the_truth_and_never_negative(demo: Demo) -> None:
    stock = {e["payload"]["sku"] + "@" + e["payload"]["warehouse"]: 0 for e in demo.initial}
    for e in demo.initial:
        stock[_key(e)] = e["payload"]["initial_stock"]
    received: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    ever_zero: set[str] = set()
    snapshots = 0
    for e in demo.events:
        key, payload = _key(e), e["payload"]
        if e["event_type"] == "order.created":
            sold[key] += payload["qty"]
            stock[key] -= payload["qty"]
            assert stock[key] >= 0, e
        elif e["event_type"] == "stock.received":
            received[key] += payload["qty"]
            stock[key] += payload["qty"]
        else:
            snapshots += 1
            assert payload["on_hand"] == stock[key], e
        if stock[key] == 0:
            ever_zero.add(key)
    assert snapshots > 0
    assert demo.stream.on_hand == stock
    for s in demo.catalogue:
        assert stock[s.key] == s.initial_stock + received[s.key] - sold[s.key]
        if not s.restocks:
            assert received[s.key] == 0

    draining = {s.key for s in demo.catalogue if s.pattern == "draining"}
    assert draining <= ever_zero  # every draining SKU runs out within the demo
    assert all(demo.stream.on_hand[k] == 0 for k in draining)
    others_out = ever_zero - draining
    assert len(others_out) <= 0.05 * (len(demo.catalogue) - len(draining))


def test_every_line_passes_ingest_validation(demo: Demo) -> None:
    body = to_ndjson(demo.initial + demo.events)
    assert body.endswith(b"\n") and body.count(b"\n") == len(demo.initial) + DEMO_EVENTS
    batch = parse_ndjson(body, tenant_id=TENANT, received_ms=1_893_456_000_000)
    assert batch.errors == [] and batch.error_lines == 0
    assert batch.foreign_tenant_lines == [] and batch.unknown_types == 0
    assert batch.deprecated_fields == set()
    assert len(batch.events) == len(demo.initial) + DEMO_EVENTS
    first = batch.events[len(demo.initial)]
    assert first.event_id == "demo-0"
    assert first.ts_ms == int(_parse_stamp(demo.events[0]["occurred_at"]).timestamp() * 1000)


def test_to_ndjson_empty_and_round_trip() -> None:
    assert to_ndjson([]) == b""
    stream = DemoStream(demo_catalogue(n_skus=20), TENANT, START)
    events = stream.next_events(50)
    lines = to_ndjson(events).decode().splitlines()
    assert [json.loads(line) for line in lines] == events
