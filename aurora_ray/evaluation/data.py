"""Real transaction data for the offline evaluation: loading, cleaning into demand, splitting.

Why: the evaluation replays real demand (the UCI "Online Retail" invoice lines) through a
simulated inventory, so the first question is what counts as a *sale*. The raw data mixes sales
with cancellations, returns, bad-debt adjustments, postage and fee lines, stock write-offs at price
0, duplicated rows, lower/upper-case variants of one code and a few absurd quantities. Each of
these would either invent demand or hide it, so :func:`clean_demand` removes them by explicit,
ordered rules and counts what each rule removed (:class:`CleaningReport`), so that the protocol
write-up (docs/evaluation.md) can quote the numbers.

The split is by time only (:func:`split`): everything the simulated retailer and any model may
learn from lies before ``test_from``; the test period is never used for tuning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

__all__ = [
    "COLUMNS",
    "PRODUCT_CODE_PATTERN",
    "SCHEMAS",
    "TEST_FROM",
    "CleaningReport",
    "clean_demand",
    "load_transactions",
    "select_skus",
    "split",
]

COLUMNS: Final = ("invoice", "sku", "qty", "ts", "price", "customer", "country")
"""The normalised columns :func:`load_transactions` returns, in this order."""

SCHEMAS: Final[Mapping[str, Mapping[str, str]]] = {
    "Online Retail": {
        "InvoiceNo": "invoice",
        "StockCode": "sku",
        "Quantity": "qty",
        "InvoiceDate": "ts",
        "UnitPrice": "price",
        "CustomerID": "customer",
        "Country": "country",
    },
    "Online Retail II": {
        "Invoice": "invoice",
        "StockCode": "sku",
        "Quantity": "qty",
        "InvoiceDate": "ts",
        "Price": "price",
        "Customer ID": "customer",
        "Country": "country",
    },
}
"""Source column -> normalised column, per accepted schema. ``Description`` is accepted but not
kept: nothing downstream needs it, and it is the column with encoding and whitespace noise."""

PRODUCT_CODE_PATTERN: Final = r"\d{5}[A-Z]*"
"""A product StockCode (after upper-casing): 5 digits and optional letters, e.g. ``85123A``.
Everything else is postage, fees, manual lines, samples, vouchers or adjustments."""

TEST_FROM: Final = datetime(2011, 9, 1, tzinfo=UTC)
"""Start of the test period of the protocol: training before, test from then on."""

_TEXT: Final = "string"  # pandas' nullable string dtype: the same in pandas 2.2 and 3.x
_PARQUET_MAGIC: Final = b"PAR1"
_GZIP_MAGIC: Final = b"\x1f\x8b"


def _detect_schema(columns: list[str], path: Path) -> Mapping[str, str]:
    present = set(columns)
    missing: dict[str, list[str]] = {}
    for name, mapping in SCHEMAS.items():
        lacking = [c for c in mapping if c not in present]
        if not lacking:
            return mapping
        missing[name] = lacking
    detail = "; ".join(f"{name!r} lacks {', '.join(cols)}" for name, cols in missing.items())
    raise ValueError(
        f"{path}: the columns match neither accepted schema ({detail}); found columns: "
        f"{', '.join(columns) or 'none'}"
    )


def _read_raw(path: Path) -> tuple[pd.DataFrame, Mapping[str, str]]:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == _PARQUET_MAGIC:
        schema = _detect_schema(list(pq.read_schema(path).names), path)
        return pd.read_parquet(path, columns=list(schema)), schema
    compression = "gzip" if magic[:2] == _GZIP_MAGIC else None
    header = pd.read_csv(path, nrows=0, compression=compression)
    schema = _detect_schema([str(c) for c in header.columns], path)
    text_columns = {c: _TEXT for c, out in schema.items() if out not in ("qty", "price")}
    raw = pd.read_csv(
        path,
        usecols=list(schema),
        dtype=text_columns,
        compression=compression,
        keep_default_na=False,
        na_values=[""],
    )
    return raw, schema


def _text(values: pd.Series) -> pd.Series:
    return values.astype(_TEXT).str.strip()


def _customer(values: pd.Series) -> pd.Series:
    """Customer ids as text: ``17850`` whether the source wrote 17850, 17850.0 or "17850.0"."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = pd.to_numeric(values)
        whole = numbers.notna() & (numbers == np.floor(numbers))
        if bool(whole.eq(numbers.notna()).all()):
            return numbers.astype("Int64").astype(_TEXT)
        return numbers.astype(_TEXT)
    text = _text(values).str.replace(r"\.0+$", "", regex=True)
    return text.mask(text == "")


