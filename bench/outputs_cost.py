"""What a shard's micro-batch costs, phase by phase, with recommendations on and off.

``python -m bench.outputs_cost [--skus 10000] [--events 50000] [--batches 12] [--rounds 3]
[--loop]``

One shard's work without Kafka: the bench's stream records (stock snapshots for every SKU,
then orders over them, as ``bench.scenario_stream`` produces them) are decoded once, then
folded in micro-batches of ``--events`` (``fold_with_timers``), turned into read-model rows
(``build_outputs``) and written to a real Valkey (``RedisStore.write_outputs``, one transaction
a batch), exactly the calls of ``ShardProcessor._process``. In the full bench a shard folds
batches of 50 000 events over its 10 000 SKUs, so every batch rewrites every SKU's row.

Rounds alternate recommendations off (``ScoringParams.recommendations=False``, today's work)
and on, each on a fresh state and tenant; the figure is the median over rounds of each phase's
CPU seconds (``write``: the client's side, ``valkey``: the server's), and events per CPU second
over the four. Everything stays on 127.0.0.1 and is bounded by the
batch count.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.domain.alerts import build_outputs
from aurora_ray.domain.events import ShardBatch, ShardRecord
from aurora_ray.domain.state import ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.embedded import start_tansu, start_valkey
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor
from bench.common import order_lines, snapshot_lines, topic_records

_TEMPLATE = "00000000-0000-0000-0000-00000000be0c"
PHASES = ("fold", "build", "write", "valkey")


def _records(skus: int, events: int) -> list[ShardRecord]:
    lines = snapshot_lines(_TEMPLATE, range(skus), on_hand=50_000)
    lines += order_lines(_TEMPLATE, events, skus=skus, seed=2)
    batch = ShardBatch()
    batch.add([value for _, value in topic_records(_TEMPLATE, lines)], [0] * len(lines))
    assert not batch.refused, batch.reasons[:3]  # noqa: S101 - the bench's own records
    return batch.records


def _server_cpu(store: RedisStore) -> float:
    info = store.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(
    store: RedisStore, records: list[ShardRecord], batch_events: int, params: ScoringParams
) -> dict[str, float]:
    """CPU seconds spent in each phase over the whole stream (a fresh state and tenant): this
    thread's for the fold, the build and the client side of the write, Valkey's own for the
    write (the machine is shared: CPU time, not wall time, is what a phase costs)."""
    state, tenant = SkuState(), str(uuid.uuid4())
    spent = dict.fromkeys(PHASES, 0.0)
    clock = time.thread_time
    for start in range(0, len(records), batch_events):
        chunk = records[start : start + batch_events]
        t0 = clock()
        outputs = fold_with_timers(state, chunk, [0] * len(chunk), params)
        t1 = clock()
        built = build_outputs(
            state, outputs, tenant_id=tenant, model_version="analytic-nb-1", now_s=time.time()
        )
        t2 = clock()
        server = _server_cpu(store)
        store.write_outputs(tenant, shard=0, predictions=built.predictions, alerts=built.alerts)
        spent["valkey"] += _server_cpu(store) - server
        t3 = clock()
        spent["fold"] += t1 - t0
        spent["build"] += t2 - t1
        spent["write"] += t3 - t2
    return spent


def loop(
    records: list[tuple[bytes | None, bytes]],
    settings: Settings,
    producer: BatchProducer,
    admin: TopicAdmin,
) -> dict[str, float]:
    """One ShardProcessor over a fresh topic holding ``records`` until it folded them all."""
    tenant = str(uuid.uuid4())
    topic = settings.topic_for(tenant)
    admin.ensure_topic(topic, 4)
    old, new = _TEMPLATE.encode(), tenant.encode()
    mine = [(key, value.replace(old, new)) for key, value in records]
    for start in range(0, len(mine), 50_000):
        producer.produce_batch(topic, mine[start : start + 50_000]).result(timeout=120)
    store = RedisStore(settings.redis_url)
    shard = ShardProcessor(
        settings, tenant_id=tenant, shard=0, partitions=[0, 1, 2, 3], store=store
    )
    server = _server_cpu(store)
    cpu = time.thread_time()
    deadline = time.monotonic() + 300
    while shard.progress.events < len(records) and time.monotonic() < deadline:
        shard.step()
    cpu = time.thread_time() - cpu
    server = _server_cpu(store) - server
    health = shard.health()
    shard.close()
    assert shard.progress.events == len(records), shard.progress.events  # noqa: S101
    wall = health["last_batch_at"] - health["first_records_at"]
    return {"shard": cpu, "valkey": server, "wall": wall}


def _loop_report(skus: int, events: int, rounds: int) -> None:
    lines = snapshot_lines(_TEMPLATE, range(skus), on_hand=50_000)
    lines += order_lines(_TEMPLATE, events - skus, skus=skus, seed=2)
    records = topic_records(_TEMPLATE, lines)
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="aurora-outputs-cost-") as tmp:
        valkey, tansu = start_valkey(Path(tmp)), start_tansu(Path(tmp))
        producer, admin = BatchProducer(tansu.url, linger_ms=1), TopicAdmin(tansu.url)
        try:
            base = Settings(
                data_dir=Path(tmp),
                warehouse_uri=str(Path(tmp) / "warehouse"),
                redis_url=valkey.url,
                kafka_bootstrap=tansu.url,
            )
            for _ in range(rounds):
                for on in (False, True):
                    settings = base.model_copy(update={"recommendations": on})
                    results[on].append(loop(records, settings, producer, admin))
        finally:
            producer.close()
            tansu.stop()
            valkey.stop()
    print(f"shard loop: {len(records)} events, {skus} SKUs, median of {rounds} rounds")  # noqa: T201
    cpu: dict[bool, float] = {}
    for on in (False, True):
        m = {k: statistics.median(r[k] for r in results[on]) for k in ("shard", "valkey", "wall")}
        cpu[on] = m["shard"] + m["valkey"]
        print(  # noqa: T201
            f"recommendations {'on ' if on else 'off'}: shard CPU {m['shard']:6.2f} s  "
            f"valkey CPU {m['valkey']:6.2f} s  wall {m['wall']:6.2f} s  "
            f"events per CPU s {len(records) / cpu[on]:9.0f}  "
            f"events/s {len(records) / m['wall']:9.0f}"
        )
    print(f"on / off (CPU): {cpu[False] / cpu[True]:.3f}")  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50_000, help="events a micro-batch")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", action="store_true", help="the whole shard loop, with Kafka")
    args = parser.parse_args(argv)
    if args.loop:
        _loop_report(args.skus, args.events * args.batches, args.rounds)
        return 0
    records = _records(args.skus, args.events * args.batches - args.skus)
    with tempfile.TemporaryDirectory(prefix="aurora-outputs-cost-") as tmp:
        valkey = start_valkey(Path(tmp))
        try:
            store = RedisStore(valkey.url)
            results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            base = ScoringParams()
            for _ in range(args.rounds):
                for on in (False, True):
                    params = dataclasses.replace(base, recommendations=on)
                    results[on].append(run(store, records, args.events, params))
        finally:
            valkey.stop()
    n = len(records)
    print(  # noqa: T201 - a command-line report
        f"{n} events, {args.skus} SKUs, {args.events} events a batch, "
        f"median of {args.rounds} rounds (CPU s over the stream; events per CPU s over the four "
        "phases)"
    )
    totals: dict[bool, float] = {}
    for on in (False, True):
        medians = {p: statistics.median(r[p] for r in results[on]) for p in PHASES}
        totals[on] = sum(medians.values())
        cells = "  ".join(f"{p} {medians[p]:6.3f}" for p in PHASES)
        label = "on " if on else "off"
        print(f"recommendations {label}: {cells}  events/s {n / totals[on]:9.0f}")  # noqa: T201
    print(f"on / off throughput: {totals[False] / totals[True]:.3f}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
