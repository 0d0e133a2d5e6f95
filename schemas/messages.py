"""Wire formats of the three topics: input articles, predictions and dead letters.

Every message value is UTF-8 JSON by default; the consumer can also read Avro, JSON Schema and
Protobuf values and write Avro or JSON Schema ones in the Confluent Schema Registry wire
format, with the schemas of :mod:`schemas.published` (generated from these models). Messages
are keyed: a prediction (and a dead-letter
record) carries the key of the input message it was made from, so a downstream consumer
can join on it and per-key order is kept across topics.
"""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

NonBlankStr = Annotated[str, StringConstraints(min_length=1)]

#: Default cap on ``title + text`` in UTF-8 bytes (a long news article is ~20 KB); the
#: consumer and the HTTP API refuse larger documents.
DEFAULT_MAX_TEXT_BYTES = 100_000

#: Input ``schema_version`` values this code understands.
SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})


class InputMessage(BaseModel):
    """One article or question to classify (value of a message on the input topic).

    Unknown fields are tolerated and ignored, so producers can add fields without
    breaking the service.

    Example::

        {"id": "bbc-0042", "text": "Shares in the firm rose 5%...",
         "title": "Markets rally", "source": "bbc", "lang": "en",
         "metadata": {"feed": "business"}}

    Raises:
        pydantic.ValidationError: on a missing/empty/whitespace-only ``text`` or ``id``,
            or a field of the wrong type (no coercion: ``"id": 7`` is rejected).
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    id: NonBlankStr = Field(description="Producer's identifier of the document; echoed back.")
    text: NonBlankStr = Field(description="The text to classify (non-empty, not only spaces).")
    title: str | None = Field(default=None, description="Optional headline, prepended to text.")
    source: str | None = Field(default=None, description="Optional name of the producing feed.")
    lang: str | None = Field(default=None, description="Optional BCP-47 language tag, e.g. 'en'.")
    metadata: dict[str, Any] | None = Field(default=None, description="Opaque producer data.")
    schema_version: int | None = Field(
        default=None,
        description="Version of this input format; absent means 1. Unknown versions are "
        "dead-lettered (see SUPPORTED_SCHEMA_VERSIONS).",
    )

    @field_validator("id", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        """Reject whitespace-only ``id``/``text`` (min_length alone accepts ``"  "``)."""
        if not value.strip():
            raise ValueError("must contain a non-whitespace character")
        return value

    @property
    def document(self) -> str:
        """The text the model sees: ``title`` and ``text`` joined by a space when a title exists."""
        return f"{self.title} {self.text}" if self.title else self.text


class SourceCoordinates(BaseModel):
    """Where a message was read from: topic, partition and offset."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ClassProbability(BaseModel):
    """One entry of a prediction's ``top_k`` list."""

    model_config = ConfigDict(frozen=True)

    label: str
    probability: float = Field(ge=0.0, le=1.0)


class Classification(BaseModel):
    """One text's classification: what every front end answers (the HTTP API's response).

    Example::

        {"id": "q-7", "label": "business", "confidence": 0.97,
         "top_k": [{"label": "business", "probability": 0.97},
                   {"label": "politics", "probability": 0.02}],
         "model_version": "20261121T193000Z-3f2a9c1d",
         "produced_at": "2026-11-21T19:31:02.161000Z", "latency_ms": 4.2,
         "low_confidence": false}
    """

    model_config = ConfigDict(frozen=True)

    id: str
    label: str = Field(description="Most probable class (equals top_k[0].label).")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability of ``label``.")
    top_k: list[ClassProbability] = Field(description="Most probable classes, highest first.")
    model_version: str = Field(description="Version id of the artifact bundle that predicted.")
    produced_at: datetime = Field(description="When the classification was made (UTC).")
    latency_ms: float = Field(
        ge=0.0, description="Processing latency: input received → classification made (ms)."
    )
    low_confidence: bool = Field(
        default=False,
        description="True when confidence is below the service's threshold; the consumer "
        "also publishes such predictions to the review topic when one is configured.",
    )


