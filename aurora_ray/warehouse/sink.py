"""The warehouse sink core: a tenant topic -> fact_order (and dim_sku, dim_tenant, tenant_settings).

:class:`OrderSink` is what the ``WarehouseSink`` actor runs, without Ray. It reads every partition
of the tenant topic with ``assign()`` (never a consumer group), keeps ``order.created`` events in a
buffer and every ``warehouse_flush_s`` writes them as one warehouse batch:

1. record the batch's offset ranges as *pending* in Redis (a write-ahead note);
2. write fact_order with ``batch_id = p{partition}-{first}-{last}_…`` (and the dim_sku snapshot
   if ``sku.upserted`` changed it);
3. store the next offsets and clear the pending note, in one transaction.

After a crash the sink starts from the stored offsets, and when a pending note is there it cuts its
first batch at exactly the noted ranges, so the replay gets the same batch ids and replaces the
same files: no duplicate rows. Redis keys (``{t}`` a tenant id): ``aurora:t:{t}:warehouse`` hash
(``offsets``, ``pending``, JSON) and ``aurora:warehouse:delayed`` hash tenant -> JSON of the last
ingestion delay over the limit (read by ``/status``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import numpy as np
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from aurora_ray.adapters.kafka import make_consumer
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.events import EventType, ShardBatch
from aurora_ray.naming import SOURCE_BACKFILL, SOURCE_HEADER
from aurora_ray.settings import Settings
from aurora_ray.warehouse.quality import DataQualityError
from aurora_ray.warehouse.schema import DIM_SKU, DIM_TENANT, TENANT_SETTINGS
from aurora_ray.warehouse.store import Warehouse, WriteResult

__all__ = ["DELAYED_KEY", "OrderSink", "delayed_tenants", "order_batch_id"]

log = logging.getLogger(__name__)
DELAYED_KEY = "aurora:warehouse:delayed"
_PENDING_WAIT_S = 60.0  # give up cutting at the noted ranges after this (records gone)
_MAX_READABLE_ID = 160


def _key(tenant_id: str) -> str:
    return f"aurora:t:{tenant_id}:warehouse"


def order_batch_id(ranges: dict[int, tuple[int, int]]) -> str:
    """``p{partition}-{first}-{last}`` per partition, joined by ``_`` (a digest when long)."""
    body = "_".join(f"p{p}-{a}-{b}" for p, (a, b) in sorted(ranges.items()))
    if len(body) > _MAX_READABLE_ID:
        return "pd-" + hashlib.blake2b(body.encode(), digest_size=12).hexdigest()
    return body


def delayed_tenants(store: RedisStore, *, now: float, max_age_s: float) -> list[dict[str, Any]]:
    """Tenants whose last warehouse batch (within ``max_age_s``) was ingested too late."""
    raw = cast(dict[bytes, bytes], store.client.hgetall(DELAYED_KEY))
    out = []
    for tenant, value in sorted(raw.items()):
        record = json.loads(value)
        if now - float(record.get("at", 0)) <= max_age_s:
            out.append({"tenant_id": tenant.decode(), **record})
    return out


@dataclass
class _Buffer:
    """Consumed records since the last flush: positions of all, columns of the orders."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    orders: dict[str, list[Any]] = field(default_factory=dict)
    order_pos: list[int] = field(default_factory=list)  # index into partitions/offsets

    def __len__(self) -> int:
        return len(self.offsets)


_ORDER_COLUMNS = ("event_id", "order_id", "sku_id", "warehouse_id", "qty", "price", "currency")


