"""Prometheus metrics and the HTTP endpoints ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

#: Micro-batch sizes (messages).
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: Seconds, 1 ms … 60 s.
_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass(frozen=True)
class Totals:
    """The service's running totals since start, as its metrics count them.

    Attributes:
        consumed, predicted, dead_lettered, low_confidence: Records of committed batches.
        batches: Committed batches.
        commit_failures: Batches delivered whose offset commit failed (not counted above).
        by_error: Dead letters of committed batches per error code (codes seen only).
    """

    consumed: int
    predicted: int
    dead_lettered: int
    low_confidence: int
    batches: int
    commit_failures: int
    by_error: dict[str, int]


class Metrics:
    """The service's Prometheus metrics, in a registry of their own: its only counts.

    Names follow Prometheus conventions (``_total`` counters, base units in seconds). The
    record counters count committed batches only (:meth:`count_batch`); :meth:`totals`
    reads them back (logs, tests).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.consumed = Counter(
            "classifier_messages_consumed",
            "Records read from the input topic (committed batches).",
            registry=r,
        )
        self.predicted = Counter(
            "classifier_predictions", "Predictions produced (committed batches).", registry=r
        )
        self.dead_lettered = Counter(
            "classifier_dead_letters",
            "Records sent to the dead-letter topic, by error code.",
            ["error_code"],
            registry=r,
        )
        self.low_confidence = Counter(
            "classifier_low_confidence",
            "Predictions below the confidence threshold.",
            registry=r,
        )
        self.batch_size = Histogram(
            "classifier_batch_size", "Records per micro-batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "classifier_inference_seconds",
            "Compute time per micro-batch: decoding, validation, tokenisation and the model.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "classifier_end_to_end_latency_seconds",
            "Prediction produced minus the input record's Kafka timestamp.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "classifier_consumer_lag",
            "Records between the consumer's position and the partition's high watermark.",
            ["topic", "partition"],
            registry=r,
            # --processes N: a partition's owner may change; the latest report wins
            multiprocess_mode="livemostrecent",
        )
        # Not shared across processes (prometheus-client keeps an Info in memory): under
        # --processes N the supervisor exports it per worker (consumer.processes).
        self.model = Info("classifier_model", "The model version being served.", registry=r)
        self.rebalances = Counter(
            "classifier_rebalances",
            "Rebalance events seen by this consumer, by kind (assign, revoke, lost).",
            ["kind"],
            registry=r,
        )
        self.model_reloads = Counter(
            "classifier_model_reloads",
            "Model bundles swapped in (outcome=loaded) or refused (outcome=refused).",
            ["outcome"],
            registry=r,
        )
        self.aborted_batches = Counter(
            "classifier_aborted_batches",
            "Batches whose output was aborted (transaction aborted, partitions lost).",
            registry=r,
        )
        self.dependency_up = Gauge(
            "classifier_dependency_up",
            "1 while a service the consumer depends on answers, 0 while micro-batches wait "
            "for it (dependency=schema_registry).",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemin",  # --processes N: 0 when any live worker waits
        )
        self.dependency_retries = Counter(
            "classifier_dependency_retries",
            "Micro-batch retries because a dependency was unavailable, by dependency.",
            ["dependency"],
            registry=r,
        )
        self.commit_failures = Counter(
            "classifier_commit_failures",
            "At-least-once batches whose output was acknowledged but whose offsets could not "
            "be committed (their records may be delivered again).",
            registry=r,
        )

    def count_batch(
        self,
        records: int,
        predicted: int,
        low_confidence: int,
        dead_letters: Mapping[str, int],
        inference_s: float,
        end_to_end_s: Sequence[float],
    ) -> None:
        """Count one committed batch.

        Args:
            records: Records in the batch.
            predicted: Predictions produced.
            low_confidence: Predictions below the confidence threshold.
            dead_letters: Dead letters per error code.
            inference_s: The batch's compute time (s).
            end_to_end_s: Per prediction, produced-at minus the input's timestamp (s).
        """
        self.consumed.inc(records)
        self.predicted.inc(predicted)
        self.low_confidence.inc(low_confidence)
        self.batch_size.observe(records)
        self.inference_seconds.observe(inference_s)
        for code, count in dead_letters.items():
            self.dead_lettered.labels(code).inc(count)
        for seconds in end_to_end_s:
            self.end_to_end_seconds.observe(seconds)

    def totals(self) -> Totals:
        """The running totals, read from the metrics (safe from any thread)."""

        def value(name: str) -> int:
            return int(self.registry.get_sample_value(name) or 0)

        by_error = {
            sample.labels["error_code"]: int(sample.value)
            for metric in self.dead_lettered.collect()
            for sample in metric.samples
            if sample.name == "classifier_dead_letters_total"
        }
        return Totals(
            consumed=value("classifier_messages_consumed_total"),
            predicted=value("classifier_predictions_total"),
            dead_lettered=sum(by_error.values()),
            low_confidence=value("classifier_low_confidence_total"),
            batches=value("classifier_batch_size_count"),
            commit_failures=value("classifier_commit_failures_total"),
            by_error=by_error,
        )

    def on_stats(self, stats_json: str) -> None:
        """Update the per-partition consumer-lag gauge (librdkafka ``stats_cb``).

        Args:
            stats_json: librdkafka's statistics JSON (``topics.<t>.partitions.<p>.consumer_lag``).
        """
        stats: dict[str, Any] = json.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for partition, p in t.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0 and p.get("fetch_state") != "none":
                    self.consumer_lag.labels(topic, partition).set(lag)

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """Drop the lag series of partitions this consumer no longer owns."""
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))


