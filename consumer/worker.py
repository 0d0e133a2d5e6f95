"""The worker thread's side of a micro-batch: compute, wait for its turn, deliver.

**Compute** decodes, validates and tokenises every record (each under the per-record guard
of :mod:`consumer.isolation`) and runs the model; **deliver** builds each record's
prediction or dead letter, produces them and waits for the broker's acks. In between, the
worker waits until the batch ahead of it is settled (:meth:`Lifecycle.take_turn`), so
output order, commit order and transactions stay one batch at a time; the main thread
commits what the worker delivered (:mod:`consumer.service`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import structlog

from consumer.batch import Batch, Classifier
from consumer.delivery import Delivery
from consumer.isolation import DependencyUnavailableError, Rejection, describe_exception
from consumer.lifecycle import BatchState, Lifecycle
from consumer.metrics import DependencyStatus
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
from consumer.wire import WireFormat
from model.probabilities import checked_rows
from schemas import ErrorCode

#: First wait before a micro-batch is decoded again while a dependency is down (s); it
#: doubles per attempt up to ``schema_registry_retry_max_s``.
RETRY_FIRST_WAIT_S = 0.5
#: What ends the wait early: the main thread took the batch out of the worker's hands.
_NO_LONGER_WANTED = frozenset({BatchState.DISCARDING, BatchState.ABANDONED})


class BatchWorker:
    """Computes and delivers micro-batches, one thread per batch (see module docstring).

    Args:
        settings: Validated settings (limits, topics, ``top_k``, threshold).
        delivery: The output path shared with the main thread, which commits.
        wire: How records are decoded and outputs encoded (default: JSON per ``settings``).
        dependencies: Where waits for the Schema Registry are reported (metrics, health).
    """

    def __init__(
        self,
        settings: Settings,
        delivery: Delivery,
        wire: WireFormat | None = None,
        dependencies: DependencyStatus | None = None,
    ) -> None:
        self.settings = settings
        self._delivery = delivery
        self._wire = wire or WireFormat.json(settings)
        self._dependencies = dependencies
        self._waited_for: set[str] = set()  # dependencies reported down, not yet back up
        self._log = structlog.get_logger("consumer")

    def run(self, batch: Batch, ahead: Lifecycle | None) -> None:
        """Thread body: compute ``batch``, wait for ``ahead`` to settle, deliver.

        Never raises: an exception moves the batch to ``ERRORED`` with it, for the main
        thread to raise. ``ahead`` is a parameter, not a field, so finished batches do not
        keep a chain of every earlier batch alive.
        """
        life = batch.life
        try:
            self.compute(batch)
            if life.advance(BatchState.WAITING) and life.take_turn(ahead):
                self.deliver(batch)
                life.advance(BatchState.DELIVERED)
        except BaseException as exc:
            life.fail(exc)

    def compute(self, batch: Batch) -> None:
        """Check, decode and tokenise every record (each under the guard), then run the model.

        Each record becomes :class:`~consumer.steps.Accepted` or a
        :class:`~consumer.isolation.Rejection`; nothing a record contains can fail the batch.
        While the Schema Registry is unavailable the batch is decoded again after a back-off
        (:meth:`prepare_all`); nothing is dead-lettered for it.
        """
        started = time.perf_counter()
        prepared = self.prepare_all(batch)
        if prepared is None:  # discarded or abandoned while waiting: never delivered
            return
        batch.prepared = prepared
        sequences = [p.token_ids for p in batch.prepared if isinstance(p, Accepted)]
        batch.outcomes = predict_isolating(batch.classifier, sequences)
        batch.inference_s = time.perf_counter() - started

    def prepare_all(self, batch: Batch) -> list[Accepted | Rejection] | None:
        """Every record of ``batch`` prepared, retrying while a dependency is unavailable.

        Waits ``RETRY_FIRST_WAIT_S`` doubling up to ``schema_registry_retry_max_s`` between
        attempts (the main thread meanwhile pauses the partitions and keeps polling).

        Returns:
            One outcome per record; ``None`` if the batch was discarded or abandoned while
            it waited (the service is stopping, or its partitions were given up).
        """
        decode, tokenise = self._wire.decode, batch.classifier.token_ids
        attempt = 0
        while True:
            try:
                prepared = [prepare(record, decode, tokenise) for record in batch.records]
            except DependencyUnavailableError as exc:
                max_wait_s = self.settings.schema_registry_retry_max_s
                wait_s = min(max_wait_s, RETRY_FIRST_WAIT_S * 2**attempt)
                attempt += 1
                self._report_down(exc)
                self._log.warning(
                    "dependency_unavailable",
                    dependency=exc.dependency,
                    reason=exc.reason,
                    attempt=attempt,
                    retry_in_s=wait_s,
                    offsets=batch.offset_ranges(),
                )
                if batch.life.wait_until(_NO_LONGER_WANTED, wait_s):
                    return None
                continue
            self._report_up(attempt)
            return prepared

    def _report_down(self, exc: DependencyUnavailableError) -> None:
        self._waited_for.add(exc.dependency)
        if self._dependencies is not None:
            self._dependencies.down(exc.dependency, exc.reason)

    def _report_up(self, attempts: int) -> None:
        """Every dependency waited for answered (this batch's or an earlier, discarded one's)."""
        for dependency in self._waited_for:
            if self._dependencies is not None:
                self._dependencies.up(dependency)
            self._log.info("dependency_available", dependency=dependency, attempts=attempts)
        self._waited_for.clear()

    def deliver(self, batch: Batch) -> None:
        """Produce the batch's predictions and dead letters and wait for the broker's acks.

        Raises:
            consumer.delivery.DeliveryError: (at-least-once) output not acknowledged in time.
            confluent_kafka.KafkaException: the producer failed (not one record's fault).
        """
        started = time.perf_counter()
        self._delivery.begin()
        outcomes = iter(batch.outcomes)
        tops = iter(_top_classes(batch.classifier, batch.outcomes, self.settings.top_k))
        for record, item in zip(batch.records, batch.prepared, strict=True):
            rejection = item if isinstance(item, Rejection) else None
            if isinstance(item, Accepted):
                outcome = next(outcomes)
                if isinstance(outcome, Exception):
                    reason = f"model failed on this message: {describe_exception(outcome)}"
                    rejection = Rejection.of(ErrorCode.INFERENCE_FAILED, reason)
                else:
                    rejection = self._predict(batch, record, item, next(tops))
            if rejection is not None:
                self._dead_letter(batch, record, rejection)
        rendered = time.perf_counter()
        batch.render_s = rendered - started
        self._delivery.flush()
        batch.acks_s = time.perf_counter() - rendered

    def _predict(
        self,
        batch: Batch,
        record: RawRecord,
        accepted: Accepted,
        top: list[tuple[str, float]],
    ) -> Rejection | None:
        """Produce ``record``'s prediction; the rejection if it cannot be built or produced."""
        s = self.settings
        rendered = render_prediction(
            record,
            accepted.message,
            top,
            batch.classifier.version,
            batch.received,
            s.low_confidence_threshold,
            self._wire.encode,
            s.output_topic,
        )
        if isinstance(rendered, Rejection):
            return rendered
        refused = self._produce_record(s.output_topic, record.key, rendered.value)
        if refused is not None:
            return Rejection.of(ErrorCode.UNPROCESSABLE, f"prediction not produced: {refused}")
        _count_prediction(batch, rendered)
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

    def _dead_letter(self, batch: Batch, record: RawRecord, rejection: Rejection) -> None:
        s = self.settings
        encode, topic = self._wire.encode, s.dead_letter_topic
        value = render_dead_letter(record, rejection, s.dead_letter_max_value_bytes, encode, topic)
        refused = self._produce_record(topic, record.key, value)
        if refused is not None:  # key, headers or copied value too large for one record
            why = f"dead letter too large: {refused}"
            key, value = minimal_dead_letter(record, rejection, why, encode, topic)
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


def predict_isolating(
    classifier: Classifier, sequences: Sequence[Sequence[int]]
) -> list[npt.NDArray[np.float32] | Exception]:
    """Probabilities per sequence; a sequence that makes the model fail gets its exception.

    On failure the batch is split in halves recursively until the failing sequences are
    isolated, so one bad input does not dead-letter the rest of its batch. Rows that are
    not finite are exceptions too (:func:`model.probabilities.checked_rows`).
    """
    if not sequences:
        return []
    try:
        return checked_rows(classifier.predict_token_ids(sequences))
    except Exception as exc:
        if len(sequences) == 1:
            return [exc]
        mid = len(sequences) // 2
        return predict_isolating(classifier, sequences[:mid]) + predict_isolating(
            classifier, sequences[mid:]
        )


def _top_classes(
    classifier: Classifier, outcomes: Sequence[npt.NDArray[np.float32] | Exception], k: int
) -> list[list[tuple[str, float]]]:
    """Top ``k`` ``(label, probability)`` pairs of every outcome that is not an exception.

    One vectorised call for the whole micro-batch instead of one per record.
    """
    rows = [o for o in outcomes if not isinstance(o, Exception)]
    return classifier.top_k(np.stack(rows), k) if rows else []


def _count_prediction(batch: Batch, rendered: RenderedPrediction) -> None:
    batch.predicted += 1
    if rendered.low_confidence:
        batch.low_confidence += 1
    if rendered.end_to_end_s is not None:
        batch.end_to_end_s.append(rendered.end_to_end_s)
