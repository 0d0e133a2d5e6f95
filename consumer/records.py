"""Kafka records as plain data, and their validation into input messages or dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas import DeadLetter, EncodedBytes, ErrorCode, Header, InputMessage, SourceCoordinates

#: ``confluent_kafka.TIMESTAMP_NOT_AVAILABLE``
_TIMESTAMP_NOT_AVAILABLE = 0


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One consumed Kafka record, detached from the client.

    Attributes:
        topic, partition, offset: Source coordinates.
        key, value: Raw bytes (``None`` for a null key / tombstone value).
        headers: ``(name, value)`` pairs in record order.
        timestamp_ms: Record timestamp in ms since the epoch, ``None`` if the broker gave none.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def from_message(cls, message: Any) -> RawRecord:
        """Copy a ``confluent_kafka.Message`` (one without ``error()``)."""
        ts_type, ts = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            headers=tuple(message.headers() or ()),
            timestamp_ms=None if ts_type == _TIMESTAMP_NOT_AVAILABLE else ts,
        )

    @property
    def source(self) -> SourceCoordinates:
        """Topic/partition/offset as the wire model."""
        return SourceCoordinates(topic=self.topic, partition=self.partition, offset=self.offset)

    @property
    def timestamp(self) -> datetime | None:
        """The record timestamp as an aware UTC datetime."""
        if self.timestamp_ms is None:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)


class InvalidRecordError(Exception):
    """A record that cannot be classified; carries the dead-letter error code and reason."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "value"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def parse_input(record: RawRecord) -> InputMessage:
    """Validate a record's value against the input schema.

    Raises:
        InvalidRecordError: null value, bytes that are not UTF-8, invalid JSON, JSON that is not
            an object, or an object that violates :class:`schemas.InputMessage`.
    """
    if record.value is None:
        raise InvalidRecordError(ErrorCode.NULL_VALUE, "message value is null (tombstone)")
    try:
        text = record.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(
            ErrorCode.NOT_UTF8, f"value is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"value is not valid JSON: {exc}"
        raise InvalidRecordError(ErrorCode.INVALID_JSON, reason) from None
    if not isinstance(obj, dict):
        raise InvalidRecordError(
            ErrorCode.NOT_AN_OBJECT, f"value must be a JSON object, got {type(obj).__name__}"
        )
    try:
        return InputMessage.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRecordError(ErrorCode.SCHEMA_VIOLATION, _describe(exc)) from None


def dead_letter(record: RawRecord, code: ErrorCode, reason: str) -> DeadLetter:
    """Build the dead-letter record for ``record``, keeping its exact bytes and headers."""
    return DeadLetter(
        error_code=code,
        reason=reason,
        source=record.source,
        key=None if record.key is None else EncodedBytes.from_bytes(record.key),
        value=None if record.value is None else EncodedBytes.from_bytes(record.value),
        headers=[
            Header(key=k, value=None if v is None else EncodedBytes.from_bytes(v))
            for k, v in record.headers
        ],
        input_timestamp=record.timestamp,
        failed_at=datetime.now(UTC),
    )
