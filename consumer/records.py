"""Kafka records as plain data, and their validation into input messages or dead letters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas import (
    SUPPORTED_SCHEMA_VERSIONS,
    DeadLetter,
    EncodedBytes,
    ErrorCode,
    Header,
    InputMessage,
    SourceCoordinates,
)

#: Default cap on a message's ``text`` in UTF-8 bytes (a long news article is ~20 KB).
DEFAULT_MAX_TEXT_BYTES = 100_000
#: Default cap on the original value copied into a dead-letter record (bytes). Kafka's
#: default ``max.message.bytes`` is 1 MiB and base64 inflates by 4/3, so 512 KiB fits.
DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024

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


def parse_input(record: RawRecord, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> InputMessage:
    """Validate a record's value against the input schema.

    Args:
        record: The consumed record.
        max_text_bytes: Largest accepted ``text`` (and ``title``) in UTF-8 bytes.

    Raises:
        InvalidRecordError: null value, a value or text over the byte limit, bytes that are
            not UTF-8, invalid JSON, JSON that is not an object, an unsupported
            ``schema_version``, or an object that violates :class:`schemas.InputMessage`.
    """
    if record.value is None:
        raise InvalidRecordError(ErrorCode.NULL_VALUE, "message value is null (tombstone)")
    # JSON escaping can at most ~6x a text; refuse absurd values before parsing them.
    if len(record.value) > 6 * max_text_bytes + 65_536:
        raise InvalidRecordError(
            ErrorCode.TEXT_TOO_LARGE,
            f"value is {len(record.value)} bytes; text is limited to {max_text_bytes} bytes",
        )
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
    version = obj.get("schema_version")
    if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidRecordError(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r} is not supported (supported: "
            f"{sorted(SUPPORTED_SCHEMA_VERSIONS)})",
        )
    try:
        message = InputMessage.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRecordError(ErrorCode.SCHEMA_VIOLATION, _describe(exc)) from None
    size = len(message.document.encode("utf-8"))
    if size > max_text_bytes:
        raise InvalidRecordError(
            ErrorCode.TEXT_TOO_LARGE,
            f"title + text is {size} bytes in UTF-8; the limit is {max_text_bytes} bytes",
        )
    return message


def dead_letter(
    record: RawRecord,
    code: ErrorCode,
    reason: str,
    max_value_bytes: int = DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES,
) -> DeadLetter:
    """Build the dead-letter record for ``record``, keeping its exact bytes and headers.

    A value larger than ``max_value_bytes`` is not copied (the record would not fit the
    dead-letter topic); its size, sha256 and source coordinates identify it instead.
    """
    value = record.value
    copied = value is not None and len(value) <= max_value_bytes
    return DeadLetter(
        error_code=code,
        reason=reason,
        source=record.source,
        key=None if record.key is None else EncodedBytes.from_bytes(record.key),
        value=EncodedBytes.from_bytes(value) if copied and value is not None else None,
        value_size=0 if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        headers=[
            Header(key=k, value=None if v is None else EncodedBytes.from_bytes(v))
            for k, v in record.headers
        ],
        input_timestamp=record.timestamp,
        failed_at=datetime.now(UTC),
    )