def _timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps. The source has no time zone; its times are read as UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    else:
        stamps = pd.to_datetime(values, utc=True)
    return stamps.astype("datetime64[ns, UTC]")


def load_transactions(path: Path) -> pd.DataFrame:
    """Invoice lines from CSV (plain or gzip, detected by content) or Parquet, normalised.

    Accepts the "Online Retail" columns (InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country, and Description which is ignored) or the "Online Retail II" ones
    (Invoice, Price, Customer ID instead of InvoiceNo, UnitPrice, CustomerID); a file with
    neither raises :class:`ValueError` naming the missing columns of each schema.

    Returns the columns of :data:`COLUMNS`, rows in file order and nothing dropped: ``invoice``,
    ``sku``, ``customer`` and ``country`` as text (codes are read as strings, so ``85123A`` and
    ``C536379`` never mix types; ``customer`` is missing where the source has no id), ``qty``
    int64, ``ts`` UTC timestamps, ``price`` float64 (pounds sterling for this data).
    """
    path = Path(path)
    raw, schema = _read_raw(path)
    renamed = raw.rename(columns=dict(schema))
    qty = pd.to_numeric(renamed["qty"])
    if bool(qty.isna().any()) or bool((qty != np.floor(qty)).any()):
        raise ValueError(f"{path}: Quantity must be a whole number on every row")
    out = pd.DataFrame(
        {
            "invoice": _text(renamed["invoice"]),
            "sku": _text(renamed["sku"]),
            "qty": qty.astype(np.int64),
            "ts": _timestamps(renamed["ts"]),
            "price": pd.to_numeric(renamed["price"]).astype(np.float64),
            "customer": _customer(renamed["customer"]),
            "country": _text(renamed["country"]),
        }
    )
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class CleaningReport:
    """What :func:`clean_demand` did, rule by rule, for the protocol write-up.

    ``removed`` maps each rule to the rows it removed, in the order the rules are applied (a row
    is counted under the first rule that removes it, so the counts add up to
    ``rows_in - rows_out``). Capping keeps rows and only lowers quantities: ``capped_rows`` lines
    were lowered, removing ``capped_units`` units out of ``units_before_cap``.
    """

    rows_in: int
    removed: dict[str, int]
    rows_out: int
    recased_rows: int
    capped_rows: int
    capped_units: int
    units_before_cap: int
    units_out: int
    skus_out: int
    cap_multiple: float
    cap_floor: int
    cap_fit_before: datetime | None = None
    largest_capped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, e.g. for JSON."""
        return {
            "rows_in": self.rows_in,
            "removed": dict(self.removed),
            "rows_out": self.rows_out,
            "recased_rows": self.recased_rows,
            "capped_rows": self.capped_rows,
            "capped_units": self.capped_units,
            "units_before_cap": self.units_before_cap,
            "units_out": self.units_out,
            "skus_out": self.skus_out,
            "cap_multiple": self.cap_multiple,
            "cap_floor": self.cap_floor,
            "cap_fit_before": None if self.cap_fit_before is None else str(self.cap_fit_before),
            "largest_capped": list(self.largest_capped),
        }


def _utc(when: datetime | pd.Timestamp) -> pd.Timestamp:
    """A naive time is read as UTC, like the data itself."""
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def clean_demand(
    df: pd.DataFrame,
    *,
    cap_multiple: float = 50.0,
    cap_floor: int = 100,
    cap_fit_before: datetime | None = None,
    min_fit_lines: int = 5,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Keep only invoice lines that are demand for a product; cap absurd quantities.

    Rules, applied in this order (a row is counted under the first rule that hits it):

    1. ``missing_value``: no invoice, SKU, time, quantity or price (nothing to replay).
    2. ``cancellation``: invoice starting with ``C``. Cancellations and returns are not demand;
       the original sale line stays (the goods were ordered, and left the shelf).
    3. ``adjustment``: invoice starting with ``A`` (bad-debt bookkeeping, not goods).
    4. ``non_product_code``: SKU (upper-cased) not 5 digits + optional letters: postage,
       carriage, fees, manual lines, discounts, samples, vouchers.
    5. ``non_positive_qty``: quantity <= 0 on an ordinary invoice: stock write-offs ("damaged",
       "thrown away") booked at price 0, not sales.
    6. ``non_positive_price``: price <= 0: free or internal lines, not what a customer bought.
    7. ``duplicate``: an exact repeat (all normalised columns equal, after upper-casing the SKU)
       of an earlier kept row; the publisher's export repeats some lines.

    SKU codes are upper-cased first (``85123a`` and ``85123A`` are one product; counted in
    ``recased_rows``). Then quantities are capped per SKU (winsorised, the row is kept): a
    line above ``max(cap_floor, ceil(cap_multiple * median line quantity of the SKU))`` is lowered
    to that cap. Why: the shop sells to wholesalers, so lines of a few hundred units are normal
    and must stay, but a single line 50 times the SKU's usual line (80,995 paper birdies,
    74,215 storage jars, both cancelled the same day) is a keying error or a special bulk deal
    that no shelf stock serves; left in, one such line would size a replenishment policy on its
    own and empty any simulated shelf. The median is robust to these very lines. With
    ``cap_fit_before`` the medians are fitted only on lines before that time (pass the start of
    the test period so the test period shapes nothing); a SKU with fewer than ``min_fit_lines``
    lines there uses the median line quantity over all SKUs.

    Returns the demand (columns of :data:`COLUMNS`, sorted by time, ties in input order, index
    0..n-1) and the :class:`CleaningReport`.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)} (use load_transactions)")
    if cap_multiple <= 0 or cap_floor < 1:
        raise ValueError("cap_multiple must be > 0 and cap_floor >= 1")
    rows_in = len(df)
    invoice = df["invoice"].astype(_TEXT).str.strip().str.upper()
    raw_sku = df["sku"].astype(_TEXT).str.strip()
    sku = raw_sku.str.upper()
    qty = df["qty"]
    price = df["price"]
    rules: list[tuple[str, pd.Series]] = [
        (
            "missing_value",
            invoice.isna() | sku.isna() | df["ts"].isna() | qty.isna() | price.isna(),
        ),
        ("cancellation", invoice.str.startswith("C").fillna(False)),
        ("adjustment", invoice.str.startswith("A").fillna(False)),
        ("non_product_code", ~sku.str.fullmatch(PRODUCT_CODE_PATTERN).fillna(False)),
        ("non_positive_qty", (qty <= 0).fillna(False)),
        ("non_positive_price", (price <= 0).fillna(False)),
    ]
    keep = pd.Series(True, index=df.index)
    removed: dict[str, int] = {}
    for name, hit in rules:
        hit = hit.astype(bool)
        removed[name] = int((hit & keep).sum())
        keep &= ~hit
    recased_rows = int((keep & (raw_sku != sku).fillna(False)).sum())

    kept = df.loc[keep, list(COLUMNS)].copy()
    kept["invoice"] = invoice[keep]
    kept["sku"] = sku[keep]
    kept["customer"] = kept["customer"].astype(_TEXT)
    kept["country"] = kept["country"].astype(_TEXT)
    kept["qty"] = kept["qty"].astype(np.int64)
    duplicated = kept.duplicated(keep="first")
    removed["duplicate"] = int(duplicated.sum())
    kept = kept.loc[~duplicated]

    units_before = int(kept["qty"].sum())
    cap = _caps(kept, cap_multiple, cap_floor, cap_fit_before, min_fit_lines)
    over = kept["qty"].to_numpy() > cap
    capped_units = int((kept["qty"].to_numpy() - cap)[over].sum())
    largest = kept.loc[over].assign(cap=cap[over]).nlargest(5, "qty")
    largest_capped = [
        {"sku": str(r.sku), "ts": str(r.ts), "qty": int(r.qty), "cap": int(r.cap)}
        for r in largest.itertuples(index=False)
    ]
    kept["qty"] = np.minimum(kept["qty"].to_numpy(), cap).astype(np.int64)

    demand = kept.sort_values("ts", kind="stable").reset_index(drop=True)
    report = CleaningReport(
        rows_in=rows_in,
        removed=removed,
        rows_out=len(demand),
        recased_rows=recased_rows,
        capped_rows=int(over.sum()),
        capped_units=capped_units,
        units_before_cap=units_before,
        units_out=int(demand["qty"].sum()),
        skus_out=int(demand["sku"].nunique()),
        cap_multiple=cap_multiple,
        cap_floor=cap_floor,
        cap_fit_before=cap_fit_before,
        largest_capped=largest_capped,
    )
    return demand, report


def _caps(
    kept: pd.DataFrame,
    cap_multiple: float,
    cap_floor: int,
    fit_before: datetime | None,
    min_fit_lines: int,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Per-row cap: max(floor, ceil(multiple * median line quantity of the row's SKU)).

    The medians come from the lines before ``fit_before`` (all lines if None). A SKU with fewer
    than ``min_fit_lines`` lines there uses the median over all SKUs' lines: one line is no
    evidence of a usual size, and a lone 80,995-unit line must not set its own cap.
    """
    fit = kept if fit_before is None else kept.loc[kept["ts"] < _utc(fit_before)]
    overall = float(fit["qty"].median()) if len(fit) else float(kept["qty"].median())
    stats = fit.groupby("sku")["qty"].agg(["median", "size"])
    stats = stats.loc[stats["size"] >= min_fit_lines]
    median = stats["median"].reindex(pd.Index(kept["sku"].unique())).fillna(overall)
    per_sku = np.maximum(float(cap_floor), np.ceil(cap_multiple * median.to_numpy(np.float64)))
    cap_of = pd.Series(per_sku.astype(np.int64), index=median.index)
    caps: np.ndarray[Any, np.dtype[np.int64]] = kept["sku"].map(cap_of).to_numpy(np.int64)
    return caps


