"""BatchProducer against the real broker: a batch's future resolves only once every record of
it is on the topic, concurrent batches each get their own answer, and a refused record
fails the batch instead of answering success."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest

from aurora_ray.adapters.kafka import BatchProducer, DeliveryError

from ._services import PARTITIONS, Services, read_topic, running_services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("producer")) as svc:
        yield svc


def test_concurrent_batches_resolve_after_all_their_records(
    services: Services, tmp_path: Path
) -> None:
    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    producer = BatchProducer(services.bootstrap, max_producers=3)
    try:
        batches = [
            [(f"k{b}-{i % 7}".encode(), f"b{b}-r{i}".encode()) for i in range(1_000)]
            for b in range(12)
        ]
        futures = [producer.produce_batch(topic, batch) for batch in batches]
        done, not_done = wait(futures, timeout=60)
        assert not not_done
        assert all(f.result() is None for f in futures)
        assert len(producer._idle) <= 3  # noqa: SLF001 - the pool stays bounded
    finally:
        producer.close()
    records = read_topic(services.bootstrap, topic, 12_000, partitions=PARTITIONS)
    assert sorted(v for _, v in records) == sorted(v for batch in batches for _, v in batch)


def test_a_batch_with_a_refused_record_fails(services: Services) -> None:
    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    producer = BatchProducer(services.bootstrap)
    try:
        # A record over the client's message.max.bytes (1 MB) is refused: the batch fails.
        future = producer.produce_batch(topic, [(None, b"x")] * 5 + [(None, b"y" * 2_000_000)])
        with pytest.raises(DeliveryError):
            future.result(timeout=60)
        assert producer._idle == []  # noqa: SLF001 - a failed producer is not reused
        assert producer.produce_batch(topic, []).result(1) is None
        assert producer.produce_batch(topic, [(None, b"z")]).result(timeout=60) is None
    finally:
        producer.close()


def test_partition_for_is_where_the_live_producer_puts_a_key(services: Services) -> None:
    """The backfill places its bundles with partition_for: it must agree with librdkafka's
    partitioner, which places the live API's keyed records."""
    from confluent_kafka import TopicPartition

    from aurora_ray.adapters.kafka import make_consumer, partition_for

    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    keys = [f"SKU-{i:05d}@{('DE-HAM', 'FR-PAR', 'ü@x')[i % 3]}".encode() for i in range(600)]
    producer = BatchProducer(services.bootstrap)
    try:
        producer.produce_batch(topic, [(key, b"v") for key in keys]).result(timeout=60)
    finally:
        producer.close()
    consumer = make_consumer(services.bootstrap, "aurora-test-partitions")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    placed: dict[bytes, int] = {}
    try:
        for _ in range(100):
            for message in consumer.consume(1000, timeout=0.2):
                if not message.error():
                    placed[message.key() or b""] = message.partition() or 0
            if len(placed) == len(keys):
                break
    finally:
        consumer.close()
    assert placed == {key: partition_for(key, PARTITIONS) for key in keys}
