"""The consume → validate → predict → produce → commit loop over micro-batches.

Threads: the main thread owns the Kafka consumer (consume, commit, pause/resume, rebalance
callbacks); each micro-batch runs in a worker thread (:mod:`consumer.worker`) in two
phases: **compute** (decode, validate, tokenise, inference) and **deliver** (build the
predictions and dead letters, produce them, wait for the broker's acks). With
``max_batches_in_flight=2`` (the default) batch *n + 1* computes while batch *n* is
delivered and committed, so inference does not wait for the broker; batch *n + 1* starts
delivering only after batch *n* is settled, so output order, commit order and transactions
stay one batch at a time. While batches run, the main thread prefetches the next one and
keeps polling — after ``pause_after_ms`` with every assigned partition paused — so
``max.poll.interval.ms`` is never exceeded by a slow batch, and memory stays bounded by two
batches plus librdkafka's prefetch.

Each batch's life is the state machine of :mod:`consumer.lifecycle`; reading and the
partitions owned are :mod:`consumer.fetch`, and what a delivered batch becomes is
:mod:`consumer.committer`. Offsets are committed (or sent to the transaction) only after the
batch's predictions and dead letters are acknowledged by the broker; see
:mod:`consumer.delivery`. A batch that is not committed (aborted transaction, lost
partitions) rewinds its partitions and discards the batch computed behind it, which is read
again; a failed at-least-once commit is counted as such and rewinds nothing. A partition
revoked by a rebalance first has the batches in flight finished and committed. Every count
is a Prometheus metric (:class:`~consumer.metrics.Metrics`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog

from consumer.batch import Batch, Classifier, TopicPartitionKey
from consumer.committer import Committer
from consumer.delivery import AtLeastOnce, Delivery, DeliveryError
from consumer.fetch import Fetcher
from consumer.isolation import describe_exception
from consumer.lifecycle import COMPUTED, WORKER_DONE, BatchState, Lifecycles
from consumer.metrics import DependencyStatus, HealthState, Metrics
from consumer.observers import BatchObserver
from consumer.records import RawRecord
from consumer.registry import SCHEMA_REGISTRY
from consumer.settings import Settings
from consumer.wire import WireFormat
from consumer.worker import BatchWorker
from model.reload import ModelWatcher


class ShutdownTimeoutError(Exception):
    """The in-flight batch did not finish within ``shutdown_timeout_s`` after a stop request."""


class ClassifierService:
    """Runs micro-batches from the input topic through a classifier until asked to stop.

    Args:
        settings: Validated settings.
        classifier: The loaded model bundle.
        consumer: ``confluent_kafka.Consumer`` built from
            :func:`consumer.clients.consumer_config`.
        producer: ``confluent_kafka.Producer`` built from
            :func:`consumer.clients.producer_config`.
        delivery: Output/commit strategy; default :class:`~consumer.delivery.AtLeastOnce`.
        metrics: Prometheus metrics, the service's only counts; a private registry by default.
        health: Liveness/readiness state for the HTTP endpoints.
        watcher: Hot-reload watcher of the model directory, or ``None``.
        wire: Input and output formats (default: JSON); built by
            :func:`consumer.wire.build_wire_format`, which checks the registry at start-up.
        observers: Offered every committed batch, in order (:mod:`consumer.observers`):
            the shadow evaluator, the drift monitor, the feedback join.
    """

    def __init__(
        self,
        settings: Settings,
        classifier: Classifier,
        consumer: Any,
        producer: Any,
        delivery: Delivery | None = None,
        metrics: Metrics | None = None,
        health: HealthState | None = None,
        watcher: ModelWatcher | None = None,
        wire: WireFormat | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        self.settings = settings
        self._observers = list(observers)
        self.classifier = classifier
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery or AtLeastOnce(
            producer, consumer, settings.flush_timeout_s, settings.commit_interval_ms / 1000
        )
        self.metrics = metrics or Metrics()
        self.health = health or HealthState(stuck_after_s=settings.stuck_after_s)
        self._watcher = watcher
        dependencies = DependencyStatus(self.metrics, self.health)
        if settings.uses_registry:
            dependencies.watching(SCHEMA_REGISTRY)
        self._worker = BatchWorker(settings, self._delivery, wire, dependencies)
        self._fetcher = Fetcher(consumer, settings, self.health)
        self._committer = Committer(self._delivery, self._fetcher, self.metrics)
        self._lifecycles = Lifecycles()
        self._stopping = False
        self._stop_deadline: float | None = None
        self._inflight: list[Batch] = []  # started, not yet completed, in start order
        self._failed: Batch | None = None  # the batch whose error stops the service
        self._abandoned = False
        self._log = structlog.get_logger("consumer")
        self._serving(classifier)

    # -- lifecycle ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop after the batch in flight (safe from a signal handler)."""
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.settings.shutdown_timeout_s

    def run(self) -> int:
        """Subscribe and process micro-batches until :meth:`request_stop`.

        Returns:
            0 after a graceful stop; 1 if the batches in flight could not finish within
            ``shutdown_timeout_s`` (they stay uncommitted and are processed again later).

        Raises:
            DeliveryError: output not acknowledged or a fatal producer error; nothing of
                the batch was committed. The process should exit non-zero.
            confluent_kafka.KafkaException: a fatal consumer error.
        """
        s = self.settings
        self._consumer.subscribe(
            [s.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._log.info(
            "consumer_started",
            topic=s.input_topic,
            group_id=s.group_id,
            model_version=self.classifier.version,
            exactly_once=s.exactly_once,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_batches_in_flight=s.max_batches_in_flight,
        )
        if self._watcher is not None:
            self._watcher.start()
        code = 0
        overlap = s.max_batches_in_flight > 1
        previous: Batch | None = None
        try:
            while not self._stopping:
                self.health.beat()
                self._swap_model_if_new()
                losses = self._fetcher.losses  # a loss during the fetch rewinds the batch
                batch = self._start_batch(self._fetcher.next_records(), losses)
                if previous is not None:
                    self._finish(previous)
                    previous = None
                if batch is None:  # idle: commit what waits for the commit interval
                    self._committer.commit_idle()
                    continue
                if overlap:  # deliver and commit it while the next batch computes
                    self._wait(batch, COMPUTED)
                    previous = batch
                else:
                    self._finish(batch)
            if previous is not None:
                self._finish(previous)
        except ShutdownTimeoutError as exc:
            self._abandoned = True
            self._log.error("shutdown_timeout", error=str(exc))
            code = 1
        except BaseException as exc:
            self._abandoned = True
            self._log_fatal(exc)
            raise
        finally:  # nothing commits now: produce nothing more either
            self._lifecycles.abandon(b.life for b in self._inflight)
            self._shutdown()
        return code

    def _log_fatal(self, error: BaseException) -> None:
        """One JSON error line for what stops the service, with the offsets it was working on."""
        batches = [] if self._failed is None else [self._failed]
        batches += [b for b in self._inflight if b is not self._failed]
        self._log.error(
            "consumer_failed",
            error_type=type(error).__name__,
            error=describe_exception(error),
            batches=[b.offset_ranges() for b in batches],
            exc_info=error,
        )

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if not self._abandoned:  # only acknowledged batches' offsets ever wait
            try:  # (abandoned: a broker that failed the service could hold this 45 s)
                self._committer.commit_pending()
            except Exception as exc:  # closing the consumer still matters more
                self._log.warning("commit_failed", error=describe_exception(exc), waiting=True)
        self._consumer.close()  # leaves the group; nothing is auto-committed
        for observer in self._observers:
            observer.close(1.0 if self._abandoned else 10.0)
        remaining = self._producer.flush(1.0 if self._abandoned else self.settings.flush_timeout_s)
        totals = self.metrics.totals()
        self._log.info(
            "consumer_stopped",
            unflushed=remaining,
            consumed=totals.consumed,
            predicted=totals.predicted,
            dead_lettered=totals.dead_lettered,
            low_confidence=totals.low_confidence,
            batches=totals.batches,
            commit_failures=totals.commit_failures,
        )

    # -- the main thread's side of a batch ---------------------------------------------

    def _start_batch(self, records: list[RawRecord], losses_seen: int) -> Batch | None:
        """Start a worker on ``records``; it delivers once the batch in flight before it settles.

        Args:
            records: The batch's records.
            losses_seen: :attr:`Fetcher.losses` before they were fetched.
        """
        if not records:
            return None
        ahead = self._inflight[-1].life if self._inflight else None
        batch = Batch.of(records, self.classifier, self._lifecycles.new(), losses_seen)
        # With --log-level DEBUG the last of these before a native crash names its records.
        self._log.debug("batch_started", size=len(records), offsets=batch.offset_ranges())
        self._inflight.append(batch)
        self.health.batch_started = self._inflight[0].started
        worker = threading.Thread(
            target=self._worker.run, args=(batch, ahead), name="batch", daemon=True
        )
        worker.start()
        return batch

    def _finish(self, batch: Batch) -> None:
        """Wait for ``batch``'s worker, then commit it (unless a callback already did)."""
        self._wait(batch, WORKER_DONE)
        if batch in self._inflight:
            self._complete(batch)

    def _wait(self, batch: Batch, states: frozenset[BatchState]) -> None:
        """Wait until ``batch`` is in one of ``states`` while serving the consumer.

        Raises:
            ShutdownTimeoutError: a stop was requested over ``shutdown_timeout_s`` ago.
        """

        def idle() -> None:
            self.health.beat()
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                raise ShutdownTimeoutError(
                    f"batch of {len(batch.records)} still running "
                    f"{self.settings.shutdown_timeout_s} s after the stop request"
                )

        self._fetcher.wait(lambda timeout_s: batch.life.wait_until(states, timeout_s), idle)

    def _complete(self, batch: Batch) -> None:
        """Settle the oldest batch in flight once its worker is done: commit, rewind or fail.

        Batches complete in the order they started; the batch behind this one delivers
        only once this one is settled, and is discarded with it unless it was committed.

        Raises:
            BaseException: what the worker or the commit raised (``FAILED``): the service
                stops.
        """
        life = batch.life
        life.wait_until(WORKER_DONE, None)
        self._inflight.remove(batch)
        self.health.batch_started = self._inflight[0].started if self._inflight else None
        behind = [b.life for b in self._inflight]
        if life.state is BatchState.DISCARDED:
            return  # the batch before it was rewound, and these records with it
        if life.state is BatchState.ERRORED:
            self._failed = batch
            life.settle(BatchState.FAILED, behind)
            raise life.error or RuntimeError("batch errored without an error")
        try:
            outcome = self._committer.commit(batch, self._inflight)
        except BaseException as exc:
            self._failed = batch
            life.settle(BatchState.FAILED, behind, error=exc)
            raise
        life.settle(outcome, behind)
        if outcome is BatchState.COMMITTED:
            for observer in self._observers:
                try:  # never blocks (a shadow behind skips the batch)
                    observer.offer(batch)
                except Exception as exc:  # an observer's bug must never stop the stream
                    self._log.warning(
                        "observer_failed",
                        observer=type(observer).__name__,
                        error=describe_exception(exc),
                    )

    # -- model hot swap ----------------------------------------------------------------

    def _swap_model_if_new(self) -> None:
        if self._watcher is None:
            return
        bundle = self._watcher.take()
        if bundle is None:
            return
        old = self.classifier.version
        self.classifier = bundle
        self._serving(bundle)
        self.metrics.model_reloads.labels("loaded").inc()
        self.health.model_refused = None  # a refusal before this version no longer matters
        self._log.info("model_swapped", old_version=old, model_version=bundle.version)

    def _serving(self, classifier: Classifier) -> None:
        self.metrics.model.info({"version": classifier.version})
        self.health.model_version = classifier.version
        self.health.model_loaded = True

    # -- rebalance callbacks (main thread, inside consume()) ---------------------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._fetcher.assign(_keys(partitions))
        self.metrics.rebalances.labels("assign").inc()
        self._log.info("partitions_assigned", partitions=_describe(partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        self._fetcher.revoke(_keys(partitions))  # never rewound
        if not self._abandoned:
            # Finish and commit what was taken from these partitions before giving them up.
            while self._inflight:
                self._complete(self._inflight[0])
        try:  # the new owner starts from what is committed now: never commit them later
            if not self._abandoned:  # (close() revokes too; see _shutdown)
                self._committer.commit_pending(_keys(partitions))
        finally:
            self._committer.forget(_keys(partitions))
        self._fetcher.release(_keys(partitions))
        self.metrics.forget_partitions(sorted(_keys(partitions)))
        self._log.info("partitions_revoked", partitions=_describe(partitions))

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        # The batches in flight that read from these partitions can no longer be committed
        # by this member: they are aborted and rewound when completed (see _commit).
        self.metrics.rebalances.labels("lost").inc()
        self._fetcher.lose(_keys(partitions))
        self._committer.forget(_keys(partitions))
        self.metrics.forget_partitions(sorted(_keys(partitions)))
        self._log.warning("partitions_lost", partitions=_describe(partitions))


def _keys(partitions: list[Any]) -> set[TopicPartitionKey]:
    return {(p.topic, p.partition) for p in partitions}


def _describe(partitions: list[Any]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


__all__ = ["ClassifierService", "DeliveryError", "ShutdownTimeoutError"]
