"""The shard's stream loop: poll a micro-batch, fold it into state, write outputs, checkpoint.

:class:`ShardProcessor` is everything a ``TenantShard`` actor does, without Ray, so that it can be
tested against a real broker and Redis directly. Order of effects per batch:

1. consume records from the assigned partitions: up to ``batch_max_events`` when they are
   single events; a backfill's bundle record holds up to 100, so the number asked for follows
   the last haul's events a record (rising at most twofold a step). A haul is folded in
   micro-batches of at most ``batch_max_events`` events (plus one bundle's worth), each ending on
   a record, so that its offsets, and a due checkpoint, follow each micro-batch;
2. decode (records that do not decode or break the API's bounds are dead-lettered with their
   reason and counted, never a crash), and drop the events whose ``event_id`` the partition has
   applied lately (:mod:`aurora_ray.domain.idempotency`: a client's retry is folded once);
3. ``apply_batch`` on the columnar state, then build predictions and alerts;
4. write predictions, alerts and dedup marks in one Redis transaction;
5. every ``checkpoint_interval_s`` or ``checkpoint_events``: state + next offsets + the event ids
   applied since the last one in one transaction, then commit the offsets to Kafka.

After a crash, :meth:`restore` loads the snapshot and the offsets saved with it and the records
after them are replayed; the dedup marks written with the alerts stop replayed alerts.

A record that makes the fold itself fail (one no check foresaw) must not stop the partition: the
shard falls back to its checkpoint as after any failure, notes the failing micro-batch's offsets,
and when the replay reaches them folds that stretch in isolation (halves, each on a copy of the
state, down to the single record that fails), dead-letters that record with its reason and folds
the rest. A failure to write to Redis is not a record's fault: the shard retries from its
checkpoint until Redis is back.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from numpy.typing import NDArray

from aurora_ray.adapters.kafka import make_consumer
from aurora_ray.adapters.redis_store import Checkpoint, RedisStore, dead_letter_entry
from aurora_ray.domain.alerts import AlertRecord, build_outputs
from aurora_ray.domain.events import BUNDLE_MAX_EVENTS, ShardBatch, ShardRecord
from aurora_ray.domain.idempotency import IdWindow
from aurora_ray.domain.state import TYPE_CODES, BatchOutput, ScoringParams, SkuState
from aurora_ray.domain.timers import fold_with_timers
from aurora_ray.models.registry import ModelRegistry
from aurora_ray.models.scorer import AnalyticScorer, Scorer, load_scorer
from aurora_ray.models.store import read_artifact
from aurora_ray.settings import Settings
from aurora_ray.warehouse.predictions import PredictionBuffer
from aurora_ray.warehouse.store import Warehouse

__all__ = ["ShardMetrics", "ShardProcessor", "partitions_for", "scoring_params"]

log = logging.getLogger(__name__)
_LAG_REFRESH_S = 1.0


class ShardMetrics(Protocol):
    def record_batch(
        self, *, events: int, alerts: int, latencies_ms: list[float], lag: int
    ) -> None: ...


class _NoMetrics:
    def record_batch(
        self, *, events: int, alerts: int, latencies_ms: list[float], lag: int
    ) -> None:
        return None


def scoring_params(settings: Settings) -> ScoringParams:
    """The fold's parameters from the deployment's settings (before any tenant_settings): what a
    shard starts from, and what an offline replay of its stream must use to agree with it."""
    return ScoringParams(
        horizon_s=settings.horizon_s,
        half_life_s=settings.rate_half_life_s,
        dedup_window_s=settings.dedup_window_s,
        min_history_s=settings.min_history_hours * 3600.0,
        censored_demand=settings.censored_demand,
        timer_period_s=settings.timer_period_hours * 3600.0,
        default_threshold=settings.default_threshold,
        inbound_grace_s=settings.inbound_grace_hours * 3600.0,
        recommendations=settings.recommendations,
        service_level=settings.service_level,
        default_lead_time_s=settings.default_lead_time_hours * 3600.0,
        review_period_s=settings.review_period_hours * 3600.0,
        replenish_half_life_s=settings.replenish_half_life_hours * 3600.0,
    )


def partitions_for(shard: int, shards: int, partitions: int) -> list[int]:
    """Partitions owned by ``shard`` out of ``shards``: round robin."""
    return [p for p in range(partitions) if p % shards == shard]


class FoldError(Exception):
    """The fold (a pure computation) failed on a micro-batch: a record's fault, not a store's."""


@dataclass
class _Computed:
    """A micro-batch's outputs before they are written."""

    outputs: list[BatchOutput] = field(default_factory=list)
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[AlertRecord] = field(default_factory=list)
    poisoned: list[tuple[ShardRecord, int, str]] = field(default_factory=list)
    # Rows whose record carries a recommendation and its order_by (epoch s), for the due index.
    order_by_rows: list[NDArray[np.int64]] = field(default_factory=list)
    order_by_s: list[NDArray[np.float64]] = field(default_factory=list)


