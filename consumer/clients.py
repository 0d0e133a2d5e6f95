"""librdkafka configurations of the consumer's Kafka clients, and the start-up topic check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from consumer.logs import kafka_logger
from consumer.settings import Settings


class StartupError(Exception):
    """The service cannot start (broker unreachable, topics missing); the message says why."""


def _common(settings: Settings) -> dict[str, Any]:
    # User pass-through first, so the service's own guarantees below always win.
    return {
        "client.id": settings.client_id,
        **settings.kafka,
        **security_config(settings),
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": kafka_logger(),
    }


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Consumer settings: manual offset commits only after the batch's output is acknowledged.

    ``enable.auto.commit`` is off (committing before inference can lose messages on a
    crash), assignment is cooperative-sticky so a rebalance does not stop every partition,
    and with exactly-once the consumer reads only committed transactional data.
    """
    config = {
        "auto.offset.reset": settings.auto_offset_reset,
        "enable.partition.eof": False,
        "queued.max.messages.kbytes": 16384,  # prefetch bound per partition queue: 16 MiB
        **_common(settings),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed" if settings.exactly_once else "read_uncommitted",
    }
    if settings.group_instance_id:  # static membership (KIP-345): see Settings.group_instance_id
        config["group.instance.id"] = settings.group_instance_id
    if settings.stats_interval_ms:
        config["statistics.interval.ms"] = settings.stats_interval_ms
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    """Producer settings: idempotent, ``acks=all``; transactional with exactly-once.

    ``delivery.timeout.ms`` equals the flush timeout, so every record gets its delivery
    report (success or failure) before the service gives up waiting.
    """
    config = {
        "linger.ms": 5,
        "compression.type": "lz4",
        **_common(settings),
        "acks": "all",
        "enable.idempotence": True,
        "delivery.timeout.ms": int(settings.flush_timeout_s * 1000),
    }
    if settings.exactly_once:
        config["transactional.id"] = settings.effective_transactional_id
        # librdkafka requires message.timeout.ms <= transaction.timeout.ms. A restart with the
        # same transactional.id fences and aborts a dead instance's transaction at once.
        config.setdefault("transaction.timeout.ms", config["delivery.timeout.ms"])
    return config


def operator_producer_config(settings: Settings) -> dict[str, Any]:
    """An idempotent, never transactional producer for the operator commands.

    ``consumer.skip`` and ``consumer.replay`` run beside (or between runs of) the service;
    its transactional id would fence the service's producer.
    """
    return producer_config(settings.model_copy(update={"exactly_once": False}))


