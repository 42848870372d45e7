"""Backfill: history from a file into the warehouse and the SKU state, each event applied once.

A backfill reads NDJSON (plain or gzip) or Parquet, validates every line with the live API's own
parser (:func:`aurora_ray.domain.events.check_ndjson`, which accepts and refuses exactly what
``POST /v1/ingest/events`` does), and splits it:

* rejected lines go to a rejects file, one JSON object a line: the file's real line number, the
  reason naming the field, and the raw line;
* accepted events are deduplicated by ``event_id``: within the file (the first line wins) and
  against what was applied before (the event ids in ``fact_order``, which the live stream's
  warehouse sink fills, and the ledgers of earlier backfills);
* the remaining orders are written to ``fact_order`` in batches whose ids derive from the
  backfill id, so a retried job replaces its own files instead of adding rows;
* all remaining events are produced to the tenant topic sorted by event time (ties in file
  order), keyed ``sku@warehouse`` and marked with the header ``aurora-source: backfill``: the
  shards fold them with their usual code, and the warehouse sink skips them (already written).

Why a ledger: ``fact_order`` only holds orders, yet a stock receipt applied twice is as wrong as an
order applied twice. Each backfill writes the event ids it applies to
``<warehouse>/backfill_ledger/tenant_id=<t>/<backfill_id>.parquet`` *before* it writes or produces
anything; a later backfill skips them, and a retry of the same backfill id re-uses its own ledger
as its plan (it does not count its own rows as duplicates) and resumes producing after the events
the previous attempt had acknowledged.

Events without ``event_id`` get a deterministic one (a UUIDv5 of the tenant and the line's
bytes), so re-running the same file finds them again; the live API gives such events a random id,
so they cannot be matched against the live stream. Events without ``occurred_at`` are rejected:
history without a time cannot be placed.

Decoding and validation run as Ray Data ``map_batches`` over chunks of lines (each chunk carries
the number of its first line), or in-process (``engine="local"``); see docs/architecture.md for
the measured comparison. Everything else is vectorised pyarrow in the driver.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import logging
import mmap
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any, Final, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from aurora_ray.domain.events import (
    BUNDLE_MAX_EVENTS,
    DEFAULT_MAX_SKEW_MS,
    MAX_LINE_BYTES,
    CheckedLine,
    EventType,
    LineError,
    check_ndjson,
    encode_bundle,
)
from aurora_ray.naming import SOURCE_BACKFILL, SOURCE_HEADER

__all__ = [
    "BACKFILL_ID_HEADER",
    "SOURCE_BACKFILL",
    "SOURCE_HEADER",
    "BackfillCounts",
    "Chunk",
    "Engine",
    "Plan",
    "bundle_records",
    "deduplicate",
    "event_time_order",
    "fact_order_rows",
    "iter_chunks",
    "local_line_ranges",
    "open_filesystem",
    "validate_chunk",
    "write_rejects",
]

log = logging.getLogger(__name__)

BACKFILL_ID_HEADER: Final = "aurora-backfill-id"
CHUNK_BYTES: Final = 4 * 1024 * 1024  # ~15 000 lines of a typical envelope
# A Ray Data task validates 64 MiB (~280 000 lines): Ray Data spends ~70 ms on each block it
# schedules here, so 4 MiB tasks left a core idle. 5 M lines: 49.0 s wall in 4 MiB tasks, 34.5 s
# in 16 MiB, 28.2 s in 64 MiB, 28.5 s in 128 MiB (one process validating alone: 49.7 s).
RAY_CHUNK_BYTES: Final = 64 * 1024 * 1024
# The topic gets the history in bundles (one record holding up to BUNDLE_MAX_EVENTS events of one
# partition, see bundle_records): every record costs each reader (two shards, the warehouse sink)
# and the producer ~1–2 µs however small, so 5 M single records cost the stack ~40 s of CPU more.
BUNDLE_BYTES: Final = 256 * 1024  # a record may hold 512 KiB; the broker takes 1 MB
Engine = Literal["ray-data", "local"]

_encode_record = msgspec.json.Encoder().encode
_NO_TIME: Final = -(2**62)  # received_ms given to the parser: marks a missing occurred_at
_ID_NAMESPACE: Final = uuid.UUID("6f1c1f8e-3b8a-4d0e-9a56-b4c4c0f1ba0f")

#: Columns of a validated chunk. Accepted rows carry the event; rejected rows (``ok`` false)
#: carry the raw line in ``record`` and the reasons (JSON) in ``reason``.
CHUNK_SCHEMA: Final = pa.schema(
    [
        ("line", pa.int64()),
        ("ok", pa.bool_()),
        ("event_id", pa.string()),
        ("ts_ms", pa.int64()),
        ("key", pa.string()),
        ("record", pa.binary()),
        ("event_type", pa.string()),
        ("sku", pa.string()),
        ("warehouse", pa.string()),
        ("order_id", pa.string()),
        ("qty", pa.int32()),
        ("price", pa.float64()),
        ("currency", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass
class BackfillCounts:
    """What the job reports while running (all counts are events or lines)."""

    read: int = 0  # non-blank lines (or Parquet rows)
    accepted: int = 0
    rejected: int = 0
    duplicates_in_file: int = 0
    duplicates_applied: int = 0  # already in fact_order or in an earlier backfill's ledger
    written: int = 0  # fact_order rows
    produced: int = 0  # acknowledged by the broker

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_file + self.duplicates_applied

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "duplicates": self.duplicates}


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Consecutive lines of the source; ``first_line`` is the file's (1-based) number of the
    first one. ``done`` and ``total`` are source bytes consumed and the source size (progress)."""

    index: int
    first_line: int
    data: bytes
    done: int = 0
    total: int = 0
    offset: int = 0  # of ``data`` in the (decompressed) source
    gzip: bool = False


