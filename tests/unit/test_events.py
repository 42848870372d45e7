"""NDJSON validation and the canonical stream record (aurora_ray.domain.events)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_ray.domain.events as events_module
from aurora_ray.domain.events import (
    EARLIEST_TS_MS,
    KNOWN_EVENT_TYPES,
    EventType,
    LineError,
    StreamEvent,
    check_ndjson,
    decode_stream_events,
    encode_ndjson,
    encode_stream_event,
    parse_ndjson,
    stream_key,
)

pytestmark = pytest.mark.unit

TENANT = "0b7c4f7e-8d6f-4a53-9d0e-3c1f2b8a9e10"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
RECEIVED_MS = 1_750_000_000_123


def line(event_type: str, payload: Any, **envelope: Any) -> str:
    """One NDJSON line; envelope keys override the defaults (None removes a key)."""
    record: dict[str, Any] = {"tenant_id": TENANT, "event_type": event_type, "payload": payload}
    record.update(envelope)
    return json.dumps({k: v for k, v in record.items() if v is not None})


def body(*lines: str) -> bytes:
    return "\n".join(lines).encode()


def parse(*lines: str, **kwargs: Any):
    kwargs.setdefault("tenant_id", TENANT)
    kwargs.setdefault("received_ms", RECEIVED_MS)
    return parse_ndjson(body(*lines), **kwargs)


def order_created(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sku": "SKU-1",
        "warehouse": "WH1",
        "order_id": "o-1",
        "qty": 3,
        "price": 9.99,
        "currency": "EUR",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


VALID_LINE = line(EventType.STOCK_RECEIVED, {"sku": "OK", "warehouse": "WH1", "qty": 1})


# --------------------------------------------------------------------------- valid events


@pytest.mark.parametrize(
    ("event_type", "payload", "qty", "value"),
    [
        (EventType.ORDER_CREATED, order_created(), 3, 0),
        (EventType.ORDER_CREATED, order_created(order_id=42, qty=1, price=1), 1, 0),
        (
            EventType.ORDER_CANCELLED,
            {"sku": "SKU-1", "warehouse": "WH1", "order_id": "o-1", "qty": 2},
            2,
            0,
        ),
        (EventType.STOCK_RECEIVED, {"sku": "SKU-1", "warehouse": "WH1", "qty": 50}, 50, 0),
        (
            EventType.STOCK_ADJUSTED,
            {"sku": "SKU-1", "warehouse": "WH1", "delta": -4, "reason": "damaged"},
            0,
            -4,
        ),
        (EventType.STOCK_ADJUSTED, {"sku": "SKU-1", "warehouse": "WH1", "delta": 7}, 0, 7),
        (EventType.STOCK_SNAPSHOT, {"sku": "SKU-1", "warehouse": "WH1", "on_hand": 120}, 0, 120),
        (EventType.STOCK_SNAPSHOT, {"sku": "SKU-1", "warehouse": "WH1", "on_hand": 0}, 0, 0),
        (
            EventType.SKU_UPSERTED,
            {"sku": "SKU-1", "warehouse": "WH1", "category": "toys", "initial_stock": 30},
            0,
            30,
        ),
        # catalogue-only upsert: no initial_stock, so value -1 (stock untouched)
        (EventType.SKU_UPSERTED, {"sku": "SKU-1", "warehouse": "WH1"}, 0, -1),
        # a purchase order: value is its expected time in epoch ms
        (
            EventType.STOCK_ORDERED,
            {"sku": "SKU-1", "warehouse": "WH1", "qty": 40, "expected_at": "2025-06-02T08:00:00Z"},
            40,
            1_748_851_200_000,
        ),
    ],
)
def test_valid_event_is_accepted_and_normalised(
    event_type: str, payload: dict[str, Any], qty: int, value: int
) -> None:
    parsed = parse(line(event_type, payload, event_id="evt-1"))

    assert parsed.errors == []
    assert parsed.error_lines == 0
    assert parsed.unknown_types == 0
    assert parsed.deprecated_fields == set()
    assert parsed.foreign_tenant_lines == []
    [event] = parsed.events
    assert event.event_id == "evt-1"
    assert event.tenant_id == TENANT
    assert event.event_type == event_type
    assert event.sku == "SKU-1"
    assert event.warehouse == "WH1"
    assert event.key == "SKU-1@WH1"
    assert event.qty == qty
    assert event.value == value
    assert event.received_ms == RECEIVED_MS
    assert event.ts_ms == RECEIVED_MS  # no occurred_at
    # The whole validated payload is kept (defaults filled in), with `sku` and without `sku_id`.
    assert event.payload["sku"] == "SKU-1"
    assert "sku_id" not in event.payload
    for name, sent in payload.items():
        assert event.payload[name] == sent


def test_every_known_type_is_covered() -> None:
    assert set(KNOWN_EVENT_TYPES) == {
        "order.created",
        "order.cancelled",
        "stock.received",
        "stock.adjusted",
        "stock.snapshot",
        "sku.upserted",
        "stock.ordered",
    }


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"qty": 5}, "payload.expected_at", "missing"),
        ({"qty": 5, "expected_at": "2025-06-02T08:00:00"}, "payload.expected_at", "time zone"),
        ({"qty": 0, "expected_at": "2025-06-02T08:00:00Z"}, "payload.qty", ">= 1"),
        ({"qty": 5, "expected_at": "soon"}, "payload.expected_at", "datetime"),
    ],
)
def test_a_bad_purchase_order_names_its_field(
    payload: dict[str, Any], field: str, words: str
) -> None:
    parsed = parse(line(EventType.STOCK_ORDERED, {"sku": "SKU-1", "warehouse": "WH1", **payload}))

    assert parsed.events == []
    [error] = parsed.errors
    assert (error.line, error.field) == (1, field)
    assert words in error.message


def test_missing_event_id_gets_a_fresh_uuid() -> None:
    parsed = parse(VALID_LINE, VALID_LINE)
    ids = [e.event_id for e in parsed.events]
    assert len(ids) == 2
    assert ids[0] != ids[1]
    for event_id in ids:
        assert uuid.UUID(event_id)


def test_tenant_id_is_normalised_to_canonical_guid_form() -> None:
    parsed = parse(line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
                        tenant_id=TENANT.upper()))
    assert parsed.errors == []
    assert parsed.foreign_tenant_lines == []
    assert [e.tenant_id for e in parsed.events] == [TENANT]


def test_sku_id_is_a_deprecated_alias_of_sku() -> None:
    parsed = parse(
        line(EventType.STOCK_RECEIVED, {"sku_id": "OLD-1", "warehouse": "WH1", "qty": 5})
    )
    assert parsed.errors == []
    assert parsed.deprecated_fields == {"sku_id"}
    [event] = parsed.events
    assert event.sku == "OLD-1"
    assert event.key == "OLD-1@WH1"
    assert event.qty == 5
    assert event.payload == {"sku": "OLD-1", "warehouse": "WH1", "qty": 5}


def test_sku_wins_over_sku_id_and_is_not_flagged_deprecated() -> None:
    parsed = parse(
        line(EventType.STOCK_RECEIVED, {"sku": "NEW", "sku_id": "OLD", "warehouse": "W", "qty": 1})
    )
    assert parsed.errors == []
    assert parsed.deprecated_fields == set()
    [event] = parsed.events
    assert event.sku == "NEW"
    assert "sku_id" not in event.payload


def test_unknown_event_types_are_kept_and_counted() -> None:
    parsed = parse(
        line("price.changed", {"sku": "A", "warehouse": "W", "new_price": 3.5}),
        VALID_LINE,
        line("promo.started", {"campaign": "summer"}),
    )
    assert parsed.errors == []
    assert parsed.unknown_types == 2
    assert [e.event_type for e in parsed.events] == [
        "price.changed",
        EventType.STOCK_RECEIVED,
        "promo.started",
    ]
    price, _, promo = parsed.events
    assert price.payload == {"sku": "A", "warehouse": "W", "new_price": 3.5}
    assert (price.sku, price.warehouse, price.key) == ("A", "W", "A@W")
    assert price.qty == 0 and price.value == 0
    assert promo.payload == {"campaign": "summer"}
    assert promo.sku is None and promo.warehouse is None and promo.key is None


def test_unknown_event_type_payload_must_be_an_object() -> None:
    parsed = parse(line("promo.started", [1, 2, 3]))
    assert parsed.events == []
    assert [(e.line, e.field) for e in parsed.errors] == [(1, "payload")]


# --------------------------------------------------------------------------- bad lines

BAD_LINES: list[tuple[str, str, str]] = [
    ("bad_json", '{"tenant_id": "x", "event_type": ', "line"),
    ("not_an_object", "[1, 2, 3]", "line"),
    (
        "missing_event_type",
        json.dumps({"tenant_id": TENANT, "payload": {"sku": "A", "warehouse": "W", "qty": 1}}),
        "event_type",
    ),
    (
        "missing_payload",
        json.dumps({"tenant_id": TENANT, "event_type": EventType.STOCK_RECEIVED}),
        "payload",
    ),
    (
        "non_guid_tenant",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             tenant_id="acme-corp"),
        "tenant_id",
    ),
    ("qty_zero", line(EventType.ORDER_CREATED, order_created(qty=0)), "payload.qty"),
    ("qty_negative", line(EventType.ORDER_CREATED, order_created(qty=-2)), "payload.qty"),
    (
        "received_qty_zero",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 0}),
        "payload.qty",
    ),
    (
        "cancelled_qty_zero",
        line(EventType.ORDER_CANCELLED, {"sku": "A", "warehouse": "W", "order_id": 1, "qty": 0}),
        "payload.qty",
    ),
    ("qty_not_int", line(EventType.ORDER_CREATED, order_created(qty="3")), "payload.qty"),
    ("price_zero", line(EventType.ORDER_CREATED, order_created(price=0)), "payload.price"),
    ("price_negative", line(EventType.ORDER_CREATED, order_created(price=-1.5)), "payload.price"),
    (
        "unknown_currency",
        line(EventType.ORDER_CREATED, order_created(currency="XYZ")),
        "payload.currency",
    ),
    (
        "lowercase_currency",
        line(EventType.ORDER_CREATED, order_created(currency="eur")),
        "payload.currency",
    ),
    (
        "missing_currency",
        line(EventType.ORDER_CREATED, order_created(currency=None)),
        "payload.currency",
    ),
    ("missing_sku", line(EventType.ORDER_CREATED, order_created(sku=None)), "payload.sku"),
    ("empty_sku", line(EventType.ORDER_CREATED, order_created(sku="")), "payload.sku"),
    (
        "missing_warehouse",
        line(EventType.ORDER_CREATED, order_created(warehouse=None)),
        "payload.warehouse",
    ),
    (
        "adjusted_delta_zero",
        line(EventType.STOCK_ADJUSTED, {"sku": "A", "warehouse": "W", "delta": 0}),
        "payload.delta",
    ),
    (
        "negative_on_hand",
        line(EventType.STOCK_SNAPSHOT, {"sku": "A", "warehouse": "W", "on_hand": -1}),
        "payload.on_hand",
    ),
    (
        "negative_initial_stock",
        line(EventType.SKU_UPSERTED, {"sku": "A", "warehouse": "W", "initial_stock": -5}),
        "payload.initial_stock",
    ),
    (
        "naive_occurred_at",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             occurred_at="2025-05-31T22:00:00"),
        "occurred_at",
    ),
    (
        "garbage_occurred_at",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             occurred_at="yesterday"),
        "occurred_at",
    ),
    (
        "at_sign_in_warehouse",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "WH@1", "qty": 1}),
        "payload.warehouse",
    ),
    (
        "space_in_warehouse",
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "WH 1", "qty": 1}),
        "payload.warehouse",
    ),
    (
        "payload_not_object",
        line(EventType.STOCK_RECEIVED, "A@W:1"),
        "payload",
    ),
]


@pytest.mark.parametrize(
    ("bad", "field"), [(b, f) for _, b, f in BAD_LINES], ids=[i for i, _, _ in BAD_LINES]
)
def test_bad_line_is_reported_by_line_number_and_field(bad: str, field: str) -> None:
    # Line 1 valid, line 2 blank (skipped but counted), line 3 bad, line 4 valid.
    parsed = parse(VALID_LINE, "", bad, VALID_LINE)

    assert parsed.error_lines == 1
    assert len(parsed.errors) == 1, parsed.errors
    [error] = parsed.errors
    assert isinstance(error, LineError)
    assert error.line == 3
    assert error.field == field, error
    assert error.message
    assert error.as_dict() == {"line": 3, "field": field, "message": error.message}
    # The bad line produces no event; the others are still validated and returned.
    assert len(parsed.events) == 2
    assert parsed.foreign_tenant_lines == []


def test_a_line_reports_all_its_envelope_and_payload_errors() -> None:
    parsed = parse(
        line(EventType.ORDER_CREATED, order_created(currency="XYZ"), tenant_id="nope",
             occurred_at="2025-05-31T22:00:00")
    )
    assert parsed.error_lines == 1
    assert {(e.line, e.field) for e in parsed.errors} == {
        (1, "tenant_id"),
        (1, "occurred_at"),
        (1, "payload.currency"),
    }
    assert parsed.events == []


def test_blank_lines_are_skipped_but_keep_the_numbering() -> None:
    bad = line(EventType.STOCK_ADJUSTED, {"sku": "A", "warehouse": "W", "delta": 0})
    raw = b"\n   \n" + VALID_LINE.encode() + b"\r\n\t\n" + bad.encode() + b"\n\n"
    parsed = parse_ndjson(raw, tenant_id=TENANT, received_ms=RECEIVED_MS)
    assert len(parsed.events) == 1
    assert [(e.line, e.field) for e in parsed.errors] == [(5, "payload.delta")]
    assert parsed.error_lines == 1


def test_empty_body_gives_an_empty_batch() -> None:
    parsed = parse_ndjson(b"", tenant_id=TENANT, received_ms=RECEIVED_MS)
    assert parsed.events == [] and parsed.errors == [] and parsed.error_lines == 0


def test_max_errors_caps_reported_errors_but_error_lines_counts_all() -> None:
    bad = line(EventType.ORDER_CREATED, order_created(qty=0))
    lines = [bad if i % 2 == 0 else VALID_LINE for i in range(20)]  # 10 bad, 10 good
    parsed = parse(*lines, max_errors=3)
    assert parsed.error_lines == 10
    assert [e.line for e in parsed.errors] == [1, 3, 5]
    assert len(parsed.events) == 10


def test_max_errors_counts_errors_not_lines() -> None:
    two_errors = line(EventType.ORDER_CREATED, order_created(currency="XYZ"), tenant_id="nope")
    parsed = parse(two_errors, two_errors, max_errors=3)
    assert parsed.error_lines == 2
    assert [e.line for e in parsed.errors] == [1, 1, 2]


def test_lines_of_another_tenant_are_listed_not_accepted() -> None:
    foreign = line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
                   tenant_id=OTHER_TENANT)
    parsed = parse(VALID_LINE, foreign, "", foreign, VALID_LINE)
    assert parsed.foreign_tenant_lines == [2, 4]
    assert parsed.errors == []
    assert parsed.error_lines == 0
    assert [e.tenant_id for e in parsed.events] == [TENANT, TENANT]


# --------------------------------------------------------------------------- event time


@pytest.mark.parametrize(
    ("occurred_at", "ts_ms"),
    [
        ("2025-05-31T22:00:00Z", 1_748_728_800_000),
        ("2025-05-31T22:00:00+00:00", 1_748_728_800_000),
        ("2025-06-01T00:00:00+02:00", 1_748_728_800_000),
        ("2025-05-31T17:00:00-05:00", 1_748_728_800_000),
        ("2025-05-31T22:00:00.250Z", 1_748_728_800_250),
    ],
)
def test_occurred_at_drives_ts_ms(occurred_at: str, ts_ms: int) -> None:
    parsed = parse(
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             occurred_at=occurred_at)
    )
    assert parsed.errors == []
    [event] = parsed.events
    assert event.ts_ms == ts_ms
    assert event.received_ms == RECEIVED_MS


def test_missing_occurred_at_uses_received_time() -> None:
    parsed = parse(VALID_LINE, received_ms=1_234_567_890_123)
    [event] = parsed.events
    assert event.ts_ms == 1_234_567_890_123
    assert event.received_ms == 1_234_567_890_123


def test_occurred_at_before_2000_is_refused() -> None:
    parsed = parse(
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             occurred_at="1999-12-31T23:59:59.999Z")
    )
    assert parsed.events == []
    assert [(e.line, e.field) for e in parsed.errors] == [(1, "occurred_at")]
    assert "2000-01-01T00:00:00Z" in parsed.errors[0].message


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        # hypothesis takes naive bounds and attaches the time zones itself
        min_value=datetime(1970, 1, 2),  # noqa: DTZ001
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                   timezone(timedelta(hours=-11))]),
    )
)
def test_epoch_milliseconds_are_exact_for_any_aware_time(at: datetime) -> None:
    """The float-timestamp shortcut floors exactly like the timedelta division it replaced."""
    exact = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert events_module._epoch_ms(at) == exact


def test_occurred_at_milliseconds_are_exact() -> None:
    parsed = parse(
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             occurred_at="2004-06-01T00:00:00.001Z")
    )
    [event] = parsed.events
    assert event.ts_ms == 1_086_048_000_001


# --------------------------------------------------------------------------- stream records


def test_stream_key() -> None:
    assert stream_key("A", "W") == "A@W"
    assert stream_key(None, "W") is None
    assert stream_key("A", None) is None


def test_encode_decode_round_trip() -> None:
    parsed = parse(
        line(EventType.ORDER_CREATED, order_created(), occurred_at="2025-05-31T22:00:00Z"),
        line(EventType.STOCK_ADJUSTED, {"sku": "A", "warehouse": "W", "delta": -3}),
        line(EventType.SKU_UPSERTED, {"sku": "A", "warehouse": "W", "initial_stock": 9}),
        line("custom.thing", {"nested": {"x": [1, 2]}}),
    )
    assert parsed.errors == []
    records = [encode_stream_event(e) for e in parsed.events]
    assert all(isinstance(r, bytes) for r in records)
    decoded, bad = decode_stream_events(records)
    assert bad == []
    assert decoded == parsed.events


def test_decode_reports_bad_records_by_index() -> None:
    good = StreamEvent(
        event_id="e1", tenant_id=TENANT, event_type=EventType.STOCK_RECEIVED,
        ts_ms=1_700_000_000_005, received_ms=1_700_000_000_006, sku="A", warehouse="W", qty=2,
        payload={"sku": "A"},
    )
    values = [
        encode_stream_event(good),
        b"not json",
        msgspec.json.encode({"event_id": "e2"}),  # required fields missing
        encode_stream_event(good),
        msgspec.json.encode({"event_id": "e3", "tenant_id": TENANT, "event_type": "x",
                             "ts_ms": "soon", "received_ms": 1_700_000_000_001}),  # wrong type
        b"",
    ]
    events, bad = decode_stream_events(values)
    assert bad == [1, 2, 4, 5]
    assert events == [good, good]


def test_decode_ignores_unknown_fields_for_forward_compatibility() -> None:
    record = msgspec.json.encode({"event_id": "e", "tenant_id": TENANT, "event_type": "x",
                                  "ts_ms": 1_700_000_000_001, "received_ms": 1_700_000_000_002,
                                  "added_in_v2": True})
    events, bad = decode_stream_events([record])
    assert bad == []
    assert events[0].event_id == "e"


# --------------------------------------------------------------------------- property

_name_chars = st.characters(
    blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"), blacklist_characters="@"
)
_skus = st.text(_name_chars, min_size=1, max_size=16)
_warehouses = st.text(_name_chars, min_size=1, max_size=8)


@st.composite
def _valid_events(draw: st.DrawFn) -> tuple[str, dict[str, Any], int, int]:
    """(event_type, payload, expected qty, expected value)."""
    event_type = draw(st.sampled_from(KNOWN_EVENT_TYPES))
    payload: dict[str, Any] = {"sku": draw(_skus), "warehouse": draw(_warehouses)}
    positive = st.integers(min_value=1, max_value=10**9)
    qty, value = 0, 0
    if event_type == EventType.ORDER_CREATED:
        qty = draw(positive)
        payload |= {
            "order_id": draw(st.one_of(st.integers(), st.text(_name_chars, min_size=1))),
            "qty": qty,
            "price": draw(st.floats(min_value=0.01, max_value=1e6)),
            "currency": draw(st.sampled_from(["EUR", "USD", "GBP", "JPY", "CHF"])),
        }
    elif event_type == EventType.ORDER_CANCELLED:
        qty = draw(positive)
        payload |= {"order_id": draw(st.integers(min_value=1)), "qty": qty}
    elif event_type == EventType.STOCK_RECEIVED:
        qty = draw(positive)
        payload["qty"] = qty
    elif event_type == EventType.STOCK_ADJUSTED:
        value = draw(st.integers(min_value=-(10**6), max_value=10**6).filter(bool))
        payload["delta"] = value
    elif event_type == EventType.STOCK_SNAPSHOT:
        value = draw(st.integers(min_value=0, max_value=10**9))
        payload["on_hand"] = value
    elif event_type == EventType.STOCK_ORDERED:
        qty = draw(positive)
        # From 2000 to within 366 days of the events' times (mid 2025).
        value = draw(st.integers(min_value=EARLIEST_TS_MS, max_value=1_760_000_000_000))
        stamp = datetime.fromtimestamp(value / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
        payload |= {"qty": qty, "expected_at": stamp}
    else:
        value = draw(st.integers(min_value=0, max_value=10**9))
        payload["initial_stock"] = value
    return event_type, payload, qty, value


@settings(max_examples=75, deadline=None)
@given(st.lists(_valid_events(), max_size=25))
def test_valid_events_survive_ndjson_in_count_and_order(
    events: list[tuple[str, dict[str, Any], int, int]],
) -> None:
    parsed = parse(*(line(t, p) for t, p, _, _ in events))
    assert parsed.errors == []
    assert parsed.error_lines == 0
    assert len(parsed.events) == len(events)
    got = [(e.event_type, e.sku, e.warehouse, e.qty, e.value) for e in parsed.events]
    want = [(t, p["sku"], p["warehouse"], q, v) for t, p, q, v in events]
    assert got == want
    # ...and through the topic encoding as well.
    decoded, bad = decode_stream_events([encode_stream_event(e) for e in parsed.events])
    assert bad == []
    assert decoded == parsed.events


# --------------------------------------------------------------------------- the API's encoder


def _both(*lines: str) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"tenant_id": TENANT, "received_ms": RECEIVED_MS}
    return parse_ndjson(body(*lines), **kwargs), encode_ndjson(body(*lines), **kwargs)


def _assert_same_outcome(parsed: Any, encoded: Any) -> None:
    """encode_ndjson refuses what parse_ndjson refuses, with the same report, and its records
    decode to parse_ndjson's events (same Kafka keys)."""
    assert encoded.errors == parsed.errors
    assert encoded.error_lines == parsed.error_lines
    assert encoded.foreign_tenant_lines == parsed.foreign_tenant_lines
    assert encoded.deprecated_fields == parsed.deprecated_fields
    assert encoded.events == []
    assert encoded.accepted == parsed.accepted == len(parsed.events)
    decoded, bad = decode_stream_events([value for _, value in encoded.records])
    assert bad == []
    assert decoded == parsed.events
    assert [key for key, _ in encoded.records] == [
        e.key.encode() if e.key is not None else None for e in parsed.events
    ]


