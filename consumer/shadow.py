"""Shadow evaluation: a candidate model runs on the live micro-batches, off the delivery path.

``--shadow-bundle DIR`` loads a second bundle (a candidate version) at start-up. Every
micro-batch, once committed, is offered to a :class:`ShadowEvaluator`: a thread of its own
tokenises the batch's documents with the *candidate's* pipeline (its vocabulary may differ),
predicts them, and compares its top label with the label the serving model published. The
offer never blocks: the queue holds ``shadow_queue_batches`` batches, and a batch that does
not fit is skipped and counted, so the shadow can fall behind but can never delay or change
what is published. (It does share the CPU: on a saturated host it costs throughput, which
``classifier_shadow_skipped_batches_total`` and the serving metrics show.)

Exported (labels ``serving_version`` and ``shadow_version``):

* ``classifier_shadow_predictions_total`` and ``classifier_shadow_agreements_total`` —
  agreement = agreements / predictions;
* the same per serving label, ``classifier_shadow_label_predictions_total{label}`` and
  ``classifier_shadow_label_agreements_total{label}``;
* ``classifier_shadow_confidence`` — histogram of the candidate's top probability, beside
  the serving model's confidence profile;
* ``classifier_shadow_skipped_batches_total``.

With ``--shadow-topic`` the candidate's predictions are also published there (same key,
the prediction JSON with the candidate's version), by a producer of its own that is never
transactional, so a shadow record is never part of the service's transactions.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from consumer.batch import Batch
from schemas.prediction_json import prediction_json

#: Bins of the candidate's confidence histogram (probability of its top label).
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Candidate(Protocol):
    """What the shadow needs of a bundle (see :class:`model.Bundle`)."""

    @property
    def version(self) -> str:
        """The candidate's version."""
        ...

    @property
    def labels(self) -> list[str]:
        """Its classes in output order."""
        ...

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``len(texts)`` documents → ``(n, classes) float32`` probabilities."""
        ...

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (label, probability) pairs per row, highest first."""
        ...


@dataclass(frozen=True)
class ShadowBatch:
    """What the shadow takes from one committed micro-batch (plain data, no Kafka objects).

    Attributes:
        serving_version: The model that published the batch's predictions.
        documents: Per predicted record, the document the model saw (``title text``).
        serving_labels: Per predicted record, the label published.
        keys, ids: Per predicted record, its Kafka key and message id (for the shadow topic).
        sources: Per predicted record, ``(topic, partition, offset)``.
    """

    serving_version: str
    documents: list[str]
    serving_labels: list[str]
    keys: list[bytes | None]
    ids: list[str]
    sources: list[tuple[str, int, int]]

    @classmethod
    def of(cls, batch: Batch) -> ShadowBatch:
        """The predicted records of a committed ``batch`` (rejections and failures left out)."""
        labels = batch.classifier.labels
        out = cls(batch.classifier.version, [], [], [], [], [])
        for p in batch.predictions():
            out.documents.append(p.accepted.message.document)
            out.serving_labels.append(labels[int(np.argmax(p.probabilities))])
            out.keys.append(p.record.key)
            out.ids.append(p.accepted.message.id)
            out.sources.append((p.record.topic, p.record.partition, p.record.offset))
        return out


