"""The main thread's reading side of the Kafka consumer, and the partitions it owns.

:class:`Fetcher` hands out records for the next micro-batch, prefetches while a batch runs
(so the worker starts on the next one without a consume round trip), pauses every assigned
partition when a batch is slow while it keeps polling (heartbeats, ``max.poll.interval.ms``,
rebalance callbacks), and keeps the bookkeeping of owned and lost partitions that decides
where a rewind may seek and whether a batch may still be committed. Everything here runs
on the main thread: the poll loop and the rebalance callbacks inside ``consume()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from consumer.batch import TopicPartitionKey
from consumer.metrics import HealthState
from consumer.records import RawRecord, records_of
from consumer.settings import Settings

#: With ``max_wait_ms`` 0: longest wait for the first record of a micro-batch (s); the
#: poll loop's cadence when the stream is idle (heartbeats, health, idle commits).
IDLE_POLL_S = 0.05
#: Records taken per ``consume()`` while every partition is paused, and its timeout (s).
_PAUSED_CONSUME = (64, 0.1)


class Fetcher:
    """Records for micro-batches from one consumer; the partitions it owns.

    Args:
        consumer: ``confluent_kafka.Consumer`` (only the main thread calls it).
        settings: ``max_batch_size``, ``max_wait_ms`` and ``pause_after_ms``.
        health: Gets the number of assigned partitions (readiness).

    Attributes:
        assigned: The partitions this member owns now.
        losses: Partition losses so far; a batch remembers it when it starts.
    """

    def __init__(self, consumer: Any, settings: Settings, health: HealthState) -> None:
        self._consumer = consumer
        self._settings = settings
        self._health = health
        self.assigned: set[TopicPartitionKey] = set()
        self.losses = 0
        self._lost_at: dict[TopicPartitionKey, int] = {}  # partition → its latest loss
        self._stash: list[RawRecord] = []  # prefetched, in consume order
        self._log = structlog.get_logger("consumer")

    def next_records(self) -> list[RawRecord]:
        """Up to ``max_batch_size`` records for the next micro-batch (may be empty).

        The prefetched records come first. Otherwise, with ``max_wait_ms`` > 0, wait until
        the batch is full or ``max_wait_ms`` has passed; with ``max_wait_ms`` 0 (the
        default), wait up to :data:`IDLE_POLL_S` for the first record only and take
        whatever else has arrived: the batch is what queued while the previous one ran, so
        batches grow with the load instead of each waiting a fixed time (Triton's dynamic
        batcher default, ``max_queue_delay_microseconds`` 0).

        Raises:
            confluent_kafka.KafkaException: a fatal consumer error.
        """
        size = self._settings.max_batch_size
        if self._stash:
            taken, self._stash = self._stash[:size], self._stash[size:]
            room = size - len(taken)
            return self._owned(taken, self._consume(room, 0) if room else [])
        if self._settings.max_wait_ms > 0:
            return self._consume(size, self._settings.max_wait_ms / 1000)
        first = self._consume(1, IDLE_POLL_S)
        if not first or size == 1:
            return first
        return self._owned(first, self._consume(size - 1, 0))

    def _consume(self, count: int, timeout_s: float) -> list[RawRecord]:
        """One ``consume()``; its rebalance callbacks may release partitions meanwhile."""
        return records_of(self._consumer.consume(count, timeout_s))

    def _owned(self, held: list[RawRecord], fetched: list[RawRecord]) -> list[RawRecord]:
        """``held + fetched``, without ``held`` records of partitions released while fetching.

        ``held`` was taken before a ``consume()`` whose rebalance callbacks may have revoked
        or lost their partitions (:meth:`release` cannot drop what it does not hold); the new
        owner reads them from its committed offset.
        """
        if any((r.topic, r.partition) not in self.assigned for r in held):
            held = [r for r in held if (r.topic, r.partition) in self.assigned]
        return held + fetched

    def wait(self, ready: Callable[[float], bool], idle: Callable[[], None]) -> None:
        """Serve the consumer until ``ready(timeout_s)`` is true; pause if that is slow.

        Args:
            ready: Waits up to ``timeout_s`` (s) for what the caller waits for; True once
                it happened.
            idle: Called between waits (heartbeat, deadline check); what it raises ends
                the wait (paused partitions then stay paused).

        Every assigned partition is paused once the wait outlasts ``pause_after_ms`` and
        resumed (those still owned) when it ends.

        Raises:
            confluent_kafka.KafkaException: a fatal consumer error.
        """
        started = time.monotonic()
        pause_after_s = self._settings.pause_after_ms / 1000
        max_size = self._settings.max_batch_size
        paused: list[Any] = []
        while True:
            if not paused and len(self._stash) < max_size:
                room = max_size - len(self._stash)  # prefetch the next micro-batch
                self._stash.extend(records_of(self._consumer.consume(room, 0)))
            if ready(0 if paused else min(0.01, pause_after_s)):
                break
            idle()
            if not paused and time.monotonic() - started >= pause_after_s:
                paused = list(self._consumer.assignment())
                self._consumer.pause(paused)
                self._log.info("partitions_paused", partitions=len(paused), reason="slow_batch")
            if paused:
                # Serves heartbeats' poll deadline and rebalance callbacks; paused
                # partitions deliver nothing, newly assigned ones may: keep those for later.
                self._stash.extend(records_of(self._consumer.consume(*_PAUSED_CONSUME)))
        owned = [tp for tp in paused if (tp.topic, tp.partition) in self.assigned]
        if owned:
            self._consumer.resume(owned)

    def lost_since(self, losses_seen: int, partitions: Iterable[TopicPartitionKey]) -> bool:
        """Whether any of ``partitions`` was lost after the ``losses_seen``-th loss."""
        return any(self._lost_at.get(tp, 0) > losses_seen for tp in partitions)

    def rewind(self, first_offsets: Iterable[Mapping[TopicPartitionKey, int]]) -> int:
        """Seek back so that every record of the given batches is read again.

        Args:
            first_offsets: Per batch, the offset of its first record of each partition.

        Every partition still owned is sought to the earliest of its offsets, so nothing
        is skipped; its prefetched records are dropped (they are fetched again).

        Returns:
            How many partitions were sought (partitions no longer owned are not).
        """
        from confluent_kafka import TopicPartition

        targets: dict[TopicPartitionKey, int] = {}
        for offsets in first_offsets:
            for tp, offset in offsets.items():
                targets[tp] = min(offset, targets.get(tp, offset))
        owned = {tp: o for tp, o in targets.items() if tp in self.assigned}
        self._stash = [r for r in self._stash if (r.topic, r.partition) not in owned]
        for (topic, partition), offset in owned.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        return len(owned)

    # -- rebalances ----------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions assigned to this member."""
        self.assigned.update(partitions)
        self._health.assigned_partitions = len(self.assigned)

    def revoke(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions being revoked: no rewind may seek them any more."""
        self.assigned.difference_update(partitions)

    def lose(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions lost (session expiry): batches in flight on them must not commit."""
        gone = set(partitions)
        self.losses += 1
        for tp in gone:
            self._lost_at[tp] = self.losses
        self.release(gone)

    def release(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Partitions gone (revoked or lost): forget them and their prefetched records."""
        gone = set(partitions)
        self.assigned -= gone
        self._stash = [r for r in self._stash if (r.topic, r.partition) not in gone]
        self._health.assigned_partitions = len(self.assigned)
