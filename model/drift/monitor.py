"""Drift monitoring of one serving model version: window, scores and alerts together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.drift.alert import AlertState, DriftAlert
from model.drift.counts import QUANTITIES, DriftCounts, Quantity, count_documents
from model.drift.profile import ReferenceProfile
from model.drift.scores import scores
from model.drift.window import SlidingWindow


@dataclass(frozen=True)
class DriftSnapshot:
    """The window and its scores after the latest observation.

    Attributes:
        model_version: The version whose reference profile is used.
        window: Counts of the documents in the window.
        reference: Counts of the reference profile.
        psi, js_distance: Per quantity, the score; ``None`` while warming up.
        states: Per quantity, its alert state.
    """

    model_version: str
    window: DriftCounts
    reference: DriftCounts
    psi: dict[Quantity, float | None]
    js_distance: dict[Quantity, float | None]
    states: dict[Quantity, AlertState]


class DriftMonitor:
    """Counts served documents into a sliding window and scores it against the reference.

    Thread-safe: :meth:`observe` and :meth:`snapshot` take a lock (the API observes from
    its inference thread, the consumer from its main thread).

    Args:
        profile: The serving bundle's reference profile.
        model_version: Its version (a label of every exported series).
        window_documents: Window size (documents).
        min_documents: Documents needed before scores are computed.
        psi_threshold: Alert threshold on the population stability index.
        alert_after_s: How long (s) a score must stay above it before the alert fires.
        clock: Monotonic seconds (tests inject their own).
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        model_version: str,
        window_documents: int,
        min_documents: int,
        psi_threshold: float,
        alert_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.model_version = model_version
        self.min_documents = min_documents
        self._bins = profile.bins
        self._reference = profile.as_counts()
        self._window = SlidingWindow(self._bins, window_documents)
        self._alerts = {q: DriftAlert(psi_threshold, alert_after_s) for q in QUANTITIES}
        self._clock = clock
        self._lock = threading.Lock()
        self._last = self._score()

    def observe(
        self, token_ids: Sequence[Sequence[int]], probabilities: npt.NDArray[np.floating]
    ) -> list[tuple[Quantity, AlertState]]:
        """Add a micro-batch's documents and rescore.

        Args:
            token_ids: Per document, its model-input ids (unpadded, truncated to
                ``max_len``), as :meth:`model.Bundle.token_ids` returns them.
            probabilities: ``(documents, n_classes)`` rows of the serving model.

        Returns:
            The quantities whose alert state changed, with their new state.

        Raises:
            ValueError: shapes that do not match the model's labels.
        """
        counts = count_documents(token_ids, probabilities, self._bins)
        with self._lock:
            self._window.add(counts)
            self._last = self._score()
            return [
                (q, state)
                for q in QUANTITIES
                if (state := self._alerts[q].update(self._last.psi[q], self._clock())) is not None
            ]

    def snapshot(self) -> DriftSnapshot:
        """The latest window counts, scores and alert states."""
        with self._lock:
            last = self._last
            states = {q: self._alerts[q].state for q in QUANTITIES}
            window = DriftCounts(
                last.window.documents,
                last.window.tokens,
                last.window.oov_tokens,
                {q: c.copy() for q, c in last.window.bins.items()},
            )
        return DriftSnapshot(
            last.model_version, window, last.reference, last.psi, last.js_distance, states
        )

    def _score(self) -> DriftSnapshot:
        window = self._window.total
        ready = window.documents >= self.min_documents
        psis: dict[Quantity, float | None] = {}
        jss: dict[Quantity, float | None] = {}
        for q in QUANTITIES:
            if ready:
                psis[q], jss[q] = scores(self._reference.bins[q], window.bins[q])
            else:
                psis[q] = jss[q] = None
        return DriftSnapshot(
            self.model_version,
            window,
            self._reference,
            psis,
            jss,
            {q: a.state for q, a in self._alerts.items()},
        )
