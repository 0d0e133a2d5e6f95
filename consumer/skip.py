"""``python -m consumer.skip``: dead-letter one record by hand and move the group past it.

The per-record guard turns every *exception* a record causes into a dead letter. A record
that kills the process natively (a segmentation fault inside a C extension, see
``docs/robustness.md``) raises nothing: the service dies, restarts, reads the same batch and
dies again. This command is the operator's way out, without losing the record:

1. every consumer of the group is stopped (checked: the group must be empty);
2. the record must be the group's next one (its committed offset), so nothing else is
   skipped — run the service with ``--max-batch-size 1 --max-batches-in-flight 1`` until
   it stops on the record (its last ``batch_started`` debug line names it);
3. the record is copied to the dead-letter topic (``skipped_by_operator``, original bytes,
   key, headers and coordinates, like any dead letter) and acknowledged;
4. only then the group's offset is committed past it.

It takes the service's own settings (flags or ``CLASSIFIER_*`` variables: bundle, bootstrap
servers, topics, group, ``--kafka`` security) plus ``--partition`` and ``--offset``::

    python -m consumer.skip --partition 2 --offset 1187 --reason "segfaults in MeCab, JIRA-42"

Exit codes: 0 skipped; 2 refused or failed (the message says why; nothing was committed).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from consumer.clients import admin_config, consumer_config, operator_producer_config
from consumer.encoding import JSON_OUTPUT, OutputEncoder, output_encoder
from consumer.isolation import Rejection
from consumer.records import RawRecord
from consumer.registry import RegistryStartupError, reachable_client
from consumer.settings import Settings
from consumer.steps import render_dead_letter
from schemas import ErrorCode
from schemas.settings import command_settings, parse_command_line


class SkipError(Exception):
    """The record cannot be skipped safely; the message says why and what to do."""


class SkipSettings(Settings):
    """The service's settings plus the record to skip."""

    model_config = command_settings("python -m consumer.skip", "CLASSIFIER_")

    partition: int = Field(ge=0, description="Partition of the input topic holding the record.")
    offset: int = Field(ge=0, description="Offset of the record (the group's next one).")
    reason: str = Field(
        default="skipped by an operator",
        min_length=1,
        description="Why, for the dead letter's reason (e.g. a ticket reference).",
    )


def skip(settings: SkipSettings, timeout_s: float = 30.0) -> str:
    """Dead-letter the record at ``input_topic[partition]@offset`` and commit ``offset + 1``.

    Returns:
        A one-line summary of what was done.

    Raises:
        SkipError: the group has active members, the record is not the group's next one,
            it cannot be read, or its dead letter was not acknowledged.
    """
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    topic, partition, offset = settings.input_topic, settings.partition, settings.offset
    where = f"{topic}[{partition}]@{offset}"
    _require_empty_group(settings, timeout_s)
    config = {**consumer_config(settings), "statistics.interval.ms": 0}
    consumer = Consumer(config)
    try:
        next_offset = _next_offset(consumer, settings, timeout_s)
        if next_offset != offset:
            raise SkipError(
                f"the group {settings.group_id!r} reads {topic}[{partition}] from offset "
                f"{next_offset}, not {offset}: only its next record can be skipped, so nothing "
                "else is. Run the service with --max-batch-size 1 --max-batches-in-flight 1 "
                "until it stops on the record, then run this again"
            )
        record = _read(consumer, TopicPartition(topic, partition, offset), timeout_s)
        letter = render_dead_letter(
            record,
            Rejection.of(ErrorCode.SKIPPED_BY_OPERATOR, settings.reason),
            settings.dead_letter_max_value_bytes,
            _dead_letter_encoder(settings),
            settings.dead_letter_topic,
        )
        _produce_acknowledged(
            Producer(operator_producer_config(settings)), settings, record, letter
        )
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=False
            )
        except KafkaException as exc:
            raise SkipError(
                f"the dead letter of {where} was written, but committing offset {offset + 1} "
                f"failed ({exc}); run this again once every consumer of the group is stopped"
            ) from exc
    finally:
        consumer.close()
    return (
        f"skipped {where}: dead-lettered to {settings.dead_letter_topic!r} "
        f"({len(letter)} bytes), group {settings.group_id!r} now reads from {offset + 1}"
    )


def _dead_letter_encoder(settings: Settings) -> OutputEncoder:
    """The service's output format for dead letters (Avro / JSON Schema: via the registry).

    Raises:
        SkipError: the registry is unreachable or refuses the dead-letter schema.
    """
    if settings.output_format == "json":
        return JSON_OUTPUT
    try:
        client = reachable_client(settings)
        return output_encoder(settings, client, {settings.dead_letter_topic: "dead_letter"})
    except RegistryStartupError as exc:
        raise SkipError(str(exc)) from None


def _require_empty_group(settings: Settings, timeout_s: float) -> None:
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(settings))
    future = admin.describe_consumer_groups([settings.group_id], request_timeout=timeout_s)
    description = future[settings.group_id].result(timeout=timeout_s)
    if description.state not in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD):
        members = len(description.members)
        raise SkipError(
            f"consumer group {settings.group_id!r} is {description.state.name} with "
            f"{members} member(s): stop every consumer of the group first"
        )


def _next_offset(consumer: Any, settings: SkipSettings, timeout_s: float) -> int:
    """The offset the group would read next: its commit, else where auto.offset.reset starts."""
    from confluent_kafka import TopicPartition

    tp = TopicPartition(settings.input_topic, settings.partition)
    (committed,) = consumer.committed([tp], timeout=timeout_s)
    if committed.offset >= 0:
        return int(committed.offset)
    low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
    return int(low if settings.auto_offset_reset == "earliest" else high)


def _read(consumer: Any, tp: Any, timeout_s: float) -> RawRecord:
    import time

    consumer.assign([tp])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            raise SkipError(
                f"cannot read {tp.topic}[{tp.partition}]@{tp.offset}: {message.error()}"
            )
        if message.offset() == tp.offset:
            return RawRecord.from_message(message)
        raise SkipError(
            f"{tp.topic}[{tp.partition}] has no record at offset {tp.offset} (next is "
            f"{message.offset()}: deleted by retention or compaction?)"
        )
    raise SkipError(f"no record at {tp.topic}[{tp.partition}]@{tp.offset} within {timeout_s} s")


def _produce_acknowledged(
    producer: Any, settings: Settings, record: RawRecord, letter: bytes
) -> None:
    failures: list[str] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    producer.produce(
        settings.dead_letter_topic, value=letter, key=record.key, on_delivery=on_delivery
    )
    if producer.flush(settings.flush_timeout_s) or failures:
        raise SkipError(
            f"the dead letter was not acknowledged ({failures or 'timed out'}); nothing committed"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see module docstring)."""
    settings = parse_command_line(SkipSettings, argv)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    try:
        print(skip(settings))
    except SkipError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
