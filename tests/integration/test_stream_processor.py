"""``ShardProcessor`` in-process, without Ray, against a real Tansu broker and a real Valkey.

The Ray integration tests run the same loop inside ``TenantShard`` actors, where coverage cannot
see it; here the loop is driven step by step: a mixed stream ends in the right stock and
predictions, a crash between checkpoints loses nothing and applies nothing twice, thresholds move
on the next batch, undecodable records go to the dead-letter list, a failed Redis write falls back
to the last checkpoint, and health/lag answer sanely.

The truth for stock is an independent sequential model of the events (``truth_on_hand``); the
truth for scores and alerts is the same events folded in one single batch, which the state module
promises to be independent of where batch boundaries fall.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from aurora_ray.adapters.kafka import BulkProducer
from aurora_ray.adapters.redis_store import RedisStore
from aurora_ray.backfill import bundle_records
from aurora_ray.domain.alerts import AlertRecord, build_outputs, iso_utc
from aurora_ray.domain.events import (
    KNOWN_EVENT_TYPES,
    StreamEvent,
    decode_stream_events,
    encode_stream_event,
)
from aurora_ray.domain.state import EventBatch, ScoringParams, SkuState, apply_batch
from aurora_ray.naming import SOURCE_BACKFILL, SOURCE_HEADER
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor, partitions_for
from aurora_ray.testing import ManualClock, envelope, order, sku_upserted, stock_snapshot
from tests.integration._services import (
    PARTITIONS,
    Services,
    closed_port_url,
    drive,
    records_for,
    running_services,
    short_poll_consumer,
)

pytestmark = pytest.mark.integration

HOUR = 3600.0
ALL = list(range(PARTITIONS))
Records = list[tuple[bytes | None, bytes]]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("stream")) as svc:
        yield svc


# -- helpers -----------------------------------------------------------------------------------
class RecordingMetrics:
    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def record_batch(
        self, *, events: int, alerts: int, latencies_ms: list[float], lag: int
    ) -> None:
        self.batches.append(
            {"events": events, "alerts": alerts, "latencies_ms": latencies_ms, "lag": lag}
        )


def settings_for(svc: Services, **overrides: Any) -> Settings:
    # No time- or count-based checkpoint unless a test asks for one: checkpoints are explicit.
    # Timers off: these tests compare the shard with one plain fold of the events (timers have
    # their own tests in tests/unit/test_timers.py and test_timers_in_the_shard below).
    values: dict[str, Any] = {
        "timer_period_hours": 0.0,
        "checkpoint_interval_s": 3600.0,
        "checkpoint_events": 1_000_000,
        "batch_max_events": 64,
        **overrides,
    }
    return svc.settings(**values)


def processor(
    svc: Services,
    settings: Settings,
    tenant_id: str,
    *,
    shard: int = 0,
    partitions: list[int] | None = None,
    short_poll: bool = True,
    **kwargs: Any,
) -> ShardProcessor:
    return ShardProcessor(
        settings,
        tenant_id=tenant_id,
        shard=shard,
        partitions=ALL if partitions is None else partitions,
        store=RedisStore(svc.redis_url),
        consumer_factory=short_poll_consumer(settings, tenant_id, shard) if short_poll else None,
        **kwargs,
    )


def params_of(settings: Settings) -> ScoringParams:
    return ScoringParams(
        horizon_s=settings.horizon_s,
        half_life_s=settings.rate_half_life_s,
        dedup_window_s=settings.dedup_window_s,
        min_history_s=settings.min_history_hours * 3600.0,
        default_threshold=settings.default_threshold,
    )


def _key(event: dict[str, Any]) -> tuple[str, str]:
    payload = event["payload"]
    return payload.get("sku") or payload["sku_id"], payload["warehouse"]


def truth_on_hand(events: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Stock per (sku, warehouse) by applying the envelopes one by one, for SKUs whose stock is
    known (a snapshot, or an upsert with ``initial_stock`` while the stock is still unknown)."""
    on_hand: dict[tuple[str, str], int] = {}
    known: set[tuple[str, str]] = set()
    for event in events:
        kind, payload = event["event_type"], event["payload"]
        if kind not in KNOWN_EVENT_TYPES:
            continue
        key = _key(event)
        current = on_hand.get(key, 0)
        if kind == "stock.snapshot":
            on_hand[key] = payload["on_hand"]
            known.add(key)
        elif kind == "sku.upserted":
            if payload.get("initial_stock") is not None and key not in known:
                on_hand[key] = payload["initial_stock"]
                known.add(key)
        elif kind == "order.created":
            on_hand[key] = current - payload["qty"]
        elif kind in ("order.cancelled", "stock.received"):
            on_hand[key] = current + payload["qty"]
        elif kind == "stock.adjusted":
            on_hand[key] = current + payload["delta"]
    return {key: value for key, value in on_hand.items() if key in known}