def split(demand: pd.DataFrame, test_from: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): lines before ``test_from`` and lines from it on (a naive time is UTC).

    A split by time, not by SKU or at random: the evaluated system only ever sees the past, and
    so must anything sized or tuned for it.
    """
    cut = _utc(test_from)
    before = demand["ts"] < cut
    return (
        demand.loc[before].reset_index(drop=True),
        demand.loc[~before].reset_index(drop=True),
    )


def select_skus(train: pd.DataFrame, min_active_days: int = 30) -> list[str]:
    """SKUs in scope: those sold on at least ``min_active_days`` distinct (UTC) days in training.

    Why: a replenishment policy is sized from the mean and the spread of daily demand, and a
    SKU seen on a handful of days has neither (the median SKU sells on ~46 days in the whole
    year). SKUs first sold in the test period are out of scope for the same reason: no policy
    could have been sized for them. Returned sorted, so the scope is deterministic.
    """
    if min_active_days < 1:
        raise ValueError("min_active_days must be >= 1")
    if train.empty:
        return []
    days = train["ts"].dt.floor("D")
    active = pd.DataFrame({"sku": train["sku"], "day": days}).groupby("sku")["day"].nunique()
    chosen = active[active >= min_active_days].index
    return sorted(str(s) for s in chosen)
