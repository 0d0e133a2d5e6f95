"""The consumer's drift observer: text-health and drift signals of the committed stream.

Every committed micro-batch (:mod:`consumer.observers`) goes to a
:class:`model.drift.tracker.DriftTracker` with the model version that predicted it: the
records' ``token_ids`` (what the model saw) and probabilities, counted into that
version's sliding window and scored against its bundle's reference profile. Counting
costs microseconds per record on the main thread (``python -m bench``).
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from consumer.batch import Batch, Classifier
from model.drift import DriftSettings
from model.drift.tracker import DriftTracker


class DriftObserver:
    """Counts committed batches into the serving version's drift window.

    Args:
        settings: Window size, warm-up, threshold and alert delay.
        registry: The service's Prometheus registry.
    """

    def __init__(self, settings: DriftSettings, registry: CollectorRegistry) -> None:
        self.tracker = DriftTracker(settings, registry, "consumer")

    def serve(self, classifier: Classifier) -> None:
        """Export ``classifier``'s reference now (start-up), not at its first batch."""
        self.tracker.serve(classifier)

    def offer(self, batch: Batch) -> None:
        """Count ``batch``'s predicted records."""
        predicted = batch.predictions()
        if predicted:
            self.tracker.observe(
                batch.classifier,
                [p.accepted.token_ids for p in predicted],
                np.stack([p.probabilities for p in predicted]),
            )

    def close(self, timeout_s: float) -> None:
        """Nothing to release (no thread of its own)."""