@dataclass
class _Progress:
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    events: int = 0
    alerts: int = 0
    unknown: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    since_checkpoint: int = 0
    last_checkpoint: float = 0.0
    lag: int = 0
    # Wall clock (the processor's clock) when the first records came in since the last restore,
    # and when the latest micro-batch's outputs were written: the span a run of work took.
    first_records_at: float | None = None
    last_batch_at: float | None = None


class ShardProcessor:
    def __init__(
        self,
        settings: Settings,
        *,
        tenant_id: str,
        shard: int,
        partitions: list[int],
        store: RedisStore,
        consumer_factory: Callable[[], Consumer] | None = None,
        metrics: ShardMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.tenant_id = tenant_id
        self.shard = shard
        self.partitions = partitions
        self.topic = settings.topic_for(tenant_id)
        self.store = store
        self.params = scoring_params(settings)
        self._defaults = self.params  # the deployment's; tenant_settings override some
        self._consumer_factory = consumer_factory or (
            lambda: make_consumer(settings.kafka_bootstrap, f"aurora-{tenant_id}-{shard}")
        )
        self._consumer: Consumer | None = None
        self._watermarks: Consumer | None = None
        self.metrics: ShardMetrics = metrics or _NoMetrics()
        self.clock = clock
        self.state = SkuState()
        self.progress = _Progress()
        self._settings_version = -1
        self._lag_at = 0.0
        self._wanted = settings.batch_max_events  # records to ask for (bundles hold many events)
        # fact_prediction rows, written at each checkpoint (aurora_ray/warehouse/predictions.py).
        self.predictions = PredictionBuffer(
            Warehouse.from_settings(settings),
            tenant_id,
            shard=shard,
            step_s=settings.prediction_row_hours * 3600.0,
        )
        self.warehouse_error: str | None = None
        self.prediction_rows_dropped = 0
        self._unwritten_at_checkpoint = 0  # rows the last saved checkpoint went past unwritten
        # The event ids each partition applied lately (idempotent folds), and the offsets up to
        # which a failed micro-batch is folded in isolation (see the module docstring).
        self.seen = self._new_window()
        self._isolate: dict[int, int] = {}
        # The tenant's active model, swapped between micro-batches (see _refresh_model).
        self.registry = ModelRegistry(store, baseline_version=settings.model_version)
        self.scorer: Scorer = AnalyticScorer(settings.model_version)
        self._model_epoch = -1
        self.model_error: str | None = None
        # The due index (the order of GET /v1/stock/recommendations): the rows whose order_by
        # moved since it was last written, which is at most every due_index_refresh_s.
        self._due_dirty = np.zeros(0, dtype=bool)
        self._due_written_at = -math.inf

    # -- lifecycle -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Load the last checkpoint (if any), re-arm dedup marks and assign the partitions."""
        checkpoint = self.store.load_checkpoint(self.tenant_id, self.shard)
        if checkpoint is not None:
            self.state = SkuState.from_bytes(checkpoint.state)
            self.progress.offsets = dict(checkpoint.offsets)
            self.progress.events = checkpoint.events
            self.progress.last_checkpoint = checkpoint.at
        self.seen = self._new_window()
        if self.seen.enabled:
            for partition, data in self.store.seen_ids(self.tenant_id, self.partitions).items():
                self.seen.load(partition, data)
        marks = self.store.dedup_marks(self.tenant_id, self.shard)
        if marks:
            keys = list(marks)
            rows = self.state.rows_for(keys)
            last = self.state.cols["last_alert"]
            last[rows] = np.fmax(last[rows], np.array([marks[k] for k in keys]))
        # Whatever the due index missed before the crash: every row is written again.
        self._due_dirty = ~np.isnan(self.state.col("order_by"))
        self._due_written_at = -math.inf
        self._refresh_thresholds(force=True)
        self._refresh_model(force=True)
        if self._unwritten_at_checkpoint:  # rows kept while the warehouse failed: not replayed
            self.prediction_rows_dropped += self._unwritten_at_checkpoint
            log.error(
                "shard %s/%d lost %d fact_prediction rows kept while the warehouse failed",
                self.tenant_id,
                self.shard,
                self._unwritten_at_checkpoint,
            )
            self._unwritten_at_checkpoint = 0
        self.predictions.reset(self.progress.offsets)
        assignment = [
            TopicPartition(self.topic, p, self.progress.offsets.get(p, OFFSET_BEGINNING))
            for p in self.partitions
        ]
        self._consumer = self._consumer_factory()
        self._consumer.assign(assignment)
        self.progress.last_checkpoint = self.progress.last_checkpoint or self.clock()
        log.info(
            "shard %s/%d restored: %d SKUs, offsets %s",
            self.tenant_id,
            self.shard,
            len(self.state),
            self.progress.offsets,
        )

    def _new_window(self) -> IdWindow:
        return IdWindow(
            max_ids=self.settings.idempotency_window_events,
            max_age_ms=round(self.settings.idempotency_window_hours * 3_600_000),
        )

    def close(self) -> None:
        if self._consumer is not None:
            self.checkpoint()
            self._consumer.close()
            self._consumer = None
        if self._watermarks is not None:
            self._watermarks.close()
            self._watermarks = None

    # -- the loop ------------------------------------------------------------------------------
    def step(self, timeout: float | None = None) -> int:
        """Process one micro-batch; returns the number of records consumed.

        Restores first when there is nothing restored yet, or when an earlier restore failed
        (Redis down, say): a shard always resumes from its last checkpoint."""
        if self._consumer is None:
            self.restore()
        assert self._consumer is not None  # noqa: S101 - restore() sets it
        limit = self.settings.batch_max_events
        wait = self.settings.batch_wait_s if timeout is None else timeout
        messages = self._consumer.consume(self._wanted, timeout=wait)
        values: list[bytes] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for message in messages:
            if message.error():
                log.warning("consume error on %s: %s", self.topic, message.error())
                continue
            values.append(message.value() or b"")
            partition, offset = message.partition(), message.offset()
            partitions.append(partition if partition is not None else -1)
            offsets.append(offset if offset is not None else -1)
        if values and self.progress.first_records_at is None:
            self.progress.first_records_at = self.clock()
        if values:
            try:
                events = self._fold_records(values, partitions, offsets)
            except Exception:
                # The batch's outputs may not have been written: fall back to the last
                # checkpoint and replay from its offsets, exactly as after a crash.
                log.exception("batch failed on %s; restoring the last checkpoint", self.topic)
                self._reset_to_checkpoint()
                raise
            per_record = max(1.0, events / len(values))
            self._wanted = max(1, min(limit, round(limit / per_record), 2 * self._wanted))
        else:
            self._flush_due_index()
        self._maybe_checkpoint()
        return len(values)

    def _fold_records(self, values: list[bytes], partitions: list[int], offsets: list[int]) -> int:
        """Decode and fold a haul of records in micro-batches of at most ``batch_max_events``
        events plus one bundle's worth, each ending on a record (decoded a few records at a
        time, so a run of bundles never sits decoded whole); after each, the offsets move past
        its records and a due checkpoint is taken. Returns the events."""
        limit = self.settings.batch_max_events
        batch, events, first, end = ShardBatch(), 0, 0, 0
        while end < len(values):
            take = max(1, (limit - len(batch)) // BUNDLE_MAX_EVENTS)
            batch.add(values[end : end + take], partitions[end : end + take])
            end += take
            if len(batch) >= limit or end >= len(values):
                span = list(zip(partitions[first:end], offsets[first:end], strict=True))
                isolate = any(o <= self._isolate.get(p, -1) for p, o in span)
                try:
                    events += self._process(batch, isolate=isolate)
                except FoldError:
                    for partition, offset in span:  # fold this stretch apart after the replay
                        self._isolate[partition] = max(self._isolate.get(partition, -1), offset)
                    raise
                for partition, offset in span:
                    if partition >= 0 and offset >= 0:
                        self.progress.offsets[partition] = offset + 1
                if self._isolate and all(
                    self.progress.offsets.get(p, 0) > o for p, o in self._isolate.items()
                ):
                    self._isolate = {}
                self._maybe_checkpoint()
                batch, first = ShardBatch(), end
        return events

    def _reset_to_checkpoint(self) -> None:
        """Drop everything since the last checkpoint and restore it; if even that fails (Redis
        still down), the next step() tries again."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.state = SkuState()
        self.progress = _Progress()
        try:
            self.restore()
        except Exception:
            log.exception("restore of %s failed; the next step retries", self.topic)
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = None
            self.state = SkuState()
            self.progress = _Progress()

    def _process(self, batch: ShardBatch, *, isolate: bool = False) -> int:
        """Fold one micro-batch and write its outputs; returns its records (refused ones and
        repeats included). ``isolate``: fold record by record where the whole fails."""
        records, partitions = batch.records, batch.partitions
        count = len(records) + len(batch.refused)
        dead = [
            dead_letter_entry(reason, raw, partition=partition)
            for (partition, raw), reason in zip(batch.refused, batch.reasons, strict=True)
        ]
        keep = self.seen.admit(
            [r.event_id for r in records], partitions, [r.received_ms for r in records]
        )
        duplicates = len(records) - int(keep.sum())
        if duplicates:
            chosen = np.flatnonzero(keep).tolist()
            records = [records[i] for i in chosen]
            partitions = [partitions[i] for i in chosen]
        self._refresh_thresholds()
        self._refresh_model()
        now = self.clock()
        if isolate:
            computed = self._compute_isolated(records, partitions, now)
        else:
            try:
                computed = self._compute(records, partitions, now)
            except Exception as exc:
                raise FoldError(f"the fold failed on {len(records)} records: {exc!r}") from exc
        for record, partition, reason in computed.poisoned:
            log.error("shard %s/%d dead-letters %s: %s", self.tenant_id, self.shard, record, reason)
            dead.append(dead_letter_entry(reason, msgspec.json.encode(record), partition=partition))
        self.predictions.append(self.state, computed.outputs, model_version=self.scorer.version)
        due = self._due_index(computed, now)
        unknown = sum(1 for e in records if e.event_type not in TYPE_CODES)
        alerts = computed.alerts
        self.store.write_outputs(
            self.tenant_id,
            shard=self.shard,
            predictions=computed.predictions,
            alerts=alerts,
            counters={
                "events_processed": count,
                "events_unknown_type": unknown,
                "events_duplicate": duplicates,
                "alerts_generated": len(alerts),
                "dead_letters": len(dead),
            },
            dead_letters=dead,
            order_by_ms=due,
        )
        if due is not None:
            self._due_written(now)
        # Before the count moves: whoever sees the events in health sees their batch's time.
        self.progress.last_batch_at = self.clock()
        self.progress.events += count
        self.progress.since_checkpoint += count
        self.progress.alerts += len(alerts)
        self.progress.unknown += unknown
        self.progress.dead_letters += len(dead)
        self.progress.duplicates += duplicates
        sample = records[:: max(1, len(records) // 100)]
        latencies = [now * 1000.0 - e.received_ms for e in sample]
        self.metrics.record_batch(
            events=count, alerts=len(alerts), latencies_ms=latencies, lag=self.lag()
        )
        return count

    def _compute(self, records: list[ShardRecord], partitions: list[int], now: float) -> _Computed:
        """The pure part of a micro-batch: fold, predictions and alerts (nothing written)."""
        outputs = fold_with_timers(self.state, records, partitions, self.params, self.scorer.model)
        built = build_outputs(
            self.state,
            outputs,
            tenant_id=self.tenant_id,
            model_version=self.scorer.version,
            now_s=now,
        )
        return _Computed(
            outputs,
            built.predictions,
            built.alerts,
            order_by_rows=[built.order_by_rows],
            order_by_s=[built.order_by_s],
        )

    def _compute_isolated(
        self, records: list[ShardRecord], partitions: list[int], now: float
    ) -> _Computed:
        """:meth:`_compute`, halving the batch on a copy of the state wherever it fails, down to
        the single records that fail, which are returned as poisoned with their reason. The
        rest is folded in order, so the state is the fold of every other record."""
        if not records:
            return _Computed()
        undo = self.state.copy()
        try:
            return self._compute(records, partitions, now)
        except Exception as exc:
            self.state = undo
            if len(records) == 1:
                return self._single_failure(records[0], partitions[0], now, exc)
        half = len(records) // 2
        first = self._compute_isolated(records[:half], partitions[:half], now)
        second = self._compute_isolated(records[half:], partitions[half:], now)
        return _Computed(
            first.outputs + second.outputs,
            {**first.predictions, **second.predictions},
            first.alerts + second.alerts,
            first.poisoned + second.poisoned,
            first.order_by_rows + second.order_by_rows,
            first.order_by_s + second.order_by_s,
        )

    def _single_failure(
        self, record: ShardRecord, partition: int, now: float, exc: Exception
    ) -> _Computed:
        """One record the fold refuses. When it folds with the analytic scorer, the learned
        model is at fault, not the record: the shard scores with the analytic scorer from here
        (until another version is activated) and shows the error. Otherwise it is poisoned."""
        if self.scorer.model is not None:
            learned = self.scorer
            self.scorer = AnalyticScorer(self.settings.model_version)
            undo = self.state.copy()
            try:
                computed = self._compute([record], [partition], now)
            except Exception:
                self.state, self.scorer = undo, learned
            else:
                self.model_error = f"version {learned.version} failed, analytic instead: {exc!r}"
                log.error("shard %s/%d: %s", self.tenant_id, self.shard, self.model_error)
                return computed
        return _Computed(poisoned=[(record, partition, f"the fold failed: {exc!r}")])

    # -- the due index -------------------------------------------------------------------------
    def _due_index(self, computed: _Computed, now: float) -> dict[str, float] | None:
        """Note the batch's order_by in the state and return the due index's writes when they
        are due (sku@warehouse -> epoch ms, inf: nothing to plan), else None."""
        column = self.state.cols["order_by"]
        for rows, order_by in zip(computed.order_by_rows, computed.order_by_s, strict=True):
            if len(rows):
                moved = rows[column[rows] != order_by]  # NaN (none yet) moves too
                column[rows] = order_by
                if len(moved):
                    if len(self._due_dirty) < len(self.state):
                        grown = np.zeros(len(self.state), dtype=bool)
                        grown[: len(self._due_dirty)] = self._due_dirty
                        self._due_dirty = grown
                    self._due_dirty[moved] = True
        if now - self._due_written_at < self.settings.due_index_refresh_s:
            return None
        dirty = np.flatnonzero(self._due_dirty)
        if not len(dirty):
            return None
        keys = self.state.keys
        scores: list[float] = np.round(column[dirty].astype(np.float64) * 1000.0).tolist()
        return {keys[row]: score for row, score in zip(dirty.tolist(), scores, strict=True)}

    def _due_written(self, now: float) -> None:
        self._due_dirty[:] = False
        self._due_written_at = now

    def _flush_due_index(self) -> None:
        """An idle shard writes what the due index still lacks once the interval is over."""
        now = self.clock()
        due = self._due_index(_Computed(), now)
        if due is None:
            return
        try:
            self.store.write_order_by(self.tenant_id, due)
        except Exception:  # the next idle poll or batch tries again
            log.warning("shard %s/%d cannot write the due index", self.tenant_id, self.shard)
            return
        self._due_written(now)

    def _maybe_checkpoint(self) -> None:
        due_time = (
            self.clock() - self.progress.last_checkpoint >= self.settings.checkpoint_interval_s
        )
        due_events = self.progress.since_checkpoint >= self.settings.checkpoint_events
        if self.progress.since_checkpoint and (due_time or due_events):
            self.checkpoint()

    def checkpoint(self) -> None:
        """State, next offsets and the event ids applied since the last checkpoint together,
        then the offsets to Kafka (for lag tooling)."""
        now = self.clock()
        offsets = dict(self.progress.offsets)
        self._flush_predictions(offsets)  # before the checkpoint: a replay rewrites the same files
        plan = self.seen.unsaved()
        self.store.save_checkpoint(
            self.tenant_id,
            self.shard,
            Checkpoint(self.state.to_bytes(), offsets, now, self.progress.events),
            seen_appends=plan.appends,
            seen_rewrites=plan.rewrites,
        )
        self.seen.saved(plan)  # only now: a failed save leaves the ids for the next one
        self._unwritten_at_checkpoint = len(self.predictions)
        self.progress.since_checkpoint = 0
        self.progress.last_checkpoint = now
        if offsets and self._consumer is not None:
            commits = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
            try:
                self._consumer.commit(offsets=commits, asynchronous=True)
            except Exception:  # the checkpoint in Redis is the source of truth
                log.exception("offset commit failed for %s", self.topic)

    def _flush_predictions(self, offsets: dict[int, int]) -> None:
        """fact_prediction rows to the warehouse. A warehouse that fails does not stop the
        stream: the rows wait for the next checkpoint (at most ``prediction_buffer_max_rows``,
        the oldest dropped and counted beyond), the error shows in health and the log."""
        try:
            self.predictions.flush(offsets)
        except Exception as exc:
            if self.warehouse_error is None:
                log.exception(
                    "shard %s/%d cannot write fact_prediction", self.tenant_id, self.shard
                )
            self.warehouse_error = f"{type(exc).__name__}: {exc}"[:300]
            dropped = self.predictions.drop_oldest(self.settings.prediction_buffer_max_rows)
            if dropped:
                self.prediction_rows_dropped += dropped
                log.error(
                    "shard %s/%d dropped %d fact_prediction rows (the warehouse fails)",
                    self.tenant_id,
                    self.shard,
                    dropped,
                )
            return
        if self.warehouse_error is not None:
            log.info("shard %s/%d writes fact_prediction again", self.tenant_id, self.shard)
        self.warehouse_error = None

    # -- side inputs and health ----------------------------------------------------------------
    def _refresh_thresholds(self, *, force: bool = False) -> None:
        """Reload tenant_settings when its version moved (one cheap read per batch)."""
        version = self.store.settings_version(self.tenant_id)
        if not force and version == self._settings_version:
            return
        self._settings_version = version
        default, overrides = self.store.thresholds(self.tenant_id)
        if default is not None and default != self.params.default_threshold:
            self.params = dataclasses.replace(self.params, default_threshold=default)
        calendar = self.store.demand_calendar(self.tenant_id)
        if calendar != self.params.week_profile:
            self.params = dataclasses.replace(self.params, week_profile=calendar)
        if force or overrides != self.state.overrides:
            self.state.set_thresholds(overrides)
        self._refresh_replenishment(force=force)

    def _refresh_replenishment(self, *, force: bool) -> None:
        """The tenant's service level (and per-SKU ones), default lead time and review period;
        the deployment's defaults where the tenant set none."""
        tenant = self.store.replenishment(self.tenant_id)
        defaults = self._defaults
        self.params = dataclasses.replace(
            self.params,
            service_level=(
                defaults.service_level if tenant.service_level is None else tenant.service_level
            ),
            default_lead_time_s=(
                defaults.default_lead_time_s
                if tenant.lead_time_hours is None
                else tenant.lead_time_hours * 3600.0
            ),
            review_period_s=(
                defaults.review_period_s
                if tenant.review_period_hours is None
                else tenant.review_period_hours * 3600.0
            ),
        )
        if force or tenant.skus != self.state.service_overrides:
            self.state.set_service_levels(tenant.skus)

    def _refresh_model(self, *, force: bool = False) -> None:
        """Swap the scorer when the tenant's active model changed (one cheap read per batch).

        The swap happens between micro-batches, so no event is lost or scored twice. A version
        that cannot be loaded (artifact missing, sha256 mismatch) is logged and shown in
        health; the shard keeps scoring with the scorer it has."""
        epoch = self.registry.epoch(self.tenant_id)
        if not force and epoch == self._model_epoch:
            return
        self._model_epoch = epoch
        version = self.registry.active_version(self.tenant_id)
        try:
            self.scorer = load_scorer(
                self.registry.active(self.tenant_id),
                baseline_version=self.settings.model_version,
                read=read_artifact,
            )
            self.model_error = None
        except Exception as exc:  # a bad artifact must not stop the stream
            self.model_error = f"version {version}: {exc}"
            log.exception("shard %s/%d cannot load model %s", self.tenant_id, self.shard, version)
            return
        log.info("shard %s/%d scores with %s", self.tenant_id, self.shard, self.scorer.version)

    def lag(self) -> int:
        now = self.clock()
        if now - self._lag_at < _LAG_REFRESH_S:
            return self.progress.lag
        self._lag_at = now
        total = 0
        if self._watermarks is None:
            # A consumer of its own, never assigned: asking the main one would wait behind its
            # open fetch (up to fetch.wait.max.ms a partition) and stall the loop.
            self._watermarks = self._consumer_factory()
        for p in self.partitions:
            try:
                low, high = self._watermarks.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=1.0
                )
            except Exception:  # health must not break the loop
                log.debug("watermarks of %s/%d unavailable", self.topic, p, exc_info=True)
                continue
            total += max(0, int(high) - self.progress.offsets.get(p, int(low)))
        self.progress.lag = total
        return total

    def health(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "shard": self.shard,
            "partitions": self.partitions,
            "skus": len(self.state),
            "events": self.progress.events,
            "alerts": self.progress.alerts,
            "unknown_events": self.progress.unknown,
            "dead_letters": self.progress.dead_letters,
            "duplicates": self.progress.duplicates,
            "event_ids_remembered": self.seen.size(),
            "warehouse_error": self.warehouse_error,
            "prediction_rows_buffered": len(self.predictions),
            "prediction_rows_dropped": self.prediction_rows_dropped,
            "model_version": self.scorer.version,
            "model_error": self.model_error,
            "lag": self.lag(),
            "last_checkpoint": self.progress.last_checkpoint,
            "first_records_at": self.progress.first_records_at,
            "last_batch_at": self.progress.last_batch_at,
            "offsets": {str(p): o for p, o in self.progress.offsets.items()},
        }