class Prediction(Classification):
    """One prediction (value of a message on the output topic), keyed like its input.

    A :class:`Classification` plus the input record's Kafka coordinates and timestamp;
    ``latency_ms`` runs from the micro-batch's arrival at the consumer.

    Example::

        {"id": "bbc-0042", "label": "business", "confidence": 0.97,
         "top_k": [{"label": "business", "probability": 0.97},
                   {"label": "politics", "probability": 0.02}],
         "model_version": "20261121T193000Z-3f2a9c1d",
         "source": {"topic": "articles", "partition": 2, "offset": 1187},
         "input_timestamp": "2026-11-21T19:31:02.114000Z",
         "produced_at": "2026-11-21T19:31:02.161000Z",
         "latency_ms": 41.7}
    """

    source: SourceCoordinates
    input_timestamp: datetime | None = Field(
        description="Kafka timestamp of the input message (UTC); null if the broker gave none."
    )


class ErrorCode(StrEnum):
    """Why a message was dead-lettered (stable, machine-readable)."""

    NULL_VALUE = "null_value"
    VALUE_TOO_LARGE = "value_too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NESTING_TOO_DEEP = "nesting_too_deep"
    NOT_AN_OBJECT = "not_an_object"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    TEXT_TOO_LARGE = "text_too_large"
    #: (Schema Registry input formats) the value is not in the Confluent wire format: shorter
    #: than its 5-byte header, or its first byte is not the magic byte 0.
    WRONG_MAGIC_BYTE = "wrong_magic_byte"
    #: (Schema Registry input formats) the registry has no schema with the value's schema id.
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    #: (Schema Registry input formats) the payload does not decode with its writer schema (or
    #: fails JSON Schema validation, or the id names a schema of another format).
    UNDECODABLE_PAYLOAD = "undecodable_payload"
    INFERENCE_FAILED = "inference_failed"
    #: Any other failure while reading, validating or tokenising one record;
    #: ``reason`` names the exception type and its message.
    UNPROCESSABLE = "unprocessable"
    #: Dead-lettered by hand (``python -m consumer.skip``), e.g. a record that crashes the
    #: process natively; ``reason`` is the operator's.
    SKIPPED_BY_OPERATOR = "skipped_by_operator"


class EncodedBytes(BaseModel):
    """Raw bytes carried losslessly in JSON: UTF-8 text when possible, else base64."""

    model_config = ConfigDict(frozen=True)

    encoding: Literal["utf-8", "base64"]
    data: str

    @classmethod
    def from_bytes(cls, raw: bytes) -> EncodedBytes:
        """Encode ``raw`` as UTF-8 text if it decodes, otherwise as standard base64."""
        try:
            return cls(encoding="utf-8", data=raw.decode("utf-8"))
        except UnicodeDecodeError:
            return cls(encoding="base64", data=base64.b64encode(raw).decode("ascii"))

    def to_bytes(self) -> bytes:
        """Return the original bytes.

        Raises:
            binascii.Error: if ``encoding`` is base64 and ``data`` is not valid base64.
        """
        if self.encoding == "utf-8":
            return self.data.encode("utf-8")
        return base64.b64decode(self.data, validate=True)


class Header(BaseModel):
    """One Kafka record header; ``value`` is null for a header without a value."""

    model_config = ConfigDict(frozen=True)

    key: str
    value: EncodedBytes | None


class DeadLetter(BaseModel):
    r"""A message the service could not classify (value of a message on the dead-letter topic).

    Carries everything needed to inspect, fix and replay the original: its exact bytes,
    key, headers and source coordinates, plus an error code and a human-readable reason.

    Example::

        {"error_code": "schema_violation",
         "reason": "text: String should have at least 1 character",
         "source": {"topic": "articles", "partition": 0, "offset": 17},
         "key": {"encoding": "utf-8", "data": "bbc-0017"},
         "value": {"encoding": "utf-8", "data": "{\\"id\\": \\"bbc-0017\\", \\"text\\": \\"\\"}"},
         "headers": [], "input_timestamp": "2026-11-21T19:31:02.114000Z",
         "failed_at": "2026-11-21T19:31:02.130000Z"}
    """

    model_config = ConfigDict(frozen=True)

    error_code: ErrorCode
    reason: str
    source: SourceCoordinates
    key: EncodedBytes | None
    value: EncodedBytes | None = Field(
        description="Original value; null for a tombstone or when it was too large to copy "
        "(then ``value_size`` and ``value_sha256`` identify it at ``source``)."
    )
    value_size: int = Field(default=0, ge=0, description="Size of the original value in bytes.")
    value_sha256: str | None = Field(default=None, description="Hex sha256 of the original value.")
    headers: list[Header] = Field(default_factory=list)
    input_timestamp: datetime | None = None
    failed_at: datetime