class HealthState:
    """What ``/healthz`` and ``/readyz`` report; updated by the service loop.

    Attributes:
        stuck_after_s: The loop counts as stuck when its last heartbeat, or the batch in
            flight, is older than this (s).
        model_version: The version being served (``None`` before the first is loaded).
        model_refused: The latest hot-reload refusal, ``"<version>: <error>"``, while the
            model serving is older than it; ``None`` otherwise.
    """

    def __init__(self, stuck_after_s: float) -> None:
        self.stuck_after_s = stuck_after_s
        self.last_heartbeat = time.monotonic()
        self.batch_started: float | None = None
        self.model_loaded = False
        self.model_version: str | None = None
        self.model_refused: str | None = None
        self.assigned_partitions = 0
        #: Dependencies the worker is waiting for now → why (set by the worker thread).
        self.unavailable: dict[str, str] = {}

    def beat(self) -> None:
        """Record that the loop is turning."""
        self.last_heartbeat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        """Whether the process is alive and its loop is not stuck, with a reason."""
        now = time.monotonic()
        if now - self.last_heartbeat > self.stuck_after_s:
            return False, f"loop silent for {now - self.last_heartbeat:.0f} s"
        waiting = sorted(self.unavailable)  # a batch waiting for the registry is not stuck
        if waiting:  # (a restart would not bring the registry back)
            return True, "ok; waiting for " + ", ".join(waiting)
        if self.batch_started is not None and now - self.batch_started > self.stuck_after_s:
            return False, f"batch in flight for {now - self.batch_started:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Whether a model is loaded and partitions are assigned, with a reason."""
        if not self.model_loaded:
            return False, "model not loaded"
        if self.assigned_partitions == 0:
            return False, "no partitions assigned"
        down = list(self.unavailable.items())  # one atomic copy: the worker thread writes it
        if down:
            return False, "; ".join(f"{name} unavailable: {why}" for name, why in down)
        return True, "ok"


class DependencyStatus:
    """What the worker reports while a dependency is down: metrics and health, in one place.

    Args:
        metrics: Where ``classifier_dependency_up`` / ``_retries_total`` are counted.
        health: Where ``/readyz`` (not ready) and ``/healthz`` (still live) read it.
    """

    def __init__(self, metrics: Metrics, health: HealthState) -> None:
        self._metrics = metrics
        self._health = health

    def watching(self, dependency: str) -> None:
        """Export ``dependency`` as up (the service uses it; before the first record)."""
        self._metrics.dependency_up.labels(dependency).set(1)

    def down(self, dependency: str, reason: str) -> None:
        """A micro-batch waits for ``dependency`` (one retry counted)."""
        self._metrics.dependency_up.labels(dependency).set(0)
        self._metrics.dependency_retries.labels(dependency).inc()
        self._health.unavailable[dependency] = reason

    def up(self, dependency: str) -> None:
        """``dependency`` answered again."""
        self._metrics.dependency_up.labels(dependency).set(1)
        self._health.unavailable.pop(dependency, None)


def serve_http(host: str, port: int, metrics: Metrics, health: HealthState) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    Returns:
        The running server (``.server_address`` has the bound port; call ``shutdown()``).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    return serve_endpoints(
        host, port, lambda: generate_latest(metrics.registry), health.live, health.ready
    )


def serve_endpoints(
    host: str,
    port: int,
    metrics: Callable[[], bytes],
    live: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from callables, in a daemon thread.

    Args:
        host, port: Address to bind (port 0: any free port).
        metrics: The Prometheus text exposition for ``/metrics``.
        live, ready: ``(ok, reason)`` for ``/healthz`` and ``/readyz``: 200 when ok, else
            503, with the reason as the plain-text body.

    Returns:
        The running server (``.server_address`` has the bound port; call ``shutdown()``).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    routes: dict[str, Callable[[], tuple[bool, str]]] = {"/healthz": live, "/readyz": ready}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics(), CONTENT_TYPE_LATEST)
            elif path in routes:
                ok, reason = routes[path]()
                self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds would drown the JSON logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
