"""What every scenario shares: where the stack is, how big a run is, results, events, load.

A scenario is a module with ``NAME`` and ``run(target, size) -> ScenarioResult``. It talks to the
stack only on 127.0.0.1 and bounds every loop in count and time.
"""

from __future__ import annotations

import gzip
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from aurora_ray.adapters.kafka import TopicAdmin, consumer_config
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.auth import ALL_SCOPES, hash_secret, new_client_credentials
from aurora_ray.client import AuroraClient
from aurora_ray.ingest import prepare_ingest
from aurora_ray.settings import Settings
from aurora_ray.tenants import NewTenant, create_tenant

__all__ = [
    "T0_S",
    "Produced",
    "Row",
    "ScenarioResult",
    "Size",
    "Target",
    "events_per_s",
    "gzip_body",
    "order_lines",
    "percentiles",
    "produce_raw",
    "consume_raw",
    "snapshot_lines",
    "stream_tenant",
    "registered_tenant",
    "topic_records",
    "unregistered_tenant",
    "unthrottled",
]

Progress = Callable[[str], None]
WAREHOUSES = ("DE-HAM", "DE-BER", "FR-PAR", "NL-AMS")
T0_S = 1_748_854_800.0  # 2025-06-02T09:00:00Z: event time of generated streams


@dataclass(frozen=True)
class Target:
    """A running stack: settings resolved to its Redis, broker and secret, and its API."""

    settings: Settings
    api_url: str
    ray_address: str | None  # None: the caller's process is already connected to Ray
    haproxy: bool
    progress: Progress = lambda _msg: None
    # The bench started this stack with ``settings``: a scenario may deploy the API again with
    # other settings for a measurement (it deploys it back with ``settings`` after). A stack
    # found running is benchmarked as it is, never redeployed.
    owns_stack: bool = False

    @property
    def store(self) -> RedisStore:
        return RedisStore(self.settings.redis_url)

    @property
    def admin(self) -> TopicAdmin:
        return TopicAdmin(self.settings.kafka_bootstrap)


@dataclass(frozen=True)
class Size:
    """How big each scenario runs; ``quick`` is for the smoke test (well under a minute)."""

    quick: bool
    ingest_seconds: float
    ingest_clients: int
    producer_messages: int
    stream_events: int
    stream_skus: int
    shard_counts: tuple[int, ...]
    e2e_rate: int
    e2e_seconds: float
    read_rates: tuple[int, ...]
    read_seconds: float
    read_ingest_rate: int
    memory_skus: int
    backfill_events: int
    retrain_rows: int
    export_rows: int

    @classmethod
    def of(cls, *, quick: bool) -> Size:
        if quick:
            return cls(
                quick=True,
                ingest_seconds=2.0,
                ingest_clients=2,
                producer_messages=50_000,
                stream_events=30_000,
                stream_skus=2_000,
                shard_counts=(1,),
                e2e_rate=2_000,
                e2e_seconds=3.0,
                read_rates=(20, 50),
                read_seconds=2.0,
                read_ingest_rate=1_000,
                memory_skus=20_000,
                backfill_events=200_000,  # 800 SKUs x 20 days: ~118 000 hourly rows labelled
                retrain_rows=10_000,
                export_rows=1_000,
            )
        return cls(
            quick=False,
            ingest_seconds=20.0,
            ingest_clients=4,
            producer_messages=1_000_000,
            stream_events=1_000_000,
            stream_skus=20_000,
            shard_counts=(1, 2, 4),
            e2e_rate=30_000,
            e2e_seconds=30.0,
            read_rates=(200, 500),
            read_seconds=15.0,
            read_ingest_rate=20_000,
            memory_skus=1_000_000,
            backfill_events=5_000_000,
            retrain_rows=1_000_000,
            export_rows=100_000,
        )


@dataclass
class Row:
    """One figure: Aurora's, the same-run anchor's, and the target, in one unit."""

    metric: str
    unit: str
    aurora: float | None
    anchor: float | None = None
    anchor_name: str = ""
    target: str = ""
    ok: bool | None = None  # None: no target, or not comparable
    note: str = ""


@dataclass
class ScenarioResult:
    name: str
    status: str  # "ok", "skipped", "failed"
    reason: str = ""
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(samples: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    if not samples:
        return {f"p{q:g}": float("nan") for q in qs}
    values = np.percentile(np.asarray(samples, dtype=np.float64), list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, values, strict=True)}


