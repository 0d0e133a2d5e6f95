"""Kafka records as plain data, and the dead letter of a record that cannot be classified."""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from consumer.isolation import Rejection, describe_exception
from schemas import DeadLetter, EncodedBytes, Header, SourceCoordinates

#: Default cap on the original value copied into a dead-letter record (bytes). Kafka's
#: default ``max.message.bytes`` is 1 MiB and base64 inflates by 4/3, so 512 KiB fits.
DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024

_PYERR_OCCURRED = ctypes.pythonapi.PyErr_Occurred
_PYERR_OCCURRED.argtypes = []
_PYERR_OCCURRED.restype = ctypes.c_void_p


def _raise_pending_error() -> None:
    """Raise the exception a C extension left pending, if any.

    ``ctypes`` checks ``PyErr_Occurred()`` after every call into the Python C API and raises
    what it finds; calling ``PyErr_Occurred`` itself is the cheapest such call (~0.06 µs).
    """
    _PYERR_OCCURRED()


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
        defect: Why the client could not read part of the record (then it is dead-lettered
            as ``unprocessable``), else ``None``.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None
    defect: str | None = None

    @classmethod
    def from_message(cls, message: Any) -> RawRecord:
        """Copy a ``confluent_kafka.Message`` (one without ``error()``); never raises for its bytes.

        Headers are read exactly once: for a header name that is not UTF-8 (a non-Java producer
        such as kcat can write one) confluent-kafka's ``headers()`` returns a list holding a
        NULL entry *with the decoding error still pending*. Reading that entry is a
        segmentation fault, and the pending error surfaces in whatever C call next checks for
        one — once CPython's specialising interpreter has warmed up, that can be far outside
        any ``try`` here (it crash-looped the consumer). :func:`_raise_pending_error` raises it
        deterministically right after the call. Such a record keeps no headers and carries a
        ``defect`` instead.
        """
        ts_type, ts = message.timestamp()
        defect = None
        try:
            raw_headers = message.headers()
            _raise_pending_error()
            headers = tuple(raw_headers or ())
        except Exception as exc:  # see docstring: never call headers() again on this message
            headers = ()
            defect = (
                f"record headers cannot be read ({describe_exception(exc)}); a header name is "
                "probably not valid UTF-8. Headers are omitted from this dead letter"
            )
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            headers=headers,
            timestamp_ms=None if ts_type == _TIMESTAMP_NOT_AVAILABLE else ts,
            defect=defect,
        )

    @property
    def source(self) -> SourceCoordinates:
        """Topic/partition/offset as the wire model."""
        return SourceCoordinates(topic=self.topic, partition=self.partition, offset=self.offset)

    @property
    def timestamp(self) -> datetime | None:
        """The record timestamp as an aware UTC datetime; ``None`` if absent or unrepresentable.

        Producers choose ``CreateTime``; one outside ``datetime``'s range (year 1-9999) is
        treated as absent rather than failing the record's output.
        """
        if self.timestamp_ms is None:
            return None
        try:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None


def records_of(messages: Sequence[Any]) -> list[RawRecord]:
    """The records among ``confluent_kafka.Message`` objects from ``consume()``.

    A message carrying a non-fatal error (e.g. end of partition, a transient fetch error)
    is logged as ``consume_error`` and skipped.

    Raises:
        confluent_kafka.KafkaException: a message carries a fatal error.
    """
    from confluent_kafka import KafkaException

    records = []
    for message in messages:
        error = message.error()
        if error is None:
            records.append(RawRecord.from_message(message))
        elif error.fatal():
            raise KafkaException(error)
        else:
            structlog.get_logger("consumer").warning(
                "consume_error",
                error=str(error),
                topic=message.topic(),
                partition=message.partition(),
            )
    return records


def dead_letter(
    record: RawRecord,
    rejection: Rejection,
    max_value_bytes: int = DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES,
) -> DeadLetter:
    """Build the dead-letter record for ``record``, keeping its exact bytes and headers.

    A value larger than ``max_value_bytes`` is not copied (the record would not fit the
    dead-letter topic); its size, sha256 and source coordinates identify it instead.
    Header names are stored with lone surrogates backslash-escaped (they must be JSON).
    """
    value = record.value
    copied = value is not None and len(value) <= max_value_bytes
    return DeadLetter(
        error_code=rejection.code,
        reason=rejection.reason,
        source=record.source,
        key=None if record.key is None else EncodedBytes.from_bytes(record.key),
        value=EncodedBytes.from_bytes(value) if copied and value is not None else None,
        value_size=0 if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        headers=[
            Header(
                key=k.encode("utf-8", "backslashreplace").decode("utf-8"),
                value=None if v is None else EncodedBytes.from_bytes(v),
            )
            for k, v in record.headers
        ],
        input_timestamp=record.timestamp,
        failed_at=datetime.now(UTC),
    )
