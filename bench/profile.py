"""Profile the hot paths in one process with pyinstrument, on a real Valkey and broker.

``python -m bench.profile stream``: a ``ShardProcessor`` (what a ``TenantShard`` runs) folds a
pre-filled topic (``history``: the same on the backfill bench's history).
``python -m bench.profile ingest``: what ``POST /v1/ingest/events`` does per request (gunzip,
parse and check, encode, produce and wait for every ack), without HTTP.
Reports (text; HTML with ``--html``) go to ``--out`` (default ``bench/results/profiles``). For
the processes of a running stack, use py-spy: ``py-spy record --pid <pid> --duration 20``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.embedded import start_tansu, start_valkey
from aurora_ray.ingest import decode_body, prepare_ingest
from aurora_ray.settings import Settings, load_settings
from aurora_ray.stream import ShardProcessor
from bench.common import gzip_body, order_lines, produce_raw, snapshot_lines, topic_records

_PARTITIONS = 4


def _settings(data_dir: Path, redis_url: str, bootstrap: str) -> Settings:
    return load_settings(
        data_dir=data_dir,
        redis_url=redis_url,
        kafka_bootstrap=bootstrap,
        partitions_per_topic=_PARTITIONS,
    )


def profile_stream(
    settings: Settings, events: int, skus: int, *, history: bool = False
) -> tuple[Profiler, float]:
    tenant = "00000000-0000-0000-0000-0000000f11e5"
    TopicAdmin(settings.kafka_bootstrap).ensure_topic(settings.topic_for(tenant), _PARTITIONS)
    if history:  # the backfill bench's history: months of event time, receipts, stock-outs
        from bench.history import generate_history

        data = generate_history(tenant, events, skus=skus, days=74.0, seed=7).data
        lines = data.to_pybytes().splitlines()
    else:
        lines = snapshot_lines(tenant, range(skus), on_hand=50_000)
        lines += order_lines(tenant, events - skus, skus=skus, seed=7)
    delivered = produce_raw(
        settings.kafka_bootstrap, settings.topic_for(tenant), topic_records(tenant, lines)
    ).delivered
    processor = ShardProcessor(
        settings,
        tenant_id=tenant,
        shard=0,
        partitions=list(range(_PARTITIONS)),
        store=RedisStore(settings.redis_url),
    )
    processor.restore()
    profiler = Profiler(interval=0.001)
    began = time.perf_counter()
    deadline = began + 300
    with profiler:
        while processor.progress.events < delivered and time.perf_counter() < deadline:
            processor.step(timeout=0.5)
    seconds = time.perf_counter() - began
    processor.close()
    return profiler, processor.progress.events / seconds


def profile_ingest(settings: Settings, requests: int) -> tuple[Profiler, float]:
    tenant = "00000000-0000-0000-0000-0000000f11e6"
    topic = settings.topic_for(tenant)
    TopicAdmin(settings.kafka_bootstrap).ensure_topic(topic, _PARTITIONS)
    lines = order_lines(tenant, 1_000 * 20, skus=20_000, seed=8)
    bodies = [gzip_body(lines[i : i + 1_000]) for i in range(0, len(lines), 1_000)]
    producer = BatchProducer(settings.kafka_bootstrap)
    producer.produce_batch(topic, [(None, b"{}")]).result(timeout=30)  # connect first
    profiler = Profiler(interval=0.001)
    began = time.perf_counter()
    with profiler:
        for i in range(requests):
            body = decode_body(
                bodies[i % len(bodies)],
                content_type="application/x-ndjson",
                content_encoding="gzip",
                max_bytes=settings.max_body_bytes,
            )
            prepared = prepare_ingest(body, tenant_id=tenant, received_ms=int(time.time() * 1000))
            producer.produce_batch(topic, prepared.records).result(timeout=30)
    seconds = time.perf_counter() - began
    producer.close()
    return profiler, requests * 1_000 / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "path",
        choices=("stream", "history", "ingest"),
        help="history: the stream path on the backfill bench's history",
    )
    parser.add_argument("--events", type=int, default=500_000, help="stream: records")
    parser.add_argument("--skus", type=int, default=20_000, help="stream: SKUs")
    parser.add_argument("--requests", type=int, default=300, help="ingest: 1 000-event requests")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profiles"))
    parser.add_argument("--html", action="store_true", help="also write an HTML report")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aurora-profile-") as tmp:
        data_dir = Path(tmp)
        valkey = start_valkey(data_dir)
        tansu = start_tansu(data_dir)
        try:
            settings = _settings(data_dir, valkey.url, tansu.url)
            if args.path in ("stream", "history"):
                profiler, rate = profile_stream(
                    settings, args.events, args.skus, history=args.path == "history"
                )
            else:
                profiler, rate = profile_ingest(settings, args.requests)
        finally:
            tansu.stop()
            valkey.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (args.out / f"{args.path}.txt").write_text(f"{rate:.0f} events/s under the profiler\n{text}")
    if args.html:  # a few MB: not for the repository
        (args.out / f"{args.path}.html").write_text(profiler.output_html())
    sys.stdout.write(f"{args.path}: {rate:.0f} events/s; {args.out}/{args.path}.txt\n")


if __name__ == "__main__":
    main()
