"""The consume → validate → predict → produce → commit loop, one micro-batch at a time.

Delivery is at-least-once: a batch's offsets are committed only after the broker has
acknowledged every prediction and dead-letter record made from it. A crash between
produce and commit repeats that batch after restart; it never skips a message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from consumer.records import InvalidRecordError, RawRecord, dead_letter, parse_input
from consumer.settings import Settings
from schemas import ClassProbability, ErrorCode, InputMessage, Prediction


class Classifier(Protocol):
    """What the service needs of a model bundle (see :class:`model.Bundle`)."""

    @property
    def version(self) -> str:
        """Version id stamped on every prediction."""
        ...

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``len(texts)`` texts → ``(batch, n_classes) float32`` probabilities."""
        ...

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (label, probability) pairs per row, highest first."""
        ...


class DeliveryError(Exception):
    """The broker did not acknowledge a batch's output; its offsets were not committed."""


@dataclass
class Counters:
    """Running totals since start, logged on every batch and at shutdown."""

    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


class ClassifierService:
    """Runs micro-batches from the input topic through a classifier until asked to stop.

    Args:
        settings: Validated settings.
        classifier: The loaded model bundle.
        consumer: ``confluent_kafka.Consumer`` built from
            :func:`consumer.clients.consumer_config`.
        producer: ``confluent_kafka.Producer`` built from
            :func:`consumer.clients.producer_config`.
    """

    def __init__(self, settings: Settings, classifier: Classifier, consumer: Any, producer: Any):
        self.settings = settings
        self.classifier = classifier
        self._consumer = consumer
        self._producer = producer
        self._stopping = False
        self._delivery_errors: list[str] = []
        self.counters = Counters()
        self._log = structlog.get_logger("consumer")

    def request_stop(self) -> None:
        """Ask the loop to stop after the batch in flight (safe from a signal handler)."""
        self._stopping = True

    def run(self) -> Counters:
        """Subscribe and process micro-batches until :meth:`request_stop`; then flush and close.

        Raises:
            DeliveryError: output not acknowledged; the process should exit non-zero and
                its uncommitted input will be processed again after restart.
            confluent_kafka.KafkaException: a fatal client error.
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
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
        )
        try:
            while not self._stopping:
                messages = self._consumer.consume(s.max_batch_size, s.max_wait_ms / 1000)
                if messages:
                    self.process_batch(messages)
        finally:
            self._shutdown()
        return self.counters

    def _shutdown(self) -> None:
        remaining = self._producer.flush(self.settings.flush_timeout_s)
        self._consumer.close()  # leaves the group; nothing is auto-committed
        self._log.info(
            "consumer_stopped",
            unflushed=remaining,
            consumed=self.counters.consumed,
            predicted=self.counters.predicted,
            dead_lettered=self.counters.dead_lettered,
        )

    # -- one micro-batch ------------------------------------------------------------

    def process_batch(self, messages: Sequence[Any]) -> None:
        """Validate, predict, produce and commit one micro-batch of consumed messages.

        Outputs are produced in input order, so per-key (per-partition) order is kept.

        Raises:
            DeliveryError: see :meth:`run`.
        """
        received = time.perf_counter()
        records = self._records(messages)
        if not records:
            return
        parsed: list[InputMessage | InvalidRecordError] = []
        for record in records:
            try:
                parsed.append(parse_input(record))
            except InvalidRecordError as exc:
                parsed.append(exc)
        valid = [p for p in parsed if isinstance(p, InputMessage)]
        started = time.perf_counter()
        outcomes = iter(self._predict_isolating([m.document for m in valid]))
        inference_ms = (time.perf_counter() - started) * 1000

        n_pred = n_dead = 0
        for record, item in zip(records, parsed, strict=True):
            if isinstance(item, InvalidRecordError):
                self._dead_letter(record, item.code, item.reason)
                n_dead += 1
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                self._dead_letter(record, ErrorCode.INFERENCE_FAILED, f"model failed: {outcome!r}")
                n_dead += 1
            else:
                self._produce_prediction(record, item, outcome, received)
                n_pred += 1

        self._await_acks(len(records))
        self._commit(records)
        c = self.counters
        c.batches += 1
        c.consumed += len(records)
        c.predicted += n_pred
        c.dead_lettered += n_dead
        self._log.info(
            "batch_done",
            size=len(records),
            predicted=n_pred,
            dead_lettered=n_dead,
            inference_ms=round(inference_ms, 2),
            batch_ms=round((time.perf_counter() - received) * 1000, 2),
            model_version=self.classifier.version,
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

    def _predict_isolating(
        self, documents: Sequence[str]
    ) -> list[npt.NDArray[np.float32] | Exception]:
        """Probabilities per document; a document that makes the model fail gets its exception.

        On failure the batch is split in halves recursively until the failing documents
        are isolated, so one bad input does not dead-letter the rest of its batch.
        """
        if not documents:
            return []
        try:
            return list(self.classifier.predict_proba(documents))
        except Exception as exc:
            if len(documents) == 1:
                return [exc]
            mid = len(documents) // 2
            return self._predict_isolating(documents[:mid]) + self._predict_isolating(
                documents[mid:]
            )

    def _produce_prediction(
        self,
        record: RawRecord,
        message: InputMessage,
        probabilities: npt.NDArray[np.float32],
        received: float,
    ) -> None:
        top = self.classifier.top_k(probabilities[np.newaxis, :], self.settings.top_k)[0]
        prediction = Prediction(
            id=message.id,
            label=top[0][0],
            confidence=top[0][1],
            top_k=[ClassProbability(label=label, probability=p) for label, p in top],
            model_version=self.classifier.version,
            source=record.source,
            input_timestamp=record.timestamp,
            produced_at=datetime.now(UTC),
            latency_ms=round((time.perf_counter() - received) * 1000, 3),
        )
        self._produce(self.settings.output_topic, record.key, prediction.model_dump_json().encode())
        self._log.debug(
            "predicted",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            id=message.id,
            label=prediction.label,
            confidence=round(prediction.confidence, 4),
        )

    def _dead_letter(self, record: RawRecord, code: ErrorCode, reason: str) -> None:
        letter = dead_letter(record, code, reason)
        self._produce(
            self.settings.dead_letter_topic, record.key, letter.model_dump_json().encode()
        )
        self.counters.by_error[code.value] = self.counters.by_error.get(code.value, 0) + 1
        self._log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_code=code.value,
            reason=reason,
        )

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.1)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(f"{message.topic()}: {error}")

    def _await_acks(self, batch_size: int) -> None:
        remaining = self._producer.flush(self.settings.flush_timeout_s)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(
                f"batch of {batch_size}: {remaining} outputs unacknowledged after "
                f"{self.settings.flush_timeout_s} s, {len(errors)} failed ({errors[:3]}); "
                "offsets not committed, the batch will be processed again"
            )

    def _commit(self, records: Sequence[RawRecord]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        next_offsets: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            next_offsets[key] = max(next_offsets.get(key, 0), r.offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Outputs are already acknowledged; a later commit covers these offsets, and
            # if none comes the batch is re-delivered (at-least-once, never lost).
            self._log.warning("commit_failed", error=str(exc), offsets=str(offsets))

    # -- rebalance callbacks (run inside consume(), i.e. between batches) ------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._log.info("partitions_assigned", partitions=_describe(partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        # Every batch is committed before the next consume(), so nothing is pending here.
        self._log.info("partitions_revoked", partitions=_describe(partitions))

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        self._log.warning("partitions_lost", partitions=_describe(partitions))


def _describe(partitions: list[Any]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]
