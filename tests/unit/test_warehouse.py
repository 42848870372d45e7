"""The Parquet warehouse (aurora_ray.warehouse): schemas, idempotent writes, quality, retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aurora_ray.warehouse import (
    DIM_SKU,
    FACT_ORDER,
    FACT_PREDICTION,
    SCHEMAS,
    DataQualityError,
    Warehouse,
    prediction_id,
)
from aurora_ray.warehouse.schema import file_schema

pytestmark = pytest.mark.unit

TENANT = "3f6b2a52-5a53-4c4e-9d4b-0c1f2a3b4c5d"
T0 = datetime(2025, 6, 1, 22, 0, tzinfo=UTC)


def orders(n: int, *, start: datetime = T0, step: timedelta = timedelta(hours=1)) -> pa.Table:
    times = [start + i * step for i in range(n)]
    return pa.table(
        {
            "event_id": [f"e-{i}" for i in range(n)],
            "order_id": [str(i) for i in range(n)],
            "sku_id": [f"SKU-{i % 3}" for i in range(n)],
            "warehouse_id": ["DE-HAM"] * n,
            "qty": [1 + i % 4 for i in range(n)],
            "price": [9.99 + i for i in range(n)],
            "currency": ["EUR"] * n,
            "order_ts": times,
            "ingested_at": [t + timedelta(seconds=30) for t in times],
        }
    )


def predictions(n: int, *, nulls: int = 0, day: datetime = T0) -> pa.Table:
    at = [day.replace(hour=0) + timedelta(seconds=i) for i in range(n)]
    return pa.table(
        {
            "prediction_id": [prediction_id(TENANT, "S", "W", i, "m1") for i in range(n)],
            "sku_id": ["S"] * n,
            "warehouse_id": ["W"] * n,
            "predicted_at": at,
            "predicted_oos_at": [None] * n,
            "probability": [None if i < nulls else 0.5 for i in range(n)],
            "model_version": ["m1"] * n,
            "feature_vector": [b"\x00" * 32] * n,
            "on_hand": [3.0] * n,
        },
    )


def test_schemas_follow_the_document_with_extensions() -> None:
    order = SCHEMAS[FACT_ORDER]
    assert order.field("order_id").type == pa.string()
    assert order.field("price").type == pa.decimal128(10, 2)
    assert order.field("qty").type == pa.int32()
    assert order.field("order_ts").type == pa.timestamp("us", tz="UTC")
    assert order.field("order_date").type == pa.date32()
    prediction = SCHEMAS[FACT_PREDICTION]
    assert {"prediction_id", "model_version", "feature_vector", "on_hand"} <= set(prediction.names)
    assert prediction.field("prediction_id").type == pa.int64()
    assert SCHEMAS[DIM_SKU].names[:2] == ["sku_id", "tenant_id"]
    assert "tenant_id" not in file_schema(FACT_ORDER).names
    assert "order_date" not in file_schema(FACT_ORDER).names


def test_prediction_id_is_deterministic_and_63_bit() -> None:
    a = prediction_id(TENANT, "S", "W", 1, "m1")
    assert a == prediction_id(TENANT, "S", "W", 1, "m1")
    assert a != prediction_id(TENANT, "S", "W", 2, "m1")
    assert 0 <= a < 2**63


def test_write_splits_by_day_with_snappy_files(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    result = wh.write_fact_order(TENANT, orders(5), batch_id="p0-0-4")
    assert result.rows == 5
    assert result.days == [date(2025, 6, 1), date(2025, 6, 2)]
    folder = tmp_path / FACT_ORDER / f"tenant_id={TENANT}"
    assert sorted(p.name for p in folder.iterdir()) == [
        "order_date=2025-06-01",
        "order_date=2025-06-02",
    ]
    file = folder / "order_date=2025-06-01" / "p0-0-4.parquet"
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == "SNAPPY"
    table = wh.read(FACT_ORDER, TENANT)
    assert table.schema == SCHEMAS[FACT_ORDER]
    assert table.num_rows == 5
    assert set(table.column("tenant_id").to_pylist()) == {TENANT}
    assert wh.read(FACT_ORDER, TENANT, start=date(2025, 6, 2)).num_rows == 3
    assert wh.read(FACT_ORDER, TENANT, end="2025-06-01").num_rows == 2
    assert not list(folder.rglob(".*"))  # no temporary file left


def test_same_batch_id_twice_gives_the_same_rows(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    wh.write_fact_order(TENANT, orders(10), batch_id="p0-0-9")
    wh.write_fact_order(TENANT, orders(10), batch_id="p0-0-9")
    assert wh.read(FACT_ORDER, TENANT).num_rows == 10
    wh.write_fact_order(TENANT, orders(2, start=T0 + timedelta(days=3)), batch_id="p0-10-11")
    assert wh.read(FACT_ORDER, TENANT).num_rows == 12
    assert wh.event_ids(TENANT) == {f"e-{i}" for i in range(10)}
    assert wh.event_ids(TENANT, start="2025-06-02", end="2025-06-02") == {
        f"e-{i}" for i in range(2, 10)
    }


def test_price_at_or_below_zero_fails_the_write_naming_the_rows(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    table = orders(6)
    table = table.set_column(
        table.schema.get_field_index("price"),
        "price",
        pa.array([1.0, 0.0, 2.0, -3.5, None, 4.0]),
    )
    with pytest.raises(DataQualityError) as failure:
        wh.write_fact_order(TENANT, table, batch_id="bad")
    assert [r.index for r in failure.value.rows] == [1, 3, 4]
    assert failure.value.rows[1].event_id == "e-3"
    assert failure.value.rows[1].sku == "SKU-0"
    assert failure.value.rows[1].price == -3.5
    message = str(failure.value)
    assert "3 of 6 rows" in message
    assert "row 3 (event_id=e-3, sku=SKU-0, price=-3.5)" in message
    assert not (tmp_path / FACT_ORDER).exists()


def test_ingestion_delay_is_reported(tmp_path: Path) -> None:
    table = orders(3)
    late = [t + timedelta(minutes=45) for t in table.column("order_ts").to_pylist()]
    table = table.set_column(table.schema.get_field_index("ingested_at"), "ingested_at", [late])
    result = Warehouse(str(tmp_path)).write_fact_order(TENANT, table, batch_id="late")
    assert result.max_delay_s == pytest.approx(45 * 60)


@pytest.mark.parametrize(
    ("rows", "nulls", "quarantined"), [(1000, 1, False), (1000, 2, True), (999, 0, False)]
)
def test_null_probabilities_over_a_tenth_of_a_percent_quarantine_the_partition(
    tmp_path: Path, rows: int, nulls: int, quarantined: bool
) -> None:
    wh = Warehouse(str(tmp_path))
    result = wh.write_fact_prediction(TENANT, predictions(rows, nulls=nulls), batch_id="shard0-1")
    partition = Path(f"{FACT_PREDICTION}/tenant_id={TENANT}/prediction_date=2025-06-01")
    in_quarantine = (tmp_path / "quarantine" / partition / "shard0-1.parquet").exists()
    published = (tmp_path / partition / "shard0-1.parquet").exists()
    assert in_quarantine is quarantined
    assert published is not quarantined
    assert bool(result.quarantined) is quarantined
    if quarantined:
        assert "2025-06-01" in result.quarantined
        assert "null" in result.quarantined["2025-06-01"]
        assert wh.read(FACT_PREDICTION, TENANT).num_rows == 0
    else:
        assert wh.read(FACT_PREDICTION, TENANT).num_rows == rows


def test_retention_drops_only_old_partitions(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    now = datetime(2025, 9, 1, 12, tzinfo=UTC)
    for days_ago in (0, 90, 91, 400):
        start = (now - timedelta(days=days_ago)).replace(hour=1)
        wh.write_fact_order(TENANT, orders(1, start=start), batch_id=f"b{days_ago}")
        wh.write_fact_prediction(TENANT, predictions(1, day=start), batch_id=f"b{days_ago}")
    dry = wh.retention(now, dry_run=True)
    assert sorted((r.table, r.day) for r in dry.removed) == [
        (FACT_ORDER, date(2024, 7, 28)),
        (FACT_ORDER, date(2025, 6, 2)),
    ]
    assert wh.read(FACT_ORDER, TENANT).num_rows == 4  # a dry run removes nothing
    report = wh.retention(now)
    assert report.as_dict()["partitions"] == 2
    kept = sorted(wh.read(FACT_ORDER, TENANT).column("order_date").to_pylist())
    assert kept == [date(2025, 6, 3), date(2025, 9, 1)]
    assert wh.read(FACT_PREDICTION, TENANT).num_rows == 4  # within two years
    later = wh.retention(now + timedelta(days=365))
    assert {r.table for r in later.removed} == {FACT_ORDER, FACT_PREDICTION}
    assert wh.read(FACT_PREDICTION, TENANT).num_rows == 3


def test_file_uri_and_plain_path_reach_the_same_tables(tmp_path: Path) -> None:
    Warehouse(str(tmp_path)).write_fact_order(TENANT, orders(4), batch_id="p0-0-3")
    by_uri = Warehouse(tmp_path.as_uri())
    assert by_uri.read(FACT_ORDER, TENANT).num_rows == 4
    fs, path = by_uri.path(FACT_ORDER, TENANT)
    assert path.endswith(f"{FACT_ORDER}/tenant_id={TENANT}")
    assert fs.get_file_info(path).is_file is False
    assert Warehouse(str(tmp_path / "empty")).read(FACT_ORDER, TENANT).num_rows == 0


def test_dimension_writes_keep_the_latest_snapshot(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    first = pa.table({"sku_id": ["A", "B"], "category": ["x", "y"], "initial_stock": [1, 2]})
    wh.write(DIM_SKU, TENANT, first, batch_id="s1")
    second = pa.table({"sku_id": ["A", "B", "C"], "category": ["x", "y", "z"]})
    wh.write(DIM_SKU, TENANT, second, batch_id="s2")
    table = wh.read(DIM_SKU, TENANT)
    assert sorted(table.column("sku_id").to_pylist()) == ["A", "B", "C"]


def test_bad_input_names_the_problem(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path))
    with pytest.raises(ValueError, match="unknown warehouse table"):
        wh.write("fact_nothing", TENANT, orders(1), batch_id="x")
    with pytest.raises(ValueError, match="batch_id"):
        wh.write_fact_order(TENANT, orders(1), batch_id="../escape")
    with pytest.raises(ValueError, match="required column 'event_id'"):
        wh.write_fact_order(TENANT, orders(1).drop_columns(["event_id"]), batch_id="x")
    with pytest.raises(ValueError, match="'qty' cannot be read"):
        table = orders(1)
        wh.write_fact_order(TENANT, table.set_column(4, "qty", pa.array(["many"])), batch_id="x")
    with pytest.raises(ValueError, match="unknown column"):
        wh.write_fact_order(
            TENANT, orders(1).append_column("color", pa.array(["red"])), batch_id="x"
        )


def test_a_price_too_large_for_decimal_10_2_fails_the_write_instead_of_reading_zero(
    tmp_path: Path,
) -> None:
    """The cast to DECIMAL(10, 2) is unsafe (so that a rounded float's binary noise goes); it
    turned 1e12 into 0.00. Now it refuses any value the precision cannot hold, or NaN."""
    wh = Warehouse(str(tmp_path))
    for bad in (1e12, 99_999_999.996, float("nan"), float("inf")):
        table = orders(3)
        table = table.set_column(
            table.schema.get_field_index("price"), "price", pa.array([2.5, bad, 3.0])
        )
        with pytest.raises(ValueError, match=r"column 'price' cannot be read.*row 1"):
            wh.write_fact_order(TENANT, table, batch_id="x")
    table = orders(1)
    table = table.set_column(
        table.schema.get_field_index("price"), "price", pa.array([99_999_999.99])
    )
    wh.write_fact_order(TENANT, table, batch_id="top")
    assert str(wh.read(FACT_ORDER, TENANT).column("price")[0]) == "99999999.99"


def test_check_raises_what_write_would_and_writes_nothing(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    wh.check(FACT_ORDER, TENANT, orders(5))
    bad = orders(2).set_column(4, "qty", pa.array(["many", "few"]))
    with pytest.raises(ValueError, match="'qty' cannot be read"):
        wh.check(FACT_ORDER, TENANT, bad)
    with pytest.raises(DataQualityError):
        wh.check(FACT_ORDER, TENANT, orders(2).set_column(5, "price", pa.array([1.0, -1.0])))
    assert wh.prepare(FACT_ORDER, TENANT, orders(2)).schema == SCHEMAS[FACT_ORDER]
    assert not (tmp_path / "wh").exists()


def test_order_fields_take_what_fact_order_takes_and_name_the_field_otherwise() -> None:
    import msgspec

    from aurora_ray.warehouse.quality import order_fields, sku_fields

    def fields(payload: object, qty: int = 1) -> tuple[object, object, object]:
        f = order_fields(msgspec.Raw(msgspec.json.encode(payload)), qty)
        return f.order_id, f.price, f.currency

    good = {"order_id": "o-1", "sku": "A", "warehouse": "W", "qty": 2, "price": 9.5}
    assert fields({**good, "currency": "EUR"}) == ("o-1", 9.5, "EUR")
    assert fields({"order_id": 17, "price": 3, "currency": "USD"}) == (17, 3.0, "USD")
    assert fields({"order_id": "o", "price": 99_999_999.99, "currency": "EUR"}, 2**31 - 1)[1]
    refused = {
        "order_id": [{}, {"order_id": 1.5}, {"order_id": "x" * 129}, {"order_id": ""}],
        "price": [
            {"price": "12.50"},
            {"price": None},
            {"price": 0},
            {"price": 100_000_000},
            {"price": 0.004},
            {"price": True},
        ],
        "currency": [{"currency": 7}, {"currency": "eur"}, {"currency": "EURO"}],
    }
    for field, cases in refused.items():
        for case in cases:
            payload = {"order_id": "o-1", "price": 2.5, "currency": "EUR", **case}
            payload = {k: v for k, v in payload.items() if case or k != field}
            with pytest.raises(ValueError, match=field):
                fields(payload)
    with pytest.raises(ValueError, match="qty"):
        fields({"order_id": "o-1", "price": 2.5, "currency": "EUR"}, 2**31)
    with pytest.raises(ValueError, match="out of range"):
        order_fields(b'{"order_id":"o","price":1e400,"currency":"EUR"}', 1)
    deep = b'{"order_id":"o","price":1,"currency":"EUR","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(RecursionError):  # the caller's to catch (the sink dead-letters it)
        order_fields(deep, 1)

    sku = sku_fields(b'{"sku":"A","warehouse":"W","category":"tea","initial_stock":7}')
    assert (sku.category, sku.brand, sku.initial_stock) == ("tea", None, 7)
    for bad, field in (
        (b'{"category":5}', "category"),
        (b'{"brand":["x"]}', "brand"),
        (b'{"initial_stock":"ten"}', "initial_stock"),
        (b'{"initial_stock":2147483648}', "initial_stock"),
    ):
        with pytest.raises(ValueError, match=field):
            sku_fields(bad)
