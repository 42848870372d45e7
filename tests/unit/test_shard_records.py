"""The shard's decoder (payload left unparsed) accepts and refuses exactly the records that
decode_stream_events does, with the same fields."""

from __future__ import annotations

import msgspec
import pytest

from aurora_ray.domain.events import (
    MAX_TS_MS,
    ShardBatch,
    decode_stream_events,
    encode_stream_event,
    parse_ndjson,
)

pytestmark = pytest.mark.unit

TENANT = "00000000-0000-0000-0000-0000000000aa"
_FIELDS = ("event_id", "tenant_id", "event_type", "ts_ms", "received_ms", "sku", "warehouse")


def _record(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e1",
        "tenant_id": TENANT,
        "event_type": "order.created",
        "ts_ms": 1_700_000_000_000,
        "received_ms": 1_700_000_000_500,
        "sku": "A",
        "warehouse": "W1",
        "qty": 2,
        "payload": {"sku": "A", "warehouse": "W1", "qty": 2},
    }
    base.update(fields)
    return msgspec.json.encode({k: v for k, v in base.items() if v is not ...})


def test_same_records_accepted_and_refused() -> None:
    line = (
        b'{"tenant_id":"' + TENANT.encode() + b'","event_type":"stock.snapshot","payload":'
        b'{"sku":"B","warehouse":"W2","on_hand":9,"extra":[1,{"x":null}]}}'
    )
    parsed = parse_ndjson(line, tenant_id=TENANT, received_ms=1_700_000_000_000)
    values = [
        *(encode_stream_event(e) for e in parsed.events),
        _record(),
        _record(payload=...),  # no payload: {} for both
        _record(payload=None),
        _record(payload=[1, 2]),
        _record(payload="text"),
        _record(payload=5),
        _record(payload={}),
        _record(payload={"nested": {"a": [1, 2, {"b": "}"}]}}),
        _record(ts_ms=-1),
        _record(ts_ms=MAX_TS_MS + 1),
        _record(received_ms=MAX_TS_MS + 1),
        _record(qty="2"),
        _record(sku=None, warehouse=None),
        _record(event_type="price.changed", extra_field=1),
        _record(ts_ms=...),
        b'{"event_id":"e1",',  # truncated
        b"not json",
        b"",
        b'{"event_id":"e1","payload":{"a":1}} trailing',
        b'{"event_id":"e","tenant_id":"t","event_type":"x","ts_ms":1,"received_ms":1,'
        b'"payload":{"a":1,}}',  # invalid JSON inside the payload
    ]
    full, full_bad = decode_stream_events(values)
    batch = ShardBatch()
    batch.add(values, range(len(values)))
    lite, lite_bad = batch.records, [index for index, _ in batch.refused]
    assert lite_bad == full_bad
    assert len(lite) == len(full) == 7
    for a, b in zip(full, lite, strict=True):
        assert [getattr(a, f) for f in _FIELDS] == [getattr(b, f) for f in _FIELDS]
        assert (a.qty, a.value, a.key) == (b.qty, b.value, b.key)
        assert msgspec.json.decode(bytes(b.payload)) == a.payload


def test_a_bundle_is_its_records_in_order_and_a_bad_element_alone_is_refused() -> None:
    from aurora_ray.domain.events import encode_bundle

    good = [_record(event_id=f"e{i}", ts_ms=1_700_000_000_000 + i) for i in range(5)]
    bad_element = _record(event_id="late", ts_ms=MAX_TS_MS + 1)
    batch = ShardBatch()
    batch.add(
        [good[0], encode_bundle([good[1], bad_element, good[2]]), b"[not json", good[3]],
        [0, 1, 2, 3],
    )
    batch.add([encode_bundle([good[4]])], [3])
    assert [r.event_id for r in batch.records] == ["e0", "e1", "e2", "e3", "e4"]
    assert batch.partitions == [0, 1, 1, 3, 3]
    assert [tag for tag, _ in batch.refused] == [1, 2]
    assert msgspec.json.decode(batch.refused[0][1])["event_id"] == "late"  # re-encoded alone
    assert batch.refused[1][1] == b"[not json"  # a broken bundle as it came

    batch.add([b"[]"], [4])  # an empty bundle: refused, as the live decoder refuses it
    assert batch.refused[-1] == (4, b"[]") and len(batch.records) == 5
