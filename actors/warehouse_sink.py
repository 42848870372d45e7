"""`WarehouseSink`: one per tenant, writes the tenant topic's orders to the Parquet warehouse.

The loop runs on a thread as in ``TenantShard``; the core is ``OrderSink`` (aurora_ray.warehouse).
Ray restarts a dead sink (``max_restarts=-1``): it resumes from the offsets stored in Redis and
replays a pending batch under the same batch id, so no row is written twice. A failing warehouse
does not stop the loop: the core backs off and raises its alarm, which the metrics here carry.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray
from ray.util.metrics import Counter, Gauge

from actors.priority import yield_cpu
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.settings import Settings
from aurora_ray.warehouse.sink import OrderSink

log = logging.getLogger(__name__)


def warehouse_sink_name(tenant_id: str) -> str:
    """Named like the shards (``tenant:<id>:<shard>``), so the dashboard lists them together."""
    return f"tenant:{tenant_id}:warehouse"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)  # type: ignore[call-overload]
class WarehouseSink:
    def __init__(self, settings: Settings, tenant_id: str) -> None:
        yield_cpu(settings.stream_nice)  # the API's replicas first on contended cores
        tags = {"tenant": tenant_id}
        self._delay = Gauge(
            "warehouse_ingest_delay_s",
            description="Largest ingested_at - order_ts of the last warehouse batch, in s",
            tag_keys=("tenant",),
        )
        self._delay.set_default_tags(tags)
        self._rows = Counter(
            "warehouse_rows_written_total",
            description="fact_order rows written to the warehouse",
            tag_keys=("tenant",),
        )
        self._rows.set_default_tags(tags)
        self._failing = Gauge(
            "warehouse_write_failing",
            description="1 while the tenant's warehouse writes fail (the sink backs off), else 0",
            tag_keys=("tenant",),
        )
        self._failing.set_default_tags(tags)
        self._buffered = Gauge(
            "warehouse_buffered_records",
            description="Topic records the warehouse sink holds, not yet written",
            tag_keys=("tenant",),
        )
        self._buffered.set_default_tags(tags)
        self._failures = Counter(
            "warehouse_write_failures_total",
            description="Failed warehouse write attempts (each retried after a back-off)",
            tag_keys=("tenant",),
        )
        self._failures.set_default_tags(tags)
        self._rejected = Counter(
            "warehouse_records_rejected_total",
            description="Records the warehouse could not take, dead-lettered with a reason",
            tag_keys=("tenant",),
        )
        self._rejected.set_default_tags(tags)
        self.sink = OrderSink(
            settings, tenant_id, store=RedisStore(settings.redis_url), on_delay=self._delay.set
        )
        self.sink.start()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="warehouse-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    before = (self.sink.rows_written, self.sink.write_failures, self.sink.rejected)
                    self.sink.step(timeout=0.5)
                    self._record(before)
            except Exception:  # keep the loop alive; the failure shows in logs and health
                log.exception("warehouse sink step failed; retrying in 1 s")
                time.sleep(1.0)

    def _record(self, before: tuple[int, int, int]) -> None:
        sink = self.sink
        for counter, old, new in zip(
            (self._rows, self._failures, self._rejected),
            before,
            (sink.rows_written, sink.write_failures, sink.rejected),
            strict=True,
        ):
            if new > old:
                counter.inc(new - old)
        self._failing.set(0.0 if sink.failing_since is None else 1.0)
        self._buffered.set(float(sink.buffered))

    def health(self) -> dict[str, Any]:
        return self.sink.health()

    def flush(self) -> dict[str, Any]:
        with self._lock:
            self.sink.flush()
            return self.sink.health()

    def stop(self) -> None:
        """Stop the loop and write what is buffered."""
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            self.sink.close()
