"""The shadow evaluator: agreement counted per label, never blocking the service.

The candidate here is a fixed table of probabilities; the real candidate bundle on the live
stream is tests/integration/test_shadow.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from consumer.batch import Batch
from consumer.decoding import JsonInput
from consumer.isolation import Rejection
from consumer.lifecycle import Lifecycles
from consumer.records import RawRecord
from consumer.shadow import ShadowBatch, ShadowEvaluator, ShadowMetrics
from consumer.steps import prepare

LABELS = ["business", "sport", "tech"]


class _Serving:
    version = "v-serving"
    labels = LABELS

    def token_ids(self, text: str) -> list[int]:
        return [2]


class _Candidate:
    """Answers ``sport`` for documents containing "goal", else ``tech``; can be held."""

    version = "v-candidate"
    labels = LABELS

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.calls = 0

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.release.wait(10)
        self.calls += 1
        rows = [[0.1, 0.8, 0.1] if "goal" in t else [0.2, 0.1, 0.7] for t in texts]
        return np.asarray(rows, dtype=np.float32)

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probabilities, axis=1)[:, :k]
        pairs = zip(probabilities, order, strict=True)
        return [[(LABELS[j], float(row[j])) for j in idx] for row, idx in pairs]


def _batch(texts: list[str], published: list[str]) -> Batch:
    """A committed-looking batch: one bad record, the rest predicted ``published``."""
    values = [json.dumps({"id": f"m{i}", "text": t}).encode() for i, t in enumerate(texts)]
    records = [RawRecord("in", 0, i, f"k{i}".encode(), v) for i, v in enumerate(values)]
    records.append(RawRecord("in", 0, len(values), b"bad", b"not json"))
    batch = Batch.of(records, _Serving(), Lifecycles().new(), 0)  # type: ignore[arg-type]
    batch.prepared = [prepare(r, JsonInput(), _Serving().token_ids) for r in records]
    batch.outcomes = [
        np.asarray([0.9 if label == name else 0.05 for name in LABELS], dtype=np.float32)
        for label in published
    ]
    return batch


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_agreement_is_counted_overall_and_per_published_label() -> None:
    registry = CollectorRegistry()
    evaluator = ShadowEvaluator(_Candidate(), ShadowMetrics(registry))
    batch = _batch(["a late goal", "chip prices", "a goal again", "markets"],
                   ["sport", "tech", "business", "business"])  # fmt: skip
    shadow = ShadowBatch.of(batch)
    assert len(shadow.documents) == 4  # the bad record is not the shadow's business
    assert isinstance(batch.prepared[-1], Rejection)
    evaluator.evaluate(shadow)
    versions = {"serving_version": "v-serving", "shadow_version": "v-candidate"}
    assert _value(registry, "classifier_shadow_predictions_total", **versions) == 4
    assert _value(registry, "classifier_shadow_agreements_total", **versions) == 2
    per = {
        label: (
            _value(registry, "classifier_shadow_label_agreements_total", **versions, label=label),
            _value(registry, "classifier_shadow_label_predictions_total", **versions, label=label),
        )
        for label in LABELS
    }
    assert per == {"business": (0, 2), "sport": (1, 1), "tech": (1, 1)}
    assert _value(registry, "classifier_shadow_confidence_count", shadow_version="v-candidate") == 4
    evaluator.close()


def test_an_offer_never_waits_for_a_shadow_that_is_behind() -> None:
    registry = CollectorRegistry()
    candidate = _Candidate()
    candidate.release.clear()  # the candidate is stuck on its first batch
    evaluator = ShadowEvaluator(candidate, ShadowMetrics(registry), queue_batches=1)
    batch = _batch(["a goal"], ["sport"])
    done = threading.Event()

    def offer_many() -> None:
        for _ in range(5):
            evaluator.offer(batch)
        done.set()

    threading.Thread(target=offer_many).start()
    assert done.wait(2)  # five offers return at once while the candidate is held
    skipped = _value(registry, "classifier_shadow_skipped_batches_total")
    assert skipped >= 3  # one running, at most one queued
    candidate.release.set()
    evaluator.close()
    predicted = _value(
        registry,
        "classifier_shadow_predictions_total",
        serving_version="v-serving",
        shadow_version="v-candidate",
    )
    assert predicted + skipped == 5
