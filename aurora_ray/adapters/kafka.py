"""Kafka adapter (confluent-kafka): topics, a batch producer that waits for acks, shard consumers.

The producer is idempotent with ``acks=all``. :meth:`BatchProducer.produce_batch` returns only once
the broker acknowledged every record of the batch, or raises naming the first failure; a background
thread serves delivery reports so that concurrent requests share one producer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

__all__ = [
    "BatchProducer",
    "BulkProducer",
    "DeliveryError",
    "TopicAdmin",
    "consumer_config",
    "make_consumer",
]


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a record."""


def consumer_config(bootstrap: str, group_id: str) -> dict[str, Any]:
    # The three fetch settings lift consumption ~3.8x on a small machine (no idle back-off).
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": 0,
        "queued.min.messages": 1_000_000,
        "queued.max.messages.kbytes": 262_144,
        "enable.partition.eof": False,
    }


def make_consumer(bootstrap: str, group_id: str) -> Consumer:
    return Consumer(consumer_config(bootstrap, group_id))


class TopicAdmin:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def topics(self, timeout: float = 5.0) -> dict[str, int]:
        """Topic name -> partition count."""
        metadata = self.admin.list_topics(timeout=timeout)
        return {name: len(t.partitions) for name, t in metadata.topics.items() if not t.error}

    def ensure_topic(
        self, topic: str, partitions: int, *, replication: int = 1, timeout: float = 10.0
    ) -> bool:
        """Create ``topic`` if missing; True when it was created."""
        if topic in self.topics(timeout):
            return False
        futures = self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication)]
        )
        try:
            futures[topic].result(timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise
        deadline = time.monotonic() + timeout
        while topic not in self.topics(timeout) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        consumer = make_consumer(self.bootstrap, "aurora-admin")
        try:
            out = {}
            for p in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                out[p] = int(high)
            return out
        finally:
            consumer.close()


class _Pending:
    __slots__ = ("remaining", "error", "future")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.error: str | None = None
        self.future: Future[None] = Future()


class BatchProducer:
    """One idempotent producer shared by all requests of a process."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 5) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _start(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(
                    {
                        "bootstrap.servers": self.bootstrap,
                        "enable.idempotence": True,
                        "acks": "all",
                        "compression.type": "lz4",
                        "linger.ms": self.linger_ms,
                        "batch.num.messages": 10_000,
                        "queue.buffering.max.messages": 2_000_000,
                        "message.timeout.ms": 30_000,
                    }
                )
                threading.Thread(target=self._poll_loop, name="kafka-delivery", daemon=True).start()
            return self._producer

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            producer = self._producer
            if producer is not None:
                producer.poll(0.05)

    def produce_batch(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> Future[None]:
        """Produce ``(key, value)`` records; the future resolves when all are acknowledged.

        ``headers`` go on every record of the batch (the backfill marks its records so)."""
        producer = self._start()
        pending = _Pending(len(records))
        if not records:
            pending.future.set_result(None)
            return pending.future
        lock = threading.Lock()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            with lock:
                if err is not None and pending.error is None:
                    pending.error = str(err)
                pending.remaining -= 1
                done = pending.remaining == 0
            if done:
                if pending.error:
                    pending.future.set_exception(DeliveryError(pending.error))
                else:
                    pending.future.set_result(None)

        produced = 0
        try:
            for key, value in records:
                while True:
                    try:
                        producer.produce(
                            topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                        )
                        produced += 1
                        break
                    except BufferError:
                        producer.poll(0.01)
        except KafkaException as exc:
            with lock:
                pending.error = pending.error or str(exc)
                pending.remaining -= len(records) - produced
                done = pending.remaining == 0
            if done:
                pending.future.set_exception(DeliveryError(pending.error))
        return pending.future

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout) if self._producer is not None else 0

    def close(self) -> None:
        self.flush()
        self._closed.set()


class BulkProducer:
    """An idempotent producer for bulk jobs (the backfill): librdkafka reports deliveries only
    for failures, so no Python callback runs per record (the notes measured 520 K records/s
    against 328 K with one); :meth:`produce_all` returns once every record is acknowledged."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 20) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self._producer: Producer | None = None
        self._errors: list[str] = []

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "compression.type": "lz4",
                    "linger.ms": self.linger_ms,
                    "batch.num.messages": 10_000,
                    "queue.buffering.max.messages": 2_000_000,
                    "queue.buffering.max.kbytes": 262_144,  # 256 MB in flight, not 1 GB
                    "message.timeout.ms": 120_000,
                    "delivery.report.only.error": True,
                    "on_delivery": self._failed,
                }
            )
        return self._producer

    def _failed(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def produce_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timeout: float = 300.0,
    ) -> None:
        """Produce and wait for every acknowledgement; raises :class:`DeliveryError` otherwise."""
        producer = self.producer
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        remaining = producer.flush(timeout)
        if self._errors:
            raise DeliveryError(f"{len(self._errors)} record(s) failed, first: {self._errors[0]}")
        if remaining:
            raise DeliveryError(f"{remaining} record(s) not acknowledged within {timeout:.0f} s")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10.0)
