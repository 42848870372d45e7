"""Builders of events and small helpers for tests (shipped so that users' tests can use them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "ManualClock",
    "envelope",
    "iso",
    "ndjson",
    "order",
    "sku_upserted",
    "stock_adjusted",
    "stock_ordered",
    "stock_received",
    "stock_snapshot",
    "topic_records",
    "wait_for",
]


class ManualClock:
    """A wall clock that moves only when told (a shard's lag refreshes and checkpoint intervals,
    a sink's flushes and back-off): pass it as ``clock``."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def envelope(
    tenant_id: str,
    event_type: str,
    payload: dict[str, Any],
    *,
    at: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {"tenant_id": tenant_id, "event_type": event_type, "payload": payload}
    if at is not None:
        event["occurred_at"] = iso(at)
    event.update(extra)
    return event


def sku_upserted(
    tenant_id: str,
    sku: str,
    warehouse: str,
    stock: int | None,
    *,
    at: float,
    **replenishment: Any,
) -> dict[str, Any]:
    """``stock`` None: a catalogue-only upsert. ``replenishment``: ``lead_time_hours``, ``moq``,
    ``case_pack``."""
    payload: dict[str, Any] = {"sku": sku, "warehouse": warehouse, "category": "demo"}
    if stock is not None:
        payload["initial_stock"] = stock
    return envelope(tenant_id, "sku.upserted", {**payload, **replenishment}, at=at)


def stock_ordered(
    tenant_id: str, sku: str, warehouse: str, qty: int, *, at: float, expected_at: float
) -> dict[str, Any]:
    """A purchase order: ``qty`` units expected to land at ``expected_at``."""
    return envelope(
        tenant_id,
        "stock.ordered",
        {"sku": sku, "warehouse": warehouse, "qty": qty, "expected_at": iso(expected_at)},
        at=at,
    )


def order(
    tenant_id: str, sku: str, warehouse: str, qty: int, *, at: float, order_id: str = "o-1"
) -> dict[str, Any]:
    return envelope(
        tenant_id,
        "order.created",
        {
            "order_id": order_id,
            "sku": sku,
            "warehouse": warehouse,
            "qty": qty,
            "price": 9.99,
            "currency": "EUR",
        },
        at=at,
    )


def stock_snapshot(
    tenant_id: str, sku: str, warehouse: str, on_hand: int, *, at: float
) -> dict[str, Any]:
    return envelope(
        tenant_id, "stock.snapshot", {"sku": sku, "warehouse": warehouse, "on_hand": on_hand}, at=at
    )


def stock_received(
    tenant_id: str, sku: str, warehouse: str, qty: int, *, at: float
) -> dict[str, Any]:
    return envelope(
        tenant_id, "stock.received", {"sku": sku, "warehouse": warehouse, "qty": qty}, at=at
    )


def stock_adjusted(
    tenant_id: str, sku: str, warehouse: str, delta: int, *, at: float, reason: str = "count"
) -> dict[str, Any]:
    return envelope(
        tenant_id,
        "stock.adjusted",
        {"sku": sku, "warehouse": warehouse, "delta": delta, "reason": reason},
        at=at,
    )


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(e) for e in events) + b"\n"


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until ``condition()`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")


def topic_records(bootstrap: str, topic: str, partitions: int, idle_s: float = 2.0) -> list[bytes]:
    """Every record value on ``topic`` (read from the beginning until ``idle_s`` of silence).

    Counts by reading, not by watermarks: the embedded broker reports the high watermark as the
    base offset of the last record batch + 1, not the last record's offset + 1.
    """
    from confluent_kafka import TopicPartition

    from aurora_ray.adapters.kafka import make_consumer

    consumer = make_consumer(bootstrap, "aurora-test-reader")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, timeout=idle_s)
            if not batch:
                break
            values.extend(m.value() or b"" for m in batch if not m.error())
    finally:
        consumer.close()
    return values
