"""Smoke test of the broker fixtures: a keyed produce/consume round trip."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

MESSAGES = 10
CONSUME_TIMEOUT_S = 60.0


def _record(msg: Message) -> tuple[bytes, bytes, int, int]:
    """Return (key, value, partition, offset) of a produced or consumed message."""
    key, value, partition, offset = msg.key(), msg.value(), msg.partition(), msg.offset()
    assert key is not None
    assert value is not None
    assert partition is not None
    assert offset is not None
    return key, value, partition, offset


@pytest.mark.timeout(300)
def test_keyed_messages_round_trip_in_order(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("broker-roundtrip", partitions=3)
    sent = [(f"key-{i % 4}".encode(), f"value-{i}".encode()) for i in range(MESSAGES)]

    delivered: list[tuple[bytes, bytes, int, int]] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
            return
        delivered.append(_record(msg))

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for key, value in sent:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still queued after flush"
    assert errors == []
    # Delivery reports come per partition, so compare as sets here and per partition below.
    assert sorted((k, v) for k, v, _, _ in delivered) == sorted(sent)
    partition_of = {value: partition for _, value, partition, _ in delivered}

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"test-broker-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[bytes, bytes, int, int]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(received) < MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append(_record(msg))
    finally:
        consumer.close()

    assert len(received) == MESSAGES, f"got {len(received)} of {MESSAGES} messages"
    # Same records, same partitions and offsets as the producer was told.
    assert sorted(received, key=lambda r: (r[2], r[3])) == sorted(
        delivered, key=lambda r: (r[2], r[3])
    )
    # Per partition, consumption order is production order (offsets increase from 0).
    by_partition: defaultdict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
    for key, value, partition, offset in received:
        by_partition[partition].append((key, value, offset))
    for partition, records in by_partition.items():
        expected = [(k, v) for k, v in sent if partition_of[v] == partition]
        assert [(k, v) for k, v, _ in records] == expected
        assert [offset for _, _, offset in records] == list(range(len(records)))
    # A key always maps to one partition.
    partitions_of_key: defaultdict[bytes, set[int]] = defaultdict(set)
    for key, _, partition, _ in received:
        partitions_of_key[key].add(partition)
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
