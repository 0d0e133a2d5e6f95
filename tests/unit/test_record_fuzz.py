"""Property-based tests of the per-record path: any bytes → one prediction or one dead letter.

Drives :func:`consumer.fuzz.outcome_of` — the steps the service runs on every record — with
arbitrary keys, headers, timestamps and values (raw bytes, arbitrary JSON, near-valid input
messages, hostile nesting, lone surrogates, huge numbers), through the real English and
Japanese (MeCab) tokenisers. The example count is bounded for CI (``max_examples``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.decoding import JsonInput
from consumer.fuzz import (
    FUZZ_LIMITS,
    SEEDS,
    check_outcome,
    outcome_of,
    record_from_bytes,
    tokenisers,
)
from consumer.isolation import Rejection, isolate
from consumer.parsing import RecordLimits, json_depth, parse_input
from consumer.records import RawRecord
from consumer.steps import Accepted, minimal_dead_letter, prepare, render_dead_letter
from schemas import DeadLetter, ErrorCode

REPO = Path(__file__).resolve().parents[2]

#: Examples per property: 300 in CI; raise it locally with HYPOTHESIS_MAX_EXAMPLES.
EXAMPLES = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
texts = st.one_of(st.text(max_size=200), st.sampled_from(["", "  ", "株価が上がった", "a\x00b"]))
input_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(texts, json_values),
        "text": st.one_of(texts, json_values),
        "title": st.one_of(texts, st.none(), json_values),
        "lang": st.one_of(st.text(max_size=5), json_values),
        "metadata": json_values,
        "schema_version": st.one_of(st.integers(-2, 3), json_values),
    },
)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # stdlib: big ints and any float survive


#: Splices that turn valid JSON into the inputs that once broke the consumer.
HOSTILE = [
    b"[" * 5000 + b"]" * 5000,
    b'{"id": "a", "text": "x", "metadata": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"id": "a", "text": "\\ud800"}',
    b'{"id": "\\udfff", "text": "x"}',
    b'{"id": "a", "text": "x", "n": ' + b"1" * 5000 + b"}",
    b'{"id": "a", "text": "x", "n": NaN}',
    b'{"id": "a", "text": "x", "n": 1e999}',
    b'\xef\xbb\xbf{"id": "a", "text": "x"}',
    b'{"id": "a", "text": "' + b"\\u0000" * 50 + b'"}',
]

values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    input_objects.map(_dumps),
    json_values.map(_dumps),
    st.sampled_from(HOSTILE),
    st.tuples(input_objects.map(_dumps), st.binary(max_size=8), st.integers(0, 400)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]  # a few bytes spliced into valid JSON
    ),
)
records = st.builds(
    RawRecord,
    topic=st.just("articles"),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    key=st.none() | st.binary(max_size=50),
    value=values,
    headers=st.lists(
        st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3
    ).map(tuple),
    timestamp_ms=st.none() | st.integers(-(2**63), 2**63 - 1),
)


@EXAMPLES
@given(record=records, language=st.sampled_from(["en", "ja"]))
def test_every_record_ends_as_one_valid_prediction_or_dead_letter(
    record: RawRecord, language: str
) -> None:
    for limits in (RecordLimits(), FUZZ_LIMITS):
        kind, value, rejection = outcome_of(record, limits, tokenisers()[language])
        check_outcome(record, kind, value)
        assert (kind == "dead_letter") == (rejection is not None)
        # The guard's catch-all is a safety net: every failure found so far has its own code.
        assert rejection is None or rejection.code is not ErrorCode.UNPROCESSABLE, rejection


@EXAMPLES
@given(data=st.binary(max_size=600))
def test_fuzzer_layout_bytes_never_raise(data: bytes) -> None:
    record = record_from_bytes(data)
    kind, value, _ = outcome_of(record, FUZZ_LIMITS, tokenisers()["en"])
    check_outcome(record, kind, value)


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_seeds_reach_both_outcomes(seed: bytes) -> None:
    record = record_from_bytes(seed)
    kind, _, _ = outcome_of(record, RecordLimits(), tokenisers()["ja"])
    assert kind == ("dead_letter" if record.value is None else "prediction")


def test_fuzz_seeds_reach_every_cap() -> None:
    codes = set()
    for seed in SEEDS:
        _, _, rejection = outcome_of(record_from_bytes(seed), FUZZ_LIMITS, tokenisers()["en"])
        codes.add(None if rejection is None else rejection.code)
    caps = {ErrorCode.NULL_VALUE, ErrorCode.TEXT_TOO_LARGE, ErrorCode.VALUE_TOO_LARGE}
    assert {None, *caps} <= codes


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (HOSTILE[0], ErrorCode.NESTING_TOO_DEEP),
        (HOSTILE[1], ErrorCode.NESTING_TOO_DEEP),
        (HOSTILE[2], ErrorCode.INVALID_JSON),
        (HOSTILE[3], ErrorCode.INVALID_JSON),
        (HOSTILE[4], ErrorCode.INVALID_JSON),
        (HOSTILE[5], ErrorCode.INVALID_JSON),
        (HOSTILE[6], ErrorCode.INVALID_JSON),
        (HOSTILE[7], ErrorCode.INVALID_JSON),
        (b'{"id": "a", "text": "x", "schema_version": [1]}', ErrorCode.UNSUPPORTED_SCHEMA_VERSION),
        (b'{"id": "a", "text": "x", "schema_version": {}}', ErrorCode.UNSUPPORTED_SCHEMA_VERSION),
    ],
)
def test_inputs_that_once_crashed_the_consumer_get_their_own_code(
    value: bytes, code: ErrorCode
) -> None:
    outcome = prepare(RawRecord("t", 0, 0, None, value), JsonInput(), tokenisers()["en"])
    assert isinstance(outcome, Rejection)
    assert outcome.code is code, outcome.reason


def test_caps_refuse_at_the_limit_plus_one_and_accept_at_the_limit() -> None:
    def nested(levels: int) -> bytes:  # the input object plus `levels` nested objects
        return (
            b'{"id": "a", "text": "x", "metadata": '
            + b'{"a": ' * levels
            + b"1"
            + b"}" * (levels + 1)
        )

    doc = nested(63)
    assert json_depth(doc) == 64
    assert parse_input(doc, RecordLimits(max_json_depth=64)).metadata is not None
    deeper = nested(64)
    outcome = isolate(lambda: parse_input(deeper, RecordLimits(max_json_depth=64)))
    assert isinstance(outcome, Rejection)
    assert outcome.code is ErrorCode.NESTING_TOO_DEEP
    assert "64" in outcome.reason

    body = b'{"id": "a", "text": "' + b"x" * 100 + b'"}'
    parse_input(body, RecordLimits(max_value_bytes=len(body), max_text_bytes=100))
    outcome = isolate(lambda: parse_input(body, RecordLimits(max_value_bytes=len(body) - 1)))
    assert isinstance(outcome, Rejection)
    assert outcome.code is ErrorCode.VALUE_TOO_LARGE


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = b'{"id": "a", "text": "' + b"[{" * 500 + b'\\"[" }'
    assert json_depth(doc) == 1
    assert parse_input(doc.replace(b'\\"[" }', b'"}')).text.startswith("[{")


def test_an_exception_nobody_foresaw_is_unprocessable_with_its_type_and_message() -> None:
    def tokenise(_: str) -> list[int]:
        raise MemoryError("tokeniser gave up")

    record = RawRecord("t", 0, 5, b"k", b'{"id": "a", "text": "fine"}')
    outcome = prepare(record, JsonInput(), tokenise)
    assert outcome == Rejection(ErrorCode.UNPROCESSABLE, "MemoryError: tokeniser gave up")
    assert not isinstance(prepare(record, JsonInput(), tokenisers()["en"]), Rejection)


def test_a_record_with_unreadable_headers_is_dead_lettered_not_fatal() -> None:
    class Message:
        def timestamp(self) -> tuple[int, int]:
            return (1, 1_700_000_000_000)

        def headers(self) -> list[tuple[str, bytes]]:
            raise SystemError("<method 'headers'> returned a result with an exception set")

        def topic(self) -> str:
            return "articles"

        def partition(self) -> int:
            return 1

        def offset(self) -> int:
            return 9

        def key(self) -> bytes:
            return b"k"

        def value(self) -> bytes:
            return b'{"id": "a", "text": "fine"}'

    record = RawRecord.from_message(Message())
    assert record.headers == ()
    outcome = prepare(record, JsonInput(), tokenisers()["en"])
    assert isinstance(outcome, Rejection)
    assert outcome.code is ErrorCode.UNPROCESSABLE
    assert "SystemError" in outcome.reason
    assert "UTF-8" in outcome.reason
    letter = DeadLetter.model_validate_json(render_dead_letter(record, outcome, 1000))
    assert letter.value is not None
    assert letter.value.to_bytes() == record.value


def test_reasons_are_json_safe_and_bounded() -> None:
    rejection = Rejection.from_exception(ValueError("\ud800" + "x" * 5000))
    assert len(rejection.reason) <= 1000
    rejection.reason.encode("utf-8")  # no lone surrogate left
    record = RawRecord("t", 0, 0, b"\xff", b"v", (("h\udc80", b"1"),), 2**62)
    letter = DeadLetter.model_validate_json(render_dead_letter(record, rejection, 10))
    assert letter.headers[0].key == "h\\udc80"
    assert letter.input_timestamp is None  # out of datetime's range: treated as absent


def test_a_minimal_dead_letter_copies_nothing_but_identifies_the_record() -> None:
    value = b"v" * 10_000
    record = RawRecord("t", 3, 7, b"k" * 5_000, value, (("h", b"x" * 10),), 1_700_000_000_000)
    key, raw = minimal_dead_letter(record, Rejection(ErrorCode.INVALID_JSON, "bad"), "too big")
    letter = DeadLetter.model_validate_json(raw)
    assert key is None  # over 4 KiB: dropped
    assert (letter.key, letter.value, letter.headers) == (None, None, [])
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    assert letter.value_size == len(value)
    assert (letter.source.partition, letter.source.offset) == (3, 7)
    assert "bad" in letter.reason
    assert "too big" in letter.reason


def test_the_guard_does_not_swallow_what_is_not_about_the_record() -> None:
    def interrupted() -> Accepted:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        isolate(interrupted)


def test_orjson_and_the_schema_agree_on_valid_articles() -> None:
    body = {"id": "bbc-1", "text": "Shares rose", "title": "Markets", "metadata": {"a": [1]}}
    assert parse_input(orjson.dumps(body)).document == "Markets Shares rose"


def test_the_coverage_guided_fuzz_command_runs(tmp_path: Path) -> None:
    pytest.importorskip("atheris")  # a [dev] dependency on x86-64 Linux only
    cmd = [sys.executable, "-m", "consumer.fuzz", "-atheris_runs=3000", "-seed=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 3000 in" in proc.stderr  # libFuzzer's closing line
    assert "'prediction'" in proc.stderr  # the seeds reach the model's side of the path
    assert len(list((tmp_path / ".fuzz-corpus").iterdir())) >= len(SEEDS)
