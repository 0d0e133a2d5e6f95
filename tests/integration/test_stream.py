"""End to end through a real broker: held-out BBC articles in, predictions out."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from model import load_bundle
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import Collector, Topics, log_events, produce, start_consumer
from training.data import load_csv
from training.fit import SPLIT_FILE

#: Malformed inputs: key → (value, expected error code). Every one must be dead-lettered.
MALFORMED: dict[bytes, tuple[bytes | None, str]] = {
    b"bad-json": (b'{"id": "x", "text": "unterminated', "invalid_json"),
    b"bad-utf8": (b'{"id": "x", "text": "caf\xe9"}', "not_utf8"),
    b"bad-missing-text": (b'{"id": "x", "title": "no text"}', "schema_violation"),
    b"bad-empty-text": (b'{"id": "x", "text": ""}', "schema_violation"),
    b"bad-blank-text": (b'{"id": "x", "text": "  \\n\\t "}', "schema_violation"),
    b"bad-wrong-type": (b'{"id": 12, "text": "numeric id"}', "schema_violation"),
    b"bad-array": (b'["id", "text"]', "not_an_object"),
    b"bad-tombstone": (None, "null_value"),
    b"bad-version": (
        b'{"id": "x", "text": "fine", "schema_version": 2}',
        "unsupported_schema_version",
    ),
    b"bad-too-large": (b'{"id": "x", "text": "' + b"z" * 120_000 + b'"}', "text_too_large"),
}


def _wait(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_held_out_articles_stream_through_with_a_restart(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(bbc_bundle)
    split = json.loads((bundle.path / SPLIT_FILE).read_text())
    data = load_csv(bbc_csv, "text", "category")
    held_out = split["test_indices"]
    ids = [f"bbc-{i}" for i in held_out]
    texts = [data.texts[i] for i in held_out]
    truth = {f"bbc-{i}": data.labels[i] for i in held_out}
    offline_probs = bundle.predict_proba(texts)
    offline = {i: bundle.labels[j] for i, j in zip(ids, offline_probs.argmax(axis=1), strict=True)}
    offline_accuracy = float(np.mean([offline[i] == truth[i] for i in ids]))

    topics = Topics(new_topic("articles"), new_topic("predictions"), new_topic("articles-dlq"))
    valid = [
        (i.encode(), json.dumps({"id": i, "text": t}).encode())
        for i, t in zip(ids, texts, strict=True)
    ]
    bad = [(key, value) for key, (value, _) in MALFORMED.items()]
    # Interleave the malformed messages with the articles so they share micro-batches.
    stream = valid[:100] + bad[:4] + valid[100:300] + bad[4:] + valid[300:]
    # The second half is produced only after the first run stopped, so the first run stops
    # mid-stream however fast it is.
    half = len(stream) // 2
    produce(kafka_bootstrap, topics.input, stream[:half])

    group = f"classifier-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "consumer.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        # First run: stop it (SIGTERM) as soon as it has produced some predictions.
        first = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, group, log_path, "--max-batch-size", "8"
        )
        assert collector.poll_until(lambda c: len(c.predictions) > 0, timeout_s=120), (
            log_path.read_text()
        )
        first.send_signal(signal.SIGTERM)
        assert _wait(first) == 0, log_path.read_text()
        collector.poll_until(lambda c: False, timeout_s=2)  # drain what the first run wrote
        after_first = len(collector.predictions)
        assert 0 < after_first < len(valid), "the first run must stop mid-stream"
        produce(kafka_bootstrap, topics.input, stream[half:])

        # Second run in the same group resumes from the committed offsets.
        second = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, group, log_path, "--max-batch-size", "64"
        )
        complete = collector.poll_until(
            lambda c: (
                len({p.value["id"] for p in c.predictions}) >= len(valid)
                and len(c.dead_letters) >= len(bad)
            ),
            timeout_s=180,
        )
        second.send_signal(signal.SIGTERM)
        assert _wait(second) == 0, log_path.read_text()
        assert complete, log_path.read_text()[-3000:]
        collector.poll_until(lambda c: False, timeout_s=2)  # anything extra would be a duplicate
    finally:
        collector.close()

    predictions = collector.predictions
    per_id = Counter(p.value["id"] for p in predictions)
    assert set(per_id) == set(ids), "every valid article gets a prediction"
    assert max(per_id.values()) == 1, "a graceful stop commits its work: nothing is repeated"
    for p in predictions:
        assert p.key == p.value["id"].encode(), "the prediction keeps its input's key"
        assert p.value["label"] == offline[p.value["id"]], p.value["id"]
        assert p.value["model_version"] == bundle.version
        assert p.value["top_k"][0]["label"] == p.value["label"]
        assert p.value["source"]["topic"] == topics.input
    streamed_accuracy = float(
        np.mean([p.value["label"] == truth[p.value["id"]] for p in predictions])
    )
    assert streamed_accuracy == offline_accuracy

    assert len(collector.dead_letters) == len(bad)
    by_key = {d.key: d.value for d in collector.dead_letters}
    assert set(by_key) == set(MALFORMED)
    for key, (value, code) in MALFORMED.items():
        letter = by_key[key]
        assert letter["error_code"] == code, (key, letter)
        assert letter["reason"]
        assert letter["source"]["topic"] == topics.input
        if value is None:
            assert letter["value"] is None
        elif letter["value"]["encoding"] == "utf-8":
            assert letter["value"]["data"].encode() == value
        else:
            import base64

            assert base64.b64decode(letter["value"]["data"]) == value

    events = log_events(log_path)
    dead_logged = [e for e in events if e.get("event") == "dead_lettered"]
    assert len(dead_logged) == len(bad)
    assert all({"topic", "partition", "offset"} <= e.keys() for e in dead_logged)


def test_refuses_to_start_against_missing_topics(
    kafka_bootstrap: str, bbc_bundle: Path, tmp_path: Path
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    topics = Topics(missing, missing + "-out", missing + "-dlq")
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(bbc_bundle, kafka_bootstrap, topics, "g", log_path)
    assert _wait(proc) == 2
    failure = [e for e in log_events(log_path) if e.get("event") == "startup_failed"]
    assert failure, log_path.read_text()
    assert "do not exist" in failure[0]["error"]
    assert "--create-topics" in failure[0]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch-size", "0"], "max_batch_size"),
        (["--max-wait-ms", "soon"], "max_wait_ms"),
    ],
)
def test_bad_settings_stop_at_start_up_with_the_setting_named(
    kafka_bootstrap: str, bbc_bundle: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    topics = Topics("a", "b", "c")
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(bbc_bundle, kafka_bootstrap, topics, "g", log_path, *args)
    assert _wait(proc) == 2
    text = log_path.read_text()
    assert "invalid settings" in text
    assert message in text
