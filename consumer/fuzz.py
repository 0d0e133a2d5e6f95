"""``python -m consumer.fuzz``: coverage-guided fuzzing (atheris) of the per-record path.

The target is :func:`outcome_of`: one record — arbitrary key, value, headers and timestamp —
through exactly the steps the service runs on it (:func:`consumer.steps.prepare` with the real
English and Japanese tokenisers, then :func:`~consumer.steps.render_prediction` or
:func:`~consumer.steps.render_dead_letter`). The property is the service's promise: every
input ends as one valid prediction or one valid dead letter, and nothing raises. Any exception
the fuzzer finds is a crash report (and a reproducer file) from libFuzzer.

The same target backs the property-based tests (``tests/unit/test_record_fuzz.py``, run in
CI with a bounded example count). Needs the ``atheris`` package (``pip install -e '.[dev]'``)::

    python -m consumer.fuzz -atheris_runs=200000     # or -max_total_time=600; corpus in
                                                     # .fuzz-corpus/ (seeded from SEEDS)
    python -m consumer.fuzz crash-<sha1>             # replay one reproducer

Prints the executions and the distinct error codes seen when it ends.
"""

from __future__ import annotations

import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Literal

from consumer.decoding import JsonInput
from consumer.isolation import Rejection
from consumer.parsing import RecordLimits
from consumer.records import DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES, RawRecord
from consumer.steps import Accepted, Tokeniser, prepare, render_dead_letter, render_prediction
from schemas import DeadLetter, Prediction

Kind = Literal["prediction", "dead_letter"]

#: Words the fuzzing vocabularies know (any others are OOV); Japanese and English.
_VOCABULARY_TEXTS = (
    "shares rose markets rally the election result football match film review phone",
    "口座 振込 手数料 カード 解約 映画 試合 選挙 株価",
)


@cache
def tokenisers() -> dict[str, Tokeniser]:
    """The real English (``keras``) and Japanese (``fugashi``/MeCab) tokenisers, truncating.

    Built from :class:`model.TextPipeline` with a tiny vocabulary: the code path is the
    serving one (normalisation, filters, MeCab, stopwords, vocabulary lookup, truncation).
    """
    from model.pipeline import TextPipeline
    from model.sequences import SequenceConfig
    from model.text import TextConfig

    configs = {
        "en": TextConfig(),
        "ja": TextConfig(tokenizer="fugashi", unicode_nfkc=True, remove_stopwords=False),
    }
    out: dict[str, Tokeniser] = {}
    for name, text in configs.items():
        pipeline = TextPipeline.fit(list(_VOCABULARY_TEXTS), text, SequenceConfig(max_len=50), 100)

        def tokenise(document: str, pipeline: TextPipeline = pipeline) -> list[int]:
            return list(pipeline.sequence.truncate(pipeline.token_ids(document)))

        out[name] = tokenise
    return out


def outcome_of(
    record: RawRecord,
    limits: RecordLimits,
    tokenise: Tokeniser,
    max_dead_letter_value_bytes: int = DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES,
) -> tuple[Kind, bytes, Rejection | None]:
    """Run one record through the service's per-record steps (a fixed model answer).

    Returns:
        ``("prediction", value, None)`` or ``("dead_letter", value, rejection)`` where
        ``value`` is the UTF-8 JSON the service would produce.
    """
    prepared = prepare(record, JsonInput(limits), tokenise)
    if isinstance(prepared, Accepted):
        top = [("business", 0.75), ("sport", 0.25)]
        rendered = render_prediction(record, prepared.message, top, "fuzz", 0.0, 0.5)
        if not isinstance(rendered, Rejection):
            return "prediction", rendered.value, None
        prepared = rendered
    return (
        "dead_letter",
        render_dead_letter(record, prepared, max_dead_letter_value_bytes),
        prepared,
    )


def check_outcome(record: RawRecord, kind: Kind, value: bytes) -> None:
    """Assert ``value`` is a valid wire record of ``kind`` that points back at ``record``.

    Raises:
        AssertionError: the output is not what the service promises.
    """
    model = Prediction if kind == "prediction" else DeadLetter
    parsed = model.model_validate_json(value)
    source = parsed.source
    assert (source.topic, source.partition, source.offset) == (
        record.topic,
        record.partition,
        record.offset,
    )
    if isinstance(parsed, DeadLetter) and parsed.value is not None:
        assert parsed.value.to_bytes() == record.value, "dead letter changed the original bytes"


