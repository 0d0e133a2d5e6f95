"""A prediction record's JSON without building a :class:`~schemas.messages.Prediction` per record.

The consumer publishes one prediction per input message; on short texts, building and
dumping a pydantic model per record (~14 µs) cost about as much as the model's inference.
:func:`prediction_json` writes the same bytes from plain values with orjson (~2 µs): the
keys in the model's field order, datetimes as pydantic writes them (RFC 3339, ``Z``,
microseconds only when non-zero), floats in their shortest round-trip form.

The schema's constraints are the caller's to guarantee — probabilities in ``[0, 1]`` and
finite (:func:`model.probabilities.checked_rows` clips them), a non-negative latency,
partition and offset — since nothing here validates. ``tests/unit/test_prediction_json.py``
checks, over generated values, that the bytes equal
``Prediction(...).model_dump_json().encode()``, so this module and the pydantic schema
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

#: orjson options giving pydantic's datetime format (``…Z`` for UTC).
_OPTIONS = orjson.OPT_UTC_Z


def prediction_record(
    message_id: str,
    top: Sequence[tuple[str, float]],
    model_version: str,
    produced_at: datetime,
    latency_ms: float,
    low_confidence: bool,
    topic: str,
    partition: int,
    offset: int,
    input_timestamp: datetime | None,
) -> dict[str, Any]:
    """The :class:`~schemas.messages.Prediction` with these values as a plain ``dict``.

    Keys in the model's field order, datetimes as ``datetime`` (pydantic's python mode):
    what :func:`prediction_json` writes as JSON and an Avro serializer writes as Avro.

    Args:
        message_id: The input message's ``id``.
        top: ``(label, probability)`` pairs, highest first (at least one); the first is the
            prediction's ``label`` and ``confidence``.
        model_version: Version of the bundle that predicted.
        produced_at: When the prediction was made (aware, UTC).
        latency_ms: Processing latency (ms, ``>= 0``).
        low_confidence: Confidence below the service's threshold.
        topic, partition, offset: Where the input record was read.
        input_timestamp: The input record's timestamp (aware, UTC), if it had one.

    Raises:
        IndexError: ``top`` is empty.
    """
    label, confidence = top[0]
    return {
        "id": message_id,
        "label": label,
        "confidence": confidence,
        "top_k": [{"label": name, "probability": p} for name, p in top],
        "model_version": model_version,
        "produced_at": produced_at,
        "latency_ms": latency_ms,
        "low_confidence": low_confidence,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "input_timestamp": input_timestamp,
    }


def record_json(record: dict[str, Any]) -> bytes:
    """UTF-8 JSON of a :func:`prediction_record` (datetimes as pydantic writes them).

    Raises:
        orjson.JSONEncodeError: a string that is not valid Unicode (a lone surrogate).
    """
    return orjson.dumps(record, option=_OPTIONS)


def prediction_json(
    message_id: str,
    top: Sequence[tuple[str, float]],
    model_version: str,
    produced_at: datetime,
    latency_ms: float,
    low_confidence: bool,
    topic: str,
    partition: int,
    offset: int,
    input_timestamp: datetime | None,
) -> bytes:
    """UTF-8 JSON equal to the :class:`~schemas.messages.Prediction` with these values.

    The arguments are :func:`prediction_record`'s.

    Raises:
        IndexError: ``top`` is empty.
        orjson.JSONEncodeError: a string that is not valid Unicode (a lone surrogate).
    """
    return record_json(
        prediction_record(
            message_id,
            top,
            model_version,
            produced_at,
            latency_ms,
            low_confidence,
            topic,
            partition,
            offset,
            input_timestamp,
        )
    )
