"""How a micro-batch's output becomes durable and its input offsets committed.

Two guarantees, one interface (``begin`` → ``produce``… → ``commit`` or ``abort``):

* :class:`AtLeastOnce` — idempotent producer; ``commit`` waits until the broker has
  acknowledged every record of the batch, then commits the consumer offsets — at once, or,
  with a commit interval, together with the batches after it once ``commit_interval_s`` has
  passed since the last commit (the offsets wait in memory meanwhile; they are committed
  anyway when the stream goes idle, before partitions are given up in a rebalance and at
  shutdown). A crash in between repeats the batches since the last commit after restart;
  nothing is skipped. A commit the broker refuses raises :class:`CommitFailedError`: the
  output is durable, the offsets stay where the last commit left them (and wait for the next
  commit), and the records are delivered again after a restart or rebalance unless a later
  commit of their partitions covers them first (repeated, never lost). The service counts
  it as a commit failure, not as committed work, and goes on without rewinding.
* :class:`ExactlyOnce` — Kafka transactions (KIP-98/KIP-447), the pattern of
  confluent-kafka-python's ``examples/eos-transactions.py``: outputs and input offsets are
  committed atomically with ``send_offsets_to_transaction``; on failure the transaction is
  aborted and the caller rewinds the input, so a ``read_committed`` reader sees each
  output exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Protocol

import structlog


class DeliveryError(Exception):
    """Output could not be made durable; nothing was committed. The process should exit."""


class BatchAbortedError(Exception):
    """The batch's transaction was aborted; rewind its partitions and process it again."""


class CommitFailedError(Exception):
    """(At-least-once) the output is durable but the offsets were not committed.

    Not fatal and nothing to rewind: the records are delivered again after a restart or a
    rebalance, unless a later commit of their partitions covers them first.
    """


class Delivery(Protocol):
    """A micro-batch's output path (see module docstring)."""

    def begin(self) -> None:
        """Start a batch (worker thread).

        Raises:
            confluent_kafka.KafkaException: (exactly-once) the transaction cannot begin.
        """
        ...

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one output record (worker thread).

        Raises:
            confluent_kafka.KafkaException: the producer refused the record.
        """
        ...

    def flush(self) -> None:
        """Wait (in the worker thread) until the batch's records are sent.

        Raises:
            DeliveryError: (at-least-once) records failed or were not acknowledged in time.
        """
        ...

    def commit(self, offsets: list[Any]) -> None:
        """Make the batch's output durable, then commit ``offsets`` (next offset to read).

        Raises:
            DeliveryError: output not acknowledged / fatal producer error.
            BatchAbortedError: (exactly-once) the transaction was aborted.
            CommitFailedError: (at-least-once) the output is durable but the offsets were
                not committed.
        """
        ...

    def abort(self) -> None:
        """Give up the batch's output where possible (a no-op for at-least-once)."""
        ...

    def commit_pending(self, partitions: Collection[tuple[str, int]] | None = None) -> None:
        """Synchronously commit offsets that :meth:`commit` left waiting for the interval.

        Args:
            partitions: Only these ``(topic, partition)`` (default: all waiting).

        Raises:
            CommitFailedError: the broker refused the commit; the offsets keep waiting.
        """
        ...

    def forget(self, partitions: Collection[tuple[str, int]]) -> None:
        """Drop waiting offsets of ``partitions`` (lost: this member can no longer commit them)."""
        ...


class _Producing:
    """Shared produce path: retries on a full local queue, records delivery failures."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.failures: list[str] = []
        self._log = structlog.get_logger("consumer")

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record; on a full local queue serve delivery reports and retry."""
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(f"{message.topic()}: {error}")


