"""Backfill core: validation with real line numbers (plain, gzip, Parquet), dedup, order."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aurora_ray.backfill import (
    deduplicate,
    event_time_order,
    fact_order_rows,
    iter_chunks,
    validate_chunk,
    validate_source,
    write_rejects,
)
from aurora_ray.domain.events import decode_stream_events
from aurora_ray.testing import ndjson, order, stock_received

pytestmark = pytest.mark.unit

NOW_MS = 1_893_456_000_000  # 2030-01-01: the jobs' clock, after every event of these tests

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-2222-3333-4444-555555555555"
T0 = 1_750_000_000.0


def _events(n: int) -> list[dict]:
    out = []
    for i in range(n):
        event = order(TENANT, f"SKU-{i % 7}", "DE-HAM", 1 + i % 3, at=T0 + i, order_id=f"o-{i}")
        event["event_id"] = f"e-{i}"
        out.append(event)
    return out


def _lines_with_errors(n: int) -> tuple[list[bytes], dict[int, str]]:
    """n good lines with bad ones put in; returns the lines and line number -> bad field."""
    lines = ndjson(_events(n)).splitlines()
    bad_qty = order(TENANT, "SKU-X", "DE-HAM", 1, at=T0)
    bad_qty["payload"]["qty"] = 0
    no_time = order(TENANT, "SKU-X", "DE-HAM", 1, at=T0)
    del no_time["occurred_at"]
    foreign = order(OTHER, "SKU-X", "DE-HAM", 1, at=T0)
    inserts = {
        3: b"{not json",
        10: msgspec.json.encode(bad_qty),
        11: b"",  # blank: skipped, but it still counts as a line
        25: msgspec.json.encode(no_time),
        40: msgspec.json.encode(foreign),
    }
    for at, line in sorted(inserts.items()):
        lines.insert(at - 1, line)
    fields = {3: "line", 10: "payload.qty", 25: "occurred_at", 40: "tenant_id"}
    return lines, fields


def test_rejects_name_the_real_line_and_field_across_chunks() -> None:
    lines, fields = _lines_with_errors(60)
    body = b"\n".join(lines) + b"\n"
    first = validate_chunk(
        b"\n".join(lines[:20]), first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 5
    )
    second = validate_chunk(
        b"\n".join(lines[20:]), first_line=21, tenant_id=TENANT, received_ms=NOW_MS + 5
    )
    table = pa.concat_tables([first, second])
    bad = table.filter(pa.compute.invert(table.column("ok")))
    assert bad.column("line").to_pylist() == sorted(fields)
    for number, reason, raw in zip(
        bad.column("line").to_pylist(),
        bad.column("reason").to_pylist(),
        bad.column("record").to_pylist(),
        strict=True,
    ):
        assert json.loads(reason)[0]["field"] == fields[number]
        assert raw == lines[number - 1]
    good = table.filter(table.column("ok"))
    assert len(good) == 60
    # The accepted rows carry their own lines: line n holds the event written there.
    for number, event_id in zip(
        good.column("line").to_pylist(), good.column("event_id").to_pylist(), strict=True
    ):
        assert json.loads(lines[number - 1])["event_id"] == event_id
    out = io.BytesIO()
    assert write_rejects(bad, out) == 4
    first_reject = json.loads(out.getvalue().splitlines()[0])
    assert first_reject["line"] == 3 and first_reject["raw"] == "{not json"
    assert first_reject["reason"].startswith("line: invalid JSON")
    assert body  # the file form is checked below


@pytest.mark.parametrize("compress", [False, True])
def test_file_chunks_keep_line_numbers_plain_and_gzip(tmp_path: Path, compress: bool) -> None:
    lines, fields = _lines_with_errors(3_000)
    body = b"\n".join(lines) + b"\n"
    path = tmp_path / ("events.ndjson.gz" if compress else "events.ndjson")
    path.write_bytes(gzip.compress(body) if compress else body)
    chunks = list(iter_chunks(str(path), chunk_bytes=64 * 1024))
    assert len(chunks) > 3
    tables = validate_source(str(path), tenant_id=TENANT, received_ms=NOW_MS + 5, engine="local",
                             chunk_bytes=64 * 1024)  # fmt: skip
    table = pa.concat_tables(tables)
    assert len(table) == len([line for line in lines if line.strip()])
    bad = table.filter(pa.compute.invert(table.column("ok")))
    assert bad.column("line").to_pylist() == sorted(fields)
    assert chunks[-1].done == chunks[-1].total
    if not compress:  # Ray Data tasks read plain files by byte range
        from aurora_ray.backfill import _validate_batch

        assert all(body[c.offset : c.offset + len(c.data)] == c.data for c in chunks)
        ranges = pa.table(
            {
                "first_line": [c.first_line for c in chunks],
                "offset": [c.offset for c in chunks],
                "length": [len(c.data) for c in chunks],
            }
        )
        by_range = _validate_batch(
            ranges, tenant_id=TENANT, received_ms=NOW_MS + 5, source=str(path)
        )
        assert by_range.equals(table)


def test_parquet_rows_are_lines(tmp_path: Path) -> None:
    events = _events(5)
    events[2]["payload"]["qty"] = -1
    rows = [{**e, "payload": json.dumps(e["payload"])} for e in events]
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    table = pa.concat_tables(
        validate_source(str(path), tenant_id=TENANT, received_ms=NOW_MS + 5, engine="local")
    )
    assert table.column("ok").to_pylist() == [True, True, False, True, True]
    assert json.loads(table.column("reason")[2].as_py())[0]["field"] == "payload.qty"


def test_records_are_the_topic_encoding_and_missing_ids_are_stable() -> None:
    event = stock_received(TENANT, "SKU-1", "DE-HAM", 4, at=T0)
    body = ndjson([event, event])
    once = validate_chunk(body, first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 42)
    again = validate_chunk(body, first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 43)
    ids = once.column("event_id").to_pylist()
    assert ids == again.column("event_id").to_pylist() and ids[0] == ids[1]
    decoded, bad = decode_stream_events(once.column("record").to_pylist())
    assert not bad and decoded[0].qty == 4 and decoded[0].received_ms == NOW_MS + 42
    assert once.column("key").to_pylist() == ["SKU-1@DE-HAM"] * 2


def test_dedup_in_file_first_line_wins_and_known_ids_drop() -> None:
    events = _events(10)
    events[7]["event_id"] = "e-2"  # a repeat of line 3
    table = validate_chunk(ndjson(events), first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 1)
    plan = deduplicate(table.drop_columns(["ok", "reason"]), {"e-5", "e-9", "unrelated"})
    kept = plan.events.column("event_id").to_pylist()
    assert plan.duplicates_in_file == 1 and plan.duplicates_applied == 2
    assert kept == ["e-0", "e-1", "e-2", "e-3", "e-4", "e-6", "e-8"]
    assert plan.events.column("line").to_pylist()[2] == 3  # the first "e-2" is kept


def test_event_time_order_is_stable_within_a_millisecond() -> None:
    events = _events(6)
    for i, at in enumerate([5, 1, 3, 1, 0, 3]):
        events[i]["occurred_at"] = order(TENANT, "S", "W", 1, at=T0 + at)["occurred_at"]
    table = validate_chunk(ndjson(events), first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 1)
    ordered = event_time_order(table)
    assert ordered.column("event_id").to_pylist() == ["e-4", "e-1", "e-3", "e-2", "e-5", "e-0"]


def test_fact_order_rows_only_orders() -> None:
    events = [*_events(3), stock_received(TENANT, "SKU-1", "DE-HAM", 4, at=T0)]
    table = validate_chunk(
        ndjson(events), first_line=1, tenant_id=TENANT, received_ms=NOW_MS + 1_000
    )
    rows = fact_order_rows(table, ingested_at_ms=2_000)
    assert len(rows) == 3
    assert rows.column("order_id").to_pylist() == ["o-0", "o-1", "o-2"]
    assert rows.column("order_ts")[0].as_py().timestamp() == T0
    from aurora_ray.warehouse.store import conform

    conformed = conform("fact_order", TENANT, rows)
    assert str(conformed.column("price")[0].as_py()) == "9.99"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\n",
        b"a\n" * 40,
        b"a" * 300 + b"\n" + b"b\n" * 10,  # a line longer than a chunk
        b"x" * 250,  # one line, no newline at all
        b"\n".join(b"line %d" % i + b"." * (i % 37) for i in range(400)),  # no final newline
        b"\n".join(b"line %d" % i + b"." * (i % 37) for i in range(400)) + b"\n\n\n",
        b"\n" * 64 + b"z" * 64 + b"\n",  # a cut exactly at a chunk's end
    ],
)
def test_local_line_ranges_cut_where_the_chunks_do(tmp_path: Path, body: bytes) -> None:
    from aurora_ray.backfill import local_line_ranges

    path = tmp_path / "events.ndjson"
    path.write_bytes(body)
    chunks = list(iter_chunks(str(path), chunk_bytes=64))
    ranges = local_line_ranges(str(path), chunk_bytes=64)
    assert ranges == [(c.first_line, c.offset, len(c.data)) for c in chunks]


def test_local_line_ranges_leave_gzip_and_parquet_to_the_reader(tmp_path: Path) -> None:
    from aurora_ray.backfill import local_line_ranges

    zipped = tmp_path / "events.ndjson"  # gzip is found by its bytes, not its name
    zipped.write_bytes(gzip.compress(b"a\nb\n"))
    assert local_line_ranges(str(zipped)) is None
    assert local_line_ranges(str(tmp_path / "events.parquet")) is None


def test_bundles_keep_each_partition_in_order_within_their_limits() -> None:
    from aurora_ray.adapters.kafka import partition_for
    from aurora_ray.backfill import bundle_records

    keys = [f"SKU-{i % 13}@W{i % 2}".encode() for i in range(500)]
    keys[7] = None  # a record without a key: any partition will do
    records = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 50)) for i in range(500)]
    records[100] = b'{"n":100,"pad":"' + b"y" * 3000 + b'"}'  # bigger than a bundle alone
    bundles = bundle_records(keys, records, partitions=4, max_events=10, max_bytes=1000)
    seen: dict[int, list[int]] = {}
    for partition, bundle in bundles:
        items = json.loads(bundle)
        assert len(items) <= 10 and (len(bundle) <= 1000 or len(items) == 1)
        seen.setdefault(partition, []).extend(item["n"] for item in items)
    for partition, numbers in seen.items():
        assert numbers == sorted(numbers)  # each partition's records in their order
        assert all(partition_for(keys[n], 4) == partition for n in numbers)
    assert sorted(n for numbers in seen.values() for n in numbers) == list(range(500))
    assert [p for p, _ in bundles[:4]] == [0, 1, 2, 3]  # the partitions take turns
    assert bundle_records([], [], partitions=4) == []