def events_per_s(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


# -- events ----------------------------------------------------------------------------------


def _iso_ms(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def order_lines(
    tenant_id: str, n: int, *, skus: int, start_s: float = T0_S, step_s: float = 0.01, seed: int
) -> list[bytes]:
    """``n`` order.created lines (~250 bytes each, like the notes' events) over ``skus`` SKUs,
    event time advancing by ``step_s`` a line."""
    rng = np.random.default_rng(seed)
    sku_ix = rng.integers(0, skus, n)
    qty = rng.integers(1, 4, n)
    head = f'{{"tenant_id":"{tenant_id}","event_type":"order.created","event_id":"'
    lines = []
    base = uuid.uuid4().hex[:16]
    for i in range(n):
        s = int(sku_ix[i])
        lines.append(
            f'{head}{base}-{seed}-{i}","occurred_at":"{_iso_ms(start_s + i * step_s)}",'
            f'"payload":{{"order_id":"o-{seed}-{i}","sku":"SKU-{s:07d}",'
            f'"warehouse":"{WAREHOUSES[s % 4]}","qty":{int(qty[i])},"price":19.99,'
            f'"currency":"EUR","channel":"web"}}}}'.encode()
        )
    return lines


def snapshot_lines(
    tenant_id: str,
    skus: Sequence[int] | range,
    *,
    on_hand: int,
    at_s: float = T0_S - 1,
    prefix: str = "SKU",
) -> list[bytes]:
    """stock.snapshot lines: the SKUs' stock becomes known, so they are scored."""
    head = f'{{"tenant_id":"{tenant_id}","event_type":"stock.snapshot","occurred_at":"'
    at = _iso_ms(at_s)
    return [
        f'{head}{at}","payload":{{"sku":"{prefix}-{s:07d}","warehouse":"{WAREHOUSES[s % 4]}",'
        f'"on_hand":{on_hand}}}}}'.encode()
        for s in skus
    ]


def gzip_body(lines: Sequence[bytes]) -> bytes:
    return gzip.compress(b"\n".join(lines), compresslevel=1)


def topic_records(
    tenant_id: str, lines: Sequence[bytes], *, chunk: int = 10_000
) -> list[tuple[bytes | None, bytes]]:
    """Exactly the records ``POST /v1/ingest/events`` would produce for these lines."""
    records: list[tuple[bytes | None, bytes]] = []
    received = int(time.time() * 1000)
    for i in range(0, len(lines), chunk):
        body = b"\n".join(lines[i : i + chunk])
        records.extend(prepare_ingest(body, tenant_id=tenant_id, received_ms=received).records)
    return records


# -- tenants ---------------------------------------------------------------------------------


# The bench measures capacity: its tenants' rate limits are raised far above any load it
# offers (the e2e scenario offers 47 K events/s, over the default 45 K/s peak), so the limiter
# runs on every request (its cost is in the figures) and never refuses one.
BENCH_RATE = 1e9


def unthrottled(target: Target, tenant_id: str) -> None:
    target.store.put_rate_limit_overrides(
        tenant_id,
        {"requests_per_s": BENCH_RATE, "events_per_s": BENCH_RATE, "events_peak_per_s": BENCH_RATE},
    )


def registered_tenant(target: Target, name: str) -> tuple[NewTenant, AuroraClient]:
    """A tenant like any other: the Supervisor starts its shards within a few seconds."""
    tenant = create_tenant(target.settings, target.store, target.admin, name=name)
    unthrottled(target, tenant.tenant_id)
    client = AuroraClient(
        target.api_url, client_id=tenant.client_id, client_secret=tenant.client_secret
    )
    return tenant, client


def unregistered_tenant(target: Target) -> tuple[NewTenant, AuroraClient]:
    """A topic and API client with no tenant record, so no shard consumes it: ingest measured
    alone, as the notes' produce-only handler was."""
    tenant_id = str(uuid.uuid4())
    settings = target.settings
    target.admin.ensure_topic(settings.topic_for(tenant_id), settings.partitions_per_topic)
    client_id, secret = new_client_credentials()
    target.store.put_client(
        client_id, tenant_id=tenant_id, secret_hash=hash_secret(secret), scopes=ALL_SCOPES
    )
    unthrottled(target, tenant_id)
    tenant = NewTenant(tenant_id, client_id, secret)
    return tenant, AuroraClient(target.api_url, client_id=client_id, client_secret=secret)


def stream_tenant(target: Target) -> str:
    """A topic only (no record, no client): the bench starts its shards itself."""
    tenant_id = str(uuid.uuid4())
    settings = target.settings
    target.admin.ensure_topic(settings.topic_for(tenant_id), settings.partitions_per_topic)
    return tenant_id


# -- raw Kafka anchors -----------------------------------------------------------------------


class Produced(NamedTuple):
    """What :func:`produce_raw` delivered: all of it, and the part its clock timed."""

    delivered: int  # every record acknowledged, the warm-up one included
    timed: int  # those acknowledged after the clock started
    seconds: float

    @property
    def rate(self) -> float:
        return events_per_s(self.timed, self.seconds) if self.timed else float("nan")


def produce_raw(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    *,
    batch: int = 10_000,
    timeout_s: float = 120.0,
) -> Produced:
    """The notes' producer anchor: idempotent, acks=all, lz4, no per-message callback; each
    batch is flushed and its deliveries counted at once (only errors are reported).

    The clock starts once the first record is acknowledged: a new producer's connection,
    metadata and idempotent producer id cost ~0.5 s on the embedded broker, most of the time
    50 000 records take, so that record is not timed (as the raw consumer does not time its
    first batch)."""
    errors = 0

    def on_error(err: Any, _msg: Any) -> None:
        nonlocal errors
        if err is not None:
            errors += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 2_000_000,
            "delivery.report.only.error": True,
            "on_delivery": on_error,
        }
    )
    if not records:
        return Produced(0, 0, 0.0)
    deadline = time.perf_counter() + timeout_s
    key, value = records[0]
    producer.produce(topic, value=value, key=key)
    warm = 1 - errors - producer.flush(max(0.1, deadline - time.perf_counter()))
    errors = 0
    began = time.perf_counter()
    sent = 0
    for i in range(1, len(records), batch):
        for key, value in records[i : i + batch]:
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.flush(max(0.1, deadline - time.perf_counter()))
        if time.perf_counter() > deadline:
            break
    left = producer.flush(max(0.1, deadline - time.perf_counter()))
    seconds = time.perf_counter() - began
    timed = sent - errors - left
    return Produced(max(0, warm) + timed, timed, seconds)


