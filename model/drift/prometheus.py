"""The drift signals as Prometheus gauges; the consumer and the API export the same names.

Every series carries ``model_version`` (the serving version whose reference is used);
``window`` is ``live`` (the sliding window) or ``reference`` (the bundle's profile):

* ``classifier_drift_window_documents`` — documents in the window;
* ``classifier_text_oov_rate{window}`` — OOV ids / model-input tokens;
* ``classifier_text_truncated_share{window}`` — documents that fill ``max_len``;
* ``classifier_text_tokens_mean{window}`` — model-input tokens per document;
* ``classifier_prediction_label_share{window,label}`` — share of each top label;
* ``classifier_drift_psi{quantity}``, ``classifier_drift_js_distance{quantity}`` — the
  scores (absent while the window warms up);
* ``classifier_drift_alert{quantity}`` — 1 while the quantity's alert fires, else 0;
  ``classifier_drift_alert_state{quantity,state}`` — the state machine's state;
* ``classifier_drift_alerts_total{quantity}`` — alerts fired.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from model.drift.alert import AlertState
from model.drift.counts import QUANTITIES, DriftCounts, Quantity
from model.drift.monitor import DriftSnapshot

WINDOWS = ("live", "reference")


class DriftMetrics:
    """The gauges of :mod:`model.drift` in a service's registry (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        v, w = ["model_version"], ["model_version", "window"]
        q = ["model_version", "quantity"]
        self.window_documents = _gauge(
            "classifier_drift_window_documents",
            "Documents in the drift window.",
            v,
            registry=registry,
        )
        self.oov_rate = _gauge(
            "classifier_text_oov_rate", "OOV ids per model-input token.", w, registry=registry
        )
        self.truncated_share = _gauge(
            "classifier_text_truncated_share",
            "Share of documents that fill max_len (tokens were cut).",
            w,
            registry=registry,
        )
        self.tokens_mean = _gauge(
            "classifier_text_tokens_mean",
            "Model-input tokens per document.",
            w,
            registry=registry,
        )
        self.label_share = _gauge(
            "classifier_prediction_label_share",
            "Share of documents per top (published) label.",
            [*w, "label"],
            registry=registry,
        )
        self.psi = _gauge(
            "classifier_drift_psi",
            "Population stability index of the window against the reference.",
            q,
            registry=registry,
        )
        self.js_distance = _gauge(
            "classifier_drift_js_distance",
            "Jensen-Shannon distance (base 2) of the window against the reference.",
            q,
            registry=registry,
        )
        self.alert = _gauge(
            "classifier_drift_alert",
            "1 while the quantity's drift alert fires.",
            q,
            registry=registry,
        )
        self.alert_state = _gauge(
            "classifier_drift_alert_state",
            "1 for the state the quantity's drift alert is in, 0 for the others.",
            [*q, "state"],
            registry=registry,
        )
        self.alerts = Counter(
            "classifier_drift_alerts", "Drift alerts fired.", q, registry=registry
        )
        self._versions: set[str] = set()

    def reference(self, snapshot: DriftSnapshot, labels: list[str]) -> None:
        """Export the reference side once, when a version starts serving."""
        self._versions.add(snapshot.model_version)
        self._text(snapshot.model_version, "reference", snapshot.reference, labels)
        self.export(snapshot, labels)

    def export(self, snapshot: DriftSnapshot, labels: list[str]) -> None:
        """Set the live gauges from ``snapshot``."""
        version = snapshot.model_version
        self.window_documents.labels(version).set(snapshot.window.documents)
        self._text(version, "live", snapshot.window, labels)
        for q in QUANTITIES:
            for gauge, value in (
                (self.psi, snapshot.psi[q]),
                (self.js_distance, snapshot.js_distance[q]),
            ):
                if value is None:
                    _remove(gauge, version, q)
                else:
                    gauge.labels(version, q).set(value)
            state = snapshot.states[q]
            self.alert.labels(version, q).set(1 if state is AlertState.FIRING else 0)
            for each in AlertState:
                self.alert_state.labels(version, q, each.value).set(1 if each is state else 0)

    def fired(self, version: str, quantity: Quantity) -> None:
        """Count an alert that started firing."""
        self.alerts.labels(version, quantity).inc()

    def forget(self, version: str, labels: list[str]) -> None:
        """Remove a version's gauges (it no longer serves); its counters stay."""
        self._versions.discard(version)
        for window in WINDOWS:
            for gauge in (self.oov_rate, self.truncated_share, self.tokens_mean):
                _remove(gauge, version, window)
            for label in labels:
                _remove(self.label_share, version, window, label)
        _remove(self.window_documents, version)
        for q in QUANTITIES:
            for gauge in (self.psi, self.js_distance, self.alert):
                _remove(gauge, version, q)
            for each in AlertState:
                _remove(self.alert_state, version, q, each.value)

    def _text(self, version: str, window: str, counts: DriftCounts, labels: list[str]) -> None:
        self.oov_rate.labels(version, window).set(counts.oov_rate)
        self.truncated_share.labels(version, window).set(counts.truncated_share)
        mean = counts.tokens / counts.documents if counts.documents else 0.0
        self.tokens_mean.labels(version, window).set(mean)
        for label, share in zip(labels, counts.shares("label"), strict=True):
            self.label_share.labels(version, window, label).set(float(share))


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        metric.remove(*labels)


def _gauge(name: str, documentation: str, labels: list[str], registry: CollectorRegistry) -> Gauge:
    """A drift gauge; with ``--processes N`` every live worker exports its own (``pid``)."""
    return Gauge(name, documentation, labels, registry=registry, multiprocess_mode="liveall")