def reader_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer for the operator readers that ``assign()`` partitions themselves.

    ``consumer.replay``, ``consumer.export_feedback`` and the feedback join read topics
    beside the service: committed transactional data only (``read_committed``), no
    automatic commits, no statistics, and never the service's static membership.

    Args:
        settings: The service's settings (brokers, security, ``--kafka`` properties).
        group_id: The reader's own ``group.id`` (librdkafka needs one even when offsets are
            never committed); never the service's group.
    """
    config = {
        **consumer_config(settings),
        "group.id": group_id,
        "statistics.interval.ms": 0,
        "isolation.level": "read_committed",  # never an aborted transaction's record
    }
    config.pop("group.instance.id", None)
    return config


class ReadStalledError(Exception):
    """A reader got no record for too long before reaching the end offsets it wanted."""


def topic_partitions(consumer: Any, topic: str, timeout_s: float) -> list[int] | None:
    """The partition ids of ``topic``, sorted, or ``None`` when the topic does not exist.

    Raises:
        confluent_kafka.KafkaException: no metadata within ``timeout_s`` (broker unreachable).
    """
    info = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        return None
    return sorted(info.partitions)


def read_to_ends(
    consumer: Any, topic: str, ends: dict[int, int], timeout_s: float
) -> Iterator[Any]:
    """The records of an assigned ``topic`` up to ``ends`` (partition → end offset, exclusive).

    A partition is done when the consumer's position reaches its end offset, so the
    invisible control records of a transactional topic (exactly-once) end it too. Records
    with an error are skipped.

    Raises:
        ReadStalledError: no records for ``timeout_s`` (e.g. a transaction left open).
    """
    from confluent_kafka import TopicPartition

    remaining = dict(ends)
    last_progress = time.monotonic()
    while remaining:
        for message in consumer.consume(500, 0.5):
            if message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            end = remaining.get(partition)
            if end is None or offset >= end:
                continue
            last_progress = time.monotonic()
            yield message
        positions = consumer.position([TopicPartition(topic, p) for p in remaining])
        for tp in positions:
            if tp.offset >= remaining[tp.partition]:
                del remaining[tp.partition]
        if remaining and time.monotonic() - last_progress > timeout_s:
            raise ReadStalledError(
                f"no records of {topic!r} for {timeout_s} s; still to read: {remaining}"
            )


def admin_config(settings: Settings) -> dict[str, Any]:
    """Admin client settings (topic checks and creation at start-up)."""
    return _common(settings)


# -- secured clusters: credentials, and refusals seen at start-up (issue 13) ---------------

#: Slices (s) of the start-up metadata request; refused credentials are looked for between.
METADATA_SLICE_S = 1.0


def security_config(settings: Settings) -> dict[str, str]:
    """The librdkafka properties of the security settings (``kafka_sasl_*`` and co.).

    The password is in clear here, for librdkafka only.
    """
    config: dict[str, str] = {}
    if settings.kafka_security_protocol is not None:
        config["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username is not None:
        config["sasl.username"] = settings.kafka_sasl_username
    secret = settings.kafka_sasl_secret
    if secret is not None:
        config["sasl.password"] = secret.get_secret_value()
    if settings.kafka_ssl_ca_location is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def _refusal(settings: Settings, errors: list[Any]) -> str | None:
    """Why the brokers refuse this client for good (SASL login or TLS handshake), if they do."""
    from confluent_kafka import KafkaError

    where = f"Kafka at {settings.bootstrap_servers}"
    for error in errors:
        if error.code() == KafkaError._AUTHENTICATION:
            mechanism = settings.kafka_sasl_mechanism or settings.kafka.get(
                "sasl.mechanism", settings.kafka.get("sasl.mechanisms", "(none set)")
            )
            user = settings.kafka_sasl_username or settings.kafka.get("sasl.username")
            return (
                f"{where} refused the SASL login of user {user!r} with mechanism {mechanism} "
                f"({error.str()}); check CLASSIFIER_KAFKA_SASL_USERNAME, the password "
                "(CLASSIFIER_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file), "
                "--kafka-sasl-mechanism and --kafka-security-protocol"
            )
        if error.code() == KafkaError._SSL:
            return (
                f"the TLS handshake with {where} failed ({error.str()}); check "
                "--kafka-ssl-ca-location and that the brokers' certificates name the host used"
            )
    return None


def _list_topics(admin: Any, errors: list[Any], settings: Settings, timeout_s: float) -> Any:
    """The cluster metadata, or a :class:`StartupError` as soon as the brokers refuse us.

    librdkafka reports a refused SASL login (``_AUTHENTICATION``) or TLS handshake (``_SSL``)
    only to the error callback, and retries for ever: the request is made in slices, and the
    callback's ``errors`` looked at between them.

    Raises:
        StartupError: the brokers refused the credentials or the TLS handshake.
        confluent_kafka.KafkaException: no metadata within ``timeout_s``.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        slice_s = max(0.1, min(METADATA_SLICE_S, deadline - time.monotonic()))
        try:
            return admin.list_topics(timeout=slice_s)
        except KafkaException:
            admin.poll(0.1)  # serves the error callback
            refusal = _refusal(settings, errors)
            if refusal is not None:
                raise StartupError(refusal) from None
            if time.monotonic() >= deadline:
                raise


def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Check that the service's topics exist (input, outputs, labels), creating them if asked.

    Raises:
        StartupError: the broker does not answer within ``timeout_s``, refuses the SASL
            login or TLS handshake, or a topic is missing and ``create_topics`` is off, or
            creating a topic failed.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    errors: list[KafkaError] = []
    config = admin_config(settings)
    config["error_cb"] = errors.append
    admin = AdminClient(config)
    wanted = [settings.input_topic, settings.output_topic, settings.dead_letter_topic]
    if settings.review_topic:
        wanted.append(settings.review_topic)
    if settings.shadow_topic:
        wanted.append(settings.shadow_topic)
    if settings.labels_topic:
        wanted.append(settings.labels_topic)
    try:
        existing = set(_list_topics(admin, errors, settings, timeout_s).topics)
    except KafkaException as exc:
        raise StartupError(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {timeout_s:.0f} s ({exc}); "
            "check CLASSIFIER_BOOTSTRAP_SERVERS / --bootstrap-servers"
        ) from exc
    missing = [t for t in dict.fromkeys(wanted) if t not in existing]
    if not missing:
        return
    if not settings.create_topics:
        raise StartupError(
            f"topics {missing} do not exist on {settings.bootstrap_servers}; create them or "
            "start with --create-topics (CLASSIFIER_CREATE_TOPICS=true)"
        )
    futures = admin.create_topics(
        [
            NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
            for t in missing
        ],
        operation_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StartupError(f"cannot create topic {topic!r}: {exc}") from exc
