"""The backfill use case end to end, its progress record in Redis, and its submission as a Ray job.

:func:`run_backfill` is what ``python -m jobs.backfill`` runs (see :mod:`aurora_ray.backfill` for
the rules). Phases, each reported to Redis and logged: ``validating`` → ``deduplicating`` →
``producing`` (the topic, while a thread writes fact_order) → ``folding`` (waits, bounded, until the
shards have read everything produced) → ``succeeded``; or ``failed`` with the error.

:func:`submit_backfill` records the backfill as ``submitted`` and submits the Ray job through the
job submission API (the dashboard address); :func:`backfill_status` reads the record back, and
turns a Ray job that died before it could report (a bad entrypoint, a lost node) into ``failed``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from aurora_ray.backfill import (
    BACKFILL_ID_HEADER,
    SOURCE_BACKFILL,
    SOURCE_HEADER,
    BackfillCounts,
    Chunk,
    Engine,
    Plan,
    bundle_records,
    deduplicate,
    fact_order_rows,
    now_ms,
    validate_source,
    write_rejects,
)
from aurora_ray.domain.events import EventType
from aurora_ray.ray_jobs import job_client, submit_module
from aurora_ray.settings import Settings

__all__ = [
    "TERMINAL_STATES",
    "BackfillProgress",
    "BackfillResult",
    "backfill_status",
    "new_backfill_id",
    "progress_key",
    "run_backfill",
    "submit_backfill",
]

log = logging.getLogger(__name__)

TERMINAL_STATES: Final = frozenset({"succeeded", "failed"})
PRODUCE_BATCH: Final = 500_000  # acknowledged (flushed) as a whole: a retry resumes after it
ORDER_BATCH: Final = 250_000
LEDGER: Final = "backfill_ledger"
_PROGRESS_TTL_S: Final = 30 * 24 * 3600
# Share of the progress fraction each phase ends at.
_PHASE_END: Final = {"validating": 0.45, "deduplicating": 0.5, "producing": 0.9}


def new_backfill_id() -> str:
    return f"bf-{uuid.uuid4().hex[:16]}"


def progress_key(tenant_id: str, backfill_id: str) -> str:
    return f"aurora:t:{tenant_id}:backfill:{backfill_id}"


class BackfillProgress:
    """The backfill's hash in Redis: state, counts, progress (0..1), rejects, error, timings."""

    def __init__(self, client: Any, tenant_id: str, backfill_id: str) -> None:
        self.client = client  # a redis.Redis
        self.key = progress_key(tenant_id, backfill_id)
        self.backfill_id = backfill_id
        self._logged = 0.0

    def update(self, *, log_line: Any = True, **values: Any) -> None:
        mapping = {k: str(v) for k, v in values.items() if v is not None}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key, mapping=mapping)
        pipe.expire(self.key, _PROGRESS_TTL_S)
        pipe.execute()
        if log_line and (time.monotonic() - self._logged >= 1.0 or "state" in values):
            self._logged = time.monotonic()
            shown = " ".join(f"{k}={v}" for k, v in mapping.items())
            log.info("backfill %s: %s", self.backfill_id, shown)

    def counts(self, counts: BackfillCounts, *, progress: float, **values: Any) -> None:
        self.update(progress=round(progress, 4), **counts.as_dict(), **values)

    def get(self) -> dict[str, str]:
        raw = self.client.hgetall(self.key)
        return {k.decode(): v.decode() for k, v in raw.items()}


@dataclass
class BackfillResult:
    backfill_id: str
    counts: BackfillCounts
    rejects: str
    seconds: dict[str, float] = field(default_factory=dict)
    folded: bool = False


# -- the ledger of applied event ids -----------------------------------------------------------


def _ledger_dir(warehouse: Any, tenant_id: str) -> tuple[pafs.FileSystem, str]:
    return warehouse.fs, f"{warehouse.root}/{LEDGER}/tenant_id={tenant_id}"


def read_ledgers(warehouse: Any, tenant_id: str) -> dict[str, pa.Array]:
    """Backfill id -> the event ids that backfill applied."""
    fs, folder = _ledger_dir(warehouse, tenant_id)
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return {}
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            table = pq.read_table(info.path, filesystem=fs, columns=["event_id"])
            out[info.base_name.removesuffix(".parquet")] = table.column("event_id").combine_chunks()
    return out


def write_ledger(warehouse: Any, tenant_id: str, backfill_id: str, events: pa.Table) -> None:
    fs, folder = _ledger_dir(warehouse, tenant_id)
    fs.create_dir(folder, recursive=True)
    temporary = f"{folder}/.{backfill_id}.{uuid.uuid4().hex}.tmp"
    pq.write_table(events.select(["event_id", "ts_ms"]), temporary, filesystem=fs)
    fs.move(temporary, f"{folder}/{backfill_id}.parquet")