@settings(max_examples=75, deadline=None)
@given(
    st.lists(
        st.tuples(
            _valid_events(),
            st.sampled_from([None, "2025-05-31T22:00:00.250Z", "2025-06-01T00:00:00+02:00"]),
            st.booleans(),  # the old sku_id alias instead of sku
        ),
        max_size=25,
    )
)
def test_api_encoder_builds_the_records_of_the_parser(
    events: list[tuple[tuple[str, dict[str, Any], int, int], str | None, bool]],
) -> None:
    lines = []
    for i, ((event_type, payload, _, _), occurred_at, old_alias) in enumerate(events):
        if old_alias:
            payload = {"sku_id": payload["sku"], **{k: v for k, v in payload.items() if k != "sku"}}
        lines.append(line(event_type, payload, event_id=f"e-{i}", occurred_at=occurred_at))
    parsed, encoded = _both(*lines)
    _assert_same_outcome(parsed, encoded)
    # The bulk form (the backfill's): the same records, with line numbers and order fields.
    checked = check_ndjson(body(*lines), tenant_id=TENANT, received_ms=RECEIVED_MS)
    assert checked.errors == parsed.errors
    assert [c.line for c in checked.checked] == list(range(1, len(lines) + 1))
    decoded, bad = decode_stream_events([msgspec.json.encode(c.record) for c in checked.checked])
    assert bad == []
    assert decoded == parsed.events
    for c, event in zip(checked.checked, parsed.events, strict=True):
        if event.event_type == EventType.ORDER_CREATED:
            p = event.payload
            assert c.order == (str(p["order_id"]), float(p["price"]), p["currency"])
        else:
            assert c.order is None


