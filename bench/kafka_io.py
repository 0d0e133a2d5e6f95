"""The end-to-end stage's Kafka plumbing: a broker, topics, producing, reading predictions.

Used by :mod:`bench.e2e`; every call goes to a real broker (none is mocked). The producers
here share the cores with the consumer being measured, so they are kept cheap (values
serialised up front, a paced loop that wakes at most every :data:`PACED_TICK_S`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

TOPIC_PARTITIONS = 3
#: Longest wait for a local broker to start, or for the consumer to get its partitions (s).
READY_TIMEOUT_S = 180.0


class E2EError(Exception):
    """The end-to-end stage could not run (broker, consumer or missing predictions)."""


# ----------------------------------------------------------------------------- broker


@contextmanager
def broker(bootstrap: str | None, state_root: Path) -> Iterator[str]:
    """Bootstrap servers of a broker to benchmark against.

    ``bootstrap``, else ``$KAFKA_BOOTSTRAP_SERVERS``, else a throw-away local KRaft broker
    (``deploy/local_kafka.py``) on free ports, stopped and wiped afterwards.

    Raises:
        E2EError: the local broker could not start.
    """
    chosen = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if chosen:
        yield chosen
        return
    from deploy import local_kafka

    state_root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="kafka-", dir=state_root))
    port = int(local_kafka.find_free_port_pair())
    print(f"» starting a local Kafka broker on 127.0.0.1:{port} ({state})", file=sys.stderr)
    try:
        started = str(local_kafka.start(port=port, state_dir=state, timeout_s=READY_TIMEOUT_S))
    except local_kafka.LocalKafkaError as exc:
        raise E2EError(f"could not start a local Kafka broker: {exc}") from exc
    try:
        yield started
    finally:
        local_kafka.stop(state_dir=state, wipe=True)


def create_topics(
    bootstrap: str, names: Sequence[str], config: Mapping[str, str] | None = None
) -> None:
    """Create ``names`` with 3 partitions each (topic ``config``) and wait until usable.

    Raises:
        E2EError: creation failed or timed out.
    """
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(
                n, num_partitions=TOPIC_PARTITIONS, replication_factor=1, config=dict(config or {})
            )
            for n in names
        ],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            raise E2EError(f"cannot create topic {name}: {exc}") from exc
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if all(n in topics and len(topics[n].partitions) == TOPIC_PARTITIONS for n in names):
            return
        time.sleep(0.2)
    raise E2EError(f"topics {list(names)} not ready after 30 s")


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete ``names`` (best effort)."""
    from confluent_kafka.admin import AdminClient

    try:  # wait for the answers: a client dropped at once may never send the request
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.delete_topics(list(names), operation_timeout=30)
        for future in futures.values():
            future.result(timeout=30)
    except Exception as exc:  # cleanup must not hide the results
        print(f"warning: could not delete topics {names}: {exc}", file=sys.stderr)