def record_from_bytes(data: bytes) -> RawRecord:
    """Decode fuzzer bytes into a record (a layout simple enough to write seeds by hand).

    Byte 0 holds flags: bit 0 a key follows, bit 1 the value is null, bit 2 an 8-byte signed
    timestamp follows, bits 3-4 the number of headers. Then the key (1 length byte + bytes),
    the timestamp, each header (1 length byte + UTF-8 name, 1 length byte + value, 255 = null);
    every remaining byte is the value. Missing bytes read as empty.
    """
    view = memoryview(data)
    flags, pos = (view[0], 1) if len(view) else (0, 0)

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos : pos + n])
        pos += len(chunk)
        return chunk

    def length() -> int:
        return take(1)[0] if pos < len(view) else 0

    key = take(length()) if flags & 1 else None
    timestamp = int.from_bytes(take(8), "big", signed=True) if flags & 4 else None
    headers = []
    for _ in range((flags >> 3) & 3):
        name = take(length()).decode("utf-8", "replace")
        size = length()
        headers.append((name, None if size == 255 else take(size)))
    value = None if flags & 2 else take(len(view))
    return RawRecord("articles", 0, 42, key, value, tuple(headers), timestamp)


#: Caps small enough for libFuzzer's inputs (4 KiB by default) to reach every refusal.
FUZZ_LIMITS = RecordLimits(max_value_bytes=2_048, max_json_depth=16, max_text_bytes=1_024)

#: libFuzzer dictionary: JSON and input-schema tokens the mutator splices in.
DICTIONARY: tuple[bytes, ...] = (
    b'"id"', b'"text"', b'"title"', b'"lang"', b'"metadata"', b'"schema_version"', b'"source"',
    b"{", b"}", b"[", b"]", b":", b",", b'""', b"null", b"true", b"false", b"-0", b"1e999",
    b"NaN", b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b'\\"', "口".encode(),
    b"http://", b"@",
)  # fmt: skip


def dictionary_line(token: bytes) -> str:
    """``token`` in libFuzzer's ``-dict`` syntax: quoted, other bytes as hex escapes."""
    printable = (chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in token)
    return '"' + "".join(printable) + '"\n'


#: Seed inputs (``record_from_bytes`` layout): valid messages and near misses.
SEEDS: tuple[bytes, ...] = (
    b'\x00{"id": "bbc-1", "text": "Shares rose as markets rallied", "title": "Markets"}',
    b'\x01\x03k-1{"id": "q", "text": "' + "口座を解約".encode() + b'"}',
    b"\x0d\x02k2\x00\x00\x01\x8b\x00\x00\x00\x00\x05trace\x02\xff\x00"
    b'{"id": "a", "text": "x", "lang": "en", "metadata": {"feed": [1, {"a": null}]}}',
    b'\x00{"id": "a", "text": "x", "schema_version": 1, "source": "s"}',
    b'\x00{"id": "a", "text": "\\ud83d\\ude00 \\u00e9 http://x.y/z a@b.cd 2004 -- x"}',
    b"\x02",
    b'\x00{"id": "long", "text": "' + b"word " * 300 + b'"}',  # over FUZZ_LIMITS' text cap
    b'\x00{"id": "huge", "text": "' + b"word " * 420 + b'"}',  # over FUZZ_LIMITS' value cap
)


def main(argv: list[str] | None = None) -> None:
    """Run atheris on :func:`outcome_of` with libFuzzer's command-line flags."""
    try:
        import atheris
    except ImportError:
        sys.exit("python -m consumer.fuzz needs atheris: pip install atheris (see pyproject [dev])")
    limits = FUZZ_LIMITS
    tokenise = tokenisers()
    seen: Counter[str] = Counter()
    executions = 0

    def run(data: bytes) -> None:
        nonlocal executions
        record = record_from_bytes(data)
        for name in ("en", "ja"):
            kind, value, rejection = outcome_of(record, limits, tokenise[name])
            check_outcome(record, kind, value)
            seen[kind if rejection is None else rejection.code.value] += 1
        executions += 1
        if executions & (executions - 1) == 0:  # powers of two, like libFuzzer's pulses
            print(f"#{executions} outcomes: {dict(seen.most_common())}", file=sys.stderr)

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(not a.startswith("-") for a in args):  # no corpus folder or reproducer given
        corpus = Path(".fuzz-corpus")
        corpus.mkdir(exist_ok=True)
        for i, seed in enumerate(SEEDS):
            (corpus / f"seed-{i}").write_bytes(seed)
        args.append(str(corpus))
    if not any(a.startswith("-dict=") for a in args):
        dictionary = Path(".fuzz-corpus.dict")
        dictionary.write_text("".join(dictionary_line(token) for token in DICTIONARY))
        args.insert(0, f"-dict={dictionary}")
    atheris.instrument_all()  # coverage feedback from every loaded Python function
    atheris.Setup([sys.argv[0], *args], run)
    atheris.Fuzz()  # libFuzzer exits the process and prints "Done N runs in S second(s)"


if __name__ == "__main__":
    main()