class AtLeastOnce(_Producing):
    """Idempotent producer + synchronous offset commits after the broker's acks.

    Args:
        producer: ``confluent_kafka.Producer`` (``enable.idempotence``, ``acks=all``).
        consumer: ``confluent_kafka.Consumer`` whose offsets are committed.
        flush_timeout_s: Longest wait for acknowledgements (s).
        commit_interval_s: Least time between two offset commits (s); 0 commits after every
            batch. A commit is a broker round trip (~8 ms measured on the bench's 2-core
            host) that the next batch's delivery waits for; Kafka's own consumer commits
            every 5 s (``auto.commit.interval.ms``) and Kafka Streams every 30 s under
            at-least-once (``commit.interval.ms``).
    """

    def __init__(
        self,
        producer: Any,
        consumer: Any,
        flush_timeout_s: float,
        commit_interval_s: float = 0.0,
    ) -> None:
        super().__init__(producer)
        self.consumer = consumer
        self.flush_timeout_s = flush_timeout_s
        self.commit_interval_s = commit_interval_s
        self._waiting: dict[tuple[str, int], Any] = {}  # (topic, partition) → TopicPartition
        self._last_commit = time.monotonic()

    def begin(self) -> None:
        """Start a batch: forget the previous batch's delivery failures."""
        self.failures.clear()

    def flush(self) -> None:
        """Wait for the broker's acks (see :meth:`wait_for_acks`)."""
        self.wait_for_acks()

    def wait_for_acks(self) -> None:
        """Block until every queued record is acknowledged (or failed).

        Raises:
            DeliveryError: a record failed, or acks are missing after ``flush_timeout_s``.
        """
        deadline = time.monotonic() + self.flush_timeout_s
        remaining = self.producer.flush(min(1.0, self.flush_timeout_s))
        while remaining and time.monotonic() < deadline:
            self._log.warning("waiting_for_broker_acks", unacknowledged=remaining)
            remaining = self.producer.flush(min(5.0, max(0.0, deadline - time.monotonic())))
        if remaining or self.failures:
            raise DeliveryError(
                f"{remaining} records unacknowledged after {self.flush_timeout_s} s, "
                f"{len(self.failures)} failed {self.failures[:3]}; offsets not committed"
            )

    def commit(self, offsets: list[Any]) -> None:
        """Wait for acks, then commit ``offsets`` (now, or with the next interval's commit).

        Raises:
            DeliveryError: records failed or were not acknowledged in time.
            CommitFailedError: the broker refused the commit (the output is durable).
        """
        self.wait_for_acks()
        for tp in offsets:
            self._waiting[(tp.topic, tp.partition)] = tp
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit_pending()

    def commit_pending(self, partitions: Collection[tuple[str, int]] | None = None) -> None:
        """Synchronously commit the waiting offsets (all, or those of ``partitions``).

        Raises:
            CommitFailedError: the broker refused the commit; the offsets keep waiting, so
                the next commit covers them.
        """
        from confluent_kafka import KafkaException

        keys = [k for k in self._waiting if partitions is None or k in partitions]
        if not keys:
            return
        offsets = [self._waiting[k] for k in keys]
        self._last_commit = time.monotonic()
        try:
            results = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise CommitFailedError(f"offsets not committed: {exc}") from exc
        refused = {
            (r.topic, r.partition): r.error for r in results or () if r.error is not None
        }  # a commit can succeed for some partitions and fail for others
        for key, tp in zip(keys, offsets, strict=True):
            if key not in refused and self._waiting.get(key) is tp:  # not replaced meanwhile
                del self._waiting[key]
        if refused:
            raise CommitFailedError(f"offsets not committed: {sorted(refused.items())}")

    def forget(self, partitions: Collection[tuple[str, int]]) -> None:
        """Drop the waiting offsets of lost ``partitions``."""
        for key in partitions:
            self._waiting.pop(key, None)

    def abort(self) -> None:
        """Nothing to undo: acknowledged records stay (they may be repeated, never lost)."""
        return


class ExactlyOnce(_Producing):
    """Transactional producer: outputs and input offsets commit atomically.

    Args:
        producer: ``confluent_kafka.Producer`` with ``transactional.id`` set.
        consumer: ``confluent_kafka.Consumer`` with ``isolation.level=read_committed``.
        timeout_s: Timeout of each transactional call (s).

    Raises:
        confluent_kafka.KafkaException: ``init_transactions`` failed (e.g. broker down).
    """

    def __init__(self, producer: Any, consumer: Any, timeout_s: float) -> None:
        super().__init__(producer)
        self.consumer = consumer
        self.timeout_s = timeout_s
        # Fences a previous instance with the same transactional.id and aborts its
        # unfinished transaction, so a restart after SIGKILL recovers at once.
        producer.init_transactions(timeout_s)
        self._open = False

    def begin(self) -> None:
        """Begin the batch's transaction."""
        self.failures.clear()
        self.producer.begin_transaction()
        self._open = True

    def flush(self) -> None:
        """Send queued records; failures surface as an abortable commit error."""
        # Failures surface as an abortable error from commit_transaction.
        self.producer.flush(self.timeout_s)

    def commit(self, offsets: list[Any]) -> None:
        """Add ``offsets`` to the transaction and commit it (retrying retriable errors).

        Raises:
            BatchAbortedError: the transaction had to be aborted (it was).
            DeliveryError: a fatal transactional error.
        """
        from confluent_kafka import KafkaException

        try:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), self.timeout_s
            )
            self._commit_with_retry()
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                self.abort()
                raise BatchAbortedError(f"transaction aborted: {error}") from exc
            raise DeliveryError(f"fatal transactional error: {error}") from exc
        self._open = False

    def _commit_with_retry(self) -> None:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.producer.commit_transaction(self.timeout_s)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline:
                    raise
                self._log.warning("commit_transaction_retry", error=str(exc))

    def commit_pending(self, partitions: Collection[tuple[str, int]] | None = None) -> None:
        """Nothing waits: each transaction commits its batch's offsets."""
        return

    def forget(self, partitions: Collection[tuple[str, int]]) -> None:
        """Nothing waits: each transaction commits its batch's offsets."""
        return

    def abort(self) -> None:
        """Abort the open transaction, if any."""
        from confluent_kafka import KafkaException

        if not self._open:
            return
        try:
            self.producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            raise DeliveryError(f"could not abort the transaction: {exc}") from exc
        finally:
            self._open = False