def open_filesystem(source: str) -> tuple[pafs.FileSystem, str]:
    """A local path or any pyarrow filesystem URI (``s3://…``, ``gs://…``, ``file:///…``)."""
    if "://" in source:
        fs, path = pafs.FileSystem.from_uri(source)
        return fs, str(path)
    return pafs.LocalFileSystem(), str(_absolute(source))


def _absolute(source: str) -> Any:
    from pathlib import Path

    return Path(source).expanduser().resolve()


def is_parquet(source: str) -> bool:
    return source.lower().rstrip("/").endswith((".parquet", ".pq"))


def iter_chunks(source: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Chunks of whole lines with their real line numbers (gzip detected by its magic bytes)."""
    if is_parquet(source):
        yield from _parquet_chunks(source)
        return
    fs, path = open_filesystem(source)
    total = fs.get_file_info(path).size or 0
    with fs.open_input_stream(path, compression=None) as raw:
        head = raw.read(2)
        counted = _Rejoined(head, raw)
        stream: Any = counted
        if head == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=counted)  # type: ignore[call-overload]
        zipped = head == b"\x1f\x8b"
        line, index, rest, offset = 1, 0, b"", 0
        while True:
            block = stream.read(chunk_bytes)
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            body, rest = data[:cut], data[cut + 1 :]
            yield Chunk(index, line, body, counted.tell(), total, offset, zipped)
            line += body.count(b"\n") + 1
            index += 1
            offset += cut + 1
        if rest:
            yield Chunk(index, line, rest, total, total, offset, zipped)


def local_line_ranges(
    source: str, *, chunk_bytes: int = CHUNK_BYTES
) -> list[tuple[int, int, int]] | None:
    """:func:`iter_chunks`' chunks of a plain local file as ``(first_line, offset, length)``,
    found without copying the file through Python: the file is memory-mapped, each cut is the
    last newline before a multiple of ``chunk_bytes`` (as :func:`iter_chunks` cuts), and lines
    are counted by numpy (5 M lines, 1.3 GB: 0.3 s against 2.9 s for reading the chunks).

    None for anything else (gzip, Parquet, a remote filesystem): those take :func:`iter_chunks`.
    """
    if is_parquet(source):
        return None
    fs, path = open_filesystem(source)
    if not isinstance(fs, pafs.LocalFileSystem):
        return None
    try:
        with open(path, "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return None
            size = f.seek(0, 2)
            if size == 0:
                return []
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # not a regular file, or it cannot be mapped: read it
        return None
    try:
        return _cut_lines(mapped, np.frombuffer(mapped, dtype=np.uint8), size, chunk_bytes)
    finally:
        try:
            mapped.close()
        except BufferError:  # an array of it still alive (a traceback): the GC closes it
            pass


def _cut_lines(
    mapped: mmap.mmap, data: np.ndarray[Any, Any], size: int, chunk_bytes: int
) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    start, line, limit = 0, 1, 0
    while limit < size:
        limit = min(limit + chunk_bytes, size)
        cut = mapped.rfind(b"\n", start, limit)
        if cut < 0:  # no line ends before the limit: the chunk grows to the next one
            continue
        out.append((line, start, cut - start))
        line += int(np.count_nonzero(data[start : cut + 1] == _NEWLINE))
        start = cut + 1
    if start < size:
        out.append((line, start, size - start))
    return out


_NEWLINE: Final = ord("\n")


class _Rejoined:
    """A stream with its first bytes (already read to sniff gzip) put back in front."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self._head, self._stream = head, stream
        self._consumed = len(head)

    def read(self, size: int = -1) -> bytes:
        head, self._head = self._head, b""
        if size is None or size < 0:
            more = bytes(self._stream.read())
        else:
            more = bytes(self._stream.read(max(0, size - len(head))))
        self._consumed += len(more)
        return head + more

    def tell(self) -> int:
        """Bytes taken from the source so far (compressed bytes for gzip)."""
        return self._consumed


def _parquet_chunks(source: str, rows: int = 20_000) -> Iterator[Chunk]:
    """Parquet rows as envelope lines (row n is "line" n): the same validation applies.

    Columns are the envelope's: ``tenant_id``, ``event_type``, ``payload`` (a JSON string or a
    struct), ``event_id`` and ``occurred_at`` (a timestamp or an ISO 8601 string)."""
    import msgspec

    fs, path = open_filesystem(source)
    parquet = pq.ParquetFile(fs.open_input_file(path))
    total = parquet.metadata.num_rows
    line, index = 1, 0
    for batch in parquet.iter_batches(batch_size=rows):
        out = []
        for row in batch.to_pylist():
            payload = row.get("payload")
            if isinstance(payload, str | bytes):
                text = payload.encode() if isinstance(payload, str) else payload
                row["payload"] = msgspec.Raw(text)
            at = row.get("occurred_at")
            if hasattr(at, "isoformat"):
                row["occurred_at"] = at.isoformat() if at.tzinfo else at.isoformat() + "Z"
            out.append(msgspec.json.encode({k: v for k, v in row.items() if v is not None}))
        yield Chunk(index, line, b"\n".join(out), done=line - 1 + len(out), total=total)
        line += len(out)
        index += 1


# -- validating (pure) -------------------------------------------------------------------------


def _reason(errors: list[LineError]) -> str:
    return json.dumps([{"field": e.field, "message": e.message} for e in errors])


def validate_chunk(
    data: bytes,
    *,
    first_line: int,
    tenant_id: str,
    received_ms: int,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> pa.Table:
    """Validate lines with the live API's parser; one row per non-blank line (:data:`CHUNK_SCHEMA`).

    Backfill rules on top of the API's: ``occurred_at`` is required and a missing ``event_id``
    is derived from the line. The API's bounds (numbers, prices, event times between
    :data:`~aurora_ray.domain.events.EARLIEST_TS_MS` and the job's clock plus ``max_skew_ms``,
    nesting) hold here as they do live."""
    tenant_id = str(uuid.UUID(tenant_id))
    collecting = gc.isenabled()
    gc.disable()  # thousands of short-lived objects a chunk, no cycles: skip the collector
    try:
        parsed = check_ndjson(
            data,
            tenant_id=tenant_id,
            received_ms=_NO_TIME,
            max_errors=sys.maxsize,
            max_line_bytes=max_line_bytes,
            latest_ms=received_ms + max_skew_ms,  # the live API's rule, on the job's clock
        )
    finally:
        if collecting:
            gc.enable()
    lines = data.split(b"\n")
    offset = first_line - 1
    rejected: dict[int, list[LineError]] = {}
    for error in parsed.errors:
        rejected.setdefault(error.line, []).append(error)
    for number in parsed.foreign_tenant_lines:
        rejected.setdefault(number, []).append(
            LineError(number, "tenant_id", f"is not the backfill's tenant {tenant_id}")
        )
    good: list[CheckedLine] = []
    for checked in parsed.checked:
        number, record = checked.line, checked.record
        ts_ms = record.ts_ms
        if ts_ms == _NO_TIME:
            rejected[number] = [LineError(number, "occurred_at", "is required in a backfill")]
        else:
            raw = lines[number - 1]
            if record.event_id.encode() not in raw:  # the parser made a random one up
                digest = hashlib.sha256(raw.strip()).hexdigest()
                record.event_id = str(uuid.uuid5(_ID_NAMESPACE, f"{tenant_id}:{digest}"))
            record.received_ms = received_ms
            good.append(checked)
    records = [c.record for c in good]
    orders = [c.order for c in good]
    encode = _encode_record
    accepted = pa.table(
        {
            "line": [c.line + offset for c in good],
            "ok": [True] * len(good),
            "event_id": [r.event_id for r in records],
            "ts_ms": [r.ts_ms for r in records],
            "key": [r.key for r in records],
            "record": [encode(r) for r in records],
            "event_type": [r.event_type for r in records],
            "sku": [r.sku for r in records],
            "warehouse": [r.warehouse for r in records],
            "order_id": [None if o is None else o[0] for o in orders],
            "qty": [r.qty if o is not None else None for r, o in zip(records, orders, strict=True)],
            "price": [None if o is None else o[1] for o in orders],
            "currency": [None if o is None else o[2] for o in orders],
            "reason": pa.nulls(len(good), pa.string()),
        },
        schema=CHUNK_SCHEMA,
    )
    numbers = sorted(rejected)
    bad = pa.table(
        {
            "line": [n + offset for n in numbers],
            "ok": [False] * len(numbers),
            "record": [lines[n - 1] for n in numbers],
            "reason": [_reason(rejected[n]) for n in numbers],
        }
    )
    bad = pa.table(
        [bad.column(f.name) if f.name in bad.column_names else pa.nulls(len(bad), f.type)
         for f in CHUNK_SCHEMA],
        schema=CHUNK_SCHEMA,
    )  # fmt: skip
    if not len(bad):
        return accepted
    return pa.concat_tables([accepted, bad]).sort_by("line")


def _validate_batch(
    batch: pa.Table,
    *,
    tenant_id: str,
    received_ms: int,
    source: str | None = None,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> pa.Table:
    """Ray Data ``map_batches`` function: rows of (first_line, data), or of (first_line, offset,
    length) of a plain file that the task reads itself, to validated rows."""
    firsts = batch.column("first_line").to_pylist()
    if "data" in batch.column_names:
        datas = batch.column("data").to_pylist()
    else:
        assert source is not None  # noqa: S101 - ranges come with their source
        fs, path = open_filesystem(source)
        with fs.open_input_file(path) as f:
            datas = [
                f.read_at(length, offset)
                for offset, length in zip(
                    batch.column("offset").to_pylist(), batch.column("length").to_pylist(),
                    strict=True,
                )
            ]  # fmt: skip
    out = [
        validate_chunk(
            data,
            first_line=first,
            tenant_id=tenant_id,
            received_ms=received_ms,
            max_skew_ms=max_skew_ms,
        )
        for first, data in zip(firsts, datas, strict=True)
    ]
    return pa.concat_tables(out) if out else CHUNK_SCHEMA.empty_table()


def write_rejects(rejected: pa.Table, out: IO[bytes]) -> int:
    """One JSON object a line, in line order: ``line``, ``reason`` (``field: message``; ...),
    ``errors`` (each field and message) and ``raw`` (the line as sent, decoded as UTF-8)."""
    rejected = rejected.sort_by("line")
    for number, reason, raw in zip(
        rejected.column("line").to_pylist(),
        rejected.column("reason").to_pylist(),
        rejected.column("record").to_pylist(),
        strict=True,
    ):
        errors = json.loads(reason)
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        record = {
            "line": number,
            "reason": text,
            "errors": errors,
            "raw": raw.decode("utf-8", "replace"),
        }
        out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return len(rejected)


# -- planning (pure) ---------------------------------------------------------------------------


@dataclass
class Plan:
    """What to apply: ``rows`` of ``source`` (the accepted events, as validated) in event-time
    order, and what deduplication removed. Rows are gathered slice by slice (:meth:`take`), so
    the big columns of millions of events are never copied whole."""

    source: pa.Table
    rows: np.ndarray[Any, np.dtype[np.int64]]
    duplicates_in_file: int = 0
    duplicates_applied: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, columns: list[str], start: int = 0, length: int | None = None) -> pa.Table:
        rows = self.rows[start : None if length is None else start + length]
        return self.source.select(columns).take(pa.array(rows))

    @property
    def events(self) -> pa.Table:
        return self.take(self.source.column_names)

    def keep(self, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        self.rows = self.rows[mask]


def deduplicate(accepted: pa.Table, known: Collection[str] | pa.Array) -> Plan:
    """Keep the first line of every ``event_id``, drop ids in ``known`` (already applied), and
    order by event time (ties in file order)."""
    empty = np.empty(0, dtype=np.int64)
    if len(accepted) == 0:
        return Plan(accepted, empty)
    by_line = pc.sort_indices(accepted.column("line")).to_numpy()
    ids = accepted.column("event_id").combine_chunks().take(pa.array(by_line))
    codes = ids.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    in_file = len(ids) - len(first)
    value_set = known if isinstance(known, pa.Array) else pa.array(list(known), pa.string())
    seen = pc.is_in(ids, value_set=value_set).to_numpy(zero_copy_only=False)
    applied = int(np.count_nonzero(keep & seen))
    keep &= ~seen
    rows = by_line[keep].astype(np.int64)
    ts = accepted.column("ts_ms").to_numpy()[rows]
    lines = accepted.column("line").to_numpy()[rows]
    rows = rows[np.lexsort((lines, ts))]
    return Plan(accepted, rows, in_file, applied)


def bundle_records(
    keys: Sequence[bytes | None],
    records: Sequence[bytes],
    *,
    partitions: int,
    max_events: int = BUNDLE_MAX_EVENTS,
    max_bytes: int = BUNDLE_BYTES,
) -> list[tuple[int, bytes]]:
    """Topic records (in event-time order, with their keys) as ``(partition, bundle)``: each
    bundle holds consecutive records of one partition, the partition the live producer gives
    their key (:func:`~aurora_ray.adapters.kafka.partition_for`), in their order; at most
    ``max_events`` records and ``max_bytes`` bytes (a bigger record alone). The partitions'
    bundles alternate, so that every shard has work from the start."""
    from aurora_ray.adapters.kafka import partition_for

    by_partition: list[list[bytes]] = [[] for _ in range(partitions)]
    current: list[list[bytes]] = [[] for _ in range(partitions)]
    size = [0] * partitions
    for key, record in zip(keys, records, strict=True):
        p = partition_for(key, partitions)
        bundle = current[p]
        if bundle and (len(bundle) >= max_events or size[p] + len(record) + 1 > max_bytes):
            by_partition[p].append(encode_bundle(bundle))
            current[p] = bundle = []
            size[p] = 0
        bundle.append(record)
        size[p] += len(record) + 1
    for p, bundle in enumerate(current):
        if bundle:
            by_partition[p].append(encode_bundle(bundle))
    out: list[tuple[int, bytes]] = []
    for n in range(max((len(b) for b in by_partition), default=0)):
        out.extend((p, b[n]) for p, b in enumerate(by_partition) if n < len(b))
    return out


def event_time_order(table: pa.Table) -> pa.Table:
    """Sorted by event time; events of the same millisecond keep their file order."""
    return table.sort_by([("ts_ms", "ascending"), ("line", "ascending")])


def fact_order_rows(events: pa.Table, *, ingested_at_ms: int) -> pa.Table:
    """``order.created`` events as fact_order rows (the warehouse fills tenant_id and the day)."""
    orders = events.filter(pc.equal(events.column("event_type"), EventType.ORDER_CREATED))
    ts = pa.timestamp("us", tz="UTC")
    order_ts = pc.cast(pc.multiply(orders.column("ts_ms"), 1000), pa.int64()).cast(ts)
    ingested = pa.array(np.full(len(orders), ingested_at_ms * 1000, dtype=np.int64)).cast(ts)
    return pa.table(
        {
            "event_id": orders.column("event_id"),
            "order_id": orders.column("order_id"),
            "sku_id": orders.column("sku"),
            "warehouse_id": orders.column("warehouse"),
            "qty": orders.column("qty"),
            "price": orders.column("price"),
            "currency": orders.column("currency"),
            "order_ts": order_ts,
            "ingested_at": ingested,
        }
    )


def validate_source(
    source: str,
    *,
    tenant_id: str,
    received_ms: int,
    engine: Engine = "ray-data",
    on_chunk: Callable[[pa.Table, Chunk | None], None] = lambda _t, _c: None,
    chunk_bytes: int | None = None,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> list[pa.Table]:
    """Validated chunks of the whole source, in-process or on Ray Data (2+ tasks at a time).
    ``chunk_bytes``: the lines a chunk holds (:data:`CHUNK_BYTES` in-process,
    :data:`RAY_CHUNK_BYTES` a Ray Data task)."""
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES if engine == "local" else RAY_CHUNK_BYTES
    if engine == "local":
        out = []
        for chunk in iter_chunks(source, chunk_bytes=chunk_bytes):
            table = validate_chunk(
                chunk.data, first_line=chunk.first_line, tenant_id=tenant_id,
                received_ms=received_ms, max_skew_ms=max_skew_ms,
            )  # fmt: skip
            on_chunk(table, chunk)
            out.append(table)
        return out
    import ray.data

    # A plain file is handed over as byte ranges that each task reads (the driver only finds
    # the line boundaries); gzip and Parquet need one sequential reader, so their chunks travel.
    ranges = local_line_ranges(source, chunk_bytes=chunk_bytes)
    items: list[dict[str, Any]]
    if ranges is not None:
        items = [{"first_line": f, "offset": o, "length": n} for f, o, n in ranges]
    else:
        items = []
        for c in iter_chunks(source, chunk_bytes=chunk_bytes):
            if c.gzip or is_parquet(source):
                items.append({"first_line": c.first_line, "data": c.data})
            else:
                items.append(
                    {"first_line": c.first_line, "offset": c.offset, "length": len(c.data)}
                )
    if not items:
        return []
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _validate_batch,  # type: ignore[arg-type]
        batch_size=None,
        batch_format="pyarrow",
        fn_kwargs={
            "tenant_id": tenant_id,
            "received_ms": received_ms,
            "source": source,
            "max_skew_ms": max_skew_ms,
        },
    )
    total = len(items)
    del items
    out = []
    for n, batch in enumerate(dataset.iter_batches(batch_size=None, batch_format="pyarrow")):
        assert isinstance(batch, pa.Table)  # noqa: S101 - batch_format="pyarrow"
        table = batch.cast(CHUNK_SCHEMA) if batch.schema != CHUNK_SCHEMA else batch
        on_chunk(table, Chunk(n, 0, b"", done=min(n + 1, total), total=total))
        out.append(table)
    return out


def now_ms() -> int:
    return int(time.time() * 1000)
