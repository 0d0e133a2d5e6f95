"""The Confluent Schema Registry wire format end to end: real broker, real registry, real service.

Producers here are written as a user would write them: confluent-kafka's ``SerializingProducer``
(or a plain ``Producer`` with a serializer) and the producer's *own* schema (``news.Article``:
``article_id``, ``body``, ``headline``), mapped onto the service's input with ``--input-fields``.
Outputs are read back with confluent-kafka's stock deserializers, so the tests check what any
reader of the output topics would see. Labels are compared with the offline prediction of the
same bundle on the same document (``title + " " + text``), as the plain-JSON tests do.

The registry is the session's (``schema_registry`` fixture: a local Apicurio Registry unless
``SCHEMA_REGISTRY_URL`` is given; the outage test needs the local one).
"""

from __future__ import annotations

import base64
import functools
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, SerializingProducer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from model import Bundle, load_bundle
from tests.integration.article_pb2 import Article
from tests.integration.conftest import RegistryHandle, TopicFactory
from tests.integration.streaming import (
    REPO_ROOT,
    Collector,
    Output,
    Topics,
    held_out_articles,
    log_events,
    produce,
    start_consumer,
    wait_exit,
    wait_for_log,
)
from tests.net import free_port, http_get, metric_value

#: The producer's own Avro schema (not the service's field names).
ARTICLE_AVRO_V1: dict[str, Any] = {
    "type": "record",
    "name": "Article",
    "namespace": "news",
    "fields": [
        {"name": "article_id", "type": "long"},
        {"name": "body", "type": "string"},
        {"name": "headline", "type": ["null", "string"], "default": None},
    ],
}
#: Its next version: one added optional field with a default (a BACKWARD-compatible change).
ARTICLE_AVRO_V2: dict[str, Any] = {
    **ARTICLE_AVRO_V1,
    "fields": [
        *ARTICLE_AVRO_V1["fields"],
        {"name": "section", "type": ["null", "string"], "default": None},
    ],
}
#: The producer's own JSON Schema: a string id and the text nested under ``content``.
ARTICLE_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Article",
    "type": "object",
    "properties": {
        "uid": {"type": "string"},
        "content": {
            "type": "object",
            "properties": {"body": {"type": "string"}, "headline": {"type": ["string", "null"]}},
            "required": ["body"],
        },
    },
    "required": ["uid", "content"],
}
#: ``--input-fields`` for ``news.Article`` (Avro and Protobuf).
ARTICLE_FIELDS = json.dumps({"id": "article_id", "text": "body", "title": "headline"})
PUBLISHED = REPO_ROOT / "schemas" / "published"
#: Seconds a consumer gets to start (TensorFlow import, model load and warm-up) and finish.
STREAM_TIMEOUT_S = 150.0


# ----------------------------------------------------------------------------- helpers


@functools.cache
def _bundle(bbc_bundle: Path) -> Bundle:
    return load_bundle(bbc_bundle)


@functools.cache
def _held_out(bbc_bundle: Path, bbc_csv: Path) -> list[tuple[str, str, str]]:
    return held_out_articles(bbc_bundle, bbc_csv)


def _articles(bbc_bundle: Path, bbc_csv: Path, start: int, count: int) -> list[dict[str, Any]]:
    """Held-out BBC articles as the producer's records: integer ids, a headline on every other.

    The headline is the article's first six words (BBC texts start with their title), so the
    service's document is ``headline + " " + body`` for those and ``body`` for the rest.
    """
    rows = _held_out(bbc_bundle, bbc_csv)[start : start + count]
    records = []
    for n, (name, text, _) in enumerate(rows):
        number = int(name.removeprefix("bbc-"))
        headline = " ".join(text.split()[:6]) if n % 2 == 0 else None
        records.append({"article_id": number, "body": text, "headline": headline})
    return records


