"""At-least-once offset commits with a commit interval (:class:`consumer.delivery.AtLeastOnce`).

The producer and consumer here are stand-ins that record calls; that the broker really
holds the offsets is checked against a real broker by the integration tests.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.committer import IDLE_RETRY_S, Committer
from consumer.delivery import AtLeastOnce, CommitFailedError
from consumer.fetch import Fetcher
from consumer.metrics import HealthState, Metrics
from consumer.service import ClassifierService
from consumer.settings import Settings


class _Producer:
    def flush(self, _timeout: float) -> int:
        return 0  # every record acknowledged


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []
        self.refuse = False

    def commit(self, offsets: list[Any], asynchronous: bool) -> list[Any] | None:
        assert asynchronous is False
        if self.refuse:
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        return None


def _delivery(interval_s: float) -> tuple[AtLeastOnce, _Consumer]:
    consumer = _Consumer()
    return AtLeastOnce(_Producer(), consumer, 5.0, interval_s), consumer


def test_without_an_interval_every_batch_commits_at_once() -> None:
    delivery, consumer = _delivery(0.0)
    delivery.commit([TopicPartition("in", 0, 10)])
    delivery.commit([TopicPartition("in", 0, 20)])
    assert consumer.commits == [[("in", 0, 10)], [("in", 0, 20)]]


def test_within_the_interval_offsets_wait_and_the_latest_per_partition_is_committed() -> None:
    delivery, consumer = _delivery(3600.0)
    delivery.commit([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)])
    delivery.commit([TopicPartition("in", 0, 20)])
    assert consumer.commits == []
    delivery.commit_pending()
    assert consumer.commits == [[("in", 0, 20), ("in", 1, 5)]]
    delivery.commit_pending()  # nothing waits any more
    assert len(consumer.commits) == 1


def test_once_the_interval_has_passed_the_next_batch_commits_everything_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("consumer.delivery.time.monotonic", lambda: clock[0])
    delivery, consumer = _delivery(1.0)
    delivery.commit([TopicPartition("in", 0, 10)])
    clock[0] += 0.5
    delivery.commit([TopicPartition("in", 1, 7)])
    assert consumer.commits == []
    clock[0] += 0.6
    delivery.commit([TopicPartition("in", 0, 30)])
    assert consumer.commits == [[("in", 0, 30), ("in", 1, 7)]]


def test_a_revoked_partition_commits_only_its_own_offsets() -> None:
    delivery, consumer = _delivery(3600.0)
    delivery.commit([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)])
    delivery.commit_pending({("in", 1)})
    assert consumer.commits == [[("in", 1, 5)]]
    delivery.commit_pending()
    assert consumer.commits[-1] == [("in", 0, 10)]


def test_a_refused_commit_keeps_the_offsets_for_the_next_one() -> None:
    delivery, consumer = _delivery(3600.0)
    delivery.commit([TopicPartition("in", 0, 10)])
    consumer.refuse = True
    with pytest.raises(CommitFailedError, match="offsets not committed"):
        delivery.commit_pending()
    consumer.refuse = False
    delivery.commit_pending()
    assert consumer.commits == [[("in", 0, 10)]]


def test_offsets_of_lost_partitions_are_never_committed() -> None:
    delivery, consumer = _delivery(3600.0)
    delivery.commit([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)])
    delivery.forget({("in", 0)})
    delivery.commit_pending()
    assert consumer.commits == [[("in", 1, 5)]]


def test_partitions_the_broker_refused_keep_waiting_the_others_are_done() -> None:
    class _PartlyRefusing(_Consumer):
        def commit(self, offsets: list[Any], asynchronous: bool) -> list[Any]:
            super().commit(offsets, asynchronous)
            error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
            return [SimpleNamespace(topic=tp.topic, partition=tp.partition,
                                    error=error if tp.partition == 1 else None)
                    for tp in offsets]  # fmt: skip

    consumer = _PartlyRefusing()
    delivery = AtLeastOnce(_Producer(), consumer, 5.0, 3600.0)
    delivery.commit([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)])
    with pytest.raises(CommitFailedError, match="REBALANCE_IN_PROGRESS"):
        delivery.commit_pending()
    consumer.commits.clear()
    with pytest.raises(CommitFailedError):
        delivery.commit_pending()
    assert consumer.commits == [[("in", 1, 5)]], "only the refused partition is tried again"


def test_an_idle_stream_retries_a_refused_commit_only_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("consumer.committer.time.monotonic", lambda: clock[0])
    delivery, consumer = _delivery(3600.0)
    delivery.commit([TopicPartition("in", 0, 10)])
    metrics = Metrics()
    committer = Committer(
        delivery, Fetcher(consumer, Settings(bundle=Path(".")), HealthState(60.0)), metrics
    )
    consumer.refuse = True
    for _ in range(20):  # twenty empty polls within a second
        committer.commit_idle()
        clock[0] += 0.05
    assert metrics.totals().commit_failures == 1
    consumer.refuse = False
    clock[0] += IDLE_RETRY_S
    committer.commit_idle()
    assert consumer.commits == [[("in", 0, 10)]]


def test_a_revoked_partition_whose_commit_is_refused_is_never_committed_later() -> None:
    """The new owner starts from the committed offset; a late commit would move it back."""
    delivery, consumer = _delivery(3600.0)
    service = ClassifierService(
        Settings(bundle=Path(".")), MagicMock(), consumer, _Producer(), delivery=delivery
    )
    delivery.commit([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)])
    consumer.refuse = True
    service._on_revoke(consumer, [TopicPartition("in", 0)])
    consumer.refuse = False
    delivery.commit_pending()
    assert consumer.commits == [[("in", 1, 5)]]