def output_count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` so far (sum of the partitions' high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-wm-{uuid.uuid4().hex}"})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(TOPIC_PARTITIONS)
        )
    finally:
        c.close()


# ----------------------------------------------------------------------------- producing


#: Shortest sleep of the paced producer (s): at 2,000 messages/s it sends ~4 per wake-up
#: instead of waking 2,000 times a second on the cores the consumer is measured on.
PACED_TICK_S = 0.002


def _producer(bootstrap: str, linger_ms: int) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "batch.num.messages": 10_000,
        }
    )


#: Record headers, as confluent-kafka takes them.
Headers = Sequence[tuple[str, bytes]]
#: ``(message id, text) -> record value``.
Encoder = Callable[[str, str], bytes]


def json_value(message_id: str, text: str) -> bytes:
    """The default input value: ``{"id", "text"}`` as UTF-8 JSON."""
    return json.dumps({"id": message_id, "text": text}).encode()


def _produce(producer: Any, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
    while True:
        try:
            if headers:
                producer.produce(topic, value=value, key=key, headers=list(headers))
            else:
                producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(
    bootstrap: str,
    topic: str,
    prefix: str,
    texts: Sequence[str],
    encode: Encoder = json_value,
    headers: Headers = (),
) -> float:
    """Produce ``texts`` as fast as possible (ids ``<prefix>-<i>``) and flush.

    Values are ``{"id", "text"}`` JSON unless ``encode`` makes them; ``headers`` go on each.

    Returns:
        The wall-clock time (``time.time()``) when the last one was acknowledged.

    Raises:
        E2EError: messages still unacknowledged after 120 s.
    """
    producer = _producer(bootstrap, linger_ms=20)
    for i, text in enumerate(texts):
        key = f"{prefix}-{i}"
        _produce(producer, topic, key.encode(), encode(key, text), headers)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise E2EError(f"{prefix}: producer could not deliver within 120 s")
    return time.time()


def produce_paced(
    bootstrap: str,
    topic: str,
    prefix: str,
    texts: Sequence[str],
    rate: float,
    encode: Encoder = json_value,
    headers: Headers = (),
) -> dict[str, float]:
    """Produce ``texts`` at ``rate`` messages/s with librdkafka's default ``linger.ms=5``.

    Values and headers as in :func:`produce_all`.

    Open loop: message ``i`` is due ``i / rate`` s after the start; late ones are sent at
    once, never skipped. The producer shares the cores with the consumer and the broker, so
    it is kept cheap: values are serialised before the clock starts, and the loop wakes at
    most every :data:`PACED_TICK_S` and sends everything due by then (a message's timestamp
    is taken when it is produced, so the tick never counts as consumer latency).

    Returns:
        ``{"seconds": elapsed, "achieved_rate": messages/s}``.
    """
    producer = _producer(bootstrap, linger_ms=5)
    keys = [f"{prefix}-{i}" for i in range(len(texts))]
    records = [(k.encode(), encode(k, t)) for k, t in zip(keys, texts, strict=True)]
    began = time.perf_counter()
    sent = 0
    while sent < len(records):
        due = min(len(records), int((time.perf_counter() - began) * rate) + 1)
        for key, value in records[sent:due]:
            _produce(producer, topic, key, value, headers)
        sent = max(sent, due)
        producer.poll(0)
        if sent < len(records):
            wait = began + sent / rate - time.perf_counter()
            time.sleep(max(wait, PACED_TICK_S))
    elapsed = time.perf_counter() - began
    producer.flush(120)
    return {"seconds": elapsed, "achieved_rate": len(records) / max(elapsed, 1e-9)}


# ----------------------------------------------------------------------------- reading


def wait_for(bootstrap: str, topic: str, count: int, timeout_s: float) -> None:
    """Wait until ``topic`` holds at least ``count`` records.

    Raises:
        E2EError: fewer after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    have = 0
    while time.monotonic() < deadline:
        have = output_count(bootstrap, topic)
        if have >= count:
            return
        time.sleep(0.5)
    raise E2EError(f"{topic}: {have} of {count} records after {timeout_s:.0f} s")


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


#: An output record's value → the prediction as JSON-ready values (timestamps as strings).
Decoder = Callable[[bytes], dict[str, Any]]


def read_predictions(
    bootstrap: str, topic: str, count: int, decode: Decoder = json.loads
) -> dict[str, dict[str, float]]:
    """Read ``count`` records of ``topic`` from the start (values read by ``decode``).

    Returns:
        Per prediction id (the first copy wins): ``produced`` and ``input`` as epoch
        seconds and the consumer's ``latency_ms``.
    """
    from confluent_kafka import Consumer

    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([topic])
    out: dict[str, dict[str, float]] = {}
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while seen < count and time.monotonic() < deadline:
            for m in reader.consume(5000, 1.0):
                if m.error() is not None or m.value() is None:
                    continue
                seen += 1
                pred = decode(m.value() or b"{}")
                if pred["id"] in out:
                    continue
                out[pred["id"]] = {
                    "produced": _timestamp(pred["produced_at"]),
                    "input": _timestamp(pred["input_timestamp"])
                    if pred.get("input_timestamp")
                    else float("nan"),
                    "latency_ms": float(pred.get("latency_ms", float("nan"))),
                }
    finally:
        reader.close()
    return out