def reference(
    settings: Settings, tenant_id: str, records: Records, overrides: dict[str, float] | None = None
) -> tuple[SkuState, dict[str, dict[str, Any]], list[AlertRecord]]:
    """The whole stream folded as one batch: predictions and alerts a shard must end up with."""
    events, bad = decode_stream_events([value for _, value in records])
    assert not bad
    state = SkuState()
    state.set_thresholds(overrides or {})
    output = apply_batch(state, EventBatch.from_events(events), params_of(settings))
    predictions, alerts, _, _ = build_outputs(
        state, [output], tenant_id=tenant_id, model_version=settings.model_version, now_s=0.0
    )
    return state, predictions, alerts


def mixed_stream(tenant_id: str, *, seed: int, n: int, t0: float) -> list[dict[str, Any]]:
    """Every event type, two warehouses, the ``sku_id`` alias, unknown types, catalogue-only and
    ignored upserts, orders before any stock is known; a few hot SKUs run out (alerts)."""
    rng = random.Random(seed)
    keys = [(f"SKU-{i:02d}", wh) for i in range(6) for wh in ("DE-HAM", "FR-PAR")]
    at = t0
    events: list[dict[str, Any]] = []
    for i, (sku, wh) in enumerate(keys):
        at += 60
        if i == 0:  # sales before the stock is known; the upsert then sets it
            events.append(order(tenant_id, sku, wh, 2, at=at, order_id="early-1"))
            events.append(order(tenant_id, sku, wh, 1, at=at + 1, order_id="early-2"))
            events.append(sku_upserted(tenant_id, sku, wh, 20, at=at + 2))
        elif i == 1:
            events.append(stock_snapshot(tenant_id, sku, wh, 15, at=at))
        elif i == 2:  # the deprecated alias
            upsert = sku_upserted(tenant_id, sku, wh, 12, at=at)
            upsert["payload"]["sku_id"] = upsert["payload"].pop("sku")
            events.append(upsert)
        else:
            events.append(sku_upserted(tenant_id, sku, wh, rng.randint(5, 30), at=at))
    hot = {keys[3], keys[4], keys[7]}
    weights = [4 if key in hot else 1 for key in keys]
    kinds = ["order"] * 11 + ["cancel", "received", "received", "adjusted", "adjusted"]
    kinds += ["snapshot", "upsert", "catalogue", "unknown"]
    for i in range(n):
        at += rng.randint(60, 1200)
        sku, wh = rng.choices(keys, weights)[0]
        kind = rng.choice(kinds)
        if kind == "order":
            events.append(order(tenant_id, sku, wh, rng.randint(1, 3), at=at, order_id=f"o-{i}"))
        elif kind == "cancel":
            events.append(
                envelope(
                    tenant_id,
                    "order.cancelled",
                    {"order_id": f"o-{i - 1}", "sku": sku, "warehouse": wh, "qty": 1},
                    at=at,
                )
            )
        elif kind == "received":
            payload = {"sku": sku, "warehouse": wh, "qty": rng.randint(2, 12)}
            events.append(envelope(tenant_id, "stock.received", payload, at=at))
        elif kind == "adjusted":
            delta = rng.choice([-3, -2, -1, 1, 2])
            payload = {"sku": sku, "warehouse": wh, "delta": delta, "reason": "count"}
            events.append(envelope(tenant_id, "stock.adjusted", payload, at=at))
        elif kind == "snapshot":
            events.append(stock_snapshot(tenant_id, sku, wh, rng.randint(0, 25), at=at))
        elif kind == "upsert":  # the stock is known by now: this one must be ignored
            events.append(sku_upserted(tenant_id, sku, wh, 999, at=at))
        elif kind == "catalogue":
            payload = {"sku": sku, "warehouse": wh, "category": "new-category"}
            events.append(envelope(tenant_id, "sku.upserted", payload, at=at))
        else:
            payload = {"sku": sku, "warehouse": wh, "pct": 10}
            events.append(envelope(tenant_id, "promo.started", payload, at=at))
    return events


def unknown_count(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["event_type"] not in KNOWN_EVENT_TYPES)


