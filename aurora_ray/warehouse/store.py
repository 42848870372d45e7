"""The Parquet warehouse: idempotent, day-partitioned writes and reads under one root URI.

Layout (hive partitioning, Snappy)::

    <uri>/<table>/tenant_id=<id>/<day column>=YYYY-MM-DD/<batch_id>.parquet   facts
    <uri>/<table>/tenant_id=<id>/<batch_id>.parquet                             dims, settings
    <uri>/quarantine/<table>/tenant_id=<id>/<day column>=YYYY-MM-DD/<batch_id>.parquet

A write names its files after ``batch_id`` and writes them under a temporary name (a leading dot,
which dataset discovery skips) before a rename, atomic on a local filesystem. Writing the same
``batch_id`` again replaces the same files, so a replay after a crash leaves no duplicate rows
*provided the caller derives batch_id deterministically from what the batch holds* (for a topic:
the partitions' offset ranges, e.g. ``p0-100-199``). Dimension tables hold the latest full
snapshot: a write replaces the tenant's earlier snapshot files.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from aurora_ray.warehouse.quality import check_prices, max_delay_s, null_probability_reason
from aurora_ray.warehouse.schema import (
    DAY_COLUMNS,
    DAY_SOURCES,
    FACT_ORDER,
    FACT_PREDICTION,
    SCHEMAS,
    file_schema,
    partition_schema,
)

__all__ = ["QUARANTINE", "RemovedPartition", "RetentionReport", "Warehouse", "WriteResult"]

log = logging.getLogger(__name__)
QUARANTINE = "quarantine"
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
_DAY_DIR = re.compile(r"^(?P<column>\w+)=(?P<day>\d{4}-\d{2}-\d{2})$")


class _SettingsLike(Protocol):
    @property
    def warehouse_uri(self) -> str: ...


@dataclass
class WriteResult:
    table: str
    tenant_id: str
    batch_id: str
    rows: int = 0  # rows published (not counting quarantined ones)
    files: list[str] = field(default_factory=list)
    days: list[date] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)  # day (ISO) -> reason
    quarantined_rows: int = 0
    max_delay_s: float | None = None  # fact_order: max(ingested_at - order_ts)


@dataclass(frozen=True)
class RemovedPartition:
    table: str
    tenant_id: str
    day: date
    path: str
    files: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "tenant_id": self.tenant_id,
            "day": self.day.isoformat(),
            "path": self.path,
            "files": self.files,
            "bytes": self.bytes,
        }


@dataclass
class RetentionReport:
    now: datetime
    cutoffs: dict[str, date]  # table -> oldest day kept
    dry_run: bool
    removed: list[RemovedPartition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "cutoffs": {t: d.isoformat() for t, d in self.cutoffs.items()},
            "removed": [r.as_dict() for r in self.removed],
            "partitions": len(self.removed),
            "files": sum(r.files for r in self.removed),
            "bytes": sum(r.bytes for r in self.removed),
        }


def _to_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


class Warehouse:
    """Parquet tables under ``uri``: a local folder or any pyarrow filesystem URI.

    Cheap to construct and to pickle: the filesystem is resolved on first use."""

    def __init__(self, uri: str) -> None:
        if not uri:
            raise ValueError("the warehouse URI must not be empty")
        self.uri = uri
        self._fs: pafs.FileSystem | None = None
        self._root = ""

    @classmethod
    def from_settings(cls, settings: _SettingsLike) -> Warehouse:
        return cls(settings.warehouse_uri)

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "_fs": None, "_root": ""}

    def __repr__(self) -> str:
        return f"Warehouse({self.uri!r})"

    # -- locations -----------------------------------------------------------------------------
    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            if "://" in self.uri:
                fs, root = pafs.FileSystem.from_uri(self.uri)
            else:
                fs, root = pafs.LocalFileSystem(), os.path.abspath(self.uri)
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs

    @property
    def root(self) -> str:
        _ = self.fs
        return self._root

    def _dir(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def path(self, table_name: str, tenant_id: str | None = None) -> tuple[pafs.FileSystem, str]:
        """Filesystem and folder of a table (or of one tenant's part), e.g. for
        ``ray.data.read_parquet(path, filesystem=fs, partitioning=Partitioning("hive"))``."""
        _check_table(table_name)
        parts = [table_name] + ([f"tenant_id={tenant_id}"] if tenant_id is not None else [])
        return self.fs, self._dir(*parts)

    # -- writing -------------------------------------------------------------------------------
    def write(
        self, table_name: str, tenant_id: str, table: pa.Table, *, batch_id: str
    ) -> WriteResult:
        """Write ``table`` for one tenant, idempotently by ``batch_id`` (see the module doc).

        Raises :class:`DataQualityError` (nothing written) for fact_order rows with a price that
        is null or ≤ 0, and ``ValueError`` naming the column for missing or mistyped columns."""
        _check_table(table_name)
        if not _BATCH_ID.match(batch_id):
            raise ValueError(
                f"batch_id {batch_id!r} must be 1-200 characters of letters, digits, '.', '_', "
                "'=', '-', starting with a letter or digit"
            )
        conformed = self.prepare(table_name, tenant_id, table)
        result = WriteResult(table_name, tenant_id, batch_id)
        if table_name == FACT_ORDER:
            result.max_delay_s = max_delay_s(conformed)
        day_column = DAY_COLUMNS.get(table_name)
        if day_column is None:
            folder = self._dir(table_name, f"tenant_id={tenant_id}")
            path = self._write_file(
                folder, batch_id, conformed.select(file_schema(table_name).names)
            )
            self._drop_other_snapshots(folder, keep=path)
            result.rows, result.files = len(conformed), [path]
            return result
        keep = file_schema(table_name).names
        days = pc.unique(conformed.column(day_column)).to_pylist()
        for day in sorted(days):
            part = conformed.filter(
                pc.equal(conformed.column(day_column), pa.scalar(day, pa.date32()))
            )
            partition = (f"tenant_id={tenant_id}", f"{day_column}={day.isoformat()}")
            reason = null_probability_reason(part) if table_name == FACT_PREDICTION else None
            if reason is not None:
                folder = self._dir(QUARANTINE, table_name, *partition)
                log.warning(
                    "quarantined %s %s for tenant %s (batch %s): %s",
                    table_name,
                    day,
                    tenant_id,
                    batch_id,
                    reason,
                )
                result.quarantined[day.isoformat()] = reason
                result.quarantined_rows += len(part)
            else:
                folder = self._dir(table_name, *partition)
                result.rows += len(part)
                result.days.append(day)
            result.files.append(self._write_file(folder, batch_id, part.select(keep)))
        return result

    def prepare(self, table_name: str, tenant_id: str, table: pa.Table) -> pa.Table:
        """``table`` as :meth:`write` stores it (the data-quality rules applied, cast to the
        table's schema), or the data error the write would raise; touches no storage.

        Every error raised here is the data's (the same table always fails the same way); an
        ``OSError`` from :meth:`write` is the storage's, and a retry may succeed."""
        _check_table(table_name)
        _check_tenant(tenant_id)
        if table_name == FACT_ORDER:
            check_prices(table)
        return conform(table_name, tenant_id, table)

    def check(self, table_name: str, tenant_id: str, table: pa.Table) -> None:
        """Raise what :meth:`write` would raise for this data, writing nothing: :meth:`prepare`
        and the Parquet encoding, into memory. The warehouse sink uses it to tell the rows of a
        failed write that the warehouse refuses from a failing store."""
        conformed = self.prepare(table_name, tenant_id, table)
        pq.write_table(
            conformed.select(file_schema(table_name).names),
            pa.BufferOutputStream(),
            compression="snappy",
        )

    def write_fact_order(self, tenant_id: str, table: pa.Table, *, batch_id: str) -> WriteResult:
        return self.write(FACT_ORDER, tenant_id, table, batch_id=batch_id)

    def write_fact_prediction(
        self, tenant_id: str, table: pa.Table, *, batch_id: str
    ) -> WriteResult:
        return self.write(FACT_PREDICTION, tenant_id, table, batch_id=batch_id)

    def _write_file(self, folder: str, batch_id: str, table: pa.Table) -> str:
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{batch_id}.parquet"
        temporary = f"{folder}/.{batch_id}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, temporary, filesystem=self.fs, compression="snappy")
            self.fs.move(temporary, final)
        except BaseException:
            try:
                self.fs.delete_file(temporary)
            except (OSError, FileNotFoundError):
                pass
            raise
        return final

    def _drop_other_snapshots(self, folder: str, *, keep: str) -> None:
        for info in self.fs.get_file_info(pafs.FileSelector(folder)):
            if (
                info.type == pafs.FileType.File
                and info.path.endswith(".parquet")
                and info.path != keep
            ):
                self.fs.delete_file(info.path)

    # -- reading -------------------------------------------------------------------------------
    def dataset(self, table_name: str, tenant_id: str | None = None) -> ds.Dataset:
        """The table (or one tenant's part) as a dataset with the partition columns typed."""
        _check_table(table_name)
        fs, source = self.path(table_name, tenant_id)
        schema = SCHEMAS[table_name]
        if fs.get_file_info(source).type != pafs.FileType.Directory:
            return ds.dataset([], schema=schema, filesystem=fs, format="parquet")
        return ds.dataset(
            source,
            schema=schema,
            format="parquet",
            filesystem=fs,
            partitioning=ds.partitioning(partition_schema(table_name), flavor="hive"),
            partition_base_dir=self._dir(table_name),
        )

    def read(
        self,
        table_name: str,
        tenant_id: str | None,
        *,
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Rows of one tenant (all tenants for None), days ``start``..``end`` inclusive."""
        dataset = self.dataset(table_name, tenant_id)
        condition: ds.Expression | None = None
        day_column = DAY_COLUMNS.get(table_name)
        if (start is not None or end is not None) and day_column is None:
            raise ValueError(f"{table_name} is not partitioned by day; start/end do not apply")
        if day_column is not None:
            for bound, op in ((start, "ge"), (end, "le")):
                if bound is None:
                    continue
                value = pa.scalar(_to_date(bound), pa.date32())
                term = (
                    ds.field(day_column) >= value if op == "ge" else ds.field(day_column) <= value
                )
                condition = term if condition is None else condition & term
        if columns is not None:
            unknown = [c for c in columns if c not in SCHEMAS[table_name].names]
            if unknown:
                raise ValueError(f"{table_name} has no column(s) {', '.join(unknown)}")
        return dataset.to_table(columns=columns, filter=condition)

    def event_ids(
        self,
        tenant_id: str,
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
    ) -> set[str]:
        """The event ids present in fact_order (for deduplication against the live stream)."""
        table = self.read(FACT_ORDER, tenant_id, start=start, end=end, columns=["event_id"])
        return set(table.column("event_id").to_pylist())

    # -- retention -----------------------------------------------------------------------------
    def retention(
        self,
        now: datetime | None = None,
        *,
        raw_days: int = 90,
        modelled_days: int = 2 * 365,
        dry_run: bool = False,
    ) -> RetentionReport:
        """Drop whole day partitions older than the cut-offs: fact_order (raw) keeps
        ``raw_days`` days, fact_prediction (modelled) ``modelled_days``; quarantine likewise."""
        if raw_days < 1 or modelled_days < 1:
            raise ValueError("retention periods must be at least one day")
        now = now or datetime.now(UTC)
        today = now.astimezone(UTC).date() if now.tzinfo else now.date()
        cutoffs = {
            FACT_ORDER: today - timedelta(days=raw_days),
            FACT_PREDICTION: today - timedelta(days=modelled_days),
        }
        report = RetentionReport(now=now, cutoffs=cutoffs, dry_run=dry_run)
        for table_name, cutoff in cutoffs.items():
            for base in ((table_name,), (QUARANTINE, table_name)):
                label = "/".join(base)
                for tenant_id, day, folder in self._day_partitions(*base):
                    if day >= cutoff:
                        continue
                    files = [
                        i
                        for i in self.fs.get_file_info(pafs.FileSelector(folder, recursive=True))
                        if i.type == pafs.FileType.File
                    ]
                    size = sum(i.size or 0 for i in files)
                    report.removed.append(
                        RemovedPartition(label, tenant_id, day, folder, len(files), size)
                    )
                    if not dry_run:
                        self.fs.delete_dir(folder)
        return report

    def _day_partitions(self, *base: str) -> list[tuple[str, date, str]]:
        root = self._dir(*base)
        if self.fs.get_file_info(root).type != pafs.FileType.Directory:
            return []
        out: list[tuple[str, date, str]] = []
        for tenant in self.fs.get_file_info(pafs.FileSelector(root)):
            name = tenant.base_name
            if tenant.type != pafs.FileType.Directory or not name.startswith("tenant_id="):
                continue
            for info in self.fs.get_file_info(pafs.FileSelector(tenant.path)):
                match = _DAY_DIR.match(info.base_name)
                if info.type == pafs.FileType.Directory and match:
                    out.append((name.split("=", 1)[1], date.fromisoformat(match["day"]), info.path))
        return out


def _check_table(table_name: str) -> None:
    if table_name not in SCHEMAS:
        raise ValueError(f"unknown warehouse table {table_name!r}; known: {', '.join(SCHEMAS)}")


def _check_tenant(tenant_id: str) -> None:
    if not tenant_id or "/" in tenant_id or "=" in tenant_id or tenant_id.startswith("."):
        raise ValueError(f"tenant_id {tenant_id!r} cannot name a partition folder")


def conform(table_name: str, tenant_id: str, table: pa.Table) -> pa.Table:
    """Cast ``table`` to the table's schema: tenant_id filled in, the day column derived from
    its timestamp when missing, optional columns filled with nulls; errors name the column."""
    schema = SCHEMAS[table_name]
    n = len(table)
    given = set(table.column_names)
    extra = given - set(schema.names)
    if extra:
        raise ValueError(f"{table_name}: unknown column(s) {', '.join(sorted(extra))}")
    arrays: list[pa.ChunkedArray | pa.Array] = []
    for f in schema:
        if f.name == "tenant_id":
            if "tenant_id" in given:
                others = pc.unique(table.column("tenant_id")).to_pylist()
                if others != [tenant_id]:
                    raise ValueError(
                        f"{table_name}: column tenant_id holds {others[:3]}, "
                        f"expected only {tenant_id}"
                    )
            arrays.append(pa.array([tenant_id] * n, pa.string()))
            continue
        if f.name in given:
            column = table.column(f.name)
        elif table_name in DAY_COLUMNS and f.name == DAY_COLUMNS[table_name]:
            source = DAY_SOURCES[table_name]
            if source not in given:
                raise ValueError(f"{table_name}: column {source!r} is missing")
            column = _utc_dates(table.column(source))
        elif f.nullable:
            arrays.append(pa.nulls(n, f.type))
            continue
        else:
            raise ValueError(f"{table_name}: required column {f.name!r} is missing")
        try:
            column = _cast(column, f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ValueError(
                f"{table_name}: column {f.name!r} cannot be read as {f.type}: {exc}"
            ) from exc
        if not f.nullable and column.null_count:
            first = pc.indices_nonzero(pc.is_null(column)).to_pylist()[0]
            raise ValueError(
                f"{table_name}: column {f.name!r} has {column.null_count} null value(s), "
                f"the first at row {first}"
            )
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    if pa.types.is_decimal(target) and pa.types.is_floating(column.type):
        column = pc.round(column, target.scale)
        # The unsafe cast (it lets the rounded floats' binary noise go) would turn a value too
        # large for the precision into garbage (1e12 as DECIMAL(10, 2) reads 0.00): refuse it.
        limit = 10.0 ** (target.precision - target.scale)
        fits = pc.and_kleene(pc.is_finite(column), pc.less(pc.abs(column), limit))
        if not pc.all(fits).as_py():
            first = pc.indices_nonzero(pc.invert(pc.fill_null(fits, True))).to_pylist()[0]
            value = column[first].as_py()
            raise pa.ArrowInvalid(f"row {first}: {value} does not fit {target}")
        return pc.cast(column, target, safe=False)
    if (
        pa.types.is_timestamp(target)
        and pa.types.is_timestamp(column.type)
        and column.type.tz is None
    ):
        column = pc.assume_timezone(column, "UTC")
    return pc.cast(column, target)


def _utc_dates(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type) and column.type.tz not in (None, "UTC", "+00:00"):
        column = pc.cast(column, pa.timestamp(column.type.unit, tz="UTC"))
    return pc.cast(pc.cast(column, pa.timestamp("us")), pa.date32())
