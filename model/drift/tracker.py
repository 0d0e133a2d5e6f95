"""Drift signals of whatever model version is serving, exported to Prometheus.

The consumer (:mod:`consumer.drift`) and the API (:mod:`api.app`) both hand a
:class:`DriftTracker` each micro-batch they predicted, with the model that predicted it;
the tracker counts it into that version's window (:class:`~model.drift.DriftMonitor`,
against the bundle's ``drift_profile.json``) and sets the gauges of
:mod:`model.drift.prometheus`. A new version (hot swap) starts a fresh window against its
own reference and removes the old version's gauges. A bundle without a profile (trained
before it existed) is served without drift signals, said once in the log.

Alert transitions are logged: ``drift_alert`` when a quantity starts firing,
``drift_resolved`` when it stops.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog
from prometheus_client import CollectorRegistry

from model.drift.alert import AlertState
from model.drift.counts import Quantity
from model.drift.monitor import DriftMonitor
from model.drift.profile import ReferenceProfile
from model.drift.prometheus import DriftMetrics
from model.drift.settings import DriftSettings


class Served(Protocol):
    """What the tracker needs of the serving model (a :class:`model.Bundle`)."""

    @property
    def version(self) -> str:
        """Its version id, stamped on every prediction."""
        ...

    @property
    def labels(self) -> list[str]:
        """Class names in output order."""
        ...

    @property
    def drift_profile(self) -> ReferenceProfile | None:
        """The reference of the drift signals, or ``None`` (a bundle trained before them)."""
        ...


class DriftTracker:
    """Counts predicted micro-batches into the serving version's drift window.

    Thread-safe (one lock around version switches and counting).

    Args:
        settings: Window size, warm-up, threshold and alert delay.
        registry: The service's Prometheus registry.
        logger: structlog logger name of the service (``"consumer"``, ``"api"``).
    """

    def __init__(self, settings: DriftSettings, registry: CollectorRegistry, logger: str) -> None:
        self.settings = settings
        self.metrics = DriftMetrics(registry)
        self.monitor: DriftMonitor | None = None
        self._version: str | None = None
        self._labels: list[str] = []
        self._firing: set[Quantity] = set()
        self._lock = threading.Lock()
        self._log = structlog.get_logger(logger)

    def serve(self, model: Served) -> None:
        """Start a window for ``model`` unless it is already the one tracked."""
        with self._lock:
            self._serve(model)

    def observe(
        self,
        model: Served,
        token_ids: Sequence[Sequence[int]],
        probabilities: npt.NDArray[np.floating],
    ) -> None:
        """Count documents ``model`` predicted.

        Args:
            model: The version that predicted them.
            token_ids: Per document, its model-input ids (unpadded, truncated to
                ``max_len``).
            probabilities: ``(documents, n_classes)`` rows, in ``model.labels`` order.

        Raises:
            ValueError: shapes that do not match ``model``'s labels.
        """
        if len(token_ids) == 0:
            return
        with self._lock:
            self._serve(model)
            monitor = self.monitor
            if monitor is None:
                return
            changes = monitor.observe(token_ids, probabilities)
            snapshot = monitor.snapshot()
            self.metrics.export(snapshot, self._labels)
            for quantity, state in changes:
                psi = round(snapshot.psi[quantity] or 0.0, 4)
                if state is AlertState.FIRING:
                    self._firing.add(quantity)
                    self.metrics.fired(snapshot.model_version, quantity)
                    self._log.warning(
                        "drift_alert",
                        quantity=quantity,
                        psi=psi,
                        threshold=self.settings.drift_psi_threshold,
                        window_documents=snapshot.window.documents,
                        model_version=snapshot.model_version,
                    )
                elif quantity in self._firing and state is not AlertState.PENDING:
                    self._firing.discard(quantity)
                    self._log.info(
                        "drift_resolved",
                        quantity=quantity,
                        psi=psi,
                        model_version=snapshot.model_version,
                    )

    def _serve(self, model: Served) -> None:
        if model.version == self._version:
            return
        if self._version is not None:
            self.metrics.forget(self._version, self._labels)
        self._version, self._labels = model.version, list(model.labels)
        self._firing.clear()
        profile = model.drift_profile
        if profile is None:
            self.monitor = None
            self._log.warning(
                "drift_off",
                model_version=model.version,
                reason="the bundle has no drift_profile.json; retrain it to get drift signals",
            )
            return
        s = self.settings
        self.monitor = DriftMonitor(
            profile,
            model.version,
            s.drift_window_documents,
            s.drift_min_documents,
            s.drift_psi_threshold,
            s.drift_alert_after_s,
        )
        self.metrics.reference(self.monitor.snapshot(), self._labels)
