"""CSV of hand-made alerts: BOM, header, RFC 4180 quoting, formula injection, UTC, filters."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aurora_ray.adapters.redis_store import alert_member
from aurora_ray.export import (
    ALERT_COLUMNS,
    BOM,
    PREDICTION_COLUMNS,
    CsvExport,
    ExportFilter,
    ExportParamError,
    alert_rows_csv,
    neutralise,
    parse_filter,
    parse_time,
    utc_text,
)

pytestmark = pytest.mark.unit


def alert(**overrides: Any) -> bytes:
    record = {
        "alert_id": "a-1",
        "sku": "SKU-1",
        "warehouse": "DE-HAM",
        "predicted_oos_at": "2025-06-03T09:00:00.000Z",
        "probability": 0.95,
        "as_of": "2025-06-02T09:00:00.000Z",
        "created_at": "2025-06-02T09:00:01.250Z",
        "model_version": "analytic-nb-1",
        **overrides,
    }
    return alert_member(record).encode()


def parse(body: bytes) -> list[list[str]]:
    assert body.startswith(BOM)
    return list(csv.reader(io.StringIO(body[len(BOM) :].decode("utf-8"), newline="")))


def test_bom_header_and_one_row_in_the_documented_order() -> None:
    body = alert_rows_csv([alert()])
    assert body.startswith(b"\xef\xbb\xbfalert_id,sku,warehouse,")
    rows = parse(body)
    assert rows[0] == list(ALERT_COLUMNS)
    assert rows[1] == [
        "a-1",
        "SKU-1",
        "DE-HAM",
        "2025-06-03T09:00:00.000Z",
        "0.95",
        "2025-06-02T09:00:00.000Z",
        "2025-06-02T09:00:01.250Z",
        "analytic-nb-1",
        "",  # an alert written before recommendations: its order's cells are empty
        "",
        "",
        "",
    ]
    assert body.endswith(b"\r\n") and body.count(b"\r\n") == 2  # CRLF line ends


def test_an_alert_with_its_order() -> None:
    order = {
        "order_by": "2025-06-02T21:00:00.000Z",
        "recommended_qty": 24,
        "predicted_oos_at_p10": "2025-06-03T01:00:00.000Z",
        "predicted_oos_at_p90": "2025-06-03T20:00:00.000Z",
    }
    fast = parse(alert_rows_csv([alert(**order)]))[1]
    assert fast[8:] == ["2025-06-02T21:00:00.000Z", "24", *list(order.values())[2:]]
    # A time that needs converting goes through the csv module: the same cells.
    slow = parse(alert_rows_csv([alert(**{**order, "order_by": "2025-06-02T23:00:00+02:00"})]))
    assert slow[1] == fast
    none = parse(alert_rows_csv([alert(order_by=None, recommended_qty=0)]))[1]
    assert none[8:10] == ["", "0"]


def test_column_orders_are_the_api_models_fields() -> None:
    from aurora_ray.api_models import AlertOut, PredictionOut

    assert set(ALERT_COLUMNS) == set(AlertOut.model_fields)
    assert list(ALERT_COLUMNS) == list(AlertOut.model_fields)
    assert list(PREDICTION_COLUMNS) == list(PredictionOut.model_fields)


def test_empty_export_is_bom_and_header() -> None:
    assert alert_rows_csv([]) == BOM + b",".join(c.encode() for c in ALERT_COLUMNS) + b"\r\n"


@pytest.mark.parametrize(
    "sku",
    ['SKU, "big"', "line\nbreak", "carriage\rreturn", 'quote"inside', "comma,", "ünïcödé ☕"],
)
def test_rfc4180_quoting_round_trips(sku: str) -> None:
    body = alert_rows_csv([alert(sku=sku), alert(alert_id="a-2")])
    rows = parse(body)
    assert [r[1] for r in rows[1:]] == [sku, "SKU-1"]
    assert len(rows) == 3


def test_quoted_field_is_rfc4180_text() -> None:
    body = alert_rows_csv([alert(sku='a,"b"')])
    assert b'"a,""b"""' in body


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_injection_is_neutralised(start: str) -> None:
    sku = f'{start}HYPERLINK("http://x","y")'
    rows = parse(alert_rows_csv([alert(sku=sku, warehouse=f"{start}WH", model_version=start)]))
    assert rows[1][1] == "'" + sku
    assert rows[1][2] == f"'{start}WH"
    assert rows[1][7] == "'" + start


def test_numbers_and_plain_text_are_left_alone() -> None:
    assert neutralise("SKU-=1") == "SKU-=1"
    assert neutralise("") == ""
    rows = parse(alert_rows_csv([alert(probability=0.7)]))
    assert rows[1][4] == "0.7"


