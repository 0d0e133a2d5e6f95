"""The per-record steps of a micro-batch, each run under the guard of :mod:`consumer.isolation`.

A record goes through two steps that look at its bytes:

1. :func:`prepare` (compute phase): header defects, then the input format's decoder
   (:mod:`consumer.decoding`: size and depth caps, JSON or the Schema Registry wire format,
   schema validation), the document, tokenisation → :class:`Accepted` or :class:`Rejection`;
2. :func:`render_prediction` / :func:`render_dead_letter` (deliver phase): the record's
   output value as bytes, in the output format (:mod:`consumer.encoding`).

Whatever the record's bytes, these functions return a value; none raises for a record (a
Schema Registry outage, which is not the record's fault, raises
:class:`~consumer.isolation.DependencyUnavailableError` from :func:`prepare`). The
property-based tests (``tests/unit/test_record_fuzz.py``) and the coverage-guided fuzzer
(``python -m consumer.fuzz``) drive exactly these entry points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from consumer.decoding import InputDecoder
from consumer.encoding import JSON_OUTPUT, OutputEncoder
from consumer.isolation import InvalidRecordError, Rejection, describe_exception, isolate
from consumer.records import RawRecord, dead_letter
from schemas import DeadLetter, ErrorCode, InputMessage
from schemas.prediction_json import prediction_record

#: Largest Kafka key a minimal dead letter keeps (bytes); a larger one is dropped (null key).
MINIMAL_LETTER_MAX_KEY_BYTES = 4_096

#: Text → vocabulary ids, truncated and unpadded (:meth:`model.Bundle.token_ids`).
Tokeniser = Callable[[str], list[int]]


@dataclass(slots=True)  # not frozen: built once per record on the hot path (3x cheaper)
class Accepted:
    """A record that passed every check: its message and its ``token_ids`` (unpadded)."""

    message: InputMessage
    token_ids: list[int]


@dataclass(slots=True)  # not frozen: built once per record on the hot path
class RenderedPrediction:
    """A prediction's wire value and what the service counts about it.

    Attributes:
        value: The :class:`schemas.Prediction` in the output format (UTF-8 JSON by default:
            :func:`schemas.prediction_json.prediction_json`).
        low_confidence: Confidence below the service's threshold.
        end_to_end_s: Produced-at minus the record's Kafka timestamp (s), if it has one.
    """

    value: bytes
    low_confidence: bool
    end_to_end_s: float | None


def prepare(record: RawRecord, decode: InputDecoder, tokenise: Tokeniser) -> Accepted | Rejection:
    """Check, decode and tokenise one record; every failure is returned as its rejection.

    Raises:
        DependencyUnavailableError: the Schema Registry could not be asked (the guard
            passes it on; the worker retries the micro-batch).
    """
    return isolate(lambda: _prepare(record, decode, tokenise))


def _prepare(record: RawRecord, decode: InputDecoder, tokenise: Tokeniser) -> Accepted:
    if record.defect is not None:
        raise InvalidRecordError(ErrorCode.UNPROCESSABLE, record.defect)
    message = decode(record)
    return Accepted(message, tokenise(message.document))


def render_prediction(
    record: RawRecord,
    message: InputMessage,
    top: list[tuple[str, float]],
    model_version: str,
    received: float,
    low_confidence_threshold: float,
    encode: OutputEncoder = JSON_OUTPUT,
    output_topic: str = "",
) -> RenderedPrediction | Rejection:
    """The prediction record for ``record``, or the rejection if it cannot be built.

    Args:
        record: The input record (source coordinates and timestamp).
        message: Its validated message.
        top: ``(label, probability)`` pairs, highest first (at least one).
        model_version: Version stamped on the prediction.
        received: ``time.perf_counter()`` when the micro-batch was received.
        low_confidence_threshold: Confidence below which the prediction is flagged.
        encode: The output format.
        output_topic: Where the prediction goes (the registry formats' subject).
    """

    def render() -> RenderedPrediction:
        now = datetime.now(UTC)
        low = top[0][1] < low_confidence_threshold
        fields = prediction_record(
            message.id,
            top,
            model_version,
            now,
            round((time.perf_counter() - received) * 1000, 3),
            low,
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
        )
        value = encode.prediction(fields, output_topic)
        lag = None
        if record.timestamp_ms is not None:
            lag = max(0.0, now.timestamp() - record.timestamp_ms / 1000)
        return RenderedPrediction(value, low, lag)

    return isolate(render)


def render_dead_letter(
    record: RawRecord,
    rejection: Rejection,
    max_value_bytes: int,
    encode: OutputEncoder = JSON_OUTPUT,
    topic: str = "",
) -> bytes:
    """The dead-letter record for ``record`` (:class:`schemas.DeadLetter`) in ``encode``'s format.

    Should the full letter fail to build (it copies the key, value and headers), the
    :func:`minimal_dead_letter` value is returned instead, so a record is never lost for
    want of a dead letter. ``topic`` is the dead-letter topic (the registry formats' subject).
    """
    try:
        return encode.dead_letter(dead_letter(record, rejection, max_value_bytes), topic)
    except Exception as exc:
        return minimal_dead_letter(record, rejection, describe_exception(exc), encode, topic)[1]


def minimal_dead_letter(
    record: RawRecord,
    rejection: Rejection,
    why: str,
    encode: OutputEncoder = JSON_OUTPUT,
    topic: str = "",
) -> tuple[bytes | None, bytes]:
    """A dead letter that copies nothing: coordinates, size, sha256, timestamp and reasons.

    For a record whose full dead letter cannot be built or is too large to produce; the
    original stays at its source coordinates (``value_sha256`` identifies it).

    Returns:
        ``(key, value)`` to produce: the record's own key unless it is over
        :data:`MINIMAL_LETTER_MAX_KEY_BYTES` (then ``None``), and the letter in ``encode``'s
        format (UTF-8 JSON by default).
    """
    bare = RawRecord(
        record.topic, record.partition, record.offset, None, record.value, (), record.timestamp_ms
    )
    note = Rejection.of(
        rejection.code, f"{rejection.reason} (key, value and headers not copied: {why})"
    )
    letter: DeadLetter = dead_letter(bare, note, max_value_bytes=0)
    key = (
        record.key
        if record.key is None or len(record.key) <= MINIMAL_LETTER_MAX_KEY_BYTES
        else None
    )
    return key, encode.dead_letter(letter, topic)
