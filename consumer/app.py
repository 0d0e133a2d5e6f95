"""Wiring: Kafka clients, delivery strategy, metrics and hot reload around one service."""

from __future__ import annotations

from typing import Any

from consumer.batch import Classifier
from consumer.clients import consumer_config, operator_producer_config, producer_config
from consumer.delivery import AtLeastOnce, Delivery, ExactlyOnce
from consumer.drift import DriftObserver
from consumer.feedback import FeedbackJoin
from consumer.metrics import HealthState, Metrics
from consumer.observers import BatchObserver
from consumer.service import ClassifierService
from consumer.settings import Settings
from consumer.shadow import Candidate, ShadowEvaluator, ShadowMetrics
from consumer.wire import WireFormat
from model.reload import ModelWatcher


def build_service(
    settings: Settings,
    classifier: Classifier,
    metrics: Metrics | None = None,
    health: HealthState | None = None,
    watch: Any = None,
    wire: WireFormat | None = None,
    shadow: Candidate | None = None,
) -> ClassifierService:
    """Create the consumer, producer and delivery strategy and return a ready service.

    Args:
        settings: Validated settings.
        classifier: Loaded bundle (or anything with its interface).
        metrics: Prometheus metrics (a private registry by default).
        health: Liveness/readiness state (a new one by default).
        watch: ``(model_dir, serving_version_dir, load)`` to enable hot reload, or ``None``.
        wire: Input/output formats (:func:`consumer.wire.build_wire_format`; default JSON).
        shadow: The ``--shadow-bundle`` candidate, loaded and warmed up, or ``None``.

    Raises:
        confluent_kafka.KafkaException: bad client configuration, or (exactly-once)
            transactions could not be initialised.
    """
    from confluent_kafka import Consumer, Producer

    metrics = metrics or Metrics()
    health = health or HealthState(stuck_after_s=settings.stuck_after_s)
    config = consumer_config(settings)
    if settings.stats_interval_ms:
        config["stats_cb"] = metrics.on_stats
    consumer = Consumer(config)
    producer = Producer(producer_config(settings))
    delivery: Delivery = (
        ExactlyOnce(producer, consumer, settings.flush_timeout_s)
        if settings.exactly_once
        else AtLeastOnce(
            producer, consumer, settings.flush_timeout_s, settings.commit_interval_ms / 1000
        )
    )
    watcher: ModelWatcher | None = None

    def refused() -> None:  # the old model keeps serving; say so in metrics and health
        metrics.model_reloads.labels("refused").inc()
        health.model_refused = watcher.last_refused if watcher is not None else None

    if watch is not None and settings.reload_interval_s > 0:
        model_dir, serving, load = watch
        if ModelWatcher.watchable(model_dir):
            watcher = ModelWatcher(
                model_dir, serving, load, settings.reload_interval_s, on_refused=refused
            )
    observers: list[BatchObserver] = []
    if settings.drift_window_documents > 0:
        drift = DriftObserver(settings, metrics.registry)
        drift.serve(classifier)  # the reference gauges, or why there are none, at start-up
        observers.append(drift)
    if shadow is not None:
        shadow_producer = (
            Producer(operator_producer_config(settings)) if settings.shadow_topic else None
        )
        observers.append(
            ShadowEvaluator(
                shadow,
                ShadowMetrics(metrics.registry),
                settings.shadow_queue_batches,
                shadow_producer,
                settings.shadow_topic,
                settings.top_k,
            )
        )
    if settings.labels_topic:  # the feedback loop: verdicts joined to these predictions
        observers.append(FeedbackJoin.from_settings(settings, metrics.registry))
    return ClassifierService(
        settings,
        classifier,
        consumer,
        producer,
        delivery,
        metrics,
        health,
        watcher,
        wire,
        observers,
    )
