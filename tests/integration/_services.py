"""Real Valkey + Tansu for the in-process tests (no Ray): started once per module, all on
127.0.0.1, plus small helpers to produce to and read from a tenant topic and to drive a
:class:`~aurora_ray.stream.ShardProcessor` to a known number of records.

Use from a test module::

    @pytest.fixture(scope="module")
    def services(tmp_path_factory):
        with running_services(tmp_path_factory.mktemp("svc")) as svc:
            yield svc
"""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from aurora_ray.adapters.kafka import BatchProducer, TopicAdmin, consumer_config, make_consumer
from aurora_ray.embedded import free_port, start_tansu, start_valkey
from aurora_ray.ingest import prepare_ingest
from aurora_ray.settings import Settings
from aurora_ray.stream import ShardProcessor
from aurora_ray.testing import ndjson

__all__ = [
    "Services",
    "closed_port_url",
    "drive",
    "read_topic",
    "records_for",
    "running_services",
    "short_poll_consumer",
]

PARTITIONS = 4


@dataclass
class Services:
    redis_url: str
    bootstrap: str
    data_dir: Path
    producer: BatchProducer
    admin: TopicAdmin

    def settings(self, **overrides: Any) -> Settings:
        """Settings pointing at these servers, every other value at its default in code: no
        ``configs/aurora.yaml`` or ``AURORA_*`` variable of the machine can change the tests."""
        defaults = {
            name: field.get_default(call_default_factory=True)
            for name, field in Settings.model_fields.items()
        }
        values: dict[str, Any] = {
            **defaults,
            "env": "development",
            "data_dir": self.data_dir,
            "redis_url": self.redis_url,
            "kafka_bootstrap": self.bootstrap,
            "partitions_per_topic": PARTITIONS,
            "shards_per_tenant": 1,
            "topic_replication_factor": 1,
            **overrides,
        }
        return Settings(**values)

    def new_tenant_topic(self, settings: Settings) -> str:
        """A fresh tenant id whose topic exists (PARTITIONS partitions)."""
        tenant_id = str(uuid.uuid4())
        self.admin.ensure_topic(settings.topic_for(tenant_id), PARTITIONS)
        return tenant_id

    def produce(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.producer.produce_batch(topic, list(records)).result(timeout=30)


@contextlib.contextmanager
def running_services(data_dir: Path) -> Iterator[Services]:
    valkey = start_valkey(data_dir)
    try:
        tansu = start_tansu(data_dir)
    except BaseException:
        valkey.stop()
        raise
    producer = BatchProducer(tansu.url, linger_ms=1)
    admin = TopicAdmin(tansu.url)
    try:
        yield Services(valkey.url, tansu.url, data_dir, producer, admin)
    finally:
        try:
            producer.close()
            # Drop the librdkafka handles so their connections close before the broker stops
            # (Tansu otherwise takes ~5 s to exit while clients are still connected).
            producer._producer = None
            admin._admin = None
            gc.collect()
        finally:
            tansu.stop()
            valkey.stop()


def closed_port_url() -> str:
    """A redis:// URL on which nothing listens (connections are refused at once)."""
    return f"redis://127.0.0.1:{free_port()}/0"


def short_poll_consumer(settings: Settings, tenant_id: str, shard: int) -> Callable[[], Consumer]:
    """The shard's own consumer configuration (same group id) with a 10 ms fetch long-poll.

    With the default ``fetch.wait.max.ms`` (500 ms) every ``lag()`` refresh of a processor waits
    ~0.5 s per partition behind the consumer's in-flight fetch (about 2 s for 4 partitions, once a
    second while records flow), which would dominate the run time of these tests. Everything
    else of the consumer is as in production; the health/lag test keeps the default factory.
    """

    def factory() -> Consumer:
        config = consumer_config(settings.kafka_bootstrap, f"aurora-{tenant_id}-{shard}")
        return Consumer({**config, "fetch.wait.max.ms": 10})

    return factory


def records_for(
    events: list[dict[str, Any]], tenant_id: str, received_ms: int | None = None
) -> list[tuple[bytes | None, bytes]]:
    """Exactly the topic records POST /v1/ingest/events produces for these envelopes."""
    received = received_ms if received_ms is not None else int(time.time() * 1000)
    return prepare_ingest(ndjson(events), tenant_id=tenant_id, received_ms=received).records


def drive(processor: ShardProcessor, events: int, *, timeout: float = 30.0) -> int:
    """``step()`` until ``progress.events`` reaches ``events`` (bounded by ``timeout``); returns
    the number of steps taken. Fails if more records than expected were consumed."""
    deadline = time.monotonic() + timeout
    steps = 0
    while processor.progress.events < events:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"processed {processor.progress.events} of {events} records in {timeout:.0f} s"
            )
        processor.step(timeout=0.2)
        steps += 1
    assert processor.progress.events == events, (processor.progress.events, events)
    return steps


def read_topic(
    bootstrap: str, topic: str, expected: int, *, partitions: int = PARTITIONS, timeout: float = 20
) -> list[tuple[bytes | None, bytes]]:
    """``(key, value)`` of every record on ``topic``: reads until ``expected`` records arrived
    and then a short quiet period (so that extra records would be seen too)."""
    consumer = make_consumer(bootstrap, f"aurora-test-{uuid.uuid4()}")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[bytes | None, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.2):
                if not message.error():
                    out.append((message.key(), message.value() or b""))
        for message in consumer.consume(1000, timeout=0.5):
            if not message.error():
                out.append((message.key(), message.value() or b""))
    finally:
        consumer.close()
    return out