def _offline_labels(bbc_bundle: Path, records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Id (as the service writes it) → the bundle's offline label of the service's document."""
    bundle = _bundle(bbc_bundle)
    documents = [f"{r['headline']} {r['body']}" if r["headline"] else r["body"] for r in records]
    best = bundle.predict_proba(documents).argmax(axis=1)
    return {str(r["article_id"]): bundle.labels[int(j)] for r, j in zip(records, best, strict=True)}


def _new_topics(new_topic: TopicFactory, name: str) -> Topics:
    return Topics(new_topic(name), new_topic(f"{name}-predictions"), new_topic(f"{name}-dlq"))


def _group() -> str:
    return f"classifier-sr-{uuid.uuid4().hex[:8]}"


def _value_context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def _written(
    serializer: Callable[[Any, SerializationContext], bytes | None], value: Any, topic: str
) -> bytes:
    """The bytes ``serializer`` writes for ``value`` on ``topic`` (as a producer would send)."""
    data = serializer(value, _value_context(topic))
    assert data is not None
    return data


def _produce_serialized(
    bootstrap: str,
    topic: str,
    value_serializer: Callable[[Any, SerializationContext], bytes | None],
    records: Sequence[tuple[str, Any]],
) -> None:
    """Produce ``(key, value object)`` with a ``SerializingProducer``, as a producer team would."""
    producer = SerializingProducer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": value_serializer,
        }
    )
    failures: list[str] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "test messages not acknowledged"
    assert not failures, failures
    # Close it now: the value serializer keeps it alive (SerializingProducer hands the
    # serializer its cluster_id method), and its idle connections would outlive the broker.
    producer.close()


class RegistryCollector:
    """Reads the output and dead-letter topics from the beginning, values decoded by a stock
    ``AvroDeserializer`` (what any Avro reader of the service's outputs would run)."""

    def __init__(self, bootstrap: str, topics: Topics, registry_url: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([topics.output, topics.dead_letter])
        self._deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        self.topics = topics
        self.predictions: list[Output] = []
        self.dead_letters: list[Output] = []

    def _output(self, message: Message) -> Output:
        assert message.error() is None, message.error()
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None
        assert partition is not None
        assert offset is not None
        raw = message.value()
        assert isinstance(raw, bytes)
        assert raw[:1] == b"\x00", f"not the wire format: {raw[:40]!r}"
        value = self._deserialize(raw, _value_context(topic))
        assert isinstance(value, dict), value
        return Output(topic, partition, offset, message.key(), value)

    def poll_until(self, done: Callable[[RegistryCollector], bool], timeout_s: float) -> bool:
        """Read until ``done(self)`` is true or ``timeout_s`` passes; returns ``done(self)``."""
        deadline = time.monotonic() + timeout_s
        while not done(self) and time.monotonic() < deadline:
            for message in self._consumer.consume(500, 0.5):
                out = self._output(message)
                (self.predictions if out.topic == self.topics.output else self.dead_letters).append(
                    out
                )
        return done(self)

    def close(self) -> None:
        """Leave the collector's group."""
        self._consumer.close()


def _original_bytes(encoded: dict[str, Any] | None) -> bytes | None:
    """The bytes a dead letter's ``EncodedBytes`` carries."""
    if encoded is None:
        return None
    if encoded["encoding"] == "utf-8":
        return str(encoded["data"]).encode()
    assert encoded["encoding"] == "base64", encoded
    return base64.b64decode(encoded["data"])


def _stop(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM the consumer and check it stopped cleanly."""
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc) == 0, log_path.read_text()[-4000:]


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


def _check_labels(predictions: Sequence[Output], offline: dict[str, str]) -> None:
    """One prediction per input, keyed like it, each with the offline label."""
    per_id = Counter(str(p.value["id"]) for p in predictions)
    assert set(per_id) == set(offline), "every article gets a prediction, and nothing else does"
    assert max(per_id.values()) == 1, [i for i, n in per_id.items() if n > 1]
    for p in predictions:
        assert p.key == str(p.value["id"]).encode(), "the prediction keeps its input's key"
        assert p.value["label"] == offline[p.value["id"]], p.value["id"]


# ----------------------------------------------------------------------------- 1. Avro in, Avro out


def test_avro_in_avro_out_with_hostile_records(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    schema_registry_url: str,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    topics = _new_topics(new_topic, "sr-avro")
    records = _articles(bbc_bundle, bbc_csv, 0, 150)
    offline = _offline_labels(bbc_bundle, records)
    client = SchemaRegistryClient({"url": schema_registry_url})
    serializer = AvroSerializer(client, json.dumps(ARTICLE_AVRO_V1))
    keyed = [(str(r["article_id"]), r) for r in records]

    # The producer's schema id, as its serializer wrote it into the 5-byte header.
    header = _written(serializer, records[0], topics.input)[:5]
    assert header[:1] == b"\x00"
    hostile: dict[bytes, tuple[bytes, str]] = {
        b"bad-unknown-id": (b"\x00" + (999999).to_bytes(4, "big") + b"x", "unknown_schema_id"),
        # A long, then a string length far beyond the payload: no Avro reader can decode it.
        b"bad-payload": (header + b"\x02\xfe\xff\xff\xff\x0fabc", "undecodable_payload"),
        b"bad-magic": (b'{"id":"x","text":"plain json"}', "wrong_magic_byte"),
    }
    # Everything is produced before the consumer starts, so the hostile records share
    # micro-batches with good ones.
    _produce_serialized(kafka_bootstrap, topics.input, serializer, keyed[:75])
    produce(kafka_bootstrap, topics.input, [(k, v) for k, (v, _) in hostile.items()])
    _produce_serialized(kafka_bootstrap, topics.input, serializer, keyed[75:])

    log_path = tmp_path / "consumer.log"
    collector = RegistryCollector(kafka_bootstrap, topics, schema_registry_url)
    try:
        proc = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, _group(), log_path,
            "--input-format", "avro", "--output-format", "avro",
            "--input-fields", ARTICLE_FIELDS,
            "--schema-registry-url", schema_registry_url,
            "--max-batch-size", "64",
        )  # fmt: skip
        complete = collector.poll_until(
            lambda c: len(c.predictions) >= len(records) and len(c.dead_letters) >= len(hostile),
            timeout_s=STREAM_TIMEOUT_S,
        )
        assert complete, (len(collector.predictions), len(collector.dead_letters), _tail(log_path))
        _stop(proc, log_path)
        collector.poll_until(lambda c: False, timeout_s=2)  # anything more would be extra
    finally:
        collector.close()

    _check_labels(collector.predictions, offline)
    for p in collector.predictions:
        assert p.value["source"]["topic"] == topics.input
        assert p.value["top_k"][0]["label"] == p.value["label"]

    assert len(collector.dead_letters) == len(hostile), [d.value for d in collector.dead_letters]
    by_key = {_original_bytes(d.value["key"]): d.value for d in collector.dead_letters}
    assert set(by_key) == set(hostile)
    for key, (value, code) in hostile.items():
        letter = by_key[key]
        assert letter["error_code"] == code, (key, letter)
        assert letter["reason"], letter
        assert _original_bytes(letter["value"]) == value, (key, letter["value"])
        assert letter["source"]["topic"] == topics.input
    events = log_events(log_path)
    assert not [e for e in events if e.get("event") == "dependency_unavailable"]


# ----------------------------------------------------------------------------- 2. JSON Schema in


def test_json_schema_in_json_out(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    schema_registry_url: str,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    topics = _new_topics(new_topic, "sr-jsonschema")
    records = _articles(bbc_bundle, bbc_csv, 150, 60)
    offline = {f"bbc-{i}": label for i, label in _offline_labels(bbc_bundle, records).items()}
    client = SchemaRegistryClient({"url": schema_registry_url})
    serializer = JSONSerializer(json.dumps(ARTICLE_JSON_SCHEMA), client)
    values = [
        (
            f"bbc-{r['article_id']}",
            {
                "uid": f"bbc-{r['article_id']}",
                "content": {"body": r["body"], "headline": r["headline"]},
            },
        )
        for r in records
    ]
    _produce_serialized(kafka_bootstrap, topics.input, serializer, values)

    log_path = tmp_path / "consumer.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        proc = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, _group(), log_path,
            "--input-format", "json-schema",
            "--input-fields", json.dumps(
                {"id": "uid", "text": "content.body", "title": "content.headline"}
            ),
            "--schema-registry-url", schema_registry_url,
        )  # fmt: skip
        complete = collector.poll_until(
            lambda c: len(c.predictions) + len(c.dead_letters) >= len(records),
            timeout_s=STREAM_TIMEOUT_S,
        )
        assert complete, (len(collector.predictions), len(collector.dead_letters), _tail(log_path))
        _stop(proc, log_path)
        collector.poll_until(lambda c: False, timeout_s=2)
    finally:
        collector.close()

    assert not collector.dead_letters, [d.value for d in collector.dead_letters]
    _check_labels(collector.predictions, offline)


# ----------------------------------------------------------------------------- 3. registry outage


def test_registry_outage_mid_stream_loses_nothing(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    schema_registry: RegistryHandle,
    schema_registry_url: str,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    schema_registry.require_local()  # the fixture must own the registry to stop it
    topics = _new_topics(new_topic, "sr-outage")
    first = _articles(bbc_bundle, bbc_csv, 210, 40)
    second = [{**r, "section": "business"} for r in _articles(bbc_bundle, bbc_csv, 250, 40)]
    offline = _offline_labels(bbc_bundle, first + second)
    client = SchemaRegistryClient({"url": schema_registry_url})
    v1 = AvroSerializer(client, json.dumps(ARTICLE_AVRO_V1))
    _produce_serialized(
        kafka_bootstrap, topics.input, v1, [(str(r["article_id"]), r) for r in first]
    )

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "consumer.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        proc = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, _group(), log_path,
            "--input-format", "avro",
            "--input-fields", ARTICLE_FIELDS,
            "--schema-registry-url", schema_registry_url,
            "--schema-registry-retry-max-s", "2",
            "--metrics-port", str(port),
        )  # fmt: skip
        assert collector.poll_until(
            lambda c: len(c.predictions) >= len(first), timeout_s=STREAM_TIMEOUT_S
        ), _tail(log_path)
        assert not collector.dead_letters, [d.value for d in collector.dead_letters]

        # v2, registered and written while the registry is up: the consumer has never seen
        # its id, so it must ask the registry for it.
        v2 = AvroSerializer(client, json.dumps(ARTICLE_AVRO_V2))
        written = [(str(r["article_id"]).encode(), _written(v2, r, topics.input)) for r in second]
        v1_ids = {_written(v1, r, topics.input)[1:5] for r in first}
        v2_ids = {value[1:5] for _, value in written}
        assert len(v1_ids) == len(v2_ids) == 1
        assert v1_ids != v2_ids, "v2 has an id of its own"

        try:  # whatever happens, the registry is started again (start: no-op if it runs)
            schema_registry.stop()
            produce(kafka_bootstrap, topics.input, written)
            assert wait_for_log(
                log_path, lambda e: e.get("event") == "dependency_unavailable", timeout_s=30
            ), _tail(log_path)
            collector.poll_until(lambda c: False, timeout_s=8)
            status, metrics = http_get(f"{base}/metrics")
            ready_status, ready_reason = http_get(f"{base}/readyz")
            live_status, _ = http_get(f"{base}/healthz")
            assert not collector.dead_letters, [d.value for d in collector.dead_letters]
            assert len(collector.predictions) == len(first), "nothing of v2 can be decoded yet"
            assert status == 200
            up = metric_value(metrics, "classifier_dependency_up", dependency="schema_registry")
            assert up == 0.0, metrics
            retries = metric_value(
                metrics, "classifier_dependency_retries_total", dependency="schema_registry"
            )
            assert retries >= 1
            assert ready_status == 503, ready_reason
            assert "schema_registry" in ready_reason
            assert live_status == 200, "waiting for the registry is not being stuck"
            unavailable = [
                e for e in log_events(log_path) if e.get("event") == "dependency_unavailable"
            ]
            assert unavailable[0]["dependency"] == "schema_registry", unavailable[0]
        finally:
            schema_registry.start()

        complete = collector.poll_until(
            lambda c: len(c.predictions) >= len(first) + len(second), timeout_s=90
        )
        assert complete, (len(collector.predictions), _tail(log_path))
        assert wait_for_log(
            log_path, lambda e: e.get("event") == "dependency_available", timeout_s=10
        ), _tail(log_path)
        status, metrics = http_get(f"{base}/metrics")
        assert (
            metric_value(metrics, "classifier_dependency_up", dependency="schema_registry") == 1.0
        )
        ready_status, ready_reason = http_get(f"{base}/readyz")
        assert ready_status == 200, ready_reason
        _stop(proc, log_path)
        collector.poll_until(lambda c: False, timeout_s=2)
    finally:
        collector.close()

    assert not collector.dead_letters, [d.value for d in collector.dead_letters]
    _check_labels(collector.predictions, offline)


# ----------------------------------------------------------------------------- 4. Protobuf


def test_protobuf_in(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    schema_registry_url: str,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    """Protobuf through the service, with the producer's generated class on both sides.

    Apicurio's Confluent API stores a Protobuf schema verbatim: the base64
    ``FileDescriptorProto`` that confluent-kafka's ``ProtobufSerializer`` registers is given
    back as is, which is what its ``ProtobufDeserializer`` asks for (``format=serialized``,
    a parameter Apicurio ignores), so the round trip works. (A schema registered as ``.proto``
    text, e.g. by a Java producer, would be given back as text, which the Python deserializer
    cannot parse.)
    """
    topics = _new_topics(new_topic, "sr-protobuf")
    records = _articles(bbc_bundle, bbc_csv, 290, 40)
    offline = _offline_labels(bbc_bundle, records)
    client = SchemaRegistryClient({"url": schema_registry_url})
    serializer = ProtobufSerializer(Article, client, {"use.deprecated.format": False})
    messages = [
        (
            str(r["article_id"]),
            Article(article_id=r["article_id"], body=r["body"])
            if r["headline"] is None
            else Article(article_id=r["article_id"], body=r["body"], headline=r["headline"]),
        )
        for r in records
    ]
    _produce_serialized(kafka_bootstrap, topics.input, serializer, messages)
    stored = client.get_latest_version(f"{topics.input}-value").schema
    assert stored.schema_type == "PROTOBUF"

    log_path = tmp_path / "consumer.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        proc = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, _group(), log_path,
            "--input-format", "protobuf",
            "--input-protobuf-message", "tests.integration.article_pb2:Article",
            "--input-fields", ARTICLE_FIELDS,
            "--schema-registry-url", schema_registry_url,
        )  # fmt: skip
        complete = collector.poll_until(
            lambda c: len(c.predictions) + len(c.dead_letters) >= len(records),
            timeout_s=STREAM_TIMEOUT_S,
        )
        assert complete, (len(collector.predictions), len(collector.dead_letters), _tail(log_path))
        _stop(proc, log_path)
        collector.poll_until(lambda c: False, timeout_s=2)
    finally:
        collector.close()

    assert not collector.dead_letters, [d.value for d in collector.dead_letters]
    _check_labels(collector.predictions, offline)


# ----------------------------------------------------------------------------- 5. evolution


def test_backward_compatibility_is_enforced_on_the_prediction_schema(
    schema_registry_url: str,
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"evolution-{uuid.uuid4().hex[:12]}-value"
    published = json.loads((PUBLISHED / "prediction.avsc").read_text())
    first_id = client.register_schema(subject, Schema(json.dumps(published), "AVRO"))
    # Apicurio's global default is NONE: the level must be the subject's own.
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    assert client.get_compatibility(subject) == "BACKWARD"

    optional = {
        **published,
        "fields": [
            *published["fields"],
            {"name": "explanation", "type": ["null", "string"], "default": None},
        ],
    }
    required = {
        **published,
        "fields": [*published["fields"], {"name": "explanation", "type": "string"}],
    }

    assert client.test_compatibility(subject, Schema(json.dumps(optional), "AVRO")) is True
    assert client.test_compatibility(subject, Schema(json.dumps(required), "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(required), "AVRO"))
    assert refused.value.http_status_code == 409, refused.value

    second_id = client.register_schema(subject, Schema(json.dumps(optional), "AVRO"))
    assert second_id != first_id
    assert client.get_latest_version(subject).schema_id == second_id
    assert client.get_versions(subject) == [1, 2]


# ----------------------------------------------------------------------------- 6. start-up


def test_refuses_to_start_without_the_registry(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, tmp_path: Path
) -> None:
    topics = _new_topics(new_topic, "sr-noregistry")  # the topics exist: only the registry fails
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"  # nothing listens there
    log_path = tmp_path / "consumer.log"
    began = time.monotonic()
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, _group(), log_path,
        "--output-format", "avro", "--schema-registry-url", url,
    )  # fmt: skip
    assert wait_exit(proc, timeout_s=60) == 2, _tail(log_path)
    assert time.monotonic() - began < 60
    failures = [e for e in log_events(log_path) if e.get("event") == "startup_failed"]
    assert failures, _tail(log_path)
    assert "Schema Registry" in failures[0]["error"], failures[0]
    assert url in failures[0]["error"], failures[0]