class OrderSink:
    """Not thread-safe: one loop owns it (the actor serialises control calls with a lock)."""

    def __init__(
        self,
        settings: Settings,
        tenant_id: str,
        *,
        store: RedisStore,
        warehouse: Warehouse | None = None,
        consumer_factory: Callable[[], Consumer] | None = None,
        clock: Callable[[], float] = time.time,
        on_delay: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.tenant_id = tenant_id
        self.topic = settings.topic_for(tenant_id)
        self.store = store
        self.warehouse = warehouse or Warehouse.from_settings(settings)
        self._consumer_factory = consumer_factory or (
            lambda: make_consumer(settings.kafka_bootstrap, f"aurora-{tenant_id}-warehouse")
        )
        self.clock = clock
        self.on_delay = on_delay
        self._consumer: Consumer | None = None
        self.offsets: dict[int, int] = {}  # partition -> next offset to read
        self.pending: dict[int, tuple[int, int]] | None = None
        self._pending_since = 0.0
        self._buffer = _Buffer(orders={c: [] for c in (*_ORDER_COLUMNS, "ts_ms")})
        self._skus: dict[tuple[str, str], dict[str, Any]] = {}
        self._skus_changed = False
        self._settings_version = -1
        self.last_flush = 0.0
        self.rows_written = 0
        self.batches = 0
        self.last_delay_s: float | None = None
        self.rejected = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load offsets (and a pending batch) from Redis, assign all partitions, write dims."""
        raw = cast(dict[bytes, bytes], self.store.client.hgetall(_key(self.tenant_id)))
        self.offsets = {int(p): int(o) for p, o in json.loads(raw.get(b"offsets", b"{}")).items()}
        pending = json.loads(raw.get(b"pending", b"null"))
        self.pending = (
            {int(p): (int(a), int(b)) for p, (a, b) in pending.items()} if pending else None
        )
        self._pending_since = self.clock()
        self._buffer = _Buffer(orders={c: [] for c in (*_ORDER_COLUMNS, "ts_ms")})
        self._load_skus()
        self._write_tenant()
        self._write_settings()
        partitions = range(self.settings.partitions_per_topic)
        self._consumer = self._consumer_factory()
        self._consumer.assign(
            [
                TopicPartition(self.topic, p, self.offsets.get(p, OFFSET_BEGINNING))
                for p in partitions
            ]
        )
        self.last_flush = self.clock()
        log.info(
            "warehouse sink %s started at offsets %s (pending %s)",
            self.tenant_id,
            self.offsets,
            self.pending,
        )

    def close(self) -> None:
        if self._consumer is not None:
            self.flush()
            self._consumer.close()
            self._consumer = None

    # -- the loop ------------------------------------------------------------------------------
    def step(self, timeout: float = 0.5) -> int:
        """Consume one micro-batch; flush when due. Returns the records consumed."""
        if self._consumer is None:
            self.start()
        assert self._consumer is not None  # noqa: S101 - start() sets it
        messages = self._consumer.consume(self.settings.batch_max_events, timeout=timeout)
        values: list[bytes] = []
        positions: list[tuple[int, int]] = []
        buf = self._buffer
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if message.error() or partition is None or offset is None:
                continue
            headers = message.headers()
            if headers and (
                (isinstance(headers, list) and headers[0] == _BACKFILL_FIRST)
                or _from_backfill(headers)
            ):
                # The backfill job wrote its orders to fact_order itself: a backfilled record is
                # only passed over (its offset advances with the batch), never read or decoded
                # (a 5 M-event backfill would cost the sink ~40 s of CPU).
                buf.partitions.append(partition)
                buf.offsets.append(offset)
                continue
            values.append(message.value() or b"")
            positions.append((partition, offset))
        if values:
            self._take(values, positions)
        if self._flush_due():
            self.flush()
        return len(values)

    def _take(self, values: list[bytes], positions: list[tuple[int, int]]) -> None:
        """Buffer a batch of live records (:meth:`step` passes over the backfilled ones).

        Records are decoded as the shard decodes them (:class:`ShardBatch`: the payload stays raw
        JSON, and the same records are refused); only an order's three payload fields are read,
        and a ``sku.upserted``'s payload. The refused ones are still consumed (their offsets
        advance with the batch): the shards dead-letter them."""
        buf = self._buffer
        batch = ShardBatch()
        batch.add(values, range(len(values)))
        orders = buf.orders
        event_ids, order_ids, skus = orders["event_id"], orders["order_id"], orders["sku_id"]
        warehouses, qtys, prices = orders["warehouse_id"], orders["qty"], orders["price"]
        currencies, times = orders["currency"], orders["ts_ms"]
        for record, i in zip(batch.records, batch.partitions, strict=True):
            partition, offset = positions[i]
            buf.partitions.append(partition)
            buf.offsets.append(offset)
            if record.sku is None:
                continue
            if record.event_type == EventType.ORDER_CREATED:
                order_id, price, currency = _order_fields(record.payload)
                buf.order_pos.append(len(buf.offsets) - 1)
                event_ids.append(record.event_id)
                order_ids.append(order_id)
                skus.append(record.sku)
                warehouses.append(record.warehouse)
                qtys.append(record.qty)
                prices.append(price)
                currencies.append(currency)
                times.append(record.ts_ms)
            elif record.event_type == EventType.SKU_UPSERTED:
                payload = msgspec.json.decode(record.payload)
                self._upsert_sku(record.sku, record.warehouse or "", payload)
        for i, _ in batch.refused:
            buf.partitions.append(positions[i][0])
            buf.offsets.append(positions[i][1])

    def _flush_due(self) -> bool:
        if not len(self._buffer):
            return False
        if self.pending is not None:
            seen: dict[int, int] = {}
            for p, o in zip(self._buffer.partitions, self._buffer.offsets, strict=True):
                seen[p] = max(seen.get(p, -1), o)
            if all(seen.get(p, -1) >= last for p, (_, last) in self.pending.items()):
                return True
            if self.clock() - self._pending_since < _PENDING_WAIT_S:
                return False
            log.warning("pending warehouse batch %s of %s not reached", self.pending, self.topic)
            self.pending = None
        return self.clock() - self.last_flush >= self.settings.warehouse_flush_s

    def flush(self) -> WriteResult | None:
        """Write the buffered batch (or, after a crash, exactly the pending one) and move on."""
        buf = self._buffer
        self.last_flush = self.clock()
        if not len(buf):
            return None
        cut = self.pending
        # Without a pending batch (the usual case) every buffered record goes; after a crash,
        # exactly those of the pending batch.
        take = (
            None
            if cut is None
            else [
                p in cut and o <= cut[p][1]
                for p, o in zip(buf.partitions, buf.offsets, strict=True)
            ]
        )
        ranges = _ranges(buf.partitions, buf.offsets, take)
        if not ranges:
            return None
        batch_id = order_batch_id(ranges)
        key = _key(self.tenant_id)
        if cut is None:
            self.store.client.hset(
                key, "pending", json.dumps({str(p): r for p, r in ranges.items()})
            )
        taken_orders = (
            list(range(len(buf.order_pos)))
            if take is None
            else [i for i, pos in enumerate(buf.order_pos) if take[pos]]
        )
        result = self._write_orders(taken_orders, batch_id)
        if self._skus_changed:
            self._write_skus(batch_id)
        next_offsets = {**self.offsets, **{p: last + 1 for p, (_, last) in ranges.items()}}
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hset(key, "offsets", json.dumps({str(p): o for p, o in next_offsets.items()}))
        pipe.hdel(key, "pending")
        pipe.execute()
        self.offsets = next_offsets
        self.pending = None
        if take is None:
            self._buffer = _Buffer(orders={c: [] for c in (*_ORDER_COLUMNS, "ts_ms")})
        else:
            self._keep(buf, [not t for t in take])
        self.batches += 1
        self._write_settings()
        return result

    def _write_orders(self, indices: list[int], batch_id: str) -> WriteResult | None:
        if not indices:
            return None
        orders = self._buffer.orders
        now_us = int(self.clock() * 1e6)
        ts = pa.timestamp("us", tz="UTC")
        every = len(indices) == len(orders["ts_ms"])  # the usual flush: all of them, in order
        columns: dict[str, Any] = {
            c: orders[c] if every else [orders[c][i] for i in indices] for c in _ORDER_COLUMNS
        }
        times = np.asarray(orders["ts_ms"], dtype=np.int64)
        times = times if every else times[np.asarray(indices, dtype=np.int64)]
        columns["order_ts"] = pa.array(times * 1000).cast(ts)
        columns["ingested_at"] = pa.array(np.full(len(indices), now_us, np.int64)).cast(ts)
        columns["price"] = pa.array(columns["price"], pa.float64())
        columns["qty"] = pa.array(columns["qty"], pa.int32())
        table = pa.table(columns)
        try:
            result = self.warehouse.write_fact_order(self.tenant_id, table, batch_id=batch_id)
        except DataQualityError as exc:
            # The API refuses such prices, so this is another producer's garbage: keep the rest
            # of the batch flowing, and the refused rows for inspection.
            log.error("warehouse batch %s of %s: %s", batch_id, self.tenant_id, exc)
            bad = {r.index for r in exc.rows}
            self.store.dead_letter(
                self.tenant_id,
                [json.dumps({"reason": str(exc)[:500], **r.as_dict()}).encode() for r in exc.rows],
            )
            self.rejected += len(bad)
            table = table.filter(pa.array([i not in bad for i in range(len(table))]))
            if not len(table):
                return None
            result = self.warehouse.write_fact_order(self.tenant_id, table, batch_id=batch_id)
        self.rows_written += result.rows
        self._check_delay(result)
        return result

    def _check_delay(self, result: WriteResult) -> None:
        delay = result.max_delay_s
        self.last_delay_s = delay
        if self.on_delay is not None and delay is not None:
            self.on_delay(delay)
        limit = self.settings.warehouse_max_delay_s
        if delay is not None and delay > limit:
            log.warning(
                "ingestion delay of tenant %s is %.0f s, over the %.0f s limit (batch %s)",
                self.tenant_id,
                delay,
                limit,
                result.batch_id,
            )
            record = {"max_delay_s": round(delay, 3), "limit_s": limit, "at": self.clock()}
            self.store.client.hset(DELAYED_KEY, self.tenant_id, json.dumps(record))
        elif delay is not None:
            self.store.client.hdel(DELAYED_KEY, self.tenant_id)

    @staticmethod
    def _keep(buf: _Buffer, keep: list[bool]) -> None:
        order_keep = [keep[pos] for pos in buf.order_pos]
        new_index = {old: new for new, old in enumerate(i for i, k in enumerate(keep) if k)}
        buf.partitions = [p for p, k in zip(buf.partitions, keep, strict=True) if k]
        buf.offsets = [o for o, k in zip(buf.offsets, keep, strict=True) if k]
        buf.order_pos = [
            new_index[pos] for pos, k in zip(buf.order_pos, order_keep, strict=True) if k
        ]
        for name, values in buf.orders.items():
            buf.orders[name] = [v for v, k in zip(values, order_keep, strict=True) if k]

    # -- dimensions ----------------------------------------------------------------------------
    def _load_skus(self) -> None:
        table = self.warehouse.read(DIM_SKU, self.tenant_id)
        self._skus = {
            (row["sku_id"], row["warehouse_id"] or ""): {
                "category": row["category"],
                "brand": row["brand"],
                "initial_stock": row["initial_stock"],
            }
            for row in table.to_pylist()
        }
        self._skus_changed = False

    def _upsert_sku(self, sku: str, warehouse: str, payload: dict[str, Any]) -> None:
        """Later values win; a field the event leaves out keeps its earlier value."""
        key = (sku, warehouse)
        if key not in self._skus:
            self._skus[key] = {"category": None, "brand": None, "initial_stock": None}
            self._skus_changed = True
        record = self._skus[key]
        for name in ("category", "brand", "initial_stock"):
            value = payload.get(name)
            if value is not None and record.get(name) != value:
                record[name] = value
                self._skus_changed = True

    def _write_skus(self, batch_id: str) -> None:
        items = sorted(self._skus.items())
        table = pa.table(
            {
                "sku_id": [k[0] for k, _ in items],
                "warehouse_id": [k[1] for k, _ in items],
                "category": pa.array([v.get("category") for _, v in items], pa.string()),
                "brand": pa.array([v.get("brand") for _, v in items], pa.string()),
                "initial_stock": pa.array([v.get("initial_stock") for _, v in items], pa.int32()),
            }
        )
        self.warehouse.write(DIM_SKU, self.tenant_id, table, batch_id=batch_id)
        self._skus_changed = False

    def _write_tenant(self) -> None:
        record = self.store.tenant(self.tenant_id) or {}
        created = record.get("created_at")
        table = pa.table(
            {
                "name": pa.array([record.get("name")], pa.string()),
                "region": pa.array([record.get("region")], pa.string()),
                "tier": pa.array([record.get("tier")], pa.string()),
                "created_at": pa.array(
                    [None if created is None else int(float(created) * 1e6)], pa.int64()
                ).cast(pa.timestamp("us", tz="UTC")),
            }
        )
        self.warehouse.write(DIM_TENANT, self.tenant_id, table, batch_id="tenant")

    def _write_settings(self) -> None:
        """Snapshot tenant_settings when its version moved."""
        version = self.store.settings_version(self.tenant_id)
        if version == self._settings_version:
            return
        default, overrides = self.store.thresholds(self.tenant_id)
        keys: list[str | None] = [None, *sorted(overrides)]
        values = [
            default if default is not None else self.settings.default_threshold,
            *(overrides[k] for k in sorted(overrides)),
        ]
        now_us = int(self.clock() * 1e6)
        table = pa.table(
            {
                "sku_id": pa.array(keys, pa.string()),
                "threshold": pa.array(values, pa.float64()),
                "horizon_hours": pa.array([self.settings.horizon_hours] * len(keys), pa.float64()),
                "updated_at": pa.array([now_us] * len(keys), pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        )
        self.warehouse.write(TENANT_SETTINGS, self.tenant_id, table, batch_id=f"v{version}")
        self._settings_version = version

    # -- health --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "buffered": len(self._buffer),
            "rows_written": self.rows_written,
            "batches": self.batches,
            "rejected": self.rejected,
            "last_flush": self.last_flush,
            "last_delay_s": self.last_delay_s,
        }


_Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None


_BACKFILL_FIRST = (SOURCE_HEADER, SOURCE_BACKFILL)  # the backfill job's first header


def _ranges(
    partitions: list[int], offsets: list[int], take: list[bool] | None
) -> dict[int, tuple[int, int]]:
    """(first, last) offset of each partition among the records taken (all when ``take`` is
    None): the batch's identity and where the sink goes on."""
    if not partitions:
        return {}
    p = np.asarray(partitions, dtype=np.int64)
    o = np.asarray(offsets, dtype=np.int64)
    if take is not None:
        mask = np.asarray(take, dtype=bool)
        p, o = p[mask], o[mask]
    return {int(k): (int(o[p == k].min()), int(o[p == k].max())) for k in np.unique(p).tolist()}


class _OrderFields(msgspec.Struct):
    """The three payload fields of an ``order.created`` that fact_order takes."""

    order_id: str | int | None = None
    price: float | None = None
    currency: str | None = None


_order_decoder = msgspec.json.Decoder(_OrderFields)


def _order_fields(payload: msgspec.Raw) -> tuple[str | None, Any, Any]:
    """``(order_id as text, price, currency)`` of an order's raw payload. A payload of other
    types (another producer's record, not the API's) is read as JSON and taken as it is, as
    before: the warehouse's quality rules judge it."""
    try:
        fields = _order_decoder.decode(payload)
        order_id, price, currency = fields.order_id, fields.price, fields.currency
    except (msgspec.DecodeError, msgspec.ValidationError):
        loose = msgspec.json.decode(payload)
        order_id, price, currency = (loose.get(k) for k in ("order_id", "price", "currency"))
    return (None if order_id is None else str(order_id)), price, currency


def _from_backfill(headers: _Headers) -> bool:
    """Whether a record carries the backfill's source header (see aurora_ray.backfill)."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, dict) else headers
    return any(k == SOURCE_HEADER and v == SOURCE_BACKFILL for k, v in pairs)
