"""``python -m consumer``: classify the input topic into the prediction topic.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT); 1 when output could not be made
durable, the in-flight batch outlived the shutdown timeout, or another fatal error stopped
the service (a ``consumer_failed`` JSON line names it and the offsets in flight; nothing of
those batches was committed; restart to reprocess); 2 for a start-up error (bad setting,
missing/corrupt bundle, unreadable password file, broker unreachable or refusing the SASL login
or TLS handshake, missing topics, metrics port in use, Schema Registry unreachable or refusing
the credentials or an output schema).

With ``--processes N`` (N > 1) this process is a supervisor (:mod:`consumer.processes`) of N
worker processes of this same command, and exits 0 when every worker stopped gracefully, 1
when one did not, 2 for a start-up error or a worker that kept failing at start-up. It
branches off before TensorFlow is imported. A worker (:mod:`consumer.workers`) is the
one-process service plus a thread that reports its health to the supervisor.

The process ends with ``os._exit`` once the service has flushed, committed and closed its
clients: interpreter finalisation with TensorFlow's C++ thread pools still alive can abort
(``terminate called without an active exception``, SIGABRT) instead of exiting with the code.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "2"
)  # keep TensorFlow's C++ INFO lines out of the JSON logs

import faulthandler
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from consumer.app import build_service
from consumer.clients import StartupError, ensure_topics
from consumer.logs import configure_logging
from consumer.metrics import HealthState, Metrics, serve_http
from consumer.settings import Settings
from consumer.wire import build_wire_format
from consumer.workers import StatusReporter, WorkerContext
from schemas.settings import parse_command_line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service; returns the process exit code (see module docstring)."""
    settings = parse_command_line(Settings, argv)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    worker = WorkerContext.from_environ()
    configure_logging(settings.log_level, **({} if worker is None else {"worker": worker.index}))
    faulthandler.enable()  # a native crash (SIGSEGV, SIGABRT…) still prints every thread's stack
    log = structlog.get_logger("consumer")
    if worker is None and settings.process_count > 1:
        from consumer.processes import supervise  # no TensorFlow in the supervisor

        return supervise(settings)
    stopping = StopRequest(log)  # from here on a SIGTERM (pod still starting) is graceful
    log.info("consumer_starting", pid=os.getpid())
    health = HealthState(stuck_after_s=settings.stuck_after_s)
    reporter = StatusReporter(worker, health) if worker is not None else None
    if reporter is not None:
        reporter.start()  # "starting" until the model is loaded and partitions assigned

    from confluent_kafka import KafkaException

    from model import Bundle, BundleError, load_bundle
    from model.heap import freeze_imports

    freeze_imports()  # full collections skip TensorFlow's objects: no ~200 ms pauses

    def load_warm(path: Path) -> Bundle:
        """Load a bundle and compile its inference engine before it serves (off the hot path)."""
        bundle = load_bundle(path)
        seconds = bundle.warmup()
        log.info("model_warmed_up", model_version=bundle.version, seconds=round(seconds, 2))
        return bundle

    metrics = Metrics()
    try:
        wire = build_wire_format(settings)  # a registry problem fails before the model loads
        bundle = load_warm(settings.bundle)
        shadow = load_warm(settings.shadow_bundle) if settings.shadow_bundle else None
        ensure_topics(settings)
        server = (
            serve_http(settings.metrics_host, settings.metrics_port, metrics, health)
            if settings.metrics_port
            else None
        )
    except (BundleError, StartupError, OSError) as exc:
        log.error("startup_failed", error=str(exc))
        return 2
    log.info(
        "model_loaded", model_version=bundle.version, path=str(bundle.path), labels=bundle.labels
    )
    if server is not None:
        log.info("http_serving", address=f"{settings.metrics_host}:{server.server_address[1]}")

    try:
        service = build_service(
            settings,
            bundle,
            metrics,
            health,
            watch=(settings.bundle, bundle.path, load_warm),
            wire=wire,
            shadow=shadow,
        )
    except KafkaException as exc:
        log.error("startup_failed", error=f"cannot create the Kafka clients: {exc}")
        return 2

    if not stopping.hand_to(service):  # SIGTERM/SIGINT during start-up: nothing was consumed
        log.info("stopped_before_start")
        if server is not None:
            server.shutdown()
        if reporter is not None:
            reporter.stop()
        return 0
    try:
        return service.run()
    except Exception:  # logged by the service as consumer_failed, with its offsets
        return 1
    finally:
        if server is not None:
            server.shutdown()
        if reporter is not None:
            reporter.stop()


class StopRequest:
    """SIGTERM/SIGINT handling from the start of ``main``, before the service exists.

    A stop that arrives while the model loads (Kubernetes stops pods that are still starting;
    a supervisor stops a worker it has just restarted) is remembered, and ``main`` returns 0
    instead of the process dying of the signal with nothing done; once the service runs, a
    stop is :meth:`ClassifierService.request_stop`.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self._service: Any = None
        self.requested = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._log.info("stop_requested", signal=signal.Signals(signum).name)
        self.requested = True
        if self._service is not None:
            self._service.request_stop()

    def hand_to(self, service: Any) -> bool:
        """Let later signals stop ``service``; False if a stop came first (do not run it)."""
        self._service = service
        return not self.requested


def cli() -> None:
    """Console entry point: run :func:`main`, then exit at once with its code (see above)."""
    try:
        code = main()
    except Exception as exc:  # a bug outside the service loop: still one JSON line, code 1
        structlog.get_logger("consumer").error(
            "consumer_failed", error_type=type(exc).__name__, error=str(exc), exc_info=exc
        )
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
