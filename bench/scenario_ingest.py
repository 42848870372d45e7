"""Ingest: events/s accepted by POST /v1/ingest/events into the topic, beside the raw producer.

Aurora: ``clients`` closed-loop connections post gzip NDJSON batches of 1 000 events to a tenant
with no shards (so the figure is the ingest path alone, like the notes' produce-only handler).
Anchor: confluent-kafka producing the very records the API produced (idempotent, acks=all, lz4,
deliveries counted per flushed batch) to another topic on the same broker, from this process.

The limiter's cost: the API as deployed runs the rate limiter on every request (the bench's
tenants have limits far above any load it offers, so it refuses nothing). Then, for each of
:data:`VARIANTS`, the ingest application is deployed again with those settings, measured the
same way on the same tenant, and deployed back as it was (:func:`bench.redeploy.ingest_app_with`;
only on a stack the bench started itself), and then the API as deployed is measured again, so
each variant is bracketed by two runs as deployed (the machine's drift and the first run's
warm-up cancel out). Its row gives the ratio: the mean of those two runs ÷ the variant's.
"""

from __future__ import annotations

import time
from typing import Any

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
from bench.load import LoadResult, closed_loop_posts
from bench.load import run as run_load
from bench.redeploy import Variant, ingest_app_with

NAME = "ingest"
_BATCH = 1_000
_BODIES = 40

#: Measured after the API as deployed, each on the ingest application deployed again with its
#: settings. An admitted request carries RateLimit-* headers while the limiter runs, none
#: without it.
VARIANTS: tuple[Variant, ...] = (
    Variant(
        "rate limiter off (rate_limit_enabled=false)",
        {"rate_limit_enabled": False},
        answered_by=lambda response: "ratelimit-limit" not in response.headers,
    ),
)


def _measure(
    target: Target, size: Size, token: str, bodies: list[tuple[bytes, int]], topic: str
) -> tuple[LoadResult, int]:
    """Warm up, then ``ingest_clients`` closed-loop clients for ``ingest_seconds``; returns the
    load and the records that reached the topic meanwhile.

    Every request was answered (or given up) when the end offsets are read, so the difference
    is what this load added. ``end_offsets`` reads each partition to its end: the listed offset
    alone is a record batch short on the embedded broker, and summed over the partitions the
    two shortfalls cancelled only when the last batch of every partition came from one request
    (a single client, unhurried); under load they did not (59 967 for 60 000 accepted, all
    60 000 on the topic)."""
    partitions = range(target.settings.partitions_per_topic)
    run_load(  # warm-up: connections, the replica's producer, topic metadata
        closed_loop_posts(target.api_url, token, bodies[:4], clients=1, seconds=0.5)
    )
    before = sum(target.admin.end_offsets(topic, partitions).values())
    load = run_load(
        closed_loop_posts(
            target.api_url,
            token,
            bodies,
            clients=size.ingest_clients,
            seconds=size.ingest_seconds,
        )
    )
    after = sum(target.admin.end_offsets(topic, partitions).values())
    return load, after - before


def _summary(load: LoadResult, in_topic: int) -> dict[str, Any]:
    return {
        "requests": load.requests,
        "accepted_events": load.accepted,
        "records_in_topic": in_topic,
        # Events of requests timed out, cut or answered 5xx: they may be on the topic or not.
        "unsettled_events": load.unsettled,
        "statuses": {str(k): v for k, v in load.statuses.items()},
        "errors": load.errors,
        "timeouts": load.timeouts,
        "seconds": load.seconds,
        "rate": events_per_s(load.accepted, load.seconds),
        "latency_ms": percentiles(load.latencies_ms, (50, 99)),
    }


def variant_row(
    label: str, *, deployed: float | None, variant: float | None, note: str, judged: bool
) -> Row:
    """A variant's figure beside the API as deployed (the mean of the runs before and after
    it), and the ratio deployed ÷ variant (judged in the full run only: a quick run's 2 s are
    too short to tell 10 %)."""
    share = deployed / variant if deployed and variant and variant > 0 else None
    return Row(
        metric=f"ingest events/s, {label}; as deployed ÷ this = "
        + ("–" if share is None else f"{share:.2f}"),
        unit="events/s",
        aurora=variant,
        anchor=deployed,
        anchor_name="as deployed, mean of the runs before and after",
        target="as deployed >= 0.9 x this" if judged else "",
        ok=None if share is None or not judged else share >= 0.9,
        note=note,
    )


