"""The consumer's prediction JSON equals the pydantic schema's, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import ClassProbability, Prediction, SourceCoordinates
from schemas.prediction_json import prediction_json

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # no lone surrogates
_PROBABILITY = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, width=32).map(float)
_MOMENT = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(
    message_id=_TEXT,
    top=st.lists(st.tuples(_TEXT, _PROBABILITY), min_size=1, max_size=5),
    model_version=_TEXT,
    produced_at=_MOMENT,
    latency_ms=st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
    low_confidence=st.booleans(),
    topic=_TEXT,
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    input_timestamp=st.none() | _MOMENT,
)
def test_prediction_json_is_byte_identical_to_the_pydantic_model(
    message_id: str,
    top: list[tuple[str, float]],
    model_version: str,
    produced_at: datetime,
    latency_ms: float,
    low_confidence: bool,
    topic: str,
    partition: int,
    offset: int,
    input_timestamp: datetime | None,
) -> None:
    """Same keys, order, escaping, float and datetime formats as ``model_dump_json``."""
    expected = Prediction(
        id=message_id,
        label=top[0][0],
        confidence=top[0][1],
        top_k=[ClassProbability(label=label, probability=p) for label, p in top],
        model_version=model_version,
        source=SourceCoordinates(topic=topic, partition=partition, offset=offset),
        input_timestamp=input_timestamp,
        produced_at=produced_at,
        latency_ms=latency_ms,
        low_confidence=low_confidence,
    )
    fast = prediction_json(
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
    assert fast == expected.model_dump_json().encode()
    assert Prediction.model_validate_json(fast) == expected


def test_whole_milliseconds_and_control_characters_match() -> None:
    """The cases most likely to differ: no microseconds, and characters JSON must escape."""
    moment = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    top = [("a\u2028b", 1.0), ('\x00\x1f"\\', 0.0)]
    fast = prediction_json("id\n", top, "v", moment, 0.0, False, "t", 0, 0, moment - timedelta(1))
    expected = Prediction(
        id="id\n",
        label=top[0][0],
        confidence=1.0,
        top_k=[ClassProbability(label=label, probability=p) for label, p in top],
        model_version="v",
        source=SourceCoordinates(topic="t", partition=0, offset=0),
        input_timestamp=moment - timedelta(1),
        produced_at=moment,
        latency_ms=0.0,
        low_confidence=False,
    )
    assert fast == expected.model_dump_json().encode()
