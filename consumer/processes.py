"""``python -m consumer --processes N``: one run of a supervisor and its N workers.

:func:`supervise` makes the run: a temporary directory (removed at exit) with
``metrics/`` (prometheus-client's multiprocess directory, ``PROMETHEUS_MULTIPROC_DIR`` of
every worker) and ``status/`` (the workers' status files, :mod:`consumer.workers`); the
start-up checks (broker, topics, HTTP port: exit 2 before any worker starts); the workers as
subprocesses of ``python -m consumer`` in their own process group, with their settings in
their environment and ``cores / N`` engine workers and TensorFlow inter-op threads each
(unless set); SIGTERM/SIGINT handlers that ask the :class:`~consumer.supervisor.Supervisor`
to stop; and the one HTTP endpoint.

``/metrics`` is prometheus-client's ``MultiProcessCollector`` over the workers' files —
counters and histograms added up across workers, exited ones included (so counts survive a
restart; ``mark_process_dead`` drops only an exited worker's live gauges), each partition's
latest consumer lag among live workers — plus :class:`SupervisorCollector`'s per-worker
families from the supervisor's view: ``classifier_model_info{version,worker}`` (which model
each worker serves; a prometheus-client ``Info`` is not shared across processes),
``classifier_worker_ready{worker}``, ``classifier_worker_up{worker}`` and
``classifier_worker_restarts_total{worker}``. ``/healthz`` and ``/readyz`` are
:meth:`Supervisor.live` and :meth:`Supervisor.ready`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from consumer.settings import Settings
from consumer.supervisor import EXIT_STARTUP_ERROR, STOP_MARGIN_S, Supervisor, WorkerState
from consumer.workers import WorkerContext, worker_environment


class SupervisorCollector(Collector):
    """Per-worker metrics from the supervisor's view (a prometheus-client collector)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        """The per-worker metric families.

        ``classifier_model_info{version,worker}``, ``classifier_worker_ready{worker}``,
        ``classifier_worker_up{worker}`` and ``classifier_worker_restarts_total{worker}``.
        """
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        views = self._supervisor.views()
        model = InfoMetricFamily(
            "classifier_model", "The model version each worker serves.", labels=["worker"]
        )
        ready = GaugeMetricFamily(
            "classifier_worker_ready", "1 while the worker is ready.", labels=["worker"]
        )
        up = GaugeMetricFamily(
            "classifier_worker_up", "1 while the worker's process runs.", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            "classifier_worker_restarts",
            "Worker processes restarted after an unexpected exit.",
            labels=["worker"],
        )
        for v in views:
            worker = [str(v.index)]
            if v.model_version is not None and v.state is WorkerState.RUNNING:
                model.add_metric(worker, {"version": v.model_version})
            ready.add_metric(worker, float(v.ready))
            up.add_metric(worker, float(v.state in (WorkerState.RUNNING, WorkerState.STOPPING)))
            restarts.add_metric(worker, float(v.restarts))
        yield from (model, ready, up, restarts)


def supervise(settings: Settings) -> int:
    """Run ``settings.process_count`` workers under a :class:`Supervisor`; the exit code.

    Returns:
        The supervisor's exit code (:meth:`Supervisor.run`), or 2 when the start-up
        checks failed (broker, topics, HTTP port) before any worker started.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    from consumer.clients import StartupError, ensure_topics
    from consumer.metrics import serve_endpoints
    from model.engine.threads import cpu_count

    log = structlog.get_logger("supervisor")
    n = settings.process_count
    run_dir = Path(tempfile.mkdtemp(prefix="classifier-workers-"))
    metrics_dir, status_dir = run_dir / "metrics", run_dir / "status"
    metrics_dir.mkdir()
    status_dir.mkdir()
    threads = max(1, cpu_count() // n)
    base_env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ}

    def status_file(index: int) -> Path:
        return status_dir / f"worker-{index}.json"

    def spawn(index: int) -> subprocess.Popen[bytes]:
        context = WorkerContext(index, status_file(index), os.getpid())
        env = worker_environment(base_env, settings, context, metrics_dir, threads)
        # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
        # forwards it; a worker whose supervisor dies stops itself (consumer.workers).
        return subprocess.Popen(
            [sys.executable, "-m", "consumer"], env=env, stdin=subprocess.DEVNULL, process_group=0
        )

    supervisor = Supervisor(
        n,
        spawn,
        status_file,
        stop_timeout_s=settings.shutdown_timeout_s + STOP_MARGIN_S,
        on_exit=lambda pid: mark_process_dead(pid, str(metrics_dir)),  # type: ignore[no-untyped-call]
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    registry.register(SupervisorCollector(supervisor))
    server = None
    try:
        try:
            ensure_topics(settings)
            if settings.metrics_port:
                server = serve_endpoints(
                    settings.metrics_host,
                    settings.metrics_port,
                    lambda: generate_latest(registry),
                    supervisor.live,
                    supervisor.ready,
                )
        except (StartupError, OSError) as exc:
            log.error("startup_failed", error=str(exc))
            return EXIT_STARTUP_ERROR

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stop_requested", signal=signal.Signals(signum).name)
            supervisor.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "supervisor_started",
            processes=n,
            group_id=settings.group_id,
            threads_per_worker=threads,
            http=None if server is None else f"{settings.metrics_host}:{server.server_address[1]}",
        )
        return supervisor.run()
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