# -- the run -----------------------------------------------------------------------------------


def run_backfill(
    settings: Settings,
    *,
    tenant_id: str,
    source: str,
    backfill_id: str,
    engine: Engine = "ray-data",
    fold_timeout_s: float = 900.0,
    redis_client: Any = None,
    producer: Any = None,
    warehouse: Any = None,
) -> BackfillResult:
    """Run one backfill (see the module docs); raises after recording ``failed``."""
    import redis

    from aurora_ray.adapters.kafka import BulkProducer
    from aurora_ray.warehouse import Warehouse

    client = redis_client or redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    progress = BackfillProgress(client, tenant_id, backfill_id)
    wh = warehouse or Warehouse.from_settings(settings)
    kafka = producer or BulkProducer(settings.kafka_bootstrap)
    previous = progress.get()
    rejects = settings.data_dir.resolve() / "backfill" / backfill_id / "rejects.ndjson"
    result = BackfillResult(backfill_id, BackfillCounts(), str(rejects))
    attempt = int(previous.get("attempt", "0")) + 1
    progress.update(
        state="validating", tenant_id=tenant_id, source=source, attempt=attempt, progress=0.0,
        started_at=now_ms(), rejects=str(rejects), engine=engine, error="",
    )  # fmt: skip
    try:
        _run(settings, result, progress, previous, wh, kafka, tenant_id, source, engine)
        result.folded = _wait_folded(settings, client, tenant_id, progress, result, fold_timeout_s)
        progress.counts(
            result.counts, progress=1.0, state="succeeded", finished_at=now_ms(),
            folded=int(result.folded), seconds=_timings(result.seconds),
        )  # fmt: skip
        return result
    except BaseException as exc:
        progress.counts(
            result.counts, progress=float(progress.get().get("progress", 0.0)), state="failed",
            error=f"{type(exc).__name__}: {exc}", finished_at=now_ms(),
            seconds=_timings(result.seconds),
        )  # fmt: skip
        raise
    finally:
        if producer is None:
            kafka.close()


def _timings(seconds: dict[str, float]) -> str:
    return ",".join(f"{k}:{v:.2f}" for k, v in seconds.items())


def _run(
    settings: Settings,
    result: BackfillResult,
    progress: BackfillProgress,
    previous: dict[str, str],
    wh: Any,
    kafka: Any,
    tenant_id: str,
    source: str,
    engine: Engine,
) -> None:
    counts, backfill_id = result.counts, result.backfill_id
    received_ms = now_ms()
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.seconds[name] = now - clock
        clock = now

    # 1. Validate (Ray Data or in-process); rejects to their file as they come.
    rejects_path = Path(result.rejects)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    accepted: list[pa.Table] = []
    with open(rejects_path, "wb") as rejects_out:

        def on_chunk(table: pa.Table, chunk: Chunk | None) -> None:
            ok = table.column("ok")
            good, bad = table.filter(ok), table.filter(pc.invert(ok))
            counts.read += len(table)
            counts.accepted += len(good)
            counts.rejected += write_rejects(bad, rejects_out)
            accepted.append(good.drop_columns(["ok", "reason"]))
            share = chunk.done / chunk.total if chunk and chunk.total else 0.0
            progress.counts(counts, progress=_PHASE_END["validating"] * min(share, 1.0))

        validate_source(
            source,
            tenant_id=tenant_id,
            received_ms=received_ms,
            engine=engine,
            on_chunk=on_chunk,
            max_skew_ms=round(settings.max_event_skew_s * 1000),
        )
    phase("validating")
    progress.counts(counts, progress=_PHASE_END["validating"], state="deduplicating")

    # 2. Deduplicate: in the file, against fact_order and earlier ledgers (a retry reuses its own).
    table = pa.concat_tables(accepted) if accepted else _empty_accepted()
    accepted.clear()
    ledgers = read_ledgers(wh, tenant_id)
    own = ledgers.pop(backfill_id, None)
    if own is not None:  # a retry: the first attempt's plan, its own rows are no duplicates
        plan = deduplicate(table, ())
        planned = pc.is_in(plan.take(["event_id"]).column("event_id"), value_set=own)
        mask = planned.to_numpy(zero_copy_only=False)
        plan.duplicates_applied = len(plan) - int(mask.sum())
        plan.keep(mask)
    else:
        orders = wh.read("fact_order", tenant_id, columns=["event_id"]).column("event_id")
        known = [*orders.cast(pa.string()).chunks, *ledgers.values()]
        plan = deduplicate(table, pa.concat_arrays(known) if known else pa.array([], pa.string()))
    del table
    counts.duplicates_in_file, counts.duplicates_applied = (
        plan.duplicates_in_file,
        plan.duplicates_applied,
    )
    if own is None:
        write_ledger(wh, tenant_id, backfill_id, plan.take(["event_id", "ts_ms"]))
    phase("deduplicating")

    # 3. fact_order (in batches named after the backfill: a retry replaces the same files) in
    #    a background thread, while 4. the topic gets every event in event-time order (a retry
    #    resumes after what was acknowledged). The two are independent: the warehouse sink skips
    #    backfill records, and the shards never read fact_order; both end before "folding".
    is_order = pc.equal(plan.source.column("event_type"), EventType.ORDER_CREATED)
    order_plan = Plan(plan.source, plan.rows[is_order.to_numpy(zero_copy_only=False)[plan.rows]])
    del is_order
    columns = ["event_id", "ts_ms", "event_type", "sku", "warehouse", "order_id", "qty", "price",
               "currency"]  # fmt: skip
    batches = (len(order_plan) + ORDER_BATCH - 1) // ORDER_BATCH
    writing_began = time.monotonic()

    def write_all() -> float:
        for n in range(batches):
            part = order_plan.take(columns, n * ORDER_BATCH, ORDER_BATCH)
            rows = fact_order_rows(part, ingested_at_ms=received_ms)
            written = wh.write_fact_order(tenant_id, rows, batch_id=f"{backfill_id}-{n:05d}")
            counts.written += int(written.rows)  # read by the progress updates below
        return time.monotonic() - writing_began

    progress.counts(counts, progress=_PHASE_END["deduplicating"], state="producing")
    resume = int(previous.get("produce_acked", "0")) if own is not None else 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fact-order") as pool:
        writer = pool.submit(write_all)
        _produce(settings, kafka, tenant_id, backfill_id, plan, resume, counts, progress)
        phase("producing")
        result.seconds["writing"] = writer.result()  # re-raises a failed write
    progress.counts(counts, progress=_PHASE_END["producing"])