def consume_raw(
    bootstrap: str, topic: str, partitions: int, expected: int, *, timeout_s: float = 120.0
) -> tuple[int, float]:
    """The notes' consumer anchor: assign() + consume(10000) with the three fetch settings
    (Aurora's consumer_config has them). Returns (consumed, seconds from the first record)."""
    config = consumer_config(bootstrap, f"bench-{uuid.uuid4()}")
    consumer = Consumer(config)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    count = 0
    deadline = time.perf_counter() + timeout_s
    try:
        # The clock starts once the first batch is in (connection and metadata excluded); the
        # records of that first batch are not counted either.
        while count == 0 and time.perf_counter() < deadline:
            count = sum(1 for m in consumer.consume(10_000, timeout=0.5) if not m.error())
        skipped = count
        first = time.perf_counter()
        while count < expected and time.perf_counter() < deadline:
            count += sum(1 for m in consumer.consume(10_000, timeout=0.5) if not m.error())
        seconds = time.perf_counter() - first
    finally:
        consumer.close()
    return count - skipped, seconds


def cpu_count() -> int:
    return os.cpu_count() or 1


def load_average() -> float:
    return os.getloadavg()[0]


# -- CPU accounting ----------------------------------------------------------------------------

#: Roles of the machine's processes, by a piece of their command line (first match wins).
_ROLES: tuple[tuple[str, str], ...] = (
    ("tansu", "broker"),
    ("valkey-server", "valkey"),
    ("TenantShard", "shard"),
    ("WarehouseSink", "warehouse sink"),
    ("ServeReplica", "serve"),
    ("ServeController", "serve"),
    ("haproxy", "serve"),
    ("ray::", "ray data tasks"),  # workers running tasks (map_batches) or idle in the pool
    ("default_worker.py", "ray data tasks"),
    ("raylet", "ray system"),
    ("gcs_server", "ray system"),
    ("dashboard", "ray system"),
    ("log_monitor", "ray system"),
    ("monitor.py", "ray system"),
)


def _cpu_role(cmdline: str) -> str:
    return next((role for piece, role in _ROLES if piece in cmdline), "other")


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every process on the machine, with its role."""
    import psutil

    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            times = proc.cpu_times()
            cmdline = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[proc.info["pid"]] = (_cpu_role(cmdline), times.user + times.system)
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process, those that have
    ended too: Ray Data's task workers come and go): all of /proc/stat but idle and iowait."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each role used between two snapshots (processes that ended in between are
    not counted; a child waited for is counted by the caller through its rusage)."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        delta = seconds - before.get(pid, (role, 0.0))[1]
        if delta > 0:
            used[role] = used.get(role, 0.0) + delta
    return used


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
