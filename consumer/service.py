"""The consume → validate → predict → produce → commit loop over micro-batches.

Threads: the main thread owns the Kafka consumer (consume, commit, pause/resume, rebalance
callbacks); each micro-batch runs in a worker thread in two phases: **compute** (decode,
validate, tokenise, inference) and **deliver** (build the predictions and dead letters,
produce them, wait for the broker's acks). With ``max_batches_in_flight=2`` (the default)
batch *n + 1* computes while batch *n* is delivered and committed, so inference does not
wait for the broker; batch *n + 1* starts delivering only after batch *n* is committed, so
output order, commit order and transactions stay one batch at a time. While batches run,
the main thread prefetches the next one and keeps polling — after ``pause_after_ms`` with
every assigned partition paused — so ``max.poll.interval.ms`` is never exceeded by a slow
batch, and memory stays bounded by two batches plus librdkafka's prefetch.

Offsets are committed (or sent to the transaction) only after the batch's predictions and
dead letters are acknowledged by the broker; see :mod:`consumer.delivery`. A batch that is
not committed (aborted transaction, lost partitions) rewinds its partitions and discards
the batch computed behind it, which is read again. A partition revoked by a rebalance
first has the batches in flight finished and committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from consumer.delivery import AtLeastOnce, BatchAbortedError, Delivery, DeliveryError
from consumer.isolation import Rejection, describe_exception
from consumer.metrics import HealthState, Metrics
from consumer.records import RawRecord
from consumer.settings import Settings
from consumer.steps import (
    Accepted,
    RenderedPrediction,
    minimal_dead_letter,
    prepare,
    render_dead_letter,
    render_prediction,
)
from model.probabilities import checked_rows
from model.reload import ModelWatcher
from schemas import ErrorCode

TopicPartitionKey = tuple[str, int]


class Classifier(Protocol):
    """What the service needs of a model bundle (see :class:`model.Bundle`)."""

    @property
    def version(self) -> str:
        """Version id stamped on every prediction."""
        ...

    @property
    def labels(self) -> list[str]:
        """Class names in output order."""
        ...

    def token_ids(self, text: str) -> list[int]:
        """One text → its vocabulary ids, truncated and unpadded (one record's tokenisation)."""
        ...

    def predict_token_ids(self, sequences: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """``len(sequences)`` id sequences → ``(batch, n_classes) float32`` probabilities."""
        ...

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (label, probability) pairs per row, highest first."""
        ...


class ShutdownTimeoutError(Exception):
    """The in-flight batch did not finish within ``shutdown_timeout_s`` after a stop request."""


@dataclass
class Counters:
    """Running totals since start (acknowledged and committed work)."""

    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    low_confidence: int = 0
    batches: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


@dataclass
class Batch:
    """One micro-batch in flight. Written by the worker until ``done`` is set.

    ``previous`` is the batch that must be committed before this one delivers; its
    ``settled`` event is set once it is committed (``committed``) or given up.
    """

    records: list[RawRecord]
    classifier: Classifier
    received: float
    first_offsets: dict[TopicPartitionKey, int]
    next_offsets: dict[TopicPartitionKey, int]
    previous: Batch | None = None
    started: float = field(default_factory=time.monotonic)
    computed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)
    prepared: list[Accepted | Rejection] = field(default_factory=list)
    outcomes: list[npt.NDArray[np.float32] | Exception] = field(default_factory=list)
    error: BaseException | None = None
    committed: bool = False
    discarded: bool = False
    predicted: int = 0
    low_confidence: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    inference_s: float = 0.0
    end_to_end_s: list[float] = field(default_factory=list)
    lost: bool = False
    completed: bool = False


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
        metrics: Prometheus metrics; a private registry by default.
        health: Liveness/readiness state for the HTTP endpoints.
        watcher: Hot-reload watcher of the model directory, or ``None``.
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
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery or AtLeastOnce(producer, consumer, settings.flush_timeout_s)
        self.metrics = metrics or Metrics()
        self.health = health or HealthState(stuck_after_s=settings.flush_timeout_s + 60)
        self._watcher = watcher
        self._stopping = False
        self._stop_deadline: float | None = None
        self._inflight: list[Batch] = []
        self._failed: Batch | None = None  # the batch whose error stops the service
        self._abandoned = False
        self._stash: list[RawRecord] = []
        self._assigned: set[TopicPartitionKey] = set()
        self.counters = Counters()
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
                batch = self._start_batch(self._next_messages(), previous)
                if previous is not None:
                    self._finish(previous)
                    previous = None
                if batch is None:
                    continue
                if overlap:  # deliver and commit it while the next batch computes
                    self._wait(batch, batch.computed)
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
        finally:
            for batch in self._inflight:  # nothing commits now: produce nothing more either
                batch.discarded = True
                batch.settled.set()
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
            batches=[_offset_ranges(b) for b in batches],
            exc_info=error,
        )

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._consumer.close()  # leaves the group; nothing is auto-committed
        remaining = self._producer.flush(1.0 if self._abandoned else self.settings.flush_timeout_s)
        c = self.counters
        self._log.info(
            "consumer_stopped",
            unflushed=remaining,
            consumed=c.consumed,
            predicted=c.predicted,
            dead_lettered=c.dead_lettered,
            low_confidence=c.low_confidence,
            batches=c.batches,
        )

    # -- the main thread's side of a batch ---------------------------------------------

    def _next_messages(self) -> list[RawRecord]:
        s = self.settings
        if self._stash:
            taken, self._stash = self._stash[: s.max_batch_size], self._stash[s.max_batch_size :]
            room = s.max_batch_size - len(taken)
            return taken + (self._records(self._consumer.consume(room, 0)) if room else [])
        return self._records(self._consumer.consume(s.max_batch_size, s.max_wait_ms / 1000))

    def _start_batch(self, records: list[RawRecord], previous: Batch | None) -> Batch | None:
        if not records:
            return None
        first: dict[TopicPartitionKey, int] = {}
        following: dict[TopicPartitionKey, int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            first.setdefault(tp, r.offset)
            following[tp] = r.offset + 1
        batch = Batch(records, self.classifier, time.perf_counter(), first, following, previous)
        # With --log-level DEBUG the last of these before a native crash names its records.
        self._log.debug("batch_started", size=len(records), offsets=_offset_ranges(batch))
        self._inflight.append(batch)
        self.health.batch_started = self._inflight[0].started
        threading.Thread(target=self._work, args=(batch,), name="batch", daemon=True).start()
        return batch

    def _finish(self, batch: Batch) -> None:
        """Wait for ``batch`` to be delivered, then commit it (unless a callback already did)."""
        self._wait(batch, batch.done)
        if not batch.completed:
            self._complete(batch)

    def _wait(self, batch: Batch, event: threading.Event) -> None:
        """Wait for ``event`` of ``batch`` while serving the consumer; pause if it is slow."""
        started = time.monotonic()
        pause_after_s = self.settings.pause_after_ms / 1000
        max_size = self.settings.max_batch_size
        paused: list[Any] = []
        while True:
            if not paused and len(self._stash) < max_size:
                # Prefetch the next micro-batch while this one runs, so the worker starts
                # on it as soon as this batch is committed (no consume round trip between).
                room = max_size - len(self._stash)
                self._stash.extend(self._records(self._consumer.consume(room, 0)))
            if event.wait(0 if paused else min(0.01, pause_after_s)):
                break
            self.health.beat()
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                raise ShutdownTimeoutError(
                    f"batch of {len(batch.records)} still running "
                    f"{self.settings.shutdown_timeout_s} s after the stop request"
                )
            if not paused and time.monotonic() - started >= pause_after_s:
                paused = list(self._consumer.assignment())
                self._consumer.pause(paused)
                self._log.info("partitions_paused", partitions=len(paused), reason="slow_batch")
            if paused:
                # Serves heartbeats' poll deadline and rebalance callbacks; paused
                # partitions deliver nothing, newly assigned ones may: keep those for later.
                self._stash.extend(self._records(self._consumer.consume(64, 0.1)))
        if paused:
            owned = [tp for tp in paused if (tp.topic, tp.partition) in self._assigned]
            if owned:
                self._consumer.resume(owned)

    def _complete(self, batch: Batch) -> None:
        """Commit a delivered batch (or abort and rewind it); update counters and metrics.

        Batches complete in the order they started; the batch behind this one delivers
        only once this one is settled (committed, rewound or failed).
        """
        batch.done.wait()
        batch.completed = True
        self._inflight.remove(batch)
        self.health.batch_started = self._inflight[0].started if self._inflight else None
        try:
            if batch.discarded:
                return  # the batch before it was rewound, and these records with it
            if batch.error is not None:
                if isinstance(batch.error, BatchAbortedError):
                    self._rewind(batch, str(batch.error))
                    return
                self._failed = batch
                raise batch.error
            if batch.lost:
                self._delivery.abort()
                self._rewind(batch, "partitions lost during the batch")
                return
            from confluent_kafka import TopicPartition

            offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
            try:
                self._delivery.commit(offsets)
            except BatchAbortedError as exc:
                self._rewind(batch, str(exc))
                return
            batch.committed = True
            self._account(batch)
        finally:
            if not batch.committed and not batch.discarded:
                for later in self._inflight:  # computed behind it: re-read, never delivered
                    later.discarded = True
            batch.settled.set()

    def _rewind(self, batch: Batch, reason: str) -> None:
        """Seek back to the batch's first offsets, discarding the batches computed behind it.

        Every still-owned partition of ``batch`` and of the later batches in flight is
        sought to the earliest offset any of them took from it, so nothing is skipped;
        prefetched records of those partitions are dropped (they are fetched again).
        """
        from confluent_kafka import TopicPartition

        self.metrics.aborted_batches.inc()
        targets = dict(batch.first_offsets)
        for later in self._inflight:
            later.discarded = True
            for tp, offset in later.first_offsets.items():
                targets[tp] = min(offset, targets.get(tp, offset))
        owned = {tp: o for tp, o in targets.items() if tp in self._assigned}
        self._stash = [r for r in self._stash if (r.topic, r.partition) not in owned]
        for (topic, partition), offset in owned.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        self._log.warning(
            "batch_rewound", reason=reason, partitions=len(owned), discarded=len(self._inflight)
        )

    def _account(self, batch: Batch) -> None:
        c, m = self.counters, self.metrics
        n = len(batch.records)
        n_dead = sum(batch.dead.values())
        c.batches += 1
        c.consumed += n
        c.predicted += batch.predicted
        c.dead_lettered += n_dead
        c.low_confidence += batch.low_confidence
        m.consumed.inc(n)
        m.predicted.inc(batch.predicted)
        m.low_confidence.inc(batch.low_confidence)
        m.batch_size.observe(n)
        m.inference_seconds.observe(batch.inference_s)
        for code, count in batch.dead.items():
            c.by_error[code] = c.by_error.get(code, 0) + count
            m.dead_lettered.labels(code).inc(count)
        for seconds in batch.end_to_end_s:
            m.end_to_end_seconds.observe(seconds)
        self._log.info(
            "batch_done",
            size=n,
            predicted=batch.predicted,
            dead_lettered=n_dead,
            low_confidence=batch.low_confidence,
            inference_ms=round(batch.inference_s * 1000, 2),
            batch_ms=round((time.perf_counter() - batch.received) * 1000, 2),
            model_version=batch.classifier.version,
        )

    def _records(self, messages: Sequence[Any]) -> list[RawRecord]:
        from confluent_kafka import KafkaException

        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(RawRecord.from_message(message))
            elif error.fatal():
                raise KafkaException(error)
            else:
                self._log.warning(
                    "consume_error",
                    error=str(error),
                    topic=message.topic(),
                    partition=message.partition(),
                )
        return records

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
        self._log.info("model_swapped", old_version=old, model_version=bundle.version)

    def _serving(self, classifier: Classifier) -> None:
        self.metrics.model.info({"version": classifier.version})
        self.health.model_loaded = True

    # -- the worker thread's side of a batch -------------------------------------------

    def _work(self, batch: Batch) -> None:
        try:
            self._compute(batch)
            batch.computed.set()
            previous, batch.previous = batch.previous, None
            if previous is not None:
                previous.settled.wait()
            if batch.discarded:  # the batch before it was not committed: nothing is sent
                return
            self._deliver(batch)
        except BaseException as exc:
            batch.error = exc
        finally:
            batch.computed.set()
            batch.done.set()

    def _compute(self, batch: Batch) -> None:
        """Check, parse and tokenise every record (each under the guard), then run the model.

        Each record becomes :class:`~consumer.steps.Accepted` or a
        :class:`~consumer.isolation.Rejection`; nothing a record contains can fail the batch.
        """
        started = time.perf_counter()
        limits, tokenise = self.settings.record_limits, batch.classifier.token_ids
        batch.prepared = [prepare(record, limits, tokenise) for record in batch.records]
        sequences = [p.token_ids for p in batch.prepared if isinstance(p, Accepted)]
        batch.outcomes = self._predict_isolating(batch.classifier, sequences)
        batch.inference_s = time.perf_counter() - started

    def _deliver(self, batch: Batch) -> None:
        """Produce the batch's predictions and dead letters and wait for the broker's acks."""
        self._delivery.begin()
        outcomes = iter(batch.outcomes)
        for record, item in zip(batch.records, batch.prepared, strict=True):
            rejection = item if isinstance(item, Rejection) else None
            if isinstance(item, Accepted):
                outcome = next(outcomes)
                if isinstance(outcome, Exception):
                    reason = f"model failed on this message: {describe_exception(outcome)}"
                    rejection = Rejection.of(ErrorCode.INFERENCE_FAILED, reason)
                else:
                    rejection = self._predict(batch, record, item, outcome)
            if rejection is not None:
                self._dead_letter(batch, record, rejection)
        self._delivery.flush()

    @staticmethod
    def _predict_isolating(
        classifier: Classifier, sequences: Sequence[Sequence[int]]
    ) -> list[npt.NDArray[np.float32] | Exception]:
        """Probabilities per sequence; a sequence that makes the model fail gets its exception.

        On failure the batch is split in halves recursively until the failing sequences
        are isolated, so one bad input does not dead-letter the rest of its batch.
        """
        if not sequences:
            return []
        try:
            return checked_rows(classifier.predict_token_ids(sequences))
        except Exception as exc:
            if len(sequences) == 1:
                return [exc]
            mid = len(sequences) // 2
            return ClassifierService._predict_isolating(
                classifier, sequences[:mid]
            ) + ClassifierService._predict_isolating(classifier, sequences[mid:])

    def _predict(
        self,
        batch: Batch,
        record: RawRecord,
        accepted: Accepted,
        probabilities: npt.NDArray[np.float32],
    ) -> Rejection | None:
        """Produce ``record``'s prediction; the rejection if it cannot be built or produced."""
        s = self.settings
        top = batch.classifier.top_k(probabilities[np.newaxis, :], s.top_k)[0]
        rendered = render_prediction(
            record,
            accepted.message,
            top,
            batch.classifier.version,
            batch.received,
            s.low_confidence_threshold,
        )
        if isinstance(rendered, Rejection):
            return rendered
        refused = self._produce_record(s.output_topic, record.key, rendered.value)
        if refused is not None:
            return Rejection.of(ErrorCode.UNPROCESSABLE, f"prediction not produced: {refused}")
        self._count_prediction(batch, rendered)
        if rendered.low_confidence and s.review_topic:
            self._delivery.produce(s.review_topic, record.key, rendered.value)  # same size: fits
        self._log.debug(
            "predicted",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            id=accepted.message.id,
            label=top[0][0],
            confidence=round(top[0][1], 4),
        )
        return None

    @staticmethod
    def _count_prediction(batch: Batch, rendered: RenderedPrediction) -> None:
        batch.predicted += 1
        if rendered.low_confidence:
            batch.low_confidence += 1
        if rendered.end_to_end_s is not None:
            batch.end_to_end_s.append(rendered.end_to_end_s)

    def _dead_letter(self, batch: Batch, record: RawRecord, rejection: Rejection) -> None:
        s = self.settings
        value = render_dead_letter(record, rejection, s.dead_letter_max_value_bytes)
        refused = self._produce_record(s.dead_letter_topic, record.key, value)
        if refused is not None:  # key, headers or copied value too large for one record
            key, value = minimal_dead_letter(record, rejection, f"dead letter too large: {refused}")
            self._delivery.produce(s.dead_letter_topic, key, value)
        code = rejection.code.value
        batch.dead[code] = batch.dead.get(code, 0) + 1
        self._log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_code=code,
            reason=rejection.reason,
        )

    def _produce_record(self, topic: str, key: bytes | None, value: bytes) -> str | None:
        """Queue one output record; the refusal's text if the producer refuses *this* record.

        The producer checks each record against its ``message.max.bytes`` before queueing
        it; a record over it (a huge key or headers) is the record's failure, not the
        producer's. Every other error propagates and stops the batch.
        """
        try:
            self._delivery.produce(topic, key, value)
        except Exception as exc:
            from confluent_kafka import KafkaError, KafkaException  # only on the rare error path

            error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                return f"{error.str()} ({len(value) + len(key or b'')} bytes)"
            raise
        return None

    # -- rebalance callbacks (main thread, inside consume()) ---------------------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        self.health.assigned_partitions = len(self._assigned)
        self.metrics.rebalances.labels("assign").inc()
        self._log.info("partitions_assigned", partitions=_describe(partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        self._assigned -= {(p.topic, p.partition) for p in partitions}  # never rewound
        if not self._abandoned:
            # Finish and commit what was taken from these partitions before giving them up.
            for batch in list(self._inflight):
                if not batch.completed:
                    self._complete(batch)
        self._release(partitions)
        self._log.info("partitions_revoked", partitions=_describe(partitions))

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        lost = {(p.topic, p.partition) for p in partitions}
        for batch in self._inflight:
            if lost & batch.first_offsets.keys():
                batch.lost = True  # its offsets can no longer be committed by this member
        self._release(partitions)
        self._log.warning("partitions_lost", partitions=_describe(partitions))

    def _release(self, partitions: list[Any]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._assigned -= gone
        self._stash = [r for r in self._stash if (r.topic, r.partition) not in gone]
        self.health.assigned_partitions = len(self._assigned)
        self.metrics.forget_partitions(sorted(gone))


def _offset_ranges(batch: Batch) -> list[str]:
    """``"topic[partition]@first-last"`` for every partition the batch read from."""
    return [
        f"{topic}[{partition}]@{first}-{batch.next_offsets[(topic, partition)] - 1}"
        for (topic, partition), first in batch.first_offsets.items()
    ]


def _describe(partitions: list[Any]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


__all__ = ["ClassifierService", "Counters", "DeliveryError", "ShutdownTimeoutError"]
