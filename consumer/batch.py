"""One micro-batch as data: its records, offsets, lifecycle and what its worker found.

The worker thread writes the result fields (:class:`Batch` ``prepared`` … ``end_to_end_s``)
until it reaches ``DELIVERED``; the main thread reads them only after that (the transition,
made under the lifecycle lock, publishes them). See :mod:`consumer.lifecycle`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from consumer.isolation import Rejection
from consumer.lifecycle import Lifecycle
from consumer.records import RawRecord
from consumer.steps import Accepted
from model.drift.tracker import Served

#: ``(topic, partition)``
TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Predicted:
    """One record of a settled batch that the model predicted.

    Attributes:
        record: The input record (key, coordinates, timestamp).
        accepted: Its validated message and ``token_ids`` (unpadded, truncated to
            ``max_len``: what the model saw).
        probabilities: ``(n_classes,) float32``, in the order of ``classifier.labels``.
    """

    record: RawRecord
    accepted: Accepted
    probabilities: npt.NDArray[np.float32]


class Classifier(Served, Protocol):
    """What the service needs of a model bundle (see :class:`model.Bundle`).

    Its ``version`` (stamped on every prediction), ``labels`` (class names in output order)
    and ``drift_profile`` are :class:`model.drift.tracker.Served`'s.
    """

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


@dataclass(eq=False)
class Batch:
    """One micro-batch in flight.

    Attributes:
        records: The consumed records, in offset order per partition.
        classifier: The model that computes it (a hot swap only affects later batches).
        life: Its state (:class:`~consumer.lifecycle.Lifecycle`).
        received: ``time.perf_counter()`` when it was taken from the consumer (s).
        first_offsets: Per partition, the offset of its first record.
        next_offsets: Per partition, the offset to commit (its last record's + 1).
        losses_seen: The service's count of partition losses when it started; a loss
            after that of one of its partitions means it must not be committed.
        started: ``time.monotonic()`` when it started (s), for the health check.
        prepared: Per record, the accepted message or its rejection (worker).
        outcomes: Per accepted record, its probabilities or the model's exception (worker).
        predicted, low_confidence: Predictions produced / below the threshold (worker).
        dead: Dead letters produced per error code (worker).
        inference_s: Compute time: decoding, validation, tokenisation and the model (s).
        render_s: Deliver time spent building and queueing the output records (s).
        acks_s: Deliver time spent waiting for the broker's acknowledgements (s).
        commit_s: Time the main thread spent committing it (s).
        end_to_end_s: Per prediction, produced-at minus the record's Kafka timestamp (s).
    """

    records: list[RawRecord]
    classifier: Classifier
    life: Lifecycle
    received: float
    first_offsets: dict[TopicPartitionKey, int]
    next_offsets: dict[TopicPartitionKey, int]
    losses_seen: int = 0
    started: float = field(default_factory=time.monotonic)
    prepared: list[Accepted | Rejection] = field(default_factory=list)
    outcomes: list[npt.NDArray[np.float32] | Exception] = field(default_factory=list)
    predicted: int = 0
    low_confidence: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    inference_s: float = 0.0
    render_s: float = 0.0
    acks_s: float = 0.0
    commit_s: float = 0.0
    end_to_end_s: list[float] = field(default_factory=list)

    @classmethod
    def of(
        cls, records: list[RawRecord], classifier: Classifier, life: Lifecycle, losses_seen: int
    ) -> Batch:
        """A batch of ``records`` (at least one), its offsets taken from them."""
        first: dict[TopicPartitionKey, int] = {}
        following: dict[TopicPartitionKey, int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            first.setdefault(tp, r.offset)
            following[tp] = r.offset + 1
        return cls(records, classifier, life, time.perf_counter(), first, following, losses_seen)

    def summary(self) -> dict[str, Any]:
        """The fields of its ``batch_done`` log line (sizes, and times in ms)."""
        return {
            "size": len(self.records),
            "predicted": self.predicted,
            "dead_lettered": sum(self.dead.values()),
            "low_confidence": self.low_confidence,
            "inference_ms": round(self.inference_s * 1000, 2),
            "render_ms": round(self.render_s * 1000, 2),
            "acks_ms": round(self.acks_s * 1000, 2),
            "commit_ms": round(self.commit_s * 1000, 2),
            "batch_ms": round((time.perf_counter() - self.received) * 1000, 2),
            "model_version": self.classifier.version,
        }

    def offset_ranges(self) -> list[str]:
        """``"topic[partition]@first-last"`` for every partition the batch read from."""
        return [
            f"{topic}[{partition}]@{first}-{self.next_offsets[(topic, partition)] - 1}"
            for (topic, partition), first in self.first_offsets.items()
        ]

    def predictions(self) -> list[Predicted]:
        """The records the model predicted, in record order (rejections and failures left out).

        Read only after the worker is done (``DELIVERED`` or later).
        """
        out: list[Predicted] = []
        outcomes = iter(self.outcomes)
        for record, item in zip(self.records, self.prepared, strict=True):
            if not isinstance(item, Accepted):
                continue
            outcome = next(outcomes)
            if not isinstance(outcome, Exception):
                out.append(Predicted(record, item, outcome))
        return out
