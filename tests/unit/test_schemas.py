import base64
import json

import pytest
from pydantic import ValidationError

from consumer.isolation import InvalidRecordError, Rejection
from consumer.parsing import RecordLimits, parse_input
from consumer.records import RawRecord, dead_letter
from schemas import DeadLetter, EncodedBytes, ErrorCode, InputMessage, Prediction


def record(value: bytes | None, key: bytes | None = b"k1") -> RawRecord:
    return RawRecord(
        topic="articles",
        partition=2,
        offset=17,
        key=key,
        value=value,
        headers=(("trace", b"abc"), ("bin", b"\xff\x00"), ("empty", None)),
        timestamp_ms=1_795_000_000_123,
    )


def test_valid_message_with_optional_and_unknown_fields() -> None:
    msg = InputMessage.model_validate_json(
        '{"id": "a1", "text": "Shares rose", "title": "Markets", "lang": "en",'
        ' "metadata": {"feed": 3}, "schema_hint": "tolerated"}'
    )
    assert msg.id == "a1"
    assert msg.document == "Markets Shares rose"
    assert msg.metadata == {"feed": 3}


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"text": "no id"}, "id"),
        ({"id": "a"}, "text"),
        ({"id": "a", "text": ""}, "text"),
        ({"id": "a", "text": " \n\t "}, "text"),
        ({"id": 7, "text": "numeric id is not coerced"}, "id"),
        ({"id": "a", "text": ["not", "a", "string"]}, "text"),
        ({"id": "a", "text": "x", "metadata": "not-an-object"}, "metadata"),
    ],
)
def test_invalid_messages_are_rejected_naming_the_field(
    payload: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError) as info:
        InputMessage.model_validate(payload)
    assert info.value.errors()[0]["loc"][0] == where


def test_prediction_enforces_probability_range() -> None:
    base: dict[str, object] = {
        "id": "a",
        "label": "sport",
        "top_k": [],
        "model_version": "v",
        "source": {"topic": "t", "partition": 0, "offset": 0},
        "input_timestamp": None,
        "produced_at": "2026-11-21T00:00:00Z",
        "latency_ms": 1.0,
    }
    Prediction.model_validate({**base, "confidence": 0.5})
    with pytest.raises(ValidationError):
        Prediction.model_validate({**base, "confidence": 1.5})


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, ErrorCode.NULL_VALUE),
        (b"\xff\xfe{}", ErrorCode.NOT_UTF8),
        (b'{"id": "a", "text": ', ErrorCode.INVALID_JSON),
        (b'["id", "text"]', ErrorCode.NOT_AN_OBJECT),
        (b'{"id": "a", "text": "   "}', ErrorCode.SCHEMA_VIOLATION),
        (b'{"id": "a"}', ErrorCode.SCHEMA_VIOLATION),
    ],
)
def test_parse_input_classifies_each_failure(value: bytes | None, code: ErrorCode) -> None:
    with pytest.raises(InvalidRecordError) as info:
        parse_input(value)
    assert info.value.code is code
    assert info.value.reason


def test_parse_input_accepts_a_good_record() -> None:
    msg = parse_input(json.dumps({"id": "x", "text": "hello"}).encode())
    assert msg.text == "hello"


def test_dead_letter_keeps_original_bytes_key_headers_and_coordinates() -> None:
    raw = b"\xff\xfenot utf8"
    letter = dead_letter(record(raw, key=b"\x00key"), Rejection(ErrorCode.NOT_UTF8, "bad bytes"))
    wire = DeadLetter.model_validate_json(letter.model_dump_json())
    assert wire.value is not None
    assert wire.value.encoding == "base64"
    assert wire.value.to_bytes() == raw
    assert wire.key is not None
    assert wire.key.to_bytes() == b"\x00key"
    assert [(h.key, None if h.value is None else h.value.to_bytes()) for h in wire.headers] == [
        ("trace", b"abc"),
        ("bin", b"\xff\x00"),
        ("empty", None),
    ]
    assert (wire.source.topic, wire.source.partition, wire.source.offset) == ("articles", 2, 17)
    assert wire.error_code is ErrorCode.NOT_UTF8
    assert wire.input_timestamp is not None
    assert int(wire.input_timestamp.timestamp() * 1000) == 1_795_000_000_123


def test_encoded_bytes_uses_text_when_utf8() -> None:
    assert EncodedBytes.from_bytes("héllo".encode()) == EncodedBytes(encoding="utf-8", data="héllo")
    b = EncodedBytes.from_bytes(b"\x80")
    assert b.data == base64.b64encode(b"\x80").decode()


def test_text_over_the_byte_limit_is_rejected_and_a_huge_value_before_parsing() -> None:
    small = json.dumps({"id": "a", "text": "é" * 60}).encode()  # 120 bytes of text
    with pytest.raises(InvalidRecordError) as info:
        parse_input(small, RecordLimits(max_text_bytes=100))
    assert info.value.code is ErrorCode.TEXT_TOO_LARGE
    assert "120 bytes" in info.value.reason
    parse_input(small, RecordLimits(max_text_bytes=120))
    huge = b'{"id": "a", "text": "' + b"x" * 2_000_000 + b'"}'
    with pytest.raises(InvalidRecordError) as info:
        parse_input(huge, RecordLimits(max_text_bytes=1000))
    assert info.value.code is ErrorCode.VALUE_TOO_LARGE
    assert "max_value_bytes" in info.value.reason


def test_unknown_schema_version_is_rejected_known_one_accepted() -> None:
    with pytest.raises(InvalidRecordError) as info:
        parse_input(b'{"id": "a", "text": "t", "schema_version": 2}')
    assert info.value.code is ErrorCode.UNSUPPORTED_SCHEMA_VERSION
    assert parse_input(b'{"id": "a", "text": "t", "schema_version": 1}').schema_version == 1


def test_dead_letter_of_an_oversized_value_keeps_its_fingerprint_not_its_bytes() -> None:
    import hashlib

    raw = b"x" * 5000
    big = Rejection(ErrorCode.VALUE_TOO_LARGE, "big")
    letter = dead_letter(record(raw), big, max_value_bytes=1000)
    assert letter.value is None
    assert letter.value_size == 5000
    assert letter.value_sha256 == hashlib.sha256(raw).hexdigest()
    kept = dead_letter(record(raw), big, max_value_bytes=5000)
    assert kept.value is not None
    assert kept.value.to_bytes() == raw
