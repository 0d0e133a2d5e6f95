"""Input decoders: one record's value → :class:`schemas.InputMessage`, per input format.

* :class:`JsonInput` — UTF-8 JSON (:func:`consumer.parsing.parse_input`'s checks);
* :class:`RegistryInput` — the Confluent Schema Registry wire format (magic byte ``0`` and a
  4-byte big-endian schema id, or magic byte ``1`` and a 16-byte schema GUID, then the
  payload; or the id in the ``__value_schema_id`` header), decoded by confluent-kafka's
  own ``AvroDeserializer``, ``JSONDeserializer`` or ``ProtobufDeserializer``, which fetch the
  writer schema by id once and cache it.

Every decoder applies the same caps before decoding (``max_value_bytes``; JSON depth for
the JSON payloads), picks the fields (:class:`consumer.field_map.FieldMap`) and validates
them with :func:`consumer.parsing.validate_input`. A decoder raises
:class:`~consumer.isolation.InvalidRecordError` for a bad record and
:class:`~consumer.isolation.DependencyUnavailableError` when the registry is unreachable
(:func:`consumer.registry.classify_failure`); the per-record guard turns the first into a
dead letter and passes the second on, so the micro-batch is retried.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from consumer.field_map import FieldMap
from consumer.isolation import InvalidRecordError
from consumer.parsing import (
    RecordLimits,
    check_depth,
    check_value_size,
    parse_input,
    validate_input,
)
from consumer.records import RawRecord
from consumer.registry import classify_failure, subject_name_strategy
from consumer.settings import Settings
from schemas import ErrorCode, InputMessage

#: Header carrying the value's schema id instead of its prefix (confluent-kafka 2.10+).
VALUE_SCHEMA_ID_HEADER = "__value_schema_id"
#: Length of the wire-format header per magic byte: 1 + 4-byte id, or 1 + 16-byte GUID.
_HEADER_BYTES = {0: 5, 1: 17}


class InputDecoder(Protocol):
    """Decodes and validates one record's value (see the module docstring)."""

    def __call__(self, record: RawRecord) -> InputMessage:
        """The record's input message.

        Raises:
            InvalidRecordError: the record cannot be classified (its dead-letter code).
            DependencyUnavailableError: the Schema Registry could not be asked.
        """
        ...


class JsonInput:
    """UTF-8 JSON values (the default input format).

    Args:
        limits: Size and depth caps.
        fields: Where the input fields are (default: their own names).
    """

    def __init__(self, limits: RecordLimits | None = None, fields: FieldMap | None = None):
        self.limits = limits or RecordLimits()
        self.fields = fields or FieldMap({})

    def __call__(self, record: RawRecord) -> InputMessage:
        """See :class:`InputDecoder`; the codes of :func:`consumer.parsing.parse_input`."""
        return parse_input(record.value, self.limits, self.fields)


class RegistryInput:
    """Schema Registry wire-format values, decoded by a confluent-kafka deserializer.

    Args:
        deserialize: ``(value, SerializationContext) → decoded value`` (a deserializer).
        limits: Size caps (and the depth cap when ``json_payload``).
        fields: Where the input fields are in the decoded record.
        to_dict: Turns the deserializer's result into a dict (Protobuf messages).
        json_payload: The payload is JSON (JSON Schema): its depth is capped before parsing.
    """

    def __init__(
        self,
        deserialize: Callable[[bytes, Any], object],
        limits: RecordLimits,
        fields: FieldMap,
        to_dict: Callable[[Any], object] | None = None,
        json_payload: bool = False,
    ) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self._deserialize = deserialize
        self.limits = limits
        self.fields = fields
        self._to_dict = to_dict
        self._json_payload = json_payload
        self._context = SerializationContext
        self._value_field = MessageField.VALUE

    def __call__(self, record: RawRecord) -> InputMessage:
        """See :class:`InputDecoder`.

        Raises:
            InvalidRecordError: also ``wrong_magic_byte``, ``unknown_schema_id`` and
                ``undecodable_payload``.
        """
        value = check_value_size(record.value, self.limits)
        in_header = any(name == VALUE_SCHEMA_ID_HEADER for name, _ in record.headers)
        header = 0 if in_header else check_framing(value)
        if self._json_payload:
            check_depth(value[header:], self.limits.max_json_depth)
        ctx = self._context(record.topic, self._value_field, list(record.headers) or None)
        try:
            decoded = self._deserialize(value, ctx)
            if self._to_dict is not None:
                decoded = self._to_dict(decoded)
        except Exception as exc:
            raise classify_failure(exc) from None
        return validate_input(self.fields.apply(decoded), self.limits, self.fields.sources)


def check_framing(value: bytes) -> int:
    """The length of ``value``'s wire-format header (5, or 17 for a GUID).

    Raises:
        InvalidRecordError: ``wrong_magic_byte``: the first byte is not a magic byte, or
            nothing follows the header.
    """
    magic = value[0] if value else None
    if magic not in _HEADER_BYTES:
        first = "the value is empty" if magic is None else f"its first byte is 0x{magic:02x}"
        raise InvalidRecordError(
            ErrorCode.WRONG_MAGIC_BYTE,
            f"not the Confluent Schema Registry wire format: {first}, not the magic byte 0 "
            "(was it produced with a Schema Registry serializer?)",
        )
    header = _HEADER_BYTES[magic]
    if len(value) <= header:
        raise InvalidRecordError(
            ErrorCode.WRONG_MAGIC_BYTE,
            f"the value is {len(value)} bytes: nothing follows its {header}-byte "
            "wire-format header",
        )
    return header


def input_decoder(settings: Settings, client: Any | None) -> InputDecoder:
    """The decoder of ``settings.input_format`` (``client``: the registry, unless json).

    Raises:
        ValueError: the Protobuf message class cannot be imported (the message says why).
    """
    limits, fields = settings.record_limits, settings.input_field_map
    if settings.input_format == "json":
        return JsonInput(limits, fields)
    strategy = subject_name_strategy(settings.schema_registry_subject_name_strategy)
    conf = {"subject.name.strategy": strategy}
    if settings.input_format == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        return RegistryInput(AvroDeserializer(client, conf=conf), limits, fields)
    if settings.input_format == "json-schema":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        deserializer = JSONDeserializer(None, schema_registry_client=client, conf=conf)
        return RegistryInput(deserializer, limits, fields, json_payload=True)
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from google.protobuf.json_format import MessageToDict

    message_type = protobuf_message_class(settings.input_protobuf_message or "")
    deserializer = ProtobufDeserializer(message_type, conf=conf, schema_registry_client=client)

    def to_dict(message: Any) -> object:
        return MessageToDict(message, preserving_proto_field_name=True)

    return RegistryInput(deserializer, limits, fields, to_dict=to_dict)


def protobuf_message_class(spec: str) -> type[Any]:
    """Import ``'module:Class'``, a generated Protobuf message class.

    Raises:
        ValueError: the module or class is missing, or it is not a Protobuf message.
    """
    from google.protobuf.message import Message

    module_name, _, class_name = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in class_name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"input_protobuf_message {spec!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Message)):
        raise ValueError(f"input_protobuf_message {spec!r} is not a Protobuf message class")
    return found
