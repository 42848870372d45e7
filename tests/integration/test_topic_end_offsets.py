"""TopicAdmin.end_offsets against the real broker: the offset after each partition's last
record, whatever the record batches were. The embedded broker lists a partition's offset as the
base offset of its last written batch + 1, so the bench once counted 59 967 records on the topic
for 60 000 events accepted, every one of which a consumer read back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import wait

import pytest
from confluent_kafka import KafkaException

from aurora_ray.adapters.kafka import BatchProducer, partition_for

from ._services import PARTITIONS, Services, read_topic, running_services

pytestmark = pytest.mark.integration

ALL = range(PARTITIONS)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("ends")) as svc:
        yield svc


def _per_partition(keys: list[bytes]) -> dict[int, int]:
    counts = dict.fromkeys(ALL, 0)
    for key in keys:
        counts[partition_for(key, PARTITIONS)] += 1
    return counts


def test_end_offsets_count_every_record_of_the_last_batch(services: Services) -> None:
    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    assert services.admin.end_offsets(topic, ALL) == dict.fromkeys(ALL, 0)  # empty

    keys: list[bytes] = []
    # One request's worth, then a small one: each partition's last batch holds a few records.
    for size in (1_000, 7, 333):
        batch = [(f"SKU-{size}-{i}".encode(), b"{}") for i in range(size)]
        services.produce(topic, batch)
        keys.extend(key for key, _ in batch)
        assert services.admin.end_offsets(topic, ALL) == _per_partition(keys), size
    assert sum(services.admin.end_offsets(topic, ALL).values()) == 1_340


def test_end_offsets_after_concurrent_batches_match_what_a_consumer_reads(
    services: Services,
) -> None:
    """The bench's measurement: the ends before and after concurrent batches of 1 000 records
    (the ingest path: one producer of a pool per request) differ by the records produced."""
    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    services.produce(topic, [(f"warm-{i}".encode(), b"{}") for i in range(1_000)])
    before = services.admin.end_offsets(topic, ALL)
    producer = BatchProducer(services.bootstrap, max_producers=4)
    try:
        batches = [
            [(f"b{b}-SKU-{i}".encode(), b"{}") for i in range(1_000 - 37 * b)] for b in range(8)
        ]
        futures = [producer.produce_batch(topic, batch) for batch in batches]
        _, not_done = wait(futures, timeout=60)
        assert not not_done and all(f.result() is None for f in futures)
    finally:
        producer.close()
    after = services.admin.end_offsets(topic, ALL)
    produced = sum(len(batch) for batch in batches)
    assert sum(after.values()) - sum(before.values()) == produced
    assert len(read_topic(services.bootstrap, topic, 1_000 + produced)) == sum(after.values())


def test_end_offsets_fail_loudly_for_a_partition_out_of_reach(services: Services) -> None:
    """A partition the topic does not have is an error, never a silent 0 or a short count."""
    settings = services.settings()
    topic = settings.topic_for(services.new_tenant_topic(settings))
    services.produce(topic, [(b"k", b"{}")])
    with pytest.raises(KafkaException, match="Unknown partition"):
        services.admin.end_offsets(topic, [PARTITIONS + 3], timeout=2.0)
