"""``python -m consumer.replay``'s decisions: filters, the replay limit, what is produced.

Reading, producing and committing against the real broker: tests/integration/test_replay.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.isolation import Rejection
from consumer.records import RawRecord, dead_letter
from consumer.replay import REPLAY_COUNT_HEADER, REPLAY_SOURCE_HEADER, ReplaySettings, decide
from schemas import DeadLetter, ErrorCode


def _settings(tmp_path: Path, **values: object) -> ReplaySettings:
    return ReplaySettings(bundle=tmp_path, **values)  # type: ignore[arg-type]


def _letter(
    code: ErrorCode = ErrorCode.TEXT_TOO_LARGE,
    headers: tuple[tuple[str, bytes | None], ...] = (),
    value: bytes | None = b'{"id": "a", "text": "long"}',
    max_value_bytes: int = 1_000,
) -> DeadLetter:
    record = RawRecord("articles", 2, 41, b"key-a", value, headers, 1_700_000_000_000)
    return dead_letter(record, Rejection.of(code, "why"), max_value_bytes)


def test_a_letter_is_replayed_with_its_bytes_headers_and_a_count(tmp_path: Path) -> None:
    letter = _letter(headers=(("trace", b"\xff\x00"), ("empty", None)))
    decision = decide(letter, "articles.dlq[0]@7", _settings(tmp_path))
    assert decision.verdict == "replay"
    assert decision.key == b"key-a"
    assert decision.value == b'{"id": "a", "text": "long"}'
    assert decision.headers == [
        ("trace", b"\xff\x00"),
        ("empty", b""),
        (REPLAY_COUNT_HEADER, b"1"),
        (REPLAY_SOURCE_HEADER, b"articles.dlq[0]@7"),
    ]


def test_the_count_goes_up_and_the_limit_refuses(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_replays=3)
    again = _letter(headers=((REPLAY_COUNT_HEADER, b"2"), (REPLAY_SOURCE_HEADER, b"old")))
    decision = decide(again, "d[0]@1", settings)
    assert decision.verdict == "replay"
    assert (REPLAY_COUNT_HEADER, b"3") in decision.headers
    assert (REPLAY_SOURCE_HEADER, b"old") not in decision.headers  # replaced, not repeated
    spent = _letter(headers=((REPLAY_COUNT_HEADER, b"3"),))
    refused = decide(spent, "d[0]@2", settings)
    assert refused.verdict == "refused"
    assert "replayed 3 times" in refused.why
    garbage = _letter(headers=((REPLAY_COUNT_HEADER, b"\xffnot a number"),))
    assert decide(garbage, "d[0]@3", settings).verdict == "replay"  # an unreadable count is 0


def test_filters_by_code_and_failure_time(tmp_path: Path) -> None:
    letter = _letter(ErrorCode.INVALID_JSON)
    by_code = _settings(tmp_path, error_code=[ErrorCode.TEXT_TOO_LARGE])
    assert decide(letter, "d[0]@1", by_code).verdict == "filtered"
    wanted = _settings(tmp_path, error_code=[ErrorCode.INVALID_JSON, ErrorCode.TEXT_TOO_LARGE])
    assert decide(letter, "d[0]@1", wanted).verdict == "replay"
    later = _settings(tmp_path, failed_after=datetime(2999, 1, 1, tzinfo=UTC))
    assert decide(letter, "d[0]@1", later).verdict == "filtered"
    earlier = _settings(tmp_path, failed_before=datetime(2000, 1, 1, tzinfo=UTC))
    assert decide(letter, "d[0]@1", earlier).verdict == "filtered"


def test_a_letter_without_its_value_cannot_be_replayed(tmp_path: Path) -> None:
    too_large = _letter(value=b"x" * 2_000, max_value_bytes=1_000)
    decision = decide(too_large, "d[0]@1", _settings(tmp_path))
    assert decision.verdict == "not_replayable"
    assert "articles[2]@41" in decision.why  # where the original still is
    tombstone = _letter(ErrorCode.NULL_VALUE, value=None)
    assert decide(tombstone, "d[0]@2", _settings(tmp_path)).verdict == "not_replayable"


def test_the_replay_group_follows_the_code_filter(tmp_path: Path) -> None:
    assert _settings(tmp_path).effective_replay_group_id == "text-classifier.replay"
    codes = [ErrorCode.TEXT_TOO_LARGE, ErrorCode.INVALID_JSON]
    assert (
        _settings(tmp_path, error_code=codes).effective_replay_group_id
        == "text-classifier.replay.invalid_json+text_too_large"
    )
    assert _settings(tmp_path, replay_group_id="mine").effective_replay_group_id == "mine"
    with pytest.raises(ValidationError, match="need --partition"):
        _settings(tmp_path, from_offset=3)
