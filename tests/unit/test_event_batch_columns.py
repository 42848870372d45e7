"""EventBatch.from_events in one pass: the same columns as filtering with moves_state, and the
partition of each scored event when the partitions are given."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_ray.domain.events import EventType, StreamEvent
from aurora_ray.domain.state import TYPE_CODES, EventBatch, moves_state

pytestmark = pytest.mark.unit

TENANT = "00000000-0000-0000-0000-000000000001"


def _event(i: int, event_type: str, *, sku: str | None = "A", value: int = 0) -> StreamEvent:
    return StreamEvent(
        event_id=str(i),
        tenant_id=TENANT,
        event_type=event_type,
        ts_ms=1_700_000_000_000 + i,
        received_ms=1_700_000_000_500 + i,
        sku=sku,
        warehouse="W1" if sku else None,
        qty=i % 5,
        value=value,
    )


def test_from_events_matches_moves_state_and_keeps_partitions() -> None:
    kinds = [*TYPE_CODES, "price.changed"]
    events = [
        _event(
            i,
            kinds[i % len(kinds)],
            sku=None if i % 11 == 0 else f"S{i % 7}",
            value=-1 if i % 3 == 0 else i,
        )
        for i in range(500)
    ]
    partitions = [(i * 5) % 4 for i in range(500)]
    batch = EventBatch.from_events(events, partitions)
    scored = [i for i, e in enumerate(events) if moves_state(e)]
    assert batch.keys == [events[i].key for i in scored]
    assert batch.type_code.tolist() == [TYPE_CODES[events[i].event_type] for i in scored]
    assert batch.ts_s.tolist() == [events[i].ts_ms / 1000.0 for i in scored]
    assert batch.received_s.tolist() == [events[i].received_ms / 1000.0 for i in scored]
    assert batch.qty.tolist() == [events[i].qty for i in scored]
    assert batch.value.tolist() == [events[i].value for i in scored]
    assert batch.unknown == sum(1 for e in events if e.event_type not in TYPE_CODES)
    assert batch.partition is not None
    assert batch.partition.tolist() == [partitions[i] for i in scored]
    assert any(e.event_type == EventType.SKU_UPSERTED and e.value < 0 for e in events)


def test_from_events_empty() -> None:
    batch = EventBatch.from_events([], [])
    assert len(batch) == 0 and batch.type_code.dtype == np.int8
    assert batch.partition is not None and len(batch.partition) == 0
    assert EventBatch.from_events([]).partition is None
