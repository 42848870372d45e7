"""Stream: events/s from a pre-filled topic to scored state and alerts in Redis.

Per shard count (1, 2, 4 in the full run): a fresh topic is pre-filled with the records the API
would produce (stock snapshots for every SKU, then orders), then that many ``TenantShard`` actors
consume it. Anchor: a bare consumer (assign + consume(10000), the notes' three fetch settings)
reading the same topic from this process.
"""

from __future__ import annotations

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    consume_raw,
    events_per_s,
    order_lines,
    produce_raw,
    snapshot_lines,
    stream_tenant,
    topic_records,
)
from bench.shards import run_shards

NAME = "stream"
_TEMPLATE = "00000000-0000-0000-0000-00000000be0c"


def _records(size: Size) -> list[tuple[bytes | None, bytes]]:
    lines = snapshot_lines(_TEMPLATE, range(size.stream_skus), on_hand=50_000)
    lines += order_lines(
        _TEMPLATE, size.stream_events - size.stream_skus, skus=size.stream_skus, seed=2
    )
    return topic_records(_TEMPLATE, lines)


def _for_tenant(
    records: list[tuple[bytes | None, bytes]], tenant_id: str
) -> list[tuple[bytes | None, bytes]]:
    old, new = _TEMPLATE.encode(), tenant_id.encode()
    return [(key, value.replace(old, new)) for key, value in records]


def run(target: Target, size: Size) -> ScenarioResult:
    settings = target.settings
    partitions = settings.partitions_per_topic
    target.progress(f"stream: building {size.stream_events} records")
    template = _records(size)
    rows: list[Row] = []
    details: dict[str, object] = {"events": len(template), "skus": size.stream_skus}
    raw_rate: float | None = None
    by_shards: dict[str, object] = {}
    for shards in size.shard_counts:
        tenant_id = stream_tenant(target)
        topic = settings.topic_for(tenant_id)
        delivered, _ = produce_raw(
            settings.kafka_bootstrap, topic, _for_tenant(template, tenant_id)
        )
        if raw_rate is None:
            target.progress("stream anchor: raw consumer")
            consumed, seconds = consume_raw(settings.kafka_bootstrap, topic, partitions, delivered)
            raw_rate = events_per_s(consumed, seconds)
            details["raw_consumer"] = {"events": consumed, "seconds": seconds, "rate": raw_rate}
        target.progress(f"stream: {shards} shard(s) on {delivered} records")
        events, seconds, info = run_shards(target, tenant_id, shards=shards, expected=delivered)
        rate = events_per_s(events, seconds)
        counters = target.store.counters(tenant_id)
        by_shards[str(shards)] = {**info, "rate": rate, "seconds": seconds, "counters": counters}
        rows.append(
            Row(
                metric=f"stream events/s, {shards} shard(s), {size.stream_skus} SKUs",
                unit="events/s",
                aurora=rate,
                anchor=raw_rate,
                anchor_name="raw consumer, 1 process",
                target=">= 45000 (aim 100000)",
                ok=rate >= 45_000,
                note=f"{counters.get('alerts_generated', 0)} alerts"
                + ("; TIMED OUT" if info["timed_out"] else ""),
            )
        )
    details["by_shards"] = by_shards
    failed = any(bool(v["timed_out"]) for v in by_shards.values())  # type: ignore[index]
    return ScenarioResult(
        NAME,
        "failed" if failed else "ok",
        reason="a shard run timed out" if failed else "",
        rows=rows,
        details=details,
    )