class ShadowMetrics:
    """The shadow's Prometheus metrics (see the module docstring), in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        versions = ["serving_version", "shadow_version"]
        self.predictions = Counter(
            "classifier_shadow_predictions",
            "Records the shadow (candidate) model predicted.",
            versions,
            registry=registry,
        )
        self.agreements = Counter(
            "classifier_shadow_agreements",
            "Shadow predictions whose top label equals the published one.",
            versions,
            registry=registry,
        )
        self.label_predictions = Counter(
            "classifier_shadow_label_predictions",
            "Shadow predictions per label the serving model published.",
            [*versions, "label"],
            registry=registry,
        )
        self.label_agreements = Counter(
            "classifier_shadow_label_agreements",
            "Shadow agreements per label the serving model published.",
            [*versions, "label"],
            registry=registry,
        )
        self.confidence = Histogram(
            "classifier_shadow_confidence",
            "The shadow model's top probability.",
            ["shadow_version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.skipped = Counter(
            "classifier_shadow_skipped_batches",
            "Committed micro-batches the shadow skipped because it was behind.",
            registry=registry,
        )


class ShadowEvaluator:
    """Runs a candidate model on committed micro-batches in a thread of its own.

    Args:
        candidate: The loaded (and warmed-up) candidate bundle.
        metrics: Where agreement and confidence are counted.
        queue_batches: Batches the shadow may be behind before it skips (never blocks).
        producer: A non-transactional ``confluent_kafka.Producer`` for ``topic``, or ``None``.
        topic: The shadow topic, or ``None``.
        top_k: Classes listed in each shadow-topic prediction.
    """

    def __init__(
        self,
        candidate: Candidate,
        metrics: ShadowMetrics,
        queue_batches: int = 2,
        producer: Any = None,
        topic: str | None = None,
        top_k: int = 3,
    ) -> None:
        self.candidate = candidate
        self.top_k = top_k
        self.metrics = metrics
        self._queue: queue.Queue[ShadowBatch | None] = queue.Queue(maxsize=queue_batches)
        self._producer: Any = producer if topic else None
        self._topic = topic
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._log = structlog.get_logger("consumer")
        self._thread.start()

    def offer(self, batch: Batch) -> None:
        """Hand a committed batch to the shadow; skip it (counted) if the shadow is behind."""
        shadow = ShadowBatch.of(batch)
        if not shadow.documents:
            return
        try:
            self._queue.put_nowait(shadow)
        except queue.Full:
            self.metrics.skipped.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the queued batches (up to ``timeout_s``), flush the shadow topic, stop."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if self._producer is not None:
            self._producer.flush(timeout_s)

    def evaluate(self, shadow: ShadowBatch) -> None:
        """Predict ``shadow``'s documents with the candidate and count the agreement."""
        probabilities = self.candidate.predict_proba(shadow.documents)
        labels, version = self.candidate.labels, self.candidate.version
        tops = np.argmax(probabilities, axis=1)
        confidences = probabilities[np.arange(len(tops)), tops]
        m = self.metrics
        serving = shadow.serving_version
        ranked = (
            self.candidate.top_k(probabilities, self.top_k) if self._producer is not None else []
        )
        agreed = 0
        for i, (index, confidence) in enumerate(zip(tops, confidences, strict=True)):
            label, published = labels[int(index)], shadow.serving_labels[i]
            same = label == published
            agreed += same
            m.label_predictions.labels(serving, version, published).inc()
            agreements = m.label_agreements.labels(serving, version, published)  # 0 exists too
            if same:
                agreements.inc()
            m.confidence.labels(version).observe(float(confidence))
            if ranked:
                self._publish(shadow, i, ranked[i])
        m.predictions.labels(serving, version).inc(len(tops))
        m.agreements.labels(serving, version).inc(agreed)
        if self._producer is not None:
            self._producer.poll(0)

    def _publish(self, shadow: ShadowBatch, i: int, top: list[tuple[str, float]]) -> None:
        topic, partition, offset = shadow.sources[i]
        value = prediction_json(
            shadow.ids[i],
            top,
            self.candidate.version,
            datetime.now(UTC),
            0.0,
            False,
            topic,
            partition,
            offset,
            None,
        )
        while True:
            try:
                self._producer.produce(self._topic, key=shadow.keys[i], value=value)
                return
            except BufferError:
                self._producer.poll(0.1)

    def _run(self) -> None:
        while True:
            shadow = self._queue.get()
            if shadow is None:
                return
            try:
                self.evaluate(shadow)
            except Exception as exc:  # the shadow must never stop the service
                self._log.warning(
                    "shadow_failed", error=f"{type(exc).__name__}: {exc}", size=len(shadow.ids)
                )
