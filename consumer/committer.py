"""What happens to a delivered micro-batch: commit it, or abort and rewind it; and count it.

Runs on the main thread (:meth:`consumer.service.ClassifierService` completes batches in
the order they started). The outcomes are the settled states of :mod:`consumer.lifecycle`:

* ``COMMITTED`` — offsets committed (at-least-once) or the transaction committed with
  them (exactly-once); the batch is counted in the metrics and logged as ``batch_done``.
* ``COMMIT_FAILED`` — at-least-once only: the output is durable but the broker refused the
  offset commit (:class:`~consumer.delivery.CommitFailedError`). It is **not** counted as
  committed work: ``classifier_commit_failures_total`` goes up and a ``commit_failed``
  warning names its offsets. Nothing is rewound and the batch behind it still delivers:
  the records are read again after a restart or rebalance unless a later commit of their
  partitions covers them first — at-least-once, repeated, never lost.
* ``REWOUND`` — the transaction was aborted, or one of its partitions was lost while it was
  in flight (its offsets can no longer be committed by this member): its still-owned
  partitions and those of the batches behind it are sought back and read again.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import structlog

from consumer.batch import Batch, TopicPartitionKey
from consumer.delivery import BatchAbortedError, CommitFailedError, Delivery
from consumer.fetch import Fetcher
from consumer.lifecycle import BatchState
from consumer.metrics import Metrics

#: After a refused idle commit, the least time (s) before the idle loop tries again.
IDLE_RETRY_S = 5.0


class Committer:
    """Commits, or aborts and rewinds, delivered batches (see module docstring).

    Args:
        delivery: The batches' output path.
        fetcher: The consumer's reading side (rewinds, lost partitions).
        metrics: Where committed batches, commit failures and rewinds are counted.
    """

    def __init__(self, delivery: Delivery, fetcher: Fetcher, metrics: Metrics) -> None:
        self._delivery = delivery
        self._fetcher = fetcher
        self.metrics = metrics
        self._idle_refused_at: float | None = None
        self._log = structlog.get_logger("consumer")

    def commit(self, batch: Batch, behind: Sequence[Batch]) -> BatchState:
        """Commit ``batch`` (``DELIVERED``), or abort and rewind it with ``behind``.

        Args:
            batch: The oldest batch in flight, delivered.
            behind: The batches in flight after it (read again if it is rewound).

        Returns:
            Its outcome: ``COMMITTED``, ``COMMIT_FAILED`` or ``REWOUND``.

        Raises:
            DeliveryError: output not acknowledged, or a fatal transactional error.
            confluent_kafka.KafkaException: seeking back failed.
        """
        if self._fetcher.lost_since(batch.losses_seen, batch.first_offsets):
            self._delivery.abort()  # its offsets can no longer be committed by this member
            self._rewind(batch, behind, "partitions lost during the batch")
            return BatchState.REWOUND
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        started = time.perf_counter()
        try:
            self._delivery.commit(offsets)
        except BatchAbortedError as exc:
            self._rewind(batch, behind, str(exc))
            return BatchState.REWOUND
        except CommitFailedError as exc:
            self.metrics.commit_failures.inc()
            self._log.warning(
                "commit_failed",
                error=str(exc),
                size=len(batch.records),
                offsets=batch.offset_ranges(),
            )
            return BatchState.COMMIT_FAILED
        batch.commit_s = time.perf_counter() - started
        self.metrics.count_batch(
            len(batch.records),
            batch.predicted,
            batch.low_confidence,
            batch.dead,
            batch.inference_s,
            batch.end_to_end_s,
        )
        self._log.info("batch_done", **batch.summary())
        return BatchState.COMMITTED

    def commit_pending(self, partitions: Collection[TopicPartitionKey] | None = None) -> bool:
        """Commit the offsets waiting for the commit interval (rebalance, shutdown).

        A refused commit is counted and logged as ``commit_failed``; the offsets keep
        waiting for the next commit (repeated after a restart, never lost).

        Returns:
            False when the broker refused the commit.
        """
        try:
            self._delivery.commit_pending(partitions)
        except CommitFailedError as exc:
            self.metrics.commit_failures.inc()
            self._log.warning("commit_failed", error=str(exc), waiting=True)
            return False
        return True

    def commit_idle(self) -> None:
        """:meth:`commit_pending` when the stream is idle.

        After a refusal it is tried again at most every :data:`IDLE_RETRY_S`, not on every
        empty poll.
        """
        now = time.monotonic()
        if self._idle_refused_at is not None and now - self._idle_refused_at < IDLE_RETRY_S:
            return
        self._idle_refused_at = None if self.commit_pending() else now

    def forget(self, partitions: Collection[TopicPartitionKey]) -> None:
        """Drop the waiting offsets of lost ``partitions`` (no longer this member's)."""
        self._delivery.forget(partitions)

    def _rewind(self, batch: Batch, behind: Sequence[Batch], reason: str) -> None:
        """Seek back to the first offsets of ``batch`` and ``behind``; they are read again."""
        self.metrics.aborted_batches.inc()
        sought = self._fetcher.rewind([b.first_offsets for b in (batch, *behind)])
        self._log.warning("batch_rewound", reason=reason, partitions=sought, discarded=len(behind))