def test_api_encoder_refuses_and_reports_like_the_parser() -> None:
    lines = [VALID_LINE, ""]
    lines += [bad for _, bad, _ in BAD_LINES]
    lines += [
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             tenant_id=OTHER_TENANT),
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             tenant_id=TENANT.upper(), event_id="upper"),
        line("promo.started", {"sku": "A", "warehouse": "W", "x": 1}, event_id="unknown"),
        line(EventType.STOCK_RECEIVED, {"sku": "A", "sku_id": "B", "warehouse": "W", "qty": 1},
             event_id="both"),
        line(EventType.STOCK_ORDERED, {"sku": "A", "warehouse": "W", "qty": 1,
                                       "expected_at": "2025-06-02T08:00:00"}),
        VALID_LINE,
    ]
    parsed, encoded = _both(*lines)
    assert parsed.error_lines == len(BAD_LINES) + 1
    # VALID_LINE has no event_id: each path draws a fresh one, so compare without it.
    for e in parsed.events:
        e.event_id = "x" if e.event_id not in ("upper", "unknown", "both") else e.event_id
    decoded, _ = decode_stream_events([value for _, value in encoded.records])
    for e in decoded:
        e.event_id = "x" if e.event_id not in ("upper", "unknown", "both") else e.event_id
    encoded.records = [
        (k, encode_stream_event(e)) for (k, _), e in zip(encoded.records, decoded, strict=True)
    ]
    _assert_same_outcome(parsed, encoded)


