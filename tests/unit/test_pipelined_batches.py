"""The service's two-batches-in-flight control flow, driven without a broker.

The broker semantics (acks, commits, transactions, rebalances) are tested against a real
Kafka in tests/integration; this tests only the ordering logic of the pipelined loop, which
a real broker cannot be made to exercise on demand: a batch whose commit is aborted must
rewind, the batch computed behind it must never be delivered, and everything must then be
delivered once, in order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from confluent_kafka import TopicPartition

from consumer.delivery import BatchAbortedError, CommitFailedError
from consumer.service import ClassifierService
from consumer.settings import Settings

TOPIC = "articles"


class _Message:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


class _Consumer:
    """One partition of ``values``; ``consume`` hands out up to ``n`` from the position."""

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self.position = 0
        self.seeks: list[int] = []
        self._lock = threading.Lock()

    def subscribe(self, topics: list[str], on_assign: Any, **_: Any) -> None:
        on_assign(self, [TopicPartition(TOPIC, 0)])

    def consume(self, n: int, timeout: float) -> list[_Message]:
        with self._lock:
            end = min(len(self.values), self.position + n)
            out = [_Message(o, self.values[o]) for o in range(self.position, end)]
            self.position = end
        if not out:
            time.sleep(min(timeout, 0.005))
        return out

    def seek(self, tp: TopicPartition) -> None:
        with self._lock:
            self.seeks.append(tp.offset)
            self.position = tp.offset

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0)]

    def pause(self, _: Any) -> None: ...

    def resume(self, _: Any) -> None: ...

    def close(self) -> None: ...


class _Delivery:
    """Records what each batch produced; the ``abort_commit``-th commit aborts."""

    def __init__(self, abort_commit: int) -> None:
        self.abort_commit = abort_commit
        self.commits = 0
        self.pending: list[str] = []
        self.produced: list[str] = []  # ids in produce order, committed or not
        self.predictions: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.delivered: list[str] = []  # ids in committed order
        self.committed_offsets: list[int] = []

    def begin(self) -> None:
        self.pending = []

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic == "articles.dlq":
            self.dead_letters.append(json.loads(value))
            return
        self.pending.append(json.loads(value)["id"])
        self.produced.append(self.pending[-1])
        self.predictions.append(json.loads(value))

    def flush(self) -> None: ...

    def commit(self, offsets: list[Any]) -> None:
        self.commits += 1
        if self.commits == self.abort_commit:
            raise BatchAbortedError("transaction aborted (test)")
        self.delivered += self.pending
        self.committed_offsets.append(offsets[0].offset)

    def abort(self) -> None: ...

    def commit_pending(self, partitions: Collection[tuple[str, int]] | None = None) -> None: ...

    def forget(self, partitions: Collection[tuple[str, int]]) -> None: ...


class _Classifier:
    def __init__(self) -> None:
        self.version = "test"
        self.drift_profile = None
        self.labels = ["a", "b"]

    def token_ids(self, text: str) -> list[int]:
        return [{"nan": 2, "over": 3}.get(text, 1)]

    def predict_token_ids(self, sequences: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        time.sleep(0.02)  # long enough for the next batch to be prefetched meanwhile
        rows = {2: [np.nan, 0.5], 3: [1.0000001, 0.0]}
        return np.array([rows.get(s[0], [0.75, 0.25]) for s in sequences], np.float32)

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        return [[("a", float(r[0])), ("b", float(r[1]))][:k] for r in probabilities]


class _Producer:
    def flush(self, timeout: float) -> int:
        return 0


def _serve(
    tmp_path: Path, texts: list[str], delivery: _Delivery, in_flight: int = 2
) -> tuple[ClassifierService, _Consumer]:
    """Run the service over ``texts`` (ids ``m0``…) until ``delivery`` has them all."""
    values = [json.dumps({"id": f"m{i}", "text": t}).encode() for i, t in enumerate(texts)]
    return _serve_values(tmp_path, values, delivery, in_flight)


def _serve_values(
    tmp_path: Path, values: list[bytes], delivery: _Delivery, in_flight: int = 2
) -> tuple[ClassifierService, _Consumer]:
    """Run the service over raw record ``values`` until their last offset is committed."""
    consumer = _Consumer(values)
    settings = Settings(
        bundle=tmp_path, max_batch_size=10, max_wait_ms=1, max_batches_in_flight=in_flight
    )
    service = ClassifierService(
        settings, _Classifier(), consumer, _Producer(), delivery=delivery, watcher=None
    )

    def stop_when_done() -> None:
        deadline = time.monotonic() + 30
        while delivery.committed_offsets[-1:] != [len(values)] and time.monotonic() < deadline:
            time.sleep(0.01)
        service.request_stop()

    threading.Thread(target=stop_when_done, daemon=True).start()
    assert service.run() == 0
    return service, consumer


@pytest.mark.parametrize("in_flight", [1, 2])
def test_an_aborted_batch_rewinds_and_the_batch_behind_it_is_never_delivered(
    tmp_path: Path, in_flight: int
) -> None:
    n = 100
    delivery = _Delivery(abort_commit=2)
    service, consumer = _serve(tmp_path, [f"text {i}" for i in range(n)], delivery, in_flight)

    # Every message delivered exactly once and in offset order: the aborted second batch
    # (offsets 10-19) was re-read, and the batch prefetched/computed behind it was not sent.
    ids = [f"m{i}" for i in range(n)]
    assert delivery.delivered == ids
    assert delivery.produced == ids[:20] + ids[10:]  # the aborted batch's output, then the rest
    assert consumer.seeks == [10]
    assert delivery.committed_offsets == sorted(delivery.committed_offsets)
    assert delivery.committed_offsets[-1] == n
    assert service.metrics.totals().predicted == n


class _CommitRefusingDelivery(_Delivery):
    """Output acknowledged, but the ``refuse_commit``-th offset commit fails (at-least-once)."""

    def __init__(self, refuse_commit: int) -> None:
        super().__init__(abort_commit=0)
        self.refuse_commit = refuse_commit

    def commit(self, offsets: list[Any]) -> None:
        if self.commits + 1 == self.refuse_commit:
            self.commits += 1
            raise CommitFailedError("offsets not committed: rebalance in progress (test)")
        super().commit(offsets)


@pytest.mark.parametrize("in_flight", [1, 2])
def test_a_failed_commit_is_counted_as_a_commit_failure_not_as_committed(
    tmp_path: Path, in_flight: int
) -> None:
    n = 100
    delivery = _CommitRefusingDelivery(refuse_commit=2)
    texts = [f"text {i}" for i in range(n)]
    service, consumer = _serve(tmp_path, texts, delivery, in_flight)

    # The second batch's output was produced and acknowledged; only its offsets were not
    # committed. Nothing is rewound: every message is produced once, in order, and the
    # next commit (offsets 20-29) covers the uncommitted ones.
    ids = [f"m{i}" for i in range(n)]
    assert delivery.produced == ids
    assert delivery.delivered == ids[:10] + ids[20:]
    assert consumer.seeks == []
    assert delivery.committed_offsets[-1] == n
    totals = service.metrics.totals()
    assert totals.commit_failures == 1
    assert totals.consumed == n - 10, "the refused batch is not counted as committed"
    assert totals.predicted == n - 10
    assert service.metrics.registry.get_sample_value("classifier_aborted_batches_total") == 0


def test_non_finite_output_is_dead_lettered_and_rounding_above_one_is_clipped(
    tmp_path: Path,
) -> None:
    delivery = _Delivery(abort_commit=0)
    service, _ = _serve(tmp_path, ["fine", "nan", "over", "fine"], delivery)

    assert delivery.delivered == ["m0", "m2", "m3"]
    over = delivery.predictions[1]
    assert over["id"] == "m2"
    assert over["confidence"] == 1.0
    (letter,) = delivery.dead_letters
    assert letter["error_code"] == "inference_failed"
    assert "non-finite" in letter["reason"]
    assert letter["source"]["offset"] == 1
    assert service.metrics.totals().by_error == {"inference_failed": 1}


class _SizeLimitedDelivery(_Delivery):
    """Refuses records over ``limit`` bytes the way the producer does (``MSG_SIZE_TOO_LARGE``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(abort_commit=0)
        self.limit = limit

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if len(value) + len(key or b"") > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        super().produce(topic, key, value)


def test_an_output_the_producer_refuses_as_too_large_is_dead_lettered_not_fatal(
    tmp_path: Path,
) -> None:
    delivery = _SizeLimitedDelivery(limit=3000)
    values = [
        json.dumps({"id": "m0", "text": "fine"}).encode(),
        json.dumps({"id": "x" * 4000, "text": "fine"}).encode(),  # prediction too large
        b"not json " * 500,  # its dead letter (value copied) too large
        json.dumps({"id": "m3", "text": "fine"}).encode(),
    ]
    _serve_values(tmp_path, values, delivery)

    assert delivery.delivered == ["m0", "m3"]
    by_offset = {d["source"]["offset"]: d for d in delivery.dead_letters}
    assert sorted(by_offset) == [1, 2]
    assert by_offset[1]["error_code"] == "unprocessable"
    assert "prediction not produced" in by_offset[1]["reason"]
    assert by_offset[2]["error_code"] == "invalid_json"
    for letter in by_offset.values():  # minimal letters: identified, nothing copied
        assert letter["value"] is None
        assert letter["value_sha256"]
        assert "not copied" in letter["reason"]
    assert delivery.committed_offsets[-1] == len(values)