def _empty_accepted() -> pa.Table:
    from aurora_ray.backfill import CHUNK_SCHEMA

    return CHUNK_SCHEMA.empty_table().drop_columns(["ok", "reason"])


def _produce(
    settings: Settings,
    kafka: Any,
    tenant_id: str,
    backfill_id: str,
    plan: Plan,
    resume: int,
    counts: BackfillCounts,
    progress: BackfillProgress,
) -> None:
    topic = settings.topic_for(tenant_id)
    headers: list[tuple[str, str | bytes | None]] = [
        (SOURCE_HEADER, SOURCE_BACKFILL),
        (BACKFILL_ID_HEADER, backfill_id.encode()),
    ]
    counts.produced = min(resume, len(plan))
    span = _PHASE_END["producing"] - _PHASE_END["deduplicating"]
    partitions = _partition_count(settings, topic)
    for start in range(counts.produced, len(plan), PRODUCE_BATCH):
        part = plan.take(["key", "record"], start, PRODUCE_BATCH)
        keys = part.column("key").cast(pa.binary()).to_pylist()
        bundles = bundle_records(keys, part.column("record").to_pylist(), partitions=partitions)
        kafka.produce_to_partitions(topic, bundles, headers=headers)
        counts.produced = start + len(part)
        share = counts.produced / max(1, len(plan))
        progress.counts(
            counts,
            progress=_PHASE_END["deduplicating"] + span * share,
            produce_acked=counts.produced,
        )


def _partition_count(settings: Settings, topic: str) -> int:
    """The topic's partitions as the broker has them (the live producer hashes keys over
    those), or the configured count for a topic not created yet."""
    from aurora_ray.adapters.kafka import TopicAdmin

    return TopicAdmin(settings.kafka_bootstrap).topics().get(topic) or settings.partitions_per_topic


def _wait_folded(
    settings: Settings,
    client: Any,
    tenant_id: str,
    progress: BackfillProgress,
    result: BackfillResult,
    timeout_s: float,
) -> bool:
    """Wait (at most ``timeout_s``) until every shard's offsets reach the topic's end."""
    from aurora_ray.adapters.kafka import TopicAdmin
    from aurora_ray.adapters.redis_store import RedisStore

    if result.counts.produced == 0:
        return True
    began = time.monotonic()
    progress.counts(result.counts, progress=_PHASE_END["producing"], state="folding")
    topic = settings.topic_for(tenant_id)
    partitions = list(range(settings.partitions_per_topic))
    ends = TopicAdmin(settings.kafka_bootstrap).end_offsets(topic, partitions)
    store = RedisStore(settings.redis_url)
    store._client = client  # noqa: SLF001 - share the connection
    target = sum(ends.values())
    deadline = began + timeout_s
    folded = False
    while time.monotonic() < deadline:
        read = {}
        for health in store.shard_health(tenant_id, settings.shards_per_tenant):
            read.update({int(p): int(o) for p, o in health.get("offsets", {}).items()})
        behind = sum(max(0, end - read.get(p, 0)) for p, end in ends.items())
        share = 1.0 - behind / max(1, target)
        span = 1.0 - _PHASE_END["producing"]
        progress.counts(result.counts, progress=_PHASE_END["producing"] + span * share * 0.99)
        if behind == 0:
            folded = True
            break
        time.sleep(0.5)
    result.seconds["folding"] = time.monotonic() - began
    if not folded:
        log.warning("backfill %s: shards still behind after %.0f s", result.backfill_id, timeout_s)
    return folded


