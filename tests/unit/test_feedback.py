"""The feedback join: bounded prediction memory, verdict counting, the labels thread.

The live join against the real broker and the real consumer process is
tests/integration/test_feedback.py.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from consumer.batch import Batch
from consumer.decoding import JsonInput
from consumer.export_feedback import COLUMNS, ExportSettings, ExportSummary, _write, main
from consumer.feedback import (
    INVALID_REASONS,
    FeedbackJoin,
    FeedbackMetrics,
    InvalidVerdictError,
    PredictionLog,
    parse_verdict,
)
from consumer.lifecycle import Lifecycles
from consumer.records import RawRecord
from consumer.settings import Settings
from consumer.steps import prepare

V1_LABELS = ["business", "sport", "tech"]
V2_LABELS = ["business", "politics", "sport"]  # a hot swap: "tech" gone, "politics" new


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Model:
    def __init__(self, version: str, labels: list[str]) -> None:
        self.version = version
        self.labels = labels
        self.drift_profile = None

    def token_ids(self, text: str) -> list[int]:
        return [2]


def _batch(model: _Model, predicted: Sequence[tuple[str, str]]) -> Batch:
    """A committed-looking batch: ``(id, label)`` predicted by ``model``, plus one bad record."""
    values = [json.dumps({"id": i, "text": f"text of {i}"}).encode() for i, _ in predicted]
    records = [
        RawRecord("in", 0, n, i.encode(), v)
        for n, ((i, _), v) in enumerate(zip(predicted, values, strict=True))
    ]
    records.append(RawRecord("in", 0, len(values), b"bad", b"not json"))
    batch = Batch.of(records, model, Lifecycles().new(), 0)  # type: ignore[arg-type]
    batch.prepared = [prepare(r, JsonInput(), model.token_ids) for r in records]
    batch.outcomes = [
        np.asarray([0.8 if name == label else 0.1 for name in model.labels], dtype=np.float32)
        for _, label in predicted
    ]
    return batch


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _verdict(message_id: str, label: str, **extra: Any) -> bytes:
    return json.dumps({"id": message_id, "label": label, **extra}).encode()


# -- PredictionLog ---------------------------------------------------------------------------


def test_the_oldest_prediction_is_forgotten_first_past_the_bound() -> None:
    log = PredictionLog(3, 3600, clock=_Clock())
    labels = frozenset(V1_LABELS)
    log.remember([("a", "sport"), ("b", "tech"), ("c", "sport")], "v1", labels)
    log.remember([("a", "business")], "v1", labels)  # predicted again: now the newest
    log.remember([("d", "tech")], "v1", labels)
    assert len(log) == 3
    assert log.get("b") is None  # the oldest went first
    remembered = log.get("a")
    assert remembered is not None
    assert remembered.label == "business"
    assert [log.get(i) is not None for i in "acd"] == [True, True, True]
    log.remember([(f"x{i}", "tech") for i in range(10)], "v1", labels)  # one batch over it
    assert len(log) == 3
    assert [log.get(f"x{i}") is not None for i in (7, 8, 9)] == [True, True, True]


def test_a_prediction_older_than_the_retention_is_forgotten() -> None:
    clock = _Clock()
    log = PredictionLog(100, 60, clock=clock)
    labels = frozenset(V1_LABELS)
    log.remember([("old", "sport")], "v1", labels)
    clock.now += 30
    log.remember([("new", "tech")], "v1", labels)
    clock.now += 30  # "old" is exactly 60 s old: still kept
    assert len(log) == 2
    clock.now += 0.001
    assert log.claim("old", "sport") == ("unmatched", None)
    assert len(log) == 1
    outcome, entry = log.claim("new", "tech")
    assert outcome == "matched"
    assert entry is not None
    assert (entry.label, entry.version, entry.at) == ("tech", "v1", 1030.0)
    clock.now += 31
    assert len(log) == 0


def test_a_prediction_is_judged_once_and_only_with_its_versions_labels() -> None:
    log = PredictionLog(10, 60, clock=_Clock())
    log.remember([("m", "sport")], "v1", frozenset(V1_LABELS))
    assert log.claim("m", "politics")[0] == "invalid"  # not a v1 label: changes nothing
    assert log.claim("m", "tech")[0] == "matched"
    assert log.claim("m", "sport")[0] == "duplicate"
    assert log.claim("nobody", "sport") == ("unmatched", None)
    log.remember([("m", "tech")], "v1", frozenset(V1_LABELS))  # predicted again (a replay)
    assert log.claim("m", "tech")[0] == "matched"


def test_the_log_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="max_predictions"):
        PredictionLog(0, 60)
    with pytest.raises(ValueError, match="retention_s"):
        PredictionLog(10, 0)


# -- the join's counting ---------------------------------------------------------------------


def test_verdicts_are_counted_per_outcome_version_and_confusion_cell() -> None:
    registry = CollectorRegistry()
    join = FeedbackJoin(PredictionLog(100, 3600), FeedbackMetrics(registry))
    v1, v2 = _Model("v1", V1_LABELS), _Model("v2", V2_LABELS)
    join.offer(_batch(v1, [("a", "sport"), ("b", "tech"), ("c", "business")]))
    assert _value(registry, "classifier_feedback_remembered_predictions") == 3  # not the bad one
    join.offer(_batch(v2, [("d", "politics"), ("e", "sport")]))  # after a hot swap
    assert _value(registry, "classifier_feedback_remembered_predictions") == 5

    outcomes = [
        join.judge(_verdict("a", "sport")),  # v1 right
        join.judge(_verdict("b", "business")),  # v1 wrong
        join.judge(_verdict("c", "business", reviewer="ann")),  # v1 right, extra field
        join.judge(_verdict("c", "tech")),  # a second verdict: counted once only
        join.judge(_verdict("d", "sport")),  # v2 wrong
        join.judge(_verdict("e", "sport")),  # v2 right
        join.judge(_verdict("b", "politics")),  # not a v1 label (v2's, though)
        join.judge(_verdict("zzz", "sport")),  # never predicted here
        join.judge(b"{not json"),
        join.judge(None),
    ]
    assert outcomes == [
        "matched", "matched", "matched", "duplicate", "matched", "matched",
        "invalid", "unmatched", "invalid", "invalid",
    ]  # fmt: skip
    labels = {o: _value(registry, "classifier_feedback_labels_total", outcome=o) for o in
              ("matched", "unmatched", "duplicate", "invalid")}  # fmt: skip
    assert labels == {"matched": 5, "unmatched": 1, "duplicate": 1, "invalid": 3}
    reasons = {
        r: _value(registry, "classifier_feedback_invalid_labels_total", reason=r)
        for r in INVALID_REASONS
    }
    assert {r: n for r, n in reasons.items() if n} == {
        "unknown_label": 1,
        "invalid_json": 1,
        "null_value": 1,
    }
    cells = {
        (s.labels["model_version"], s.labels["predicted"], s.labels["actual"]): s.value
        for metric in registry.collect()
        if metric.name == "classifier_feedback_predictions"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert cells == {
        ("v1", "sport", "sport"): 1,
        ("v1", "tech", "business"): 1,
        ("v1", "business", "business"): 1,
        ("v2", "politics", "sport"): 1,
        ("v2", "sport", "sport"): 1,
    }
    assert _value(registry, "classifier_feedback_correct_total", model_version="v1") == 2
    assert _value(registry, "classifier_feedback_correct_total", model_version="v2") == 1


def test_a_version_with_no_correct_verdict_shows_zero_correct() -> None:
    registry = CollectorRegistry()
    join = FeedbackJoin(PredictionLog(100, 3600), FeedbackMetrics(registry))
    join.offer(_batch(_Model("v1", V1_LABELS), [("a", "sport")]))
    assert join.judge(_verdict("a", "tech")) == "matched"
    assert (
        registry.get_sample_value("classifier_feedback_correct_total", {"model_version": "v1"}) == 0
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "null_value"),
        (b"x" * 70_000, "too_large"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"id": "a", "label": "sport"', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b'{"label": "sport"}', "bad_id"),
        (b'{"id": 7, "label": "sport"}', "bad_id"),
        (b'{"id": "  ", "label": "sport"}', "bad_id"),
        (b'{"id": "a"}', "bad_label"),
        (b'{"id": "a", "label": null}', "bad_label"),
        (b'{"id": "a", "label": ["sport"]}', "bad_label"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # deeper than orjson goes: refused, no crash
    ],
)
def test_records_that_are_not_verdicts_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidVerdictError) as caught:
        parse_verdict(value)
    assert caught.value.reason == reason
    assert reason in INVALID_REASONS


def test_a_verdict_keeps_extra_fields_out_and_trims_the_label() -> None:
    verdict = parse_verdict(b'{"id": "bbc-1", "label": " sport\\n", "by": "ann", "n": [1]}')
    assert (verdict.id, verdict.label) == ("bbc-1", "sport")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["id", "label", "x"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers())),
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_no_labels_record_can_raise(value: bytes) -> None:
    registry = CollectorRegistry()
    join = FeedbackJoin(PredictionLog(10, 3600), FeedbackMetrics(registry))
    join.offer(_batch(_Model("v1", V1_LABELS), [("0", "sport"), ("a", "tech")]))
    assert join.judge(value) in ("matched", "unmatched", "invalid")
    total = sum(
        _value(registry, "classifier_feedback_labels_total", outcome=o)
        for o in ("matched", "unmatched", "duplicate", "invalid")
    )
    assert total == 1


# -- the labels thread -----------------------------------------------------------------------


class _Message:
    def __init__(self, value: bytes | None, error: str | None = None) -> None:
        self._value, self._error = value, error

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> str | None:
        return self._error


class _FakeConsumer:
    """Partitions 0-1 at first, a third added later; hands out queued messages."""

    def __init__(self) -> None:
        self.partitions = [0, 1]
        self.assigned: list[TopicPartition] = []
        self.queue: list[_Message] = []
        self.fail_next = 0
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def list_topics(self, topic: str, timeout: float) -> Any:
        info = type("Info", (), {"error": None, "partitions": dict.fromkeys(self.partitions)})
        return type("Metadata", (), {"topics": {topic: info}})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 10 + tp.partition

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned += partitions

    def consume(self, n: int, timeout: float) -> list[_Message]:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("broker hiccup")
            out, self.queue = self.queue[:n], self.queue[n:]
        if not out:
            time.sleep(0.01)
        return out

    def close(self) -> None:
        self.closed.set()


def _wait(condition: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_thread_reads_every_partition_from_its_end_then_added_ones_from_the_start() -> None:
    registry = CollectorRegistry()
    fake = _FakeConsumer()
    join = FeedbackJoin(
        PredictionLog(100, 3600), FeedbackMetrics(registry), fake, "labels", refresh_interval_s=0.05
    )
    try:
        assert _wait(lambda: len(fake.assigned) == 2)
        assert [(tp.partition, tp.offset) for tp in fake.assigned] == [(0, 10), (1, 11)]
        fake.partitions = [0, 1, 2]
        assert _wait(lambda: len(fake.assigned) == 3)
        assert (fake.assigned[2].partition, fake.assigned[2].offset) == (2, OFFSET_BEGINNING)

        join.offer(_batch(_Model("v1", V1_LABELS), [("a", "sport"), ("b", "tech")]))
        with fake.lock:
            fake.fail_next = 1  # consume raises once: logged, the thread goes on
        with fake.lock:
            fake.queue += [
                _Message(_verdict("a", "sport")),
                _Message(None, error="_PARTITION_EOF"),  # a read error: not a verdict
                _Message(b"garbage"),
                _Message(_verdict("b", "sport")),
                _Message(_verdict("nobody", "sport")),
            ]

        def counted() -> float:
            return sum(
                _value(registry, "classifier_feedback_labels_total", outcome=o)
                for o in ("matched", "unmatched", "invalid")
            )

        assert _wait(lambda: counted() == 4)
        assert _value(registry, "classifier_feedback_labels_total", outcome="matched") == 2
        assert _value(registry, "classifier_feedback_correct_total", model_version="v1") == 1
    finally:
        join.close(5)
    assert fake.closed.is_set()  # the thread closed its consumer


# -- settings and the export command ----------------------------------------------------------


def test_the_labels_topic_is_a_topic_of_its_own(tmp_path: Path) -> None:
    s = Settings(bundle=tmp_path, labels_topic="labels")
    assert (s.labels_topic, s.feedback_max_predictions, s.feedback_retention_s) == (
        "labels",
        100_000,
        86_400,
    )
    with pytest.raises(ValidationError, match="also the input_topic"):
        Settings(bundle=tmp_path, labels_topic="articles")
    with pytest.raises(ValidationError, match="also the review_topic"):
        Settings(bundle=tmp_path, labels_topic="review", review_topic="review")
    with pytest.raises(ValidationError, match="feedback_max_predictions"):
        Settings(bundle=tmp_path, feedback_max_predictions=0)


def test_the_export_needs_a_labels_topic_and_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "feedback.csv"
    assert main(["--bundle", str(tmp_path), "--output", str(out)]) == 2
    assert "--labels-topic" in capsys.readouterr().err
    args = ["--bundle", str(tmp_path), "--output", str(out), "--labels-topic", "labels",
            "--bootstrap-servers", "127.0.0.1:1", "--export-timeout-s", "1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("refused: cannot read 'labels'"), err
    assert not out.exists()


def test_the_csv_is_what_the_trainer_reads(tmp_path: Path) -> None:
    from training.data import load_table

    path = tmp_path / "feedback.csv"
    rows = [("a", 'Title "quoted", text\non two lines', "sport"), ("b", "plain", "tech")]
    _write(path, rows)
    with path.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    data = load_table(path, "text", "label")
    assert data.texts == [r[1] for r in rows]
    assert data.labels == ["sport", "tech"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_summary_line_names_every_count(tmp_path: Path) -> None:
    summary = ExportSummary(labels=9, invalid={"bad_id": 1, "invalid_json": 2}, superseded=1,
                            inputs=20, unreadable=1, matched=4, unmatched=1)  # fmt: skip
    assert summary.line(tmp_path / "f.csv") == (
        f"exported 4 verdicts to '{tmp_path / 'f.csv'}'; labels 9: matched 4, unmatched 1 "
        "(no input record), invalid 3 (bad_id 1, invalid_json 2), superseded 1; input "
        "records 20 (unreadable 1); rows per label: none"
    )
    summary.rows_per_label = {"tech": 1, "sport": 3}
    assert summary.line(tmp_path).endswith("rows per label: sport 3, tech 1")
    assert ExportSettings(bundle=tmp_path, output=tmp_path / "f.csv", labels_topic="l").output
