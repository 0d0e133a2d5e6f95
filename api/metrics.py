"""The HTTP API's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """Requests by route and status, request latency, model batch sizes, model version.

    Args:
        registry: Where to register (a new private registry by default).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "classifier_api_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "classifier_api_request_seconds",
            "Request latency (s) by route, body read to response.",
            ["route"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "classifier_api_batch_size",
            "Texts per model call (concurrent requests merged).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.model = Info("classifier_model", "The model version being served.", registry=r)
        self.model_reloads = Counter(
            "classifier_model_reloads", "Hot reloads by outcome.", ["outcome"], registry=r
        )
