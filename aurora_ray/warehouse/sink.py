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
same files: no duplicate rows. A write that fails is retried the same way, at exactly its ranges.

Two kinds of failure, kept apart:

* *the data's*: a record whose fields the tables cannot take (:func:`~aurora_ray.warehouse.quality.
  order_fields`) is dead-lettered alone, with its reason, partition and offset, and its offset
  advances with the batch; a row a write still refuses is found by splitting the batch
  (:meth:`Warehouse.check`, in memory) and dead-lettered the same way;
* *the store's* (an ``OSError``, or any failure the data alone does not reproduce): nothing is
  dropped and the offsets stay; the batch is retried with back-off (1 s doubling to 30 s), the
  sink stops reading at ``warehouse_max_buffered`` records (the topic holds the backlog) and
  raises its alarm: an error log line, :meth:`OrderSink.health`, and ``aurora:warehouse:failing``.

Redis keys (``{t}`` a tenant id): ``aurora:t:{t}:warehouse`` hash (``offsets``, ``pending``,
JSON); ``aurora:warehouse:delayed`` hash tenant -> JSON of the last ingestion delay over the limit
(read by ``/status``); ``aurora:warehouse:failing`` hash tenant -> JSON of a failing warehouse
(:func:`failing_tenants`), removed by the next successful write; dead letters go to the tenant's
``aurora:t:{t}:deadletter`` list as JSON with ``"stage": "warehouse"``.
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
from redis.exceptions import RedisError

from aurora_ray.adapters.kafka import make_consumer
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.events import EventType, ShardBatch, ShardRecord
from aurora_ray.naming import SOURCE_BACKFILL, SOURCE_HEADER
from aurora_ray.settings import Settings
from aurora_ray.warehouse.quality import DataQualityError, order_fields, sku_fields
from aurora_ray.warehouse.schema import DIM_SKU, DIM_TENANT, FACT_ORDER, TENANT_SETTINGS
from aurora_ray.warehouse.store import Warehouse, WriteResult

__all__ = [
    "DELAYED_KEY",
    "FAILING_KEY",
    "OrderSink",
    "delayed_tenants",
    "failing_tenants",
    "order_batch_id",
]

log = logging.getLogger(__name__)
DELAYED_KEY = "aurora:warehouse:delayed"
FAILING_KEY = "aurora:warehouse:failing"
_PENDING_WAIT_S = 60.0  # give up cutting at the noted ranges after this (records gone)
_MAX_READABLE_ID = 160
_RETRY_FIRST_S = 1.0  # back-off after a failed write: doubles per failure ...
_RETRY_MAX_S = 30.0  # ... up to this
_MAX_REASON = 500  # characters of an exception kept as a reason


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


def failing_tenants(store: RedisStore) -> list[dict[str, Any]]:
    """Tenants whose warehouse sink cannot write, by tenant id: ``error`` (the last one),
    ``since`` (epoch s of the first failure), ``attempts``, ``buffered`` records, ``paused``
    (reading stopped at the bound), ``retry_at`` and ``at`` (epoch s of the last attempt: a
    running sink retries at least every 30 s, so an older ``at`` means no sink is retrying)."""
    raw = cast(dict[bytes, bytes], store.client.hgetall(FAILING_KEY))
    return [{"tenant_id": t.decode(), **json.loads(v)} for t, v in sorted(raw.items())]


@dataclass
class _Buffer:
    """Consumed records since the last flush: positions of all, columns of the orders, and the
    dead letters of the records the warehouse cannot take (by position: they go with the batch
    that holds their offset)."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    orders: dict[str, list[Any]] = field(default_factory=dict)
    order_pos: list[int] = field(default_factory=list)  # index into partitions/offsets
    dead: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


_ORDER_COLUMNS = ("event_id", "order_id", "sku_id", "warehouse_id", "qty", "price", "currency")


def _new_buffer() -> _Buffer:
    return _Buffer(orders={c: [] for c in (*_ORDER_COLUMNS, "ts_ms")})


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return text[:_MAX_REASON]


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
        self._buffer = _new_buffer()
        self._skus: dict[tuple[str, str], dict[str, Any]] = {}
        self._skus_changed = False
        self._settings_version = -1
        self._opened = False  # dim_tenant written and dim_sku loaded: the warehouse is usable
        self.paused = False  # reading stopped: warehouse_max_buffered records are buffered
        self.last_flush = 0.0
        self.rows_written = 0
        self.batches = 0
        self.last_delay_s: float | None = None
        self.rejected = 0  # records dead-lettered by this sink
        # A failing warehouse: the last error, since when, consecutive and total failed
        # attempts, when to try again; the Redis alarm may hold an earlier process's record.
        self.warehouse_error: str | None = None
        self.failing_since: float | None = None
        self.failed_attempts = 0
        self.write_failures = 0
        self.retry_at = 0.0
        self._alarm_in_redis = True

    @property
    def buffered(self) -> int:
        """Topic records read and not yet written (at most ``warehouse_max_buffered``, plus
        the elements of one bundle)."""
        return len(self._buffer)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load offsets (and a pending batch) from Redis, assign all partitions, write dims.

        A warehouse that fails here raises the alarm, and :meth:`step` reads nothing until it
        works (the dim_sku snapshot must be loaded before it is rewritten)."""
        raw = cast(dict[bytes, bytes], self.store.client.hgetall(_key(self.tenant_id)))
        self.offsets = {int(p): int(o) for p, o in json.loads(raw.get(b"offsets", b"{}")).items()}
        pending = json.loads(raw.get(b"pending", b"null"))
        self.pending = (
            {int(p): (int(a), int(b)) for p, (a, b) in pending.items()} if pending else None
        )
        self._pending_since = self.clock()
        self._buffer = _new_buffer()
        self._opened = False
        self.paused = False
        self._open_warehouse()
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

    def _open_warehouse(self) -> bool:
        try:
            self._write_tenant()
            self._load_skus()
            self._write_settings()
        except RedisError:
            raise  # not the warehouse's: the loop retries (the shards' rule for Redis)
        except Exception as exc:  # the store's failure: the data here is ours, not a record's
            self._write_failed(exc, "opening")
            return False
        self._opened = True
        self._write_succeeded()  # the warehouse takes writes: an alarm up is over
        return True

    def close(self) -> None:
        """Write what is buffered (unless the warehouse is failing: the topic keeps it)."""
        if self._consumer is not None:
            if self.failing_since is None:
                self.flush()
            self._consumer.close()
            self._consumer = None

    # -- the loop ------------------------------------------------------------------------------
    def step(self, timeout: float = 0.5) -> int:
        """Consume one micro-batch; flush when due. Returns the records consumed.

        Reads nothing while ``warehouse_max_buffered`` records are buffered (the partitions are
        paused, so the consumer does not prefetch either) or the warehouse could not be opened;
        waits ``timeout`` instead when there is nothing to write either."""
        if self._consumer is None:
            self.start()
        assert self._consumer is not None  # noqa: S101 - start() sets it
        if not self._opened and (self.clock() < self.retry_at or not self._open_warehouse()):
            time.sleep(timeout)
            return 0
        most = self.settings.warehouse_max_buffered
        if len(self._buffer) >= most and self._flush_due():
            self.flush()
        room = most - len(self._buffer)
        self._pause(room <= 0)
        if self.paused:  # full, and the warehouse fails: wait for the next attempt
            time.sleep(timeout)
            return 0
        limit = min(self.settings.batch_max_events, room)
        messages = self._consumer.consume(limit, timeout=timeout)
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

    def _pause(self, full: bool) -> None:
        """Pause the partitions when the buffer is full, resume them when it is not."""
        if full == self.paused or self._consumer is None:
            return
        assignment = self._consumer.assignment()
        if full:
            self._consumer.pause(assignment)
            log.log(
                logging.WARNING if self.failing_since is not None else logging.INFO,
                "warehouse sink %s stops reading at %d buffered records until it can write",
                self.tenant_id,
                len(self._buffer),
            )
        else:
            self._consumer.resume(assignment)
            log.info("warehouse sink %s reads again", self.tenant_id)
        self.paused = full

    def _take(self, values: list[bytes], positions: list[tuple[int, int]]) -> None:
        """Buffer a batch of live records (:meth:`step` passes over the backfilled ones).

        Records are decoded as the shard decodes them (:class:`ShardBatch`: the payload stays raw
        JSON, and the same records are refused); only an order's three payload fields are read,
        and a ``sku.upserted``'s payload. The refused ones are still consumed (their offsets
        advance with the batch): the shards dead-letter them. A record whose fields the tables
        cannot take (:func:`order_fields`, :func:`sku_fields`), or that the decoder cannot
        survive, is dead-lettered here, alone."""
        buf = self._buffer
        batch, broken = _decode(values)
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
            kind = record.event_type
            try:
                if kind == EventType.ORDER_CREATED:
                    fields = order_fields(record.payload, record.qty)
                    order_id = fields.order_id
                    buf.order_pos.append(len(buf.offsets) - 1)
                    event_ids.append(record.event_id)
                    order_ids.append(order_id if isinstance(order_id, str) else str(order_id))
                    skus.append(record.sku)
                    warehouses.append(record.warehouse)
                    qtys.append(record.qty)
                    prices.append(fields.price)
                    currencies.append(fields.currency)
                    times.append(record.ts_ms)
                elif kind == EventType.SKU_UPSERTED:
                    self._upsert_sku(record.sku, record.warehouse or "", sku_fields(record.payload))
            except Exception as exc:  # the record's fault, whatever the decoder raised
                raw = values[i] if values[i][:1] != b"[" else msgspec.json.encode(record)
                letter = _letter(_reason(exc), partition, offset, raw, record)
                buf.dead.append((len(buf.offsets) - 1, letter))
        for item in batch.refused:
            buf.partitions.append(positions[item[0]][0])
            buf.offsets.append(positions[item[0]][1])
        for i, reason in broken:
            partition, offset = positions[i]
            buf.partitions.append(partition)
            buf.offsets.append(offset)
            buf.dead.append((len(buf.offsets) - 1, _letter(reason, partition, offset, values[i])))

    def _flush_due(self) -> bool:
        if not len(self._buffer) or self.clock() < self.retry_at:
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
        if len(self._buffer) >= self.settings.warehouse_max_buffered:
            return True
        return self.clock() - self.last_flush >= self.settings.warehouse_flush_s

    def flush(self) -> WriteResult | None:
        """Write the buffered batch (or, after a crash or a failed write, exactly the pending
        one) and move on. A failing warehouse raises no exception here: the batch stays pending
        and buffered, the alarm goes up and :meth:`step` tries again after the back-off."""
        buf = self._buffer
        self.last_flush = self.clock()
        if not len(buf) or (not self._opened and not self._open_warehouse()):
            return None
        cut = self.pending
        # Without a pending batch (the usual case) every buffered record goes; after a crash or
        # a failed write, exactly those of the pending batch.
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
            # A retry of this batch (after a failed write) must cut it here too: files written
            # before the failure are replaced under the same batch id, never duplicated.
            self.pending, self._pending_since = ranges, self.clock()
        taken_orders = (
            list(range(len(buf.order_pos)))
            if take is None
            else [i for i, pos in enumerate(buf.order_pos) if take[pos]]
        )
        letters = [letter for pos, letter in buf.dead if take is None or take[pos]]
        try:
            result = self._write_orders(taken_orders, batch_id, letters)
            if self._skus_changed:
                self._write_skus(batch_id)
            self._write_settings()
        except RedisError:
            raise  # not the warehouse's (the settings are read from Redis): the loop retries
        except Exception as exc:  # what is left is the store's (the data's was dead-lettered)
            self._write_failed(exc, f"batch {batch_id}")
            return None
        if letters:
            self.store.dead_letter(self.tenant_id, [json.dumps(d).encode() for d in letters])
            log.error(
                "warehouse sink %s dead-lettered %d record(s) of batch %s; the first: %s",
                self.tenant_id,
                len(letters),
                batch_id,
                letters[0]["reason"],
            )
        next_offsets = {**self.offsets, **{p: last + 1 for p, (_, last) in ranges.items()}}
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hset(key, "offsets", json.dumps({str(p): o for p, o in next_offsets.items()}))
        pipe.hdel(key, "pending")
        pipe.execute()
        self.offsets = next_offsets
        self.pending = None
        if take is None:
            self._buffer = _new_buffer()
        else:
            self._keep(buf, [not t for t in take])
        self.batches += 1
        self.rejected += len(letters)
        self._write_succeeded()
        if result is not None:
            self.rows_written += result.rows
            self._check_delay(result)
        return result

    def _write_orders(
        self, indices: list[int], batch_id: str, letters: list[dict[str, Any]]
    ) -> WriteResult | None:
        """Write these buffered orders as one batch; rows the warehouse refuses are left out and
        their dead letters added to ``letters``. Raises only for the store's failures."""
        while indices:
            try:
                table = self._order_table(indices)
                return self.warehouse.write_fact_order(self.tenant_id, table, batch_id=batch_id)
            except OSError:
                raise  # the store's: disk full, permission denied, an object store down
            except DataQualityError as exc:
                if not exc.rows:
                    raise
                bad = {
                    indices[r.index]: f"fact_order: price {r.price} is null or <= 0"
                    for r in exc.rows
                }
            except Exception as exc:
                # The data's, unless the rows pass the write's checks in memory: then the store
                # failed in a way that is not an OSError, and the batch is retried as a whole.
                bad = dict(self._refused_rows(indices))
                if not bad:
                    raise
                log.warning("batch %s of %s: %s", batch_id, self.tenant_id, _reason(exc))
            letters.extend(self._row_letter(i, reason) for i, reason in sorted(bad.items()))
            indices = [i for i in indices if i not in bad]
        return None

    def _order_table(self, indices: list[int]) -> pa.Table:
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
        return pa.table(columns)

    def _refused_rows(self, indices: list[int]) -> list[tuple[int, str]]:
        """The orders among ``indices`` that fail :meth:`Warehouse.check` alone, with the
        reason, found by halving: about 2·k·log2(n) checks in memory for k bad rows of n."""
        bad: list[tuple[int, str]] = []
        parts = [indices]
        while parts:
            part = parts.pop()
            try:
                self.warehouse.check(FACT_ORDER, self.tenant_id, self._order_table(part))
            except OSError:
                raise
            except Exception as exc:
                if len(part) == 1:
                    bad.append((part[0], _reason(exc)))
                else:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]
        return bad

    def _row_letter(self, index: int, reason: str) -> dict[str, Any]:
        buf = self._buffer
        pos = buf.order_pos[index]
        row = {c: buf.orders[c][index] for c in _ORDER_COLUMNS}
        return {
            "reason": reason,
            "stage": "warehouse",
            "partition": buf.partitions[pos],
            "offset": buf.offsets[pos],
            "event_id": row["event_id"],
            "sku": row["sku_id"],
            "row": {**row, "ts_ms": buf.orders["ts_ms"][index]},
        }

    # -- a failing warehouse -------------------------------------------------------------------
    def _write_failed(self, exc: BaseException, what: str) -> None:
        """Back off, and raise the alarm: error log, :meth:`health`, ``FAILING_KEY``."""
        now = self.clock()
        self.failed_attempts += 1
        self.write_failures += 1
        if self.failing_since is None:
            self.failing_since = now
        delay = min(_RETRY_MAX_S, _RETRY_FIRST_S * 2 ** min(self.failed_attempts - 1, 16))
        self.retry_at = now + delay
        self.warehouse_error = _reason(exc) if str(exc) else type(exc).__name__
        log.error(
            "warehouse write of tenant %s failed (%s, attempt %d, failing for %.0f s, %d records "
            "buffered%s); retrying in %.0f s: %s",
            self.tenant_id,
            what,
            self.failed_attempts,
            now - self.failing_since,
            len(self._buffer),
            ", reading paused" if self.paused else "",
            delay,
            self.warehouse_error,
            exc_info=not isinstance(exc, OSError),
        )
        record = {
            "error": self.warehouse_error,
            "since": self.failing_since,
            "attempts": self.failed_attempts,
            "buffered": len(self._buffer),
            "paused": self.paused,
            "retry_at": self.retry_at,
            "at": now,
        }
        try:
            self.store.client.hset(FAILING_KEY, self.tenant_id, json.dumps(record))
            self._alarm_in_redis = True
        except Exception:  # Redis down too: the log line and health() still tell
            log.exception("could not record the warehouse alarm of tenant %s", self.tenant_id)

    def _write_succeeded(self) -> None:
        if self.failing_since is not None:
            log.warning(
                "warehouse writes of tenant %s succeed again after %.0f s and %d failed attempts",
                self.tenant_id,
                self.clock() - self.failing_since,
                self.failed_attempts,
            )
        if self._alarm_in_redis:
            self.store.client.hdel(FAILING_KEY, self.tenant_id)
            self._alarm_in_redis = False
        self.warehouse_error = None
        self.failing_since = None
        self.failed_attempts = 0
        self.retry_at = 0.0

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
        buf.dead = [(new_index[pos], letter) for pos, letter in buf.dead if keep[pos]]

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

    def _upsert_sku(self, sku: str, warehouse: str, fields: Any) -> None:
        """Later values win; a field the event leaves out keeps its earlier value."""
        key = (sku, warehouse)
        if key not in self._skus:
            self._skus[key] = {"category": None, "brand": None, "initial_stock": None}
            self._skus_changed = True
        record = self._skus[key]
        for name in ("category", "brand", "initial_stock"):
            value = getattr(fields, name)
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
            "buffered": self.buffered,
            "rows_written": self.rows_written,
            "batches": self.batches,
            "rejected": self.rejected,
            "last_flush": self.last_flush,
            "last_delay_s": self.last_delay_s,
            "paused": self.paused,
            "warehouse_error": self.warehouse_error,
            "failing_since": self.failing_since,
            "failed_attempts": self.failed_attempts,
            "write_failures": self.write_failures,
            "retry_at": self.retry_at or None,
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


def _decode(values: list[bytes]) -> tuple[ShardBatch, list[tuple[int, str]]]:
    """:class:`ShardBatch` of ``values``, and the records the decoder raised on (not refused:
    raised, e.g. ``RecursionError`` on JSON nested past the interpreter's limit), each with the
    reason, decoded one by one when the batch raised."""
    batch = ShardBatch()
    try:
        batch.add(values, range(len(values)))
        return batch, []
    except Exception:  # one record the decoder cannot survive: find it
        log.warning("the shard decoder raised on a batch; decoding its records one by one")
    batch, broken = ShardBatch(), []
    for i, value in enumerate(values):
        one = ShardBatch()
        try:
            one.add([value], [i])
        except Exception as exc:
            broken.append((i, f"record cannot be decoded: {_reason(exc)}"))
            continue
        batch.records += one.records
        batch.partitions += one.partitions
        batch.refused += one.refused
        batch.reasons += one.reasons
    return batch, broken


def _letter(
    reason: str, partition: int, offset: int, raw: bytes, record: ShardRecord | None = None
) -> dict[str, Any]:
    """A dead letter of the sink: why, where on the topic, and the record as it was there."""
    return {
        "reason": reason,
        "stage": "warehouse",
        "partition": partition,
        "offset": offset,
        "event_id": None if record is None else record.event_id,
        "sku": None if record is None else record.sku,
        "record": raw.decode("utf-8", "replace"),
    }


def _from_backfill(headers: _Headers) -> bool:
    """Whether a record carries the backfill's source header (see aurora_ray.backfill)."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, dict) else headers
    return any(k == SOURCE_HEADER and v == SOURCE_BACKFILL for k, v in pairs)