def run(target: Target, size: Size) -> ScenarioResult:
    settings = target.settings
    tenant, client = unregistered_tenant(target)
    lines = order_lines(tenant.tenant_id, _BATCH * _BODIES, skus=20_000, seed=1)
    bodies = [(gzip_body(lines[i : i + _BATCH]), _BATCH) for i in range(0, len(lines), _BATCH)]
    token = client.token()
    client.close()
    topic = settings.topic_for(tenant.tenant_id)
    target.progress(f"ingest: {size.ingest_clients} clients for {size.ingest_seconds:.0f} s")
    load, in_topic = _measure(target, size, token, bodies, topic)
    aurora_rate = events_per_s(load.accepted, load.seconds)
    lat = percentiles(load.latencies_ms, (50, 99))
    deployed_rates = [aurora_rate]  # every run as deployed, in order
    variants: dict[str, dict[str, Any]] = {}
    variant_rows: list[Row] = []
    failures: list[str] = []
    for variant in VARIANTS:
        if not target.owns_stack:
            variants[variant.label] = {"skipped": "the bench did not start this stack"}
            variant_rows.append(
                variant_row(
                    variant.label,
                    deployed=aurora_rate,
                    variant=None,
                    note="not measured: the bench redeploys only a stack it started",
                    judged=not size.quick,
                )
            )
            continue
        target.progress(f"ingest: {variant.label}, {size.ingest_seconds:.0f} s")
        with ingest_app_with(target, variant, token=token, body=bodies[0][0]) as switched:
            other, other_in_topic = _measure(target, size, token, bodies, topic)
        target.progress(f"ingest: as deployed again, {size.ingest_seconds:.0f} s")
        again, again_in_topic = _measure(target, size, token, bodies, topic)
        after = _summary(again, again_in_topic)
        deployed_rates.append(after["rate"])
        before_rate = deployed_rates[-2]
        summary = _summary(other, other_in_topic)
        variants[variant.label] = {
            "settings": dict(variant.settings),
            **summary,
            **switched,
            "as_deployed_after": after,
        }
        for name, measured in ((variant.label, other), ("as deployed, after it", again)):
            if not measured.ok:
                failures.append(f"{name}: no request accepted: statuses {measured.statuses}")
        other_lat = summary["latency_ms"]
        variant_rows.append(
            variant_row(
                variant.label,
                deployed=(before_rate + after["rate"]) / 2 if again.ok else None,
                variant=summary["rate"] if other.ok else None,
                note=f"p50 {other_lat['p50']:.0f} ms, p99 {other_lat['p99']:.0f} ms per "
                "1 000-event request; the ingest application deployed again with these "
                f"settings (answering {switched['to_variant_s']:.1f} s later), then back; as "
                f"deployed {before_rate / 1000:.1f} K/s before, {after['rate'] / 1000:.1f} K/s "
                "after",
                judged=not size.quick,
            )
        )

    target.progress(f"ingest anchor: raw producer, {size.producer_messages} records")
    anchor_tenant = unregistered_tenant(target)[0].tenant_id
    sample = topic_records(tenant.tenant_id, lines)
    records = (sample * (size.producer_messages // len(sample) + 1))[: size.producer_messages]
    produced = produce_raw(settings.kafka_bootstrap, settings.topic_for(anchor_tenant), records)
    raw_rate = produced.rate
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
        ),
        *variant_rows,
    ]
    if not load.ok:
        failures.insert(0, f"no request accepted: statuses {load.statuses}")
    return ScenarioResult(
        NAME,
        "failed" if failures else "ok",
        reason="; ".join(failures),
        rows=rows,
        details={
            "haproxy": target.haproxy,
            "clients": size.ingest_clients,
            **_summary(load, in_topic),
            "variants": variants,
            "as_deployed_rates": deployed_rates,
            "raw_producer": {
                "delivered": produced.delivered,
                "timed": produced.timed,
                "seconds": produced.seconds,
                "rate": raw_rate,
            },
            "measured_at": time.time(),
        },
    )