def test_times_come_out_in_utc_with_z() -> None:
    rows = parse(
        alert_rows_csv(
            [
                alert(
                    as_of="2025-06-02T11:00:00+02:00",
                    created_at="2025-06-02T09:00:00.5",
                    predicted_oos_at=None,
                )
            ]
        )
    )
    assert rows[1][5] == "2025-06-02T09:00:00.000Z"
    assert rows[1][6] == "2025-06-02T09:00:00.500Z"  # naive: taken as UTC
    assert rows[1][3] == ""  # no predicted stock-out
    assert utc_text("2025-06-02T09:00:00.000Z") == "2025-06-02T09:00:00.000Z"


def test_fast_path_and_csv_module_agree() -> None:
    """A chunk of plain rows (joined lines) and one with a row that needs quoting (csv module)
    spell the plain rows identically."""
    order = {"order_by": "2025-06-02T21:00:00.000Z", "recommended_qty": 6}
    plain = [
        alert(alert_id=f"a-{i}", sku=f"SKU-{i}", probability=i / 7, **(order if i % 2 else {}))
        for i in range(50)
    ]
    mixed = [*plain, alert(alert_id="q", sku="x,y")]
    fast = alert_rows_csv(plain)
    slow = alert_rows_csv(mixed)
    assert slow.startswith(fast)
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(ALERT_COLUMNS)
    for member in mixed:
        record = json.loads(member)
        writer.writerow([record.get(c) for c in ALERT_COLUMNS])
    assert slow == BOM + expected.getvalue().encode()


def test_warehouse_and_min_probability_filters() -> None:
    members = [
        alert(alert_id="1", warehouse="DE-HAM", probability=0.9),
        alert(alert_id="2", warehouse="DE-BER", probability=0.9),
        alert(alert_id="3", warehouse="DE-HAM", probability=0.5),
    ]
    ids = [r[0] for r in parse(alert_rows_csv(members, ExportFilter(warehouse="DE-HAM")))[1:]]
    assert ids == ["1", "3"]
    ids = [r[0] for r in parse(alert_rows_csv(members, ExportFilter(min_probability=0.9)))[1:]]
    assert ids == ["1", "2"]


def test_parse_filter_accepts_good_values() -> None:
    f = parse_filter(
        since="2025-06-02T09:00:00Z",
        until="2025-06-02T12:00:00+02:00",
        sku="SKU-1",
        warehouse="DE-HAM",
        min_probability="0.75",
    )
    assert f.since == datetime(2025, 6, 2, 9, tzinfo=UTC)
    assert f.until == datetime(2025, 6, 2, 12, tzinfo=timezone(timedelta(hours=2)))
    assert (f.sku, f.warehouse, f.min_probability) == ("SKU-1", "DE-HAM", 0.75)
    assert parse_filter() == ExportFilter()


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"since": "yesterday"}, "since", "ISO 8601"),
        ({"since": "2025-06-02T09:00:00"}, "since", "time zone"),
        ({"until": "2025-13-01T00:00:00Z"}, "until", "ISO 8601"),
        (
            {"since": "2025-06-02T10:00:00Z", "until": "2025-06-02T09:00:00Z"},
            "until",
            "later than since",
        ),
        ({"min_probability": "high"}, "min_probability", "number"),
        ({"min_probability": "1.5"}, "min_probability", "[0, 1]"),
        ({"sku": " "}, "sku", "empty"),
    ],
)
def test_parse_filter_names_the_bad_parameter(
    kwargs: dict[str, str], param: str, words: str
) -> None:
    with pytest.raises(ExportParamError) as caught:
        parse_filter(**kwargs)
    assert caught.value.param == param
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{param}: ")


def test_parse_time_needs_a_zone() -> None:
    assert parse_time("2025-06-02T09:00:00.123Z", "since").tzinfo is not None
    with pytest.raises(ExportParamError):
        parse_time("2025-06-02", "since")


def test_csv_export_counts_rows_and_reports_progress() -> None:
    seen: list[tuple[int, int | None]] = []

    def chunks(state: CsvExport) -> Any:
        yield b"header"
        state.rows += 2
        yield b"two rows"

    export = CsvExport(chunks, kind="alerts", expected=2, progress=lambda n, t: seen.append((n, t)))
    out = io.BytesIO()
    assert export.write_to(out) == 2
    assert out.getvalue() == b"headertwo rows"
    assert export.bytes == len(b"headertwo rows")
    assert seen == [(0, 2), (2, 2)]