def redis_predictions(store: RedisStore, tenant_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows, next_after = store.predictions(tenant_id, sku=None, warehouse=None, limit=10_000)
    assert next_after is None
    return {(row["sku"], row["warehouse"]): row for row in rows}


def state_on_hand(state: SkuState) -> dict[tuple[str, str], int]:
    known = state.col("stock_known")
    on_hand = state.col("on_hand")
    out = {}
    for row, key in enumerate(state.keys):
        if known[row]:
            sku, warehouse = key.rsplit("@", 1)
            out[(sku, warehouse)] = int(on_hand[row])
    return out


def all_alerts(store: RedisStore, tenant_id: str, **filters: Any) -> list[dict[str, Any]]:
    page = store.alerts(tenant_id, limit=10_000, **filters)
    assert page.next_cursor is None
    return page.alerts


def assert_predictions_match(
    got: dict[tuple[str, str], dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> None:
    wanted = {(w["sku"], w["warehouse"]): w for w in expected.values()}
    assert set(got) == set(wanted)
    for key, want in wanted.items():
        row = got[key]
        assert row["on_hand"] == want["on_hand"], key
        assert row["as_of"] == want["as_of"], key
        assert row["model_version"] == want["model_version"]
        assert row["probability"] == pytest.approx(want["probability"], abs=2e-6), key
        assert row["demand_rate_per_hour"] == pytest.approx(
            want["demand_rate_per_hour"], rel=1e-6, abs=2e-6
        ), key
        assert (row["predicted_oos_at"] is None) == (want["predicted_oos_at"] is None), key
        if row["predicted_oos_at"] is not None:
            assert row["predicted_oos_at"][:16] == want["predicted_oos_at"][:16], key


def step_until_raises(proc: ShardProcessor, *, timeout: float = 20.0) -> BaseException:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            proc.step(timeout=0.2)
        except Exception as exc:  # the failure under test
            return exc
    raise AssertionError("step() never failed")


# -- (a) a mixed stream --------------------------------------------------------------------------
def test_mixed_stream_ends_in_the_true_stock_predictions_and_alerts(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    events = mixed_stream(tenant_id, seed=7, n=500, t0=time.time() - 10 * 24 * HOUR)
    records = records_for(events, tenant_id)
    services.produce(settings.topic_for(tenant_id), records)

    metrics = RecordingMetrics()
    proc = processor(services, settings, tenant_id, metrics=metrics)
    proc.restore()
    steps = drive(proc, len(records))
    assert steps >= len(records) // settings.batch_max_events  # really many micro-batches
    assert proc.step(timeout=0.3) == 0  # nothing more on the topic

    store = proc.store
    truth = truth_on_hand(events)
    got = redis_predictions(store, tenant_id)
    assert {key: row["on_hand"] for key, row in got.items()} == truth
    assert state_on_hand(proc.state) == truth
    assert ("SKU-00", "DE-HAM") in truth and ("SKU-02", "DE-HAM") in truth  # early sales, alias
    for row in got.values():
        assert 0.0 <= row["probability"] <= 1.0
        if row["on_hand"] <= 0:
            assert row["probability"] == 1.0, row

    # Scores and alerts do not depend on the batch boundaries: one big batch says the same.
    _, expected_predictions, expected_alerts = reference(settings, tenant_id, records)
    assert_predictions_match(got, expected_predictions)
    alerts = all_alerts(store, tenant_id)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)) == proc.progress.alerts
    assert set(ids) == {a.alert_id for a in expected_alerts}
    assert len(alerts) >= 3, "the hot SKUs must have run out"
    for alert in alerts:
        assert alert["probability"] >= settings.default_threshold
    by_key: dict[tuple[str, str], list[float]] = {}
    for alert in expected_alerts:
        by_key.setdefault((alert.sku, alert.warehouse), []).append(alert.as_of_s)
    for times in by_key.values():  # at most one alert per SKU in the dedup window (event time)
        assert all(b - a >= settings.dedup_window_s for a, b in zip(times, times[1:], strict=False))
    one_sku = alerts[0]["sku"]
    assert {a["alert_id"] for a in all_alerts(store, tenant_id, sku=one_sku)} == {
        a["alert_id"] for a in alerts if a["sku"] == one_sku
    }

    unknown = unknown_count(events)
    assert unknown > 0
    assert proc.progress.unknown == unknown and proc.progress.dead_letters == 0
    assert store.counters(tenant_id) == {
        "events_processed": len(records),
        "events_unknown_type": unknown,
        "alerts_generated": len(alerts),
    }
    assert sum(b["events"] for b in metrics.batches) == len(records)
    assert sum(b["alerts"] for b in metrics.batches) == len(alerts)
    assert all(b["latencies_ms"] and b["lag"] >= 0 for b in metrics.batches)
    proc.close()


# -- (b) crash between checkpoints ---------------------------------------------------------------
def test_crash_after_a_checkpoint_replays_without_loss_or_double_counting(
    services: Services,
) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    events = mixed_stream(tenant_id, seed=11, n=600, t0=time.time() - 12 * 24 * HOUR)
    cut_a, cut_b = 250, 480
    parts = [events[:cut_a], events[cut_a:cut_b], events[cut_b:]]
    records = [records_for(part, tenant_id) for part in parts]
    total = sum(len(r) for r in records)
    store = RedisStore(services.redis_url)

    first = processor(services, settings, tenant_id)
    first.restore()
    services.produce(topic, records[0])
    drive(first, len(records[0]))
    first.checkpoint()
    checkpoint = store.load_checkpoint(tenant_id, 0)
    assert checkpoint is not None and checkpoint.events == len(records[0])
    assert sum(checkpoint.offsets.values()) == len(records[0])
    alerts_at_checkpoint = first.progress.alerts

    services.produce(topic, records[1])
    drive(first, len(records[0]) + len(records[1]))
    alerts_after_b = {a["alert_id"]: a for a in all_alerts(store, tenant_id)}
    new_in_b = first.progress.alerts - alerts_at_checkpoint
    assert new_in_b > 0, "the part after the checkpoint must raise alerts to replay"
    # Without their dedup marks at least one of them would be raised again by the replay.
    marks = store.dedup_marks(tenant_id, 0)
    saved = SkuState.from_bytes(checkpoint.state)
    window = settings.dedup_window_s
    rearmed = []
    for key, mark in marks.items():
        row = saved.index.get(key)
        last = float(saved.cols["last_alert"][row]) if row is not None else float("nan")
        if np.isnan(last) or last + window <= mark:
            rearmed.append(key)
    assert rearmed, marks

    # The crash: the consumer goes away, nothing is checkpointed.
    assert first._consumer is not None
    first._consumer.close()
    first._consumer = None

    services.produce(topic, records[2])
    second = processor(services, settings, tenant_id)
    second.restore()
    assert second.progress.events == len(records[0])
    assert second.progress.offsets == checkpoint.offsets
    assert state_on_hand(second.state) == truth_on_hand(parts[0])
    drive(second, total)
    assert second.step(timeout=0.3) == 0

    truth = truth_on_hand(events)
    assert state_on_hand(second.state) == truth
    got = redis_predictions(store, tenant_id)
    assert {key: row["on_hand"] for key, row in got.items()} == truth
    _, expected_predictions, expected_alerts = reference(
        settings, tenant_id, [r for part in records for r in part]
    )
    assert_predictions_match(got, expected_predictions)

    alerts = all_alerts(store, tenant_id)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was written twice by the replay"
    assert set(ids) == {a.alert_id for a in expected_alerts}
    for alert_id, alert in alerts_after_b.items():  # the replay did not rewrite them
        assert alert in alerts, alert_id
    # Outputs are at least once: counters of the replayed part are counted again.
    assert store.counters(tenant_id)["events_processed"] >= total
    second.close()


# -- (c) thresholds ------------------------------------------------------------------------------
def test_threshold_changes_take_effect_on_the_next_batch(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    store = RedisStore(services.redis_url)
    t0 = time.time() - 5 * 24 * HOUR
    wh = "DE-HAM"

    def sale(sku: str, at: float, n: int) -> dict[str, Any]:
        return order(tenant_id, sku, wh, 1, at=at, order_id=f"{sku}-{n}")

    skus = ("MID", "LOW", "HIGH")
    first = [sku_upserted(tenant_id, s, wh, 9, at=t0) for s in skus]
    first += [sale(s, t0 + HOUR, 1) for s in skus]
    proc = processor(services, settings, tenant_id)
    proc.restore()
    services.produce(topic, records_for(first, tenant_id))
    drive(proc, len(first))
    scores = {k[0]: row["probability"] for k, row in redis_predictions(store, tenant_id).items()}
    assert all(0.3 <= p < settings.default_threshold for p in scores.values()), scores
    assert all_alerts(store, tenant_id) == []

    version = store.settings_version(tenant_id)
    store.put_thresholds(
        tenant_id,
        default=0.3,
        per_sku={f"MID@{wh}": 0.05, "HIGH": 0.999, "NEW": 0.999},
    )
    assert store.settings_version(tenant_id) == version + 1
    assert store.thresholds(tenant_id) == (
        0.3,
        {f"MID@{wh}": 0.05, "HIGH": 0.999, "NEW": 0.999},
    )
    second = [sale(s, t0 + 2 * HOUR, 2) for s in skus]
    second += [sku_upserted(tenant_id, "NEW", wh, 9, at=t0), sale("NEW", t0 + HOUR, 1)]
    services.produce(topic, records_for(second, tenant_id))
    drive(proc, len(first) + len(second))
    scores = {k[0]: row["probability"] for k, row in redis_predictions(store, tenant_id).items()}
    assert scores["NEW"] >= 0.3 and scores["HIGH"] >= 0.3, scores
    # MID by its sku@warehouse override, LOW by the new default; HIGH and NEW (a row created
    # after the change) are held back by their overrides.
    assert sorted(a["sku"] for a in all_alerts(store, tenant_id)) == ["LOW", "MID"]

    store.put_thresholds(tenant_id, default=None, per_sku={"HIGH": None})
    assert store.thresholds(tenant_id) == (0.3, {f"MID@{wh}": 0.05, "NEW": 0.999})
    third = [sale("HIGH", t0 + 3 * HOUR, 3), sale("NEW", t0 + 3 * HOUR, 3)]
    services.produce(topic, records_for(third, tenant_id))
    drive(proc, len(first) + len(second) + len(third))
    alerted = sorted(a["sku"] for a in all_alerts(store, tenant_id))
    assert alerted == ["HIGH", "LOW", "MID"]

    # A restored shard keeps the thresholds (they are reloaded, not taken from the snapshot).
    proc.close()
    again = processor(services, settings, tenant_id)
    again.restore()
    assert again.params.default_threshold == 0.3
    assert again.state.overrides == {f"MID@{wh}": 0.05, "NEW": 0.999}
    threshold = again.state.cols["threshold"]
    assert threshold[again.state.index[f"NEW@{wh}"]] == 0.999
    assert np.isnan(threshold[again.state.index[f"HIGH@{wh}"]])
    again.close()


# -- (d) dead letters ----------------------------------------------------------------------------
def test_undecodable_records_are_dead_lettered_not_fatal(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    t0 = time.time() - 2 * 24 * HOUR
    good_before = [sku_upserted(tenant_id, "DL-1", "DE-HAM", 10, at=t0)]
    good_after = [order(tenant_id, "DL-1", "DE-HAM", 3, at=t0 + 60)]
    garbage: Records = [
        (b"DL-1@DE-HAM", b"\x00\xff not json at all"),
        (b"DL-1@DE-HAM", b"{}"),  # JSON, but not a StreamEvent
        (None, b'{"event_id": 1, "tenant_id": "x"}'),
        (None, b""),
        (None, b"[1, 2, 3]"),
    ]
    records = records_for(good_before, tenant_id) + garbage + records_for(good_after, tenant_id)
    services.produce(topic, records)

    proc = processor(services, settings, tenant_id)
    proc.restore()
    drive(proc, len(records))
    assert proc.progress.dead_letters == len(garbage)
    assert proc.health()["dead_letters"] == len(garbage)
    store = proc.store
    kept = [json.loads(e) for e in store.client.lrange(f"aurora:t:{tenant_id}:deadletter", 0, -1)]
    assert sorted(e["record"].encode("utf-8", "replace") for e in kept) == sorted(
        value.decode("utf-8", "replace").encode() for _, value in garbage
    )
    assert all(e["reason"] and e["partition"] in ALL for e in kept)
    counters = store.counters(tenant_id)
    assert counters["dead_letters"] == len(garbage)
    assert counters["events_processed"] == len(records)
    [row] = redis_predictions(store, tenant_id).values()
    assert row["on_hand"] == 7
    proc.close()


# -- (e) health, lag, checkpoints, close ---------------------------------------------------------
def test_health_lag_and_checkpoints(services: Services) -> None:
    settings = settings_for(services, checkpoint_interval_s=5.0, checkpoint_events=30)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    store = RedisStore(services.redis_url)
    clock = ManualClock()
    # The default consumer factory (make_consumer with the production configuration).
    proc = processor(services, settings, tenant_id, short_poll=False, clock=clock)

    idle = proc.health()
    assert idle["events"] == 0 and idle["lag"] == 0 and idle["offsets"] == {}
    assert idle["tenant_id"] == tenant_id and idle["shard"] == 0 and idle["partitions"] == ALL
    assert idle["first_records_at"] is None and idle["last_batch_at"] is None
    assert proc.step(timeout=0.05) == 0  # step() restores by itself when nothing is restored

    t0 = time.time() - 3 * 24 * HOUR
    events = [sku_upserted(tenant_id, f"H-{i}", "DE-HAM", 5, at=t0) for i in range(8)]
    events += [order(tenant_id, f"H-{i % 8}", "DE-HAM", 1, at=t0 + 60 * i) for i in range(17)]
    records = records_for(events, tenant_id)
    services.produce(topic, records)
    proc.restore()
    assert store.load_checkpoint(tenant_id, 0) is None
    clock.advance(2.0)
    backlog = proc.lag()
    assert 0 < backlog <= len(records)
    assert proc.lag() == backlog  # cached within a second

    drive(proc, len(records))  # 25 records: under the 30 that force a checkpoint
    assert store.load_checkpoint(tenant_id, 0) is None
    folded_at = clock.now
    clock.advance(2.0)
    health = proc.health()
    # The span of work (the bench's stream rate): first records in hand, last batch written.
    assert health["first_records_at"] == health["last_batch_at"] == folded_at
    assert health["lag"] == 0
    assert health["events"] == len(records) and health["skus"] == 8
    assert health["unknown_events"] == 0 and health["dead_letters"] == 0
    assert health["alerts"] == proc.progress.alerts
    assert sum(health["offsets"].values()) == len(records)
    # The topic's end offsets are where the shard stands once it has read everything (exact
    # on Tansu too, whose listed offset is the base offset of the last record batch + 1).
    ends = services.admin.end_offsets(topic, ALL)
    assert ends == {p: proc.progress.offsets.get(p, 0) for p in ALL}, ends
    assert services.producer.produce_batch(topic, []).result(timeout=1) is None
    assert services.admin.ensure_topic(topic, PARTITIONS) is False  # exists already
    assert set(health["offsets"]) <= {str(p) for p in ALL}
    json.dumps(health)  # what the actor writes to Redis must be JSON

    # The time-based checkpoint fires on the next step once the interval has passed.
    clock.advance(settings.checkpoint_interval_s)
    assert proc.step(timeout=0.2) == 0
    checkpoint = store.load_checkpoint(tenant_id, 0)
    assert checkpoint is not None
    assert checkpoint.events == len(records) and checkpoint.at == clock.now
    assert health["offsets"] == {str(p): o for p, o in checkpoint.offsets.items()}

    # The count-based one fires once checkpoint_events records arrived since the last one.
    more = [order(tenant_id, f"H-{i % 8}", "DE-HAM", 1, at=t0 + HOUR + i) for i in range(35)]
    services.produce(topic, records_for(more, tenant_id))
    drive(proc, len(records) + len(more))
    checkpoint = store.load_checkpoint(tenant_id, 0)
    assert checkpoint is not None and checkpoint.events >= len(records) + 30
    assert proc.health()["first_records_at"] == folded_at  # the first records, not the latest
    assert proc.health()["last_batch_at"] == clock.now > folded_at

    # close() writes a final checkpoint; a second close is a no-op.
    clock.advance(1.0)
    proc.close()
    checkpoint = store.load_checkpoint(tenant_id, 0)
    assert checkpoint is not None and checkpoint.events == len(records) + len(more)
    assert checkpoint.at == clock.now
    proc.close()
    assert proc.health()["events"] == len(records) + len(more)


def test_two_shards_split_the_partitions(services: Services) -> None:
    assert partitions_for(0, 2, 4) == [0, 2] and partitions_for(1, 2, 4) == [1, 3]
    assert partitions_for(0, 3, 4) == [0, 3] and partitions_for(2, 3, 4) == [2]
    assert partitions_for(0, 1, 4) == ALL
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    events = mixed_stream(tenant_id, seed=5, n=200, t0=time.time() - 6 * 24 * HOUR)
    records = records_for(events, tenant_id)
    services.produce(settings.topic_for(tenant_id), records)
    shards = [
        processor(services, settings, tenant_id, shard=s, partitions=partitions_for(s, 2, 4))
        for s in range(2)
    ]
    for shard in shards:
        shard.restore()
    deadline = time.monotonic() + 30
    while sum(s.progress.events for s in shards) < len(records):
        assert time.monotonic() < deadline, [s.progress.events for s in shards]
        for shard in shards:
            shard.step(timeout=0.1)
    assert sum(s.progress.events for s in shards) == len(records)
    assert all(s.progress.events > 0 for s in shards)
    assert not set(shards[0].state.keys) & set(shards[1].state.keys)
    merged = {**state_on_hand(shards[0].state), **state_on_hand(shards[1].state)}
    assert merged == truth_on_hand(events)
    got = redis_predictions(shards[0].store, tenant_id)
    assert {key: row["on_hand"] for key, row in got.items()} == merged
    for s, shard in enumerate(shards):
        assert set(shard.progress.offsets) <= set(partitions_for(s, 2, 4))
        shard.close()
        checkpoint = shard.store.load_checkpoint(tenant_id, s)
        assert checkpoint is not None and checkpoint.events == shard.progress.events


# -- (f) a failed Redis write --------------------------------------------------------------------
def test_failed_output_write_falls_back_to_the_checkpoint(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    events = mixed_stream(tenant_id, seed=3, n=300, t0=time.time() - 8 * 24 * HOUR)
    first, second = events[:120], events[120:]
    store = RedisStore(services.redis_url)
    proc = processor(services, settings, tenant_id)
    proc.restore()
    records_a = records_for(first, tenant_id)
    services.produce(topic, records_a)
    drive(proc, len(records_a))
    proc.checkpoint()
    checkpoint = store.load_checkpoint(tenant_id, 0)
    assert checkpoint is not None

    records_b = records_for(second, tenant_id)
    services.produce(topic, records_b)
    # A few good batches after the checkpoint, then one whose write fails.
    drive(proc, len(records_a) + 2 * settings.batch_max_events)
    real_write = proc.store.write_outputs
    failures: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> None:
        if not failures:
            failures.append(1)
            raise redis.ConnectionError("injected: connection lost during EXEC")
        real_write(*args, **kwargs)

    monkeypatch.setattr(proc.store, "write_outputs", failing_once)
    error = step_until_raises(proc)
    assert isinstance(error, redis.ConnectionError)
    # Back at the checkpoint: its state, offsets and count, with a fresh consumer.
    assert proc._consumer is not None
    assert proc.progress.events == checkpoint.events
    assert proc.progress.offsets == checkpoint.offsets
    assert state_on_hand(proc.state) == truth_on_hand(first)

    total = len(records_a) + len(records_b)
    drive(proc, total)
    truth = truth_on_hand(events)
    assert state_on_hand(proc.state) == truth
    got = redis_predictions(store, tenant_id)
    assert {key: row["on_hand"] for key, row in got.items()} == truth
    _, expected, expected_alerts = reference(settings, tenant_id, records_a + records_b)
    assert_predictions_match(got, expected)
    ids = [a["alert_id"] for a in all_alerts(store, tenant_id)]
    assert len(ids) == len(set(ids)) and set(ids) == {a.alert_id for a in expected_alerts}
    proc.close()


def test_processing_resumes_after_redis_was_unreachable(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    topic = settings.topic_for(tenant_id)
    t0 = time.time() - 2 * 24 * HOUR
    first = [sku_upserted(tenant_id, f"R-{i}", "DE-HAM", 10, at=t0) for i in range(4)]
    second = [order(tenant_id, f"R-{i % 4}", "DE-HAM", 1, at=t0 + 60 * i) for i in range(12)]
    proc = processor(services, settings, tenant_id)
    proc.restore()
    services.produce(topic, records_for(first, tenant_id))
    drive(proc, len(first))
    proc.checkpoint()

    good = proc.store
    services.produce(topic, records_for(second, tenant_id))
    proc.store = RedisStore(closed_port_url())  # Redis goes away
    assert isinstance(step_until_raises(proc), redis.ConnectionError)
    proc.store = good  # and comes back

    drive(proc, len(first) + len(second))
    assert state_on_hand(proc.state) == truth_on_hand(first + second)
    proc.close()


def test_a_decodable_record_with_an_impossible_time_does_not_stop_the_shard(
    services: Services,
) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    now_ms = int(time.time() * 1000)

    def event(n: int, ts_ms: int, sku: str) -> StreamEvent:
        return StreamEvent(
            event_id=f"e-{n}",
            tenant_id=tenant_id,
            event_type="stock.snapshot",
            ts_ms=ts_ms,
            received_ms=now_ms,
            sku=sku,
            warehouse="DE-HAM",
            value=5,
        )

    stream = [event(1, now_ms - 1000, "T-1"), event(2, 10**15, "T-1"), event(3, now_ms, "T-2")]
    records: Records = [(b"T@DE-HAM", encode_stream_event(e)) for e in stream]  # one partition
    services.produce(settings.topic_for(tenant_id), records)
    proc = processor(services, settings, tenant_id)
    proc.restore()
    failures = []
    deadline = time.monotonic() + 3  # the failing batch is retried about 5 times a second
    while proc.progress.events < len(records) and time.monotonic() < deadline:
        try:
            proc.step(timeout=0.2)
        except ValueError as exc:
            failures.append(exc)
    assert proc.progress.events == len(records), f"stuck; {len(failures)} failed batches"
    assert ("T-2", "DE-HAM") in redis_predictions(proc.store, tenant_id)
    proc.close()


def test_records_encoded_directly_are_processed(services: Services) -> None:
    """Topic records built from StreamEvent + encode_stream_event (not through the ingest path),
    including a record without a key and one without sku/warehouse."""
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    now_ms = int(time.time() * 1000)
    t0_ms = now_ms - 24 * 3_600_000

    def event(kind: str, ts: int, **fields: Any) -> StreamEvent:
        return StreamEvent(
            event_id=f"e-{kind}-{ts}",
            tenant_id=tenant_id,
            event_type=kind,
            ts_ms=ts,
            received_ms=now_ms,
            **fields,
        )

    stream = [
        event("stock.snapshot", t0_ms, sku="E-1", warehouse="PL-WAW", value=4),
        event("order.created", t0_ms + 1000, sku="E-1", warehouse="PL-WAW", qty=4),
        event("weather.changed", t0_ms + 2000, payload={"city": "Warsaw"}),
    ]
    records: Records = [(e.key.encode() if e.key else None, encode_stream_event(e)) for e in stream]
    services.produce(settings.topic_for(tenant_id), records)
    proc = processor(services, settings, tenant_id)
    proc.restore()
    drive(proc, len(records))
    [row] = redis_predictions(proc.store, tenant_id).values()
    assert row["on_hand"] == 0 and row["probability"] == 1.0
    assert proc.progress.unknown == 1
    [alert] = all_alerts(proc.store, tenant_id)
    assert alert["sku"] == "E-1" and alert["warehouse"] == "PL-WAW"
    assert alert["as_of"] == iso_utc((t0_ms + 1000) / 1000)
    proc.close()


def test_a_demand_calendar_is_reloaded_with_the_settings(services: Services) -> None:
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    store = RedisStore(services.redis_url)
    assert store.demand_calendar(tenant_id) is None
    proc = processor(services, settings, tenant_id)
    proc.restore()
    assert proc.params.week_profile is None
    profile = tuple([1.0 / 168] * 168)
    version = store.settings_version(tenant_id)
    store.put_demand_calendar(tenant_id, profile)
    assert store.settings_version(tenant_id) == version + 1
    assert store.demand_calendar(tenant_id) == profile
    proc._refresh_thresholds()
    assert proc.params.week_profile == profile
    store.put_demand_calendar(tenant_id, None)
    proc._refresh_thresholds()
    assert proc.params.week_profile is None
    proc.close()


# -- the backfill's bundles ----------------------------------------------------------------------
def produce_bundles(services: Services, topic: str, records: Records) -> int:
    """The records as the backfill produces them: bundles of up to 9 (few, to get many)."""
    bundles = bundle_records(
        [key for key, _ in records], [value for _, value in records], partitions=PARTITIONS,
        max_events=9,
    )  # fmt: skip
    producer = BulkProducer(services.bootstrap)
    try:
        producer.produce_to_partitions(topic, bundles, headers=[(SOURCE_HEADER, SOURCE_BACKFILL)])
    finally:
        producer.close()
    return len(bundles)


def test_backfill_bundles_fold_as_the_same_records_one_by_one(services: Services) -> None:
    """A backfill produces bundles (records of one partition as one topic record): the shard
    ends in the stock, predictions and alerts of the same records produced one by one, and its
    micro-batches stay within ``batch_max_events`` events."""
    settings = settings_for(services)
    tenant_id = services.new_tenant_topic(settings)
    events = mixed_stream(tenant_id, seed=11, n=500, t0=time.time() - 10 * 24 * HOUR)
    records = records_for(events, tenant_id)
    bundles = produce_bundles(services, settings.topic_for(tenant_id), records)
    assert len(records) / 9 <= bundles < len(records) / 4

    metrics = RecordingMetrics()
    proc = processor(services, settings, tenant_id, metrics=metrics)
    proc.restore()
    drive(proc, len(records))
    assert proc.step(timeout=0.3) == 0
    # A micro-batch ends on a record: at most batch_max_events plus one bundle's worth.
    assert all(0 < b["events"] < settings.batch_max_events + 9 for b in metrics.batches)
    assert sum(b["events"] for b in metrics.batches) == len(records)

    truth = truth_on_hand(events)
    got = redis_predictions(proc.store, tenant_id)
    assert {key: row["on_hand"] for key, row in got.items()} == truth
    _, expected_predictions, expected_alerts = reference(settings, tenant_id, records)
    assert_predictions_match(got, expected_predictions)
    alerts = all_alerts(proc.store, tenant_id)
    assert {a["alert_id"] for a in alerts} == {a.alert_id for a in expected_alerts}
    assert proc.progress.dead_letters == 0
    assert proc.store.counters(tenant_id)["events_processed"] == len(records)
    proc.close()


def test_a_failure_in_the_middle_of_a_haul_of_bundles_resumes_from_its_last_checkpoint(
    services: Services,
) -> None:
    """One step takes many bundles and folds them in several micro-batches, checkpointing
    between them when due; when one of them fails, the shard falls back to the checkpoint taken
    inside the haul and ends in the true stock (nothing lost, nothing applied twice)."""
    settings = settings_for(services, checkpoint_events=100)
    tenant_id = services.new_tenant_topic(settings)
    events = mixed_stream(tenant_id, seed=12, n=600, t0=time.time() - 10 * 24 * HOUR)
    records = records_for(events, tenant_id)
    produce_bundles(services, settings.topic_for(tenant_id), records)

    proc = processor(services, settings, tenant_id)
    proc.restore()
    real = proc._process  # noqa: SLF001
    slices = 0

    def fourth_fails(batch: Any, **kwargs: Any) -> int:
        nonlocal slices
        slices += 1
        if slices == 4:
            raise RuntimeError("the fourth micro-batch's write failed")
        return real(batch, **kwargs)

    proc._process = fourth_fails  # type: ignore[method-assign]  # noqa: SLF001
    with pytest.raises(RuntimeError):
        proc.step(timeout=1.0)  # one haul of 64 bundles: the fourth of its micro-batches fails
    saved = proc.store.load_checkpoint(tenant_id, 0)
    assert saved is not None and 2 * settings.batch_max_events <= saved.events < len(records)
    assert proc.progress.events == saved.events  # back at the checkpoint taken inside the haul
    proc._process = real  # type: ignore[method-assign]  # noqa: SLF001
    drive(proc, len(records))
    assert state_on_hand(proc.state) == truth_on_hand(events)
    proc.close()
