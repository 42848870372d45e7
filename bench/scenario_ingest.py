"""Ingest: events/s accepted by POST /v1/ingest/events into the topic, beside the raw producer.

Aurora: ``clients`` closed-loop connections post gzip NDJSON batches of 1 000 events to a tenant
with no shards (so the figure is the ingest path alone, like the notes' produce-only handler).
Anchor: confluent-kafka producing the very records the API produced (idempotent, acks=all, lz4,
deliveries counted per flushed batch) to another topic on the same broker, from this process.
"""

from __future__ import annotations

import time

from bench.common import (
    Row,
    ScenarioResult,
    Size,
    Target,
    events_per_s,
    gzip_body,
    order_lines,
    percentiles,
    produce_raw,
    topic_records,
    unregistered_tenant,
)
from bench.load import closed_loop_posts
from bench.load import run as run_load

NAME = "ingest"
_BATCH = 1_000
_BODIES = 40


def run(target: Target, size: Size) -> ScenarioResult:
    settings = target.settings
    tenant, client = unregistered_tenant(target)
    lines = order_lines(tenant.tenant_id, _BATCH * _BODIES, skus=20_000, seed=1)
    bodies = [(gzip_body(lines[i : i + _BATCH]), _BATCH) for i in range(0, len(lines), _BATCH)]
    token = client.token()
    client.close()
    run_load(  # warm-up: connections, the replica's producer, topic metadata
        closed_loop_posts(target.api_url, token, bodies[:4], clients=1, seconds=0.5)
    )
    topic = settings.topic_for(tenant.tenant_id)
    before = sum(target.admin.end_offsets(topic, range(settings.partitions_per_topic)).values())
    target.progress(f"ingest: {size.ingest_clients} clients for {size.ingest_seconds:.0f} s")
    load = run_load(
        closed_loop_posts(
            target.api_url,
            token,
            bodies,
            clients=size.ingest_clients,
            seconds=size.ingest_seconds,
        )
    )
    after = sum(target.admin.end_offsets(topic, range(settings.partitions_per_topic)).values())
    in_topic = after - before

    target.progress(f"ingest anchor: raw producer, {size.producer_messages} records")
    anchor_tenant = unregistered_tenant(target)[0].tenant_id
    sample = topic_records(tenant.tenant_id, lines)
    records = (sample * (size.producer_messages // len(sample) + 1))[: size.producer_messages]
    produced = produce_raw(settings.kafka_bootstrap, settings.topic_for(anchor_tenant), records)
    raw_rate = produced.rate
    aurora_rate = events_per_s(load.accepted, load.seconds)
    lat = percentiles(load.latencies_ms, (50, 99))
    ingress = "Serve + HAProxy ingress" if target.haproxy else "Serve, default proxy"
    rows = [
        Row(
            metric=f"ingest events/s ({ingress}, {size.ingest_clients} clients)",
            unit="events/s",
            aurora=aurora_rate,
            anchor=raw_rate,
            anchor_name="raw confluent-kafka producer",
            target=">= 100000",
            ok=aurora_rate >= 100_000,
            note=f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms per 1 000-event request",
        )
    ]
    return ScenarioResult(
        NAME,
        "ok" if load.ok else "failed",
        reason="" if load.ok else f"no request accepted: statuses {load.statuses}",
        rows=rows,
        details={
            "haproxy": target.haproxy,
            "clients": size.ingest_clients,
            "requests": load.requests,
            "accepted_events": load.accepted,
            "records_in_topic": in_topic,
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "errors": load.errors,
            "timeouts": load.timeouts,
            "seconds": load.seconds,
            "latency_ms": lat,
            "raw_producer": {
                "delivered": produced.delivered,
                "timed": produced.timed,
                "seconds": produced.seconds,
                "rate": raw_rate,
            },
            "measured_at": time.time(),
        },
    )