# -- submission and status ---------------------------------------------------------------------


def submit_backfill(
    settings: Settings,
    *,
    tenant_id: str,
    source: str,
    redis_client: Any,
    dashboard_url: str | None = None,
    backfill_id: str | None = None,
    engine: Engine = "ray-data",
) -> tuple[str, str]:
    """Record the backfill and submit its Ray job; returns (backfill id, Ray job id).

    A local ``source`` must be a path the Ray nodes can read (here: an absolute path on this
    machine); anything with ``://`` is handed over as it is."""
    backfill_id = backfill_id or new_backfill_id()
    if "://" not in source:
        source = str(Path(source).resolve())
    progress = BackfillProgress(redis_client, tenant_id, backfill_id)
    job_id = f"aurora-{backfill_id}-{uuid.uuid4().hex[:6]}"
    progress.update(
        state="submitted", tenant_id=tenant_id, source=source, job_id=job_id, progress=0.0,
        submitted_at=now_ms(), log_line=False,
    )  # fmt: skip
    try:
        submit_module(
            settings,
            "jobs.backfill",
            ["--tenant", tenant_id, "--source", source, "--backfill-id", backfill_id,
             "--engine", engine],
            job_id=job_id,
            metadata={"aurora": "backfill", "tenant_id": tenant_id, "backfill_id": backfill_id},
            dashboard_url=dashboard_url,
        )  # fmt: skip
    except RuntimeError as exc:
        progress.update(state="failed", error=f"submission failed: {exc}", log_line=False)
        raise
    return backfill_id, job_id


_INT_FIELDS: Final = (
    "read", "accepted", "rejected", "duplicates", "duplicates_in_file", "duplicates_applied",
    "written", "produced", "attempt",
)  # fmt: skip


def backfill_status(
    settings: Settings,
    *,
    tenant_id: str,
    backfill_id: str,
    redis_client: Any,
    dashboard_url: str | None = None,
    ask_ray: bool = True,
) -> dict[str, Any] | None:
    """The backfill's record (None when this tenant has no such backfill).

    When the record is not terminal and Ray says the job ended anyway, the record becomes
    ``failed`` with the end of the job's log as the error."""
    record: dict[str, Any] = BackfillProgress(redis_client, tenant_id, backfill_id).get()
    if not record:
        return None
    if ask_ray and record.get("state") not in TERMINAL_STATES and record.get("job_id"):
        try:
            client = job_client(settings, dashboard_url)
            status = str(client.get_job_status(record["job_id"]))
            if status.rsplit(".", 1)[-1] in ("FAILED", "STOPPED", "SUCCEEDED"):
                record = BackfillProgress(redis_client, tenant_id, backfill_id).get()
                if record.get("state") not in TERMINAL_STATES:
                    tail = client.get_job_logs(record["job_id"])[-2000:]
                    error = f"the Ray job ended ({status}) without reporting: {tail}"
                    BackfillProgress(redis_client, tenant_id, backfill_id).update(
                        state="failed", error=error, log_line=False
                    )
                    record.update(state="failed", error=error)
        except Exception as exc:  # the dashboard is down: report what Redis knows
            log.debug("job status of %s unavailable: %s", backfill_id, exc)
    out: dict[str, Any] = {"id": backfill_id, **record}
    for name in _INT_FIELDS:
        if name in out:
            out[name] = int(out[name])
    out["progress"] = float(out.get("progress", 0.0))
    return out


def wait_backfill(
    poll: Callable[[], dict[str, Any] | None],
    *,
    timeout_s: float,
    interval_s: float = 1.0,
    on_update: Callable[[dict[str, Any]], None] = lambda _r: None,
) -> dict[str, Any] | None:
    """Poll until the record is terminal or ``timeout_s`` passed; returns the last record."""
    deadline = time.monotonic() + timeout_s
    record = poll()
    while time.monotonic() < deadline:
        record = poll()
        if record is not None:
            on_update(record)
            if record.get("state") in TERMINAL_STATES:
                return record
        time.sleep(interval_s)
    return record