def test_api_encoder_sends_the_payload_as_the_client_wrote_it() -> None:
    sent = (
        '{"order_id":"o-1","sku":"A","warehouse":"W","qty":2,"price":1.5,"currency":"EUR",'
        '"note":{"gift":true}}'
    )
    raw = (
        f'{{"tenant_id":"{TENANT}","event_type":"order.created","event_id":"e1",'
        f'"payload":{sent}}}'
    )
    [(key, value)] = encode_ndjson(raw.encode(), tenant_id=TENANT, received_ms=RECEIVED_MS).records
    assert key == b"A@W"
    assert sent.encode() in value
    [event] = decode_stream_events([value])[0]
    assert (event.qty, event.payload["note"]) == (2, {"gift": True})


def test_api_encoder_writes_the_parsers_bytes_for_lines_off_the_one_pass_path() -> None:
    """Lines the one-pass path leaves to the full parse (old alias, unknown type with an empty
    payload, a tenant_id in another spelling) go to the topic exactly as encode_stream_event
    writes the parser's event."""
    lines = [
        line(EventType.STOCK_RECEIVED, {"sku_id": "A", "warehouse": "W", "qty": 1}, event_id="a"),
        line("promo.started", {}, event_id="b"),
        line(EventType.STOCK_RECEIVED, {"sku": "A", "warehouse": "W", "qty": 1},
             tenant_id=TENANT.upper(), event_id="c"),
    ]
    parsed, encoded = _both(*lines)
    assert [value for _, value in encoded.records] == [
        encode_stream_event(e) for e in parsed.events
    ]
