"""No single record can stop the stream: pathological messages between real BBC articles.

A real ``python -m consumer`` process reads one partition holding real held-out BBC articles
interleaved with hostile records — nesting far past the cap, values and texts at and just
over each cap, a 1 MB single token, lone surrogates, a 5,000-digit number, an unhashable
``schema_version``, a tombstone and (written by kcat, an outside client) a header name that
is not UTF-8. The consumer must stay alive, dead-letter each bad record with its reason and
original bytes (or size + sha256 above the copy limit), predict every article behind them and
commit offsets past all of them. A fatal error (a dead-letter topic that refuses the records)
must end as one ``consumer_failed`` JSON line and exit code 1, never a plain traceback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.records import DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES
from schemas import EncodedBytes
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    REPO_ROOT,
    Collector,
    Topics,
    held_out_articles,
    log_events,
    produce,
    start_consumer,
    wait_exit,
    wait_for_log,
)

VALUE_CAP = 1_200_000
TEXT_CAP = 1_100_000
DEPTH_CAP = 32
BIG = {"message.max.bytes": 3_000_000}
TOPIC_BIG = {"max.message.bytes": "3000000"}


def _doc(i: str, text: str, **extra: object) -> bytes:
    return json.dumps({"id": i, "text": text, **extra}, separators=(",", ":")).encode()


def _padded_to(size: int, i: str) -> bytes:
    """An input message of exactly ``size`` bytes (padding in ``metadata``)."""
    head, tail = b'{"id":"' + i.encode() + b'","text":"short text","metadata":{"pad":"', b'"}}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


def _nested(i: str, depth: int) -> bytes:
    """An input message whose JSON nests ``depth`` levels (the object itself is level 1)."""
    inner = depth - 1
    return (
        b'{"id":"' + i.encode() + b'","text":"x","metadata":' + b'{"a":' * inner + b"1"
    ) + b"}" * (inner + 1)


def _text_of_bytes(i: str, size: int) -> bytes:
    return _doc(i, "w" * size)


def _kcat(bootstrap: str, topic: str, key: bytes, value: bytes, header: bytes) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is needed to write a non-UTF-8 header name: apt-get install kcat")
    subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-k", key, "-H", header],
        input=value,
        check=True,
        timeout=30,
    )


def test_hostile_records_are_dead_lettered_and_the_stream_goes_on(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:60]
    good = [(a[0].encode(), _doc(a[0], a[1])) for a in articles]
    one_mb_token = _doc("token", "a" * 1_000_000)
    hostile: dict[str, tuple[bytes | None, str | None]] = {
        # key: (value, expected error code or None for "predicted")
        "deep": (b'{"id":"deep","text":"x","metadata":' + b"[" * 200_000, "nesting_too_deep"),
        "depth-at-cap": (_nested("depth-at-cap", DEPTH_CAP), None),
        "depth-over-cap": (_nested("depth-over-cap", DEPTH_CAP + 1), "nesting_too_deep"),
        "value-at-cap": (_padded_to(VALUE_CAP, "value-at-cap"), None),
        "value-over-cap": (_padded_to(VALUE_CAP + 1, "value-over-cap"), "value_too_large"),
        "text-at-cap": (_text_of_bytes("text-at-cap", TEXT_CAP), None),
        "text-over-cap": (_text_of_bytes("text-over-cap", TEXT_CAP + 1), "text_too_large"),
        "token": (one_mb_token, None),
        "lone-surrogate": (b'{"id":"s","text":"\\ud800 abc"}', "invalid_json"),
        "surrogate-bytes": (b'{"id":"s","text":"\xed\xa0\x80"}', "not_utf8"),
        "huge-number": (b'{"id":"n","text":"x","n":' + b"9" * 5000 + b"}", "invalid_json"),
        "version-list": (_doc("v", "x", schema_version=[1]), "unsupported_schema_version"),
        "tombstone": (None, "null_value"),
    }
    topics = Topics(
        new_topic("in", partitions=1, config=TOPIC_BIG),
        new_topic("out"),
        new_topic("dlq", config=TOPIC_BIG),
    )
    bad = [(k.encode(), v) for k, (v, _) in hostile.items()]
    produce(kafka_bootstrap, topics.input, [*good[:20], *bad[:7]], BIG)
    header_value = _doc("bad-header", "Shares rose as markets rallied")
    _kcat(kafka_bootstrap, topics.input, b"bad-header", header_value, b"\xff\xfename=v")
    produce(kafka_bootstrap, topics.input, [*good[20:40], *bad[7:], *good[40:]], BIG)
    total = len(good) + len(bad) + 1

    group = f"g-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle,
        kafka_bootstrap,
        topics,
        group,
        log_path,
        "--max-value-bytes", str(VALUE_CAP),
        "--max-text-bytes", str(TEXT_CAP),
        "--max-json-depth", str(DEPTH_CAP),
        "--kafka", json.dumps(BIG),
    )  # fmt: skip
    expected_predicted = {a[0] for a in articles} | {k for k, (_, c) in hostile.items() if not c}
    expected_dead = {k: c for k, (_, c) in hostile.items() if c} | {"bad-header": "unprocessable"}
    collector = Collector(kafka_bootstrap, topics)
    try:
        done = collector.poll_until(
            lambda c: (
                len(c.predictions) >= len(expected_predicted)
                and len(c.dead_letters) >= len(expected_dead)
            ),
            180,
        )
        assert done, log_path.read_text()[-3000:]
        assert proc.poll() is None, "the consumer died on a hostile record"
        assert wait_for_log(log_path, lambda e: e.get("event") == "batch_done", 10), (
            "no batch committed"
        )
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 60) == 0, log_path.read_text()[-3000:]
    finally:
        collector.close()

    predicted = {p.key.decode() for p in collector.predictions if p.key is not None}
    assert predicted == expected_predicted
    letters = {d.key.decode(): d.value for d in collector.dead_letters if d.key is not None}
    assert {k: v["error_code"] for k, v in letters.items()} == expected_dead
    originals = {k: v for k, (v, _) in hostile.items()} | {"bad-header": header_value}
    for key, letter in letters.items():
        original = originals[key]
        assert letter["reason"], key
        assert letter["source"]["topic"] == topics.input
        if original is None:
            assert letter["value"] is None
            continue
        assert letter["value_size"] == len(original)
        assert letter["value_sha256"] == hashlib.sha256(original).hexdigest()
        if len(original) <= DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES:  # the default copy limit
            assert letter["value"] is not None, key
            assert EncodedBytes.model_validate(letter["value"]).to_bytes() == original, key
        else:
            assert letter["value"] is None, key
    assert "UTF-8" in letters["bad-header"]["reason"]
    assert "max_json_depth" in letters["deep"]["reason"]
    assert "max_value_bytes" in letters["value-over-cap"]["reason"]

    # Offsets advanced past every record, the hostile ones included (committed when the
    # stream went idle, at most one poll after the last batch: the commit interval).
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        deadline = time.monotonic() + 10
        while True:
            (committed,) = probe.committed([TopicPartition(topics.input, 0)], timeout=10)
            if committed.offset == total or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        probe.close()
    assert committed.offset == total

    events = log_events(log_path)
    assert not [e for e in events if e.get("event") in ("consumer_failed", "thread_failed")]
    assert "Traceback" not in log_path.read_text(encoding="utf-8", errors="replace")


def test_a_fatal_error_is_one_json_line_and_exit_code_1(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    tmp_path: Path,
) -> None:
    # A dead-letter topic that refuses every dead letter: the broker, not a record, fails.
    topics = Topics(
        new_topic("in", partitions=1),
        new_topic("out"),
        new_topic("dlq", config={"max.message.bytes": "200"}),
    )
    produce(kafka_bootstrap, topics.input, [(b"k", b"not json at all " * 20)])
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle,
        kafka_bootstrap,
        topics,
        f"g-{uuid.uuid4().hex[:8]}",
        log_path,
        "--flush-timeout-s", "10",
    )  # fmt: skip
    code = wait_exit(proc, 120)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert code == 1, text[-3000:]  # not -6 (SIGABRT) nor a hang
    failed = [e for e in log_events(log_path) if e.get("event") == "consumer_failed"]
    assert len(failed) == 1, text[-3000:]
    (event,) = failed
    assert event["level"] == "error"
    assert event["error_type"] == "DeliveryError"
    assert event["batches"] == [[f"{topics.input}[0]@0-0"]]
    assert "Traceback" in event["exception"]  # the traceback is inside the JSON line…
    assert not [line for line in text.splitlines() if line.startswith("Traceback")]  # …only


def _skip(bootstrap: str, topics: Topics, bundle: Path, group: str, offset: int, *args: str) -> int:
    """Run ``python -m consumer.skip`` on ``topics.input[0]@offset``; returns its exit code."""
    cmd = [
        sys.executable, "-m", "consumer.skip",
        "--bundle", str(bundle), "--bootstrap-servers", bootstrap,
        "--input-topic", topics.input, "--output-topic", topics.output,
        "--dead-letter-topic", topics.dead_letter, "--group-id", group,
        "--partition", "0", "--offset", str(offset), *args,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO_ROOT, timeout=120, check=False).returncode


def test_an_operator_skips_a_record_to_the_dead_letter_topic_without_losing_others(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    tmp_path: Path,
) -> None:
    # Stands in for a record that crashes the process natively: nothing the guard can catch.
    topics = Topics(new_topic("in", partitions=1), new_topic("out"), new_topic("dlq"))
    values = [_doc(f"a{i}", "Shares rose as markets rallied") for i in range(3)]
    produce(kafka_bootstrap, topics.input, [(b"a0", values[0]), (b"crash", values[1])])
    produce(kafka_bootstrap, topics.input, [(b"a2", values[2])])
    group = f"g-{uuid.uuid4().hex[:8]}"

    # Only the group's next record may be skipped: offset 1 would silently skip offset 0.
    assert _skip(kafka_bootstrap, topics, bbc_bundle, group, 1) == 2
    # Commit offset 1 as the crash-looping service would have (it processed offset 0).
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    probe.commit(offsets=[TopicPartition(topics.input, 0, 1)], asynchronous=False)
    probe.close()
    reason = "segfault in the tokeniser (TICKET-1)"
    assert _skip(kafka_bootstrap, topics, bbc_bundle, group, 1, "--reason", reason) == 0

    log_path = tmp_path / "consumer.log"
    proc = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, log_path)
    collector = Collector(kafka_bootstrap, topics)
    try:
        assert collector.poll_until(
            lambda c: len(c.predictions) >= 1 and len(c.dead_letters) >= 1, 120
        ), log_path.read_text()[-3000:]
        # A live group refuses the command: it would race the service for the offset.
        assert _skip(kafka_bootstrap, topics, bbc_bundle, group, 3) == 2
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 60) == 0
        collector.poll_until(lambda c: False, 3)  # anything else that was produced
    finally:
        collector.close()
    assert [p.key for p in collector.predictions] == [b"a2"]  # offset 0 was the group's past
    (letter,) = collector.dead_letters
    assert letter.key == b"crash"
    assert letter.value["error_code"] == "skipped_by_operator"
    assert letter.value["reason"] == "segfault in the tokeniser (TICKET-1)"
    assert letter.value["source"]["offset"] == 1
    assert EncodedBytes.model_validate(letter.value["value"]).to_bytes() == values[1]
