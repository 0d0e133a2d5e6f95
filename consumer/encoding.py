"""Output encoders: a prediction or dead letter → the bytes produced, per output format.

* :class:`JsonOutput` — UTF-8 JSON (the default): the bytes of
  ``Prediction(...).model_dump_json()`` and ``DeadLetter.model_dump_json()``;
* :class:`RegistryOutput` — Avro or JSON Schema in the Confluent wire format, written by
  confluent-kafka's ``AvroSerializer`` / ``JSONSerializer`` with the published schemas
  (:mod:`schemas.published`). :func:`output_encoder` registers them at start-up (or looks
  them up, without auto-registration) under the configured subject-name strategy, sets the
  subjects' compatibility level, and writes one sample of each, so that the serializers
  have their schema ids cached and the hot path never calls the registry.

A review-topic record reuses its prediction's bytes: the schema id inside resolves from any
subject, and the schema is registered under the review topic's subject too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog

from consumer.format_settings import WireFormatSettings
from consumer.registry import RegistryStartupError, describe_failure, subject_name_strategy
from schemas import DeadLetter, ErrorCode, SourceCoordinates
from schemas.avro import NAMESPACE
from schemas.prediction_json import prediction_record, record_json
from schemas.published import Kind, SchemaFormat, published_schema


class OutputEncoder(Protocol):
    """Writes output values (see the module docstring)."""

    def prediction(self, record: dict[str, Any], topic: str) -> bytes:
        """The value of a :func:`schemas.prediction_json.prediction_record` for ``topic``.

        Raises:
            Exception: the record cannot be written (the caller dead-letters its input).
        """
        ...

    def dead_letter(self, letter: DeadLetter, topic: str) -> bytes:
        """The value of ``letter`` for ``topic``.

        Raises:
            Exception: the letter cannot be written (the caller writes a minimal one).
        """
        ...


class JsonOutput:
    """UTF-8 JSON output values (the default)."""

    def prediction(self, record: dict[str, Any], topic: str) -> bytes:
        """See :class:`OutputEncoder`."""
        return record_json(record)

    def dead_letter(self, letter: DeadLetter, topic: str) -> bytes:
        """See :class:`OutputEncoder`."""
        return letter.model_dump_json().encode()


#: The default encoder (stateless).
JSON_OUTPUT = JsonOutput()


class RegistryOutput:
    """Avro or JSON Schema output values in the Confluent wire format.

    Args:
        serializers: Per output kind, ``(value dict, SerializationContext) → bytes``.
        json_values: Write datetimes as RFC 3339 strings (JSON Schema) instead of
            ``datetime`` (Avro ``timestamp-micros``).
    """

    def __init__(
        self, serializers: dict[Kind, Callable[[Any, Any], bytes | None]], json_values: bool
    ) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self._serializers = serializers
        self._json_values = json_values
        self._context = SerializationContext
        self._value_field = MessageField.VALUE

    def prediction(self, record: dict[str, Any], topic: str) -> bytes:
        """See :class:`OutputEncoder`."""
        value = orjson.loads(record_json(record)) if self._json_values else record
        return self._write("prediction", value, topic)

    def dead_letter(self, letter: DeadLetter, topic: str) -> bytes:
        """See :class:`OutputEncoder`."""
        value = letter.model_dump(mode="json" if self._json_values else "python")
        return self._write("dead_letter", value, topic)

    def _write(self, kind: Kind, value: dict[str, Any], topic: str) -> bytes:
        written = self._serializers[kind](value, self._context(topic, self._value_field))
        if written is None:  # only for a None value, which is never passed
            raise ValueError("the serializer wrote nothing")
        return written


def record_name(kind: Kind, schema_format: SchemaFormat) -> str:
    """The record name the subject-name strategies see (Avro: full name; JSON: title)."""
    name = "Prediction" if kind == "prediction" else "DeadLetter"
    return f"{NAMESPACE}.{name}" if schema_format == "avro" else name


def output_encoder(
    settings: WireFormatSettings, client: Any, outputs: dict[str, Kind]
) -> OutputEncoder:
    """The encoder of ``settings.output_format``, its schemas registered and cached.

    Args:
        settings: The format and registry settings.
        client: The ``SchemaRegistryClient`` (ignored for json).
        outputs: Output topic → what it carries (``prediction`` / ``dead_letter``).

    Raises:
        RegistryStartupError: the registry is unreachable, refuses the credentials or a
            schema (e.g. incompatible with the subject's latest version), or (without
            auto-registration) a schema is not registered.
    """
    if settings.output_format == "json":
        return JSON_OUTPUT
    schema_format: SchemaFormat = settings.output_format
    strategy = subject_name_strategy(settings.schema_registry_subject_name_strategy)
    conf: dict[str, Any] = {
        "auto.register.schemas": settings.schema_registry_auto_register,
        "subject.name.strategy": strategy,
    }
    serializers: dict[Kind, Callable[[Any, Any], bytes | None]] = {}
    for kind in ("prediction", "dead_letter"):
        text = published_schema(kind, schema_format)
        if schema_format == "avro":
            from confluent_kafka.schema_registry.avro import AvroSerializer

            serializers[kind] = AvroSerializer(client, text, conf=conf)
        else:
            from confluent_kafka.schema_registry.json_schema import JSONSerializer

            # No per-record validation of our own values (1.3 ms a prediction measured): they
            # are built from the same pydantic models the schema is generated from, which
            # tests/unit/test_published_schemas.py checks against the schema.
            serializers[kind] = JSONSerializer(text, client, conf={**conf, "validate": False})
    encoder = RegistryOutput(serializers, json_values=schema_format == "json-schema")
    log = structlog.get_logger("consumer")
    from confluent_kafka.serialization import MessageField, SerializationContext

    for topic, kind in outputs.items():
        subject = strategy(
            SerializationContext(topic, MessageField.VALUE), record_name(kind, schema_format)
        )
        level = settings.schema_registry_compatibility
        try:
            if level != "KEEP" and subject is not None:
                _set_compatibility(client, subject, level)
            if kind == "prediction":
                encoder.prediction(_sample_prediction(), topic)
            else:
                encoder.dead_letter(_sample_dead_letter(), topic)
        except Exception as exc:
            raise RegistryStartupError(
                f"Schema Registry: the {schema_format} {kind} schema under subject "
                f"{subject!r}: {describe_failure(exc)}"
            ) from None
        log.info(
            "output_schema_ready",
            topic=topic,
            subject=subject,
            format=schema_format,
            compatibility=level,
        )
    return encoder


def _set_compatibility(client: Any, subject: str, level: str) -> None:
    client.set_compatibility(subject_name=subject, level=level)


def _sample_prediction() -> dict[str, Any]:
    now = datetime.now(UTC)
    return prediction_record("sample", [("label", 1.0)], "v", now, 0.0, False, "t", 0, 0, now)


def _sample_dead_letter() -> DeadLetter:
    return DeadLetter(
        error_code=ErrorCode.UNPROCESSABLE,
        reason="sample",
        source=SourceCoordinates(topic="t", partition=0, offset=0),
        key=None,
        value=None,
        failed_at=datetime.now(UTC),
    )
