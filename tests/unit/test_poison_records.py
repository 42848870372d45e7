"""Poison records (issue 15): the bounds every event carries, the same live, in a backfill and in
the shard's decoder, and timers that cost O(1) over any gap of event time."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import numpy as np
import pytest

from aurora_ray.backfill import validate_chunk
from aurora_ray.domain.events import (
    DEFAULT_MAX_SKEW_MS,
    EARLIEST_TS_MS,
    MAX_JSON_DEPTH,
    MAX_QUANTITY,
    ShardBatch,
    ShardRecord,
    json_depth,
    record_problem,
)
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import MAX_TICKS_PER_GAP, fold_with_timers, timer_boundaries
from aurora_ray.ingest import IngestError, prepare_ingest

pytestmark = pytest.mark.unit

TENANT = "0b7c4f7e-8d6f-4a53-9d0e-3c1f2b8a9e10"
NOW_MS = 1_765_000_000_000  # 2025-12-06


def envelope(event_type: str = "order.created", **payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order.created": {"order_id": "o-1", "qty": 1, "price": 1.5, "currency": "EUR"},
        "stock.snapshot": {"on_hand": 5},
        "stock.adjusted": {"delta": -1},
        "sku.upserted": {"initial_stock": 3},
        "stock.received": {"qty": 2},
        "order.cancelled": {"order_id": "o-1", "qty": 1},
        "stock.ordered": {"qty": 4, "expected_at": "2025-12-08T00:00:00Z"},
    }.get(event_type, {})
    return {
        "tenant_id": TENANT,
        "event_type": event_type,
        "occurred_at": "2025-12-06T05:00:00Z",
        "payload": {"sku": "A", "warehouse": "W", **base, **payload},
    }


def refusal(*lines: dict[str, Any] | str, skew_ms: int = DEFAULT_MAX_SKEW_MS) -> Any:
    body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()
    with pytest.raises(IngestError) as caught:
        prepare_ingest(body, tenant_id=TENANT, received_ms=NOW_MS, max_skew_ms=skew_ms)
    return caught.value


def accepted(*lines: dict[str, Any], skew_ms: int = DEFAULT_MAX_SKEW_MS) -> int:
    body = "\n".join(json.dumps(x) for x in lines).encode()
    return prepare_ingest(body, tenant_id=TENANT, received_ms=NOW_MS, max_skew_ms=skew_ms).accepted


# --------------------------------------------------------------------------- the live API


def test_an_event_time_far_in_the_future_is_a_400_naming_the_field() -> None:
    error = refusal({**envelope(), "occurred_at": "9999-12-30T00:00:00Z"})
    assert error.status == 400
    assert error.body == [{"line": 1, "field": "occurred_at", "message": error.body[0]["message"]}]
    assert "future" in error.body[0]["message"]


def test_the_allowed_skew_is_the_server_clock_plus_the_setting() -> None:
    def at(ms: int) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + "Z"
        return {**envelope(), "occurred_at": stamp}

    assert accepted(at(NOW_MS + DEFAULT_MAX_SKEW_MS - 1000)) == 1
    assert refusal(at(NOW_MS + DEFAULT_MAX_SKEW_MS + 1000)).status == 400
    assert accepted(at(NOW_MS + 5_000_000), skew_ms=6_000_000) == 1


def test_an_event_time_before_the_floor_is_refused() -> None:
    error = refusal({**envelope(), "occurred_at": "1999-12-31T23:59:59Z"})
    assert error.body[0]["field"] == "occurred_at"
    assert "2000-01-01T00:00:00Z" in error.body[0]["message"]


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("order.created", "qty"),
        ("order.cancelled", "qty"),
        ("stock.received", "qty"),
        ("stock.ordered", "qty"),
        ("stock.snapshot", "on_hand"),
        ("sku.upserted", "initial_stock"),
        ("stock.adjusted", "delta"),
    ],
)
def test_every_number_is_bounded(event_type: str, field: str) -> None:
    assert accepted(envelope(event_type, **{field: MAX_QUANTITY})) == 1
    for value in (MAX_QUANTITY + 1, 2**63, 2**64 + 5):
        error = refusal(envelope(event_type, **{field: value}))
        assert error.status == 400
        assert error.body[0]["line"] == 1 and error.body[0]["field"] == f"payload.{field}"
    if field == "delta":
        assert accepted(envelope(event_type, delta=-MAX_QUANTITY)) == 1
        assert refusal(envelope(event_type, delta=-MAX_QUANTITY - 1)).status == 400


def test_a_price_must_fit_the_warehouse() -> None:
    assert accepted(envelope(price=99_999_999.99)) == 1
    error = refusal(envelope(price=100_000_000.0))
    assert error.body[0]["field"] == "payload.price"


def test_a_purchase_order_is_expected_within_a_year() -> None:
    assert accepted(envelope("stock.ordered", expected_at="2026-11-30T00:00:00Z")) == 1
    error = refusal(envelope("stock.ordered", expected_at="2027-12-30T00:00:00Z"))
    assert error.body[0]["field"] == "payload.expected_at"


@pytest.mark.parametrize("event_type", ["order.created", "promo.started"])
def test_deep_nesting_is_a_400_not_a_500(event_type: str) -> None:
    deep = "[" * 3000 + "]" * 3000
    line = json.dumps(envelope(event_type)).replace('"sku": "A"', f'"deep": {deep}, "sku": "A"')
    error = refusal(line)
    assert error.status == 400
    assert error.body[0] == {
        "line": 1,
        "field": "line",
        "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
    }


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return envelope("promo.started", extra=value, note="[[[[{{{{" * 20)

    # The envelope and the payload are two levels; the rest is the nested value.
    assert accepted(nested(MAX_JSON_DEPTH - 2)) == 1
    assert refusal(nested(MAX_JSON_DEPTH - 1)).status == 400
    assert json_depth(b'{"a": "[[[[", "b": [[{}]]}') == 4
    assert json_depth(b'"\\\\" [ ]') == 1


# --------------------------------------------------------------------------- the backfill


def test_the_backfill_applies_the_same_bounds() -> None:
    lines = [
        envelope(),
        {**envelope(), "occurred_at": "9999-12-30T00:00:00Z"},
        envelope(qty=2**63),
        envelope(price=1e12),
        "{" + '"a":' * 1 + "[" * 3000 + "]" * 3000 + "}",
    ]
    body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()
    table = validate_chunk(body, first_line=1, tenant_id=TENANT, received_ms=NOW_MS)
    assert table.column("ok").to_pylist() == [True, False, False, False, False]
    fields = [json.loads(r)[0]["field"] for r in table.column("reason").to_pylist()[1:]]
    assert fields == ["occurred_at", "payload.qty", "payload.price", "line"]


# --------------------------------------------------------------------------- shards and sinks


def record(**fields: Any) -> ShardRecord:
    base: dict[str, Any] = {
        "event_id": "e",
        "tenant_id": TENANT,
        "event_type": "order.created",
        "ts_ms": NOW_MS,
        "received_ms": NOW_MS,
        "sku": "A",
        "warehouse": "W",
        "qty": 1,
    }
    return ShardRecord(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"ts_ms": 253_402_128_000_000}, "ts_ms"),
        ({"ts_ms": EARLIEST_TS_MS - 1}, "ts_ms"),
        ({"received_ms": -1}, "received_ms"),
        ({"qty": 2**63 - 1}, "qty"),
        ({"qty": -1}, "qty"),
        ({"event_type": "stock.adjusted", "value": -(2**62)}, "value"),
        ({"event_type": "stock.ordered", "value": 5}, "expected_at"),
        ({"payload": msgspec.Raw(b"[1]")}, "payload"),
    ],
)
def test_the_shard_refuses_what_the_api_would_with_a_reason(
    fields: dict[str, Any], words: str
) -> None:
    bad = record(event_id="bad", **fields)
    assert words in (record_problem(bad) or "")
    good = [record(event_id=f"g{i}") for i in range(3)]
    values = [msgspec.json.encode(r) for r in (good[0], bad, good[1], good[2])]
    batch = ShardBatch()
    batch.add(values, [0, 1, 2, 3])
    assert [r.event_id for r in batch.records] == ["g0", "g1", "g2"]
    assert [tag for tag, _ in batch.refused] == [1]
    assert words in batch.reasons[0]


def test_the_shard_refuses_deep_records_and_bundle_elements_alone() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    good = msgspec.json.encode(record(event_id="g"))
    bundle = b"[" + good + b"," + msgspec.json.encode(record(event_id="b", qty=2**40)) + b"]"
    batch = ShardBatch()
    batch.add([deep, b'{"event_id": ' + deep + b"}", bundle], [0, 1, 2])
    assert [r.event_id for r in batch.records] == ["g"]
    assert [tag for tag, _ in batch.refused] == [0, 1, 2]
    assert "bundle" in batch.reasons[0] and "undecodable" in batch.reasons[1]
    assert "qty" in batch.reasons[2]


# --------------------------------------------------------------------------- timers


def test_timer_boundaries_are_bounded_for_any_gap() -> None:
    day = 86_400.0
    assert timer_boundaries(0.5 * day, 0.9 * day, day) == []
    assert timer_boundaries(0.5 * day, 3.5 * day, day) == [1, 2, 3]
    far = timer_boundaries(1.0 * day, 2_900_000 * day, day)
    assert len(far) == MAX_TICKS_PER_GAP
    assert far[: MAX_TICKS_PER_GAP - 1] == list(range(2, MAX_TICKS_PER_GAP + 1))
    assert far[-1] == 2_900_000


def test_a_long_gap_fires_a_bounded_number_of_timers() -> None:
    """The far-future record spun a shard for ever (one timer per day up to year 9999): the
    fold itself now fires at most MAX_TICKS_PER_GAP timers for any jump of event time."""
    from aurora_ray.domain.events import StreamEvent

    state = SkuState()
    later = NOW_MS + 3_000 * 86_400_000  # eight years on: 3 000 daily boundaries
    events = [
        StreamEvent(event_id="s", tenant_id=TENANT, event_type="stock.snapshot", ts_ms=NOW_MS,
                    received_ms=NOW_MS, sku="A", warehouse="W", value=10),
        StreamEvent(event_id="o", tenant_id=TENANT, event_type="order.created", ts_ms=later,
                    received_ms=later, sku="A", warehouse="W", qty=1),
    ]  # fmt: skip
    outputs = fold_with_timers(state, events, [0, 0], ScoringParams())
    ticks = [o for o in outputs if len(o.rows) and np.all(o.as_of_s % 86_400 == 0)]
    assert len(ticks) == MAX_TICKS_PER_GAP
    assert ticks[-1].as_of_s[0] == (later // 86_400_000) * 86_400
    assert int(state.col("on_hand")[0]) == 9
