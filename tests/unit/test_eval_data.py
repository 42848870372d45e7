"""Loading, cleaning, splitting and scoping of the evaluation data (aurora_ray.evaluation.data)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aurora_ray.evaluation.data import (
    COLUMNS,
    TEST_FROM,
    clean_demand,
    load_transactions,
    select_skus,
    split,
)

pytestmark = pytest.mark.unit

RETAIL_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
RETAIL_II = {"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"}

RAW_ROWS: list[tuple[Any, ...]] = [
    ("536365", "85123A", "WHITE HANGING HEART", 6, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
    ("536365", "71053", "WHITE METAL LANTERN", 6, "2010-12-01 08:26:00", 3.39, 17850.0, "UK"),
    ("C536379", "D", "Discount", -1, "2010-12-01 09:41:00", 27.5, 14527.0, "UK"),
    ("536414", "22139", None, 56, "2010-12-01 11:52:00", 0.0, None, "United Kingdom"),
]


def raw_frame(columns: list[str] = RETAIL_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(RAW_ROWS, columns=RETAIL_COLUMNS).rename(
        columns=dict(zip(RETAIL_COLUMNS, columns, strict=True))
    )


def retail_ii_columns() -> list[str]:
    return [RETAIL_II.get(c, c) for c in RETAIL_COLUMNS]


def check_loaded(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4
    assert df["invoice"].tolist() == ["536365", "536365", "C536379", "536414"]
    # Codes stay text even when they look like numbers.
    assert df["sku"].tolist() == ["85123A", "71053", "D", "22139"]
    assert df["qty"].dtype == "int64"
    assert df["qty"].tolist() == [6, 6, -1, 56]
    assert str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00", tz="UTC")
    assert df["price"].tolist() == [2.55, 3.39, 27.5, 0.0]
    assert df["customer"].iloc[0] == "17850"
    assert pd.isna(df["customer"].iloc[3])
    assert df["country"].tolist() == ["UK", "UK", "UK", "United Kingdom"]


@pytest.mark.parametrize("schema", ["Online Retail", "Online Retail II"])
@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "gzip-without-suffix"])
def test_load_formats_and_schemas(tmp_path: Path, schema: str, fmt: str) -> None:
    columns = RETAIL_COLUMNS if schema == "Online Retail" else retail_ii_columns()
    frame = raw_frame(columns)
    if fmt == "parquet":
        path = tmp_path / "data.parquet"
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        path = tmp_path / "data.csv"
        frame.to_csv(path, index=False)
    else:
        path = tmp_path / ("data.csv.gz" if fmt == "csv.gz" else "data.bin")
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            frame.to_csv(fh, index=False)
    check_loaded(load_transactions(path))


def test_load_parquet_with_timestamp_column(tmp_path: Path) -> None:
    frame = raw_frame()
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"])  # naive: read as UTC
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    check_loaded(load_transactions(path))


def test_load_names_missing_columns(tmp_path: Path) -> None:
    frame = raw_frame().drop(columns=["UnitPrice", "Country"])
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        load_transactions(path)
    message = str(err.value)
    assert "UnitPrice" in message and "Country" in message
    assert "Price" in message and "Customer ID" in message  # what Online Retail II lacks


# -- cleaning -------------------------------------------------------------------------------------


def demand_frame(rows: list[tuple[str, str, int, str, float]]) -> pd.DataFrame:
    """Loaded-style rows from (invoice, sku, qty, time, price)."""
    return pd.DataFrame(
        {
            "invoice": pd.array([r[0] for r in rows], dtype="string"),
            "sku": pd.array([r[1] for r in rows], dtype="string"),
            "qty": [r[2] for r in rows],
            "ts": pd.to_datetime([r[3] for r in rows], utc=True),
            "price": [r[4] for r in rows],
            "customer": pd.array(["1"] * len(rows), dtype="string"),
            "country": pd.array(["UK"] * len(rows), dtype="string"),
        }
    )


def test_each_cleaning_rule_removes_what_it_should() -> None:
    rows = [
        ("1", "10001", 5, "2011-01-03 10:00", 1.0),  # kept
        ("C2", "10001", -5, "2011-01-03 11:00", 1.0),  # cancellation
        ("A3", "10001", 1, "2011-01-03 12:00", 5.0),  # adjustment
        ("4", "POST", 1, "2011-01-03 12:00", 18.0),  # non-product code
        ("4", "DCGS0076", 1, "2011-01-03 12:00", 2.0),  # non-product code
        ("5", "10001", -3, "2011-01-04 09:00", 0.0),  # write-off: qty <= 0
        ("6", "10001", 0, "2011-01-04 09:00", 1.0),  # qty 0
        ("7", "10001", 2, "2011-01-04 09:00", 0.0),  # free line: price <= 0
        ("8", "10002a", 1, "2011-01-04 10:00", 1.0),  # kept, upper-cased
        ("8", "10002A", 1, "2011-01-04 10:00", 1.0),  # duplicate once upper-cased
        ("9", "10003", 2, "2011-01-04 11:00", 1.0),  # kept
        ("9", "10003", 2, "2011-01-04 11:00", 1.0),  # exact duplicate
    ]
    demand, report = clean_demand(demand_frame(rows))
    assert report.removed == {
        "missing_value": 0,
        "cancellation": 1,
        "adjustment": 1,
        "non_product_code": 2,
        "non_positive_qty": 2,
        "non_positive_price": 1,
        "duplicate": 2,
    }
    assert report.rows_in == 12
    assert report.rows_out == len(demand) == 3
    assert sum(report.removed.values()) == report.rows_in - report.rows_out
    assert report.recased_rows == 1
    assert demand["invoice"].tolist() == ["1", "8", "9"]
    assert demand["sku"].tolist() == ["10001", "10002A", "10003"]
    assert report.skus_out == 3
    assert report.capped_rows == 0 and report.units_out == 8
    assert list(demand.columns) == list(COLUMNS)


def test_missing_values_are_removed_first() -> None:
    frame = demand_frame([("1", "10001", 5, "2011-01-03 10:00", 1.0)] * 2)
    frame.loc[1, "sku"] = pd.NA
    demand, report = clean_demand(frame)
    assert report.removed["missing_value"] == 1
    assert len(demand) == 1


def test_cap_winsorises_per_sku_at_a_multiple_of_the_median() -> None:
    # SKU 10001: usual line 4 -> cap max(10, 3 * 4) = 12; SKU 10002: usual 1 -> cap 10 (floor).
    rows = [("1", "10001", 4, f"2011-01-{d:02d} 10:00", 1.0) for d in range(3, 9)]
    rows += [("2", "10001", 50, "2011-01-10 10:00", 1.0)]
    rows += [("3", "10002", 1, f"2011-01-{d:02d} 10:00", 1.0) for d in range(3, 9)]
    rows += [("4", "10002", 11, "2011-01-10 11:00", 1.0), ("5", "10002", 10, "2011-01-10 12:00", 1)]
    demand, report = clean_demand(demand_frame(rows), cap_multiple=3, cap_floor=10)
    by_invoice = dict(zip(demand["invoice"], demand["qty"], strict=True))
    assert by_invoice["2"] == 12
    assert by_invoice["4"] == 10
    assert by_invoice["5"] == 10  # at the cap: untouched
    assert report.capped_rows == 2
    assert report.capped_units == (50 - 12) + (11 - 10)
    assert report.units_before_cap - report.units_out == report.capped_units
    assert len(demand) == len(rows)  # capping keeps rows
    assert report.largest_capped[0]["qty"] == 50


def test_cap_fitted_before_a_time_ignores_later_lines() -> None:
    early = [("1", "10001", 2, f"2011-01-{d:02d} 10:00", 1.0) for d in range(3, 9)]
    late = [("2", "10001", 40, f"2011-03-{d:02d} 10:00", 1.0) for d in range(1, 11)]
    frame = demand_frame(early + late)
    _, fitted_all = clean_demand(frame, cap_multiple=5, cap_floor=1)
    assert fitted_all.capped_rows == 0  # the median over all lines is 40
    _, fitted_early = clean_demand(
        frame, cap_multiple=5, cap_floor=1, cap_fit_before=datetime(2011, 2, 1, tzinfo=UTC)
    )
    assert fitted_early.capped_rows == 10  # cap 5 * 2 = 10
    assert fitted_early.capped_units == 10 * 30


def test_a_sku_with_few_lines_is_capped_by_the_overall_median() -> None:
    rows = [("1", "10001", 3, f"2011-01-{d:02d} 10:00", 1.0) for d in range(3, 13)]
    rows.append(("2", "10009", 80995, "2011-01-13 10:00", 2.08))  # a lone absurd line
    demand, report = clean_demand(demand_frame(rows), cap_multiple=50, cap_floor=100)
    assert demand.loc[demand["sku"] == "10009", "qty"].item() == 150  # max(100, 50 * 3)
    assert report.capped_rows == 1


def test_demand_is_sorted_by_time_ties_in_input_order() -> None:
    rows = [
        ("2", "10001", 1, "2011-01-04 10:00", 1.0),
        ("1", "10002", 1, "2011-01-03 10:00", 1.0),
        ("3", "10003", 1, "2011-01-04 10:00", 1.0),
    ]
    demand, _ = clean_demand(demand_frame(rows))
    assert demand["invoice"].tolist() == ["1", "2", "3"]
    assert demand.index.tolist() == [0, 1, 2]


# -- split and scope ------------------------------------------------------------------------------


def test_split_by_time_boundary_goes_to_test() -> None:
    rows = [
        ("1", "10001", 1, "2011-08-31 23:59", 1.0),
        ("2", "10001", 1, "2011-09-01 00:00", 1.0),
        ("3", "10001", 1, "2011-09-02 10:00", 1.0),
    ]
    demand, _ = clean_demand(demand_frame(rows))
    train, test = split(demand, TEST_FROM)
    assert train["invoice"].tolist() == ["1"]
    assert test["invoice"].tolist() == ["2", "3"]
    naive_train, _ = split(demand, datetime(2011, 9, 1))  # noqa: DTZ001 - naive means UTC
    assert naive_train["invoice"].tolist() == ["1"]


def test_select_skus_counts_distinct_active_days() -> None:
    rows = [("1", "10001", 1, f"2011-01-{d:02d} 10:00", 1.0) for d in range(1, 4)]
    rows += [("2", "10002", 1, "2011-01-01 10:00", 1.0)] * 1
    rows += [("3", "10002", 1, "2011-01-01 11:00", 1.0), ("4", "10002", 1, "2011-01-02 10:00", 1)]
    demand, _ = clean_demand(demand_frame(rows))
    assert select_skus(demand, min_active_days=3) == ["10001"]
    assert select_skus(demand, min_active_days=2) == ["10001", "10002"]
    assert select_skus(demand.iloc[:0], min_active_days=1) == []
    with pytest.raises(ValueError):
        select_skus(demand, min_active_days=0)
