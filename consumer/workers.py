"""What a supervisor (``--processes N``) and its worker processes tell each other.

A worker is ``python -m consumer`` started by :mod:`consumer.processes` with:

* every setting in its ``CLASSIFIER_*`` environment variable (:func:`worker_environment`;
  the environment, not the command line, so secrets in ``--kafka`` never show in ``ps``),
  with the per-worker identities of :func:`worker_settings`: client id, transactional id
  and group instance id get the suffix ``-<i>``; ``metrics_port`` 0 (the supervisor serves
  the one HTTP endpoint);
* ``PROMETHEUS_MULTIPROC_DIR``: a directory of the supervisor's run, where
  prometheus-client keeps every worker's counters, histograms and gauges in files the
  supervisor's ``/metrics`` adds up (``prometheus_client.multiprocess``);
* :data:`WORKER_ENV`: its :class:`WorkerContext` as JSON (index, status file, supervisor pid).

Health travels the other way through a file: the worker's :class:`StatusReporter` thread
writes a :class:`WorkerStatus` (live, ready, reasons, model version served, latest refused
model, partitions) every :data:`STATUS_INTERVAL_S` seconds, atomically (write, then rename).
The supervisor reads them for ``/healthz``, ``/readyz`` and the per-worker model metric. The
same thread notices when the supervisor is gone (the worker was re-parented, e.g. after a
SIGKILL of the supervisor) and stops the worker gracefully with a SIGTERM to itself.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

from consumer.metrics import HealthState
from consumer.settings import Settings
from model.engine.env import INTER_OP_ENV, WORKERS_ENV

#: The environment variable that makes ``python -m consumer`` a supervised worker.
WORKER_ENV = "CLASSIFIER_SUPERVISOR_WORKER"
#: prometheus-client's multiprocess directory variable.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How often a worker writes its status (s).
STATUS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class WorkerContext:
    """Who a supervised worker is.

    Attributes:
        index: Its number, 0 … N-1 (the suffix of its client id and other identities).
        status_file: Where it writes its :class:`WorkerStatus`.
        supervisor_pid: The supervisor's process id (its parent).
    """

    index: int
    status_file: Path
    supervisor_pid: int

    def to_env(self) -> str:
        """The value of :data:`WORKER_ENV` for this worker."""
        return json.dumps(
            {"index": self.index, "status_file": str(self.status_file), "pid": self.supervisor_pid}
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> WorkerContext | None:
        """The context in :data:`WORKER_ENV`, or ``None`` for a process nobody supervises.

        Raises:
            ValueError: the variable is set but is not what :meth:`to_env` writes.
        """
        raw = (os.environ if environ is None else environ).get(WORKER_ENV, "").strip()
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(int(data["index"]), Path(data["status_file"]), int(data["pid"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{WORKER_ENV} is not a worker context: {raw!r}") from exc


@dataclass(frozen=True)
class WorkerStatus:
    """One worker's health as it last wrote it.

    Attributes:
        worker: Its index.
        pid: Its process id.
        written_at: When it was written (``time.time()``, s).
        live, live_reason: Its ``/healthz`` answer (:meth:`HealthState.live`).
        ready, ready_reason: Its ``/readyz`` answer (:meth:`HealthState.ready`).
        model_version: The model version it serves (``None`` while loading).
        model_refused: Its latest refused hot reload, ``"<version>: <error>"``, while it
            still serves an older model; else ``None``.
        assigned_partitions: Partitions it owns.
    """

    worker: int
    pid: int
    written_at: float
    live: bool
    live_reason: str
    ready: bool
    ready_reason: str
    model_version: str | None
    model_refused: str | None
    assigned_partitions: int

    @classmethod
    def of(cls, worker: int, health: HealthState) -> WorkerStatus:
        """The status of this process now, from its health state."""
        live, live_reason = health.live()
        ready, ready_reason = health.ready()
        return cls(
            worker=worker,
            pid=os.getpid(),
            written_at=time.time(),
            live=live,
            live_reason=live_reason,
            ready=ready,
            ready_reason=ready_reason,
            model_version=health.model_version,
            model_refused=health.model_refused,
            assigned_partitions=health.assigned_partitions,
        )

    def write(self, path: Path) -> None:
        """Write atomically (a reader sees the old or the new status, never half of one).

        Raises:
            OSError: the directory is not writable.
        """
        tmp = path.with_name(f".{path.name}.{self.pid}.tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> WorkerStatus | None:
        """The status in ``path``; ``None`` when there is none (yet) or it is unreadable."""
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


class StatusReporter:
    """Writes this worker's status every :data:`STATUS_INTERVAL_S` s from a daemon thread.

    Also stops the worker (SIGTERM to itself, once) when its supervisor is gone.

    Args:
        context: This worker's context.
        health: Its health state (the service updates it).
        interval_s: Seconds between writes.
    """

    def __init__(
        self, context: WorkerContext, health: HealthState, interval_s: float = STATUS_INTERVAL_S
    ) -> None:
        self.context = context
        self._health = health
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._orphaned = False
        self._log = structlog.get_logger("consumer")
        self._thread = threading.Thread(target=self._run, name="worker-status", daemon=True)

    def start(self) -> None:
        """Write the first status now and keep writing in the background."""
        self.report()
        self._thread.start()

    def stop(self) -> None:
        """Stop writing (returns at once)."""
        self._stop.set()

    def report(self) -> None:
        """Write the status once; SIGTERM this process if the supervisor is gone."""
        try:
            WorkerStatus.of(self.context.index, self._health).write(self.context.status_file)
        except OSError as exc:  # the supervisor removed its run directory: it is stopping
            self._log.warning("worker_status_unwritable", error=str(exc))
        if not self._orphaned and os.getppid() != self.context.supervisor_pid:
            self._orphaned = True
            self._log.warning("supervisor_gone", supervisor_pid=self.context.supervisor_pid)
            os.kill(os.getpid(), signal.SIGTERM)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.report()


# ----------------------------------------------------------------------------- settings


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: the supervisor's, with per-worker identities.

    ``client_id``, ``transactional_id`` (stable per worker: a restarted worker fences its
    predecessor's transaction) and ``group_instance_id`` get the suffix ``-<index>``; the
    worker is one process without an HTTP server (the supervisor serves it) and does not
    create topics (the supervisor did).
    """
    suffix = f"-{index}"
    instance = settings.group_instance_id
    return settings.model_copy(
        update={
            "processes": 1,
            "client_id": settings.client_id + suffix,
            "transactional_id": settings.effective_transactional_id + suffix,
            "group_instance_id": None if instance is None else instance + suffix,
            "metrics_port": 0,
            "create_topics": False,
        }
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    """Every setting as its ``CLASSIFIER_*`` variable.

    A process reading only its environment gets the same :class:`Settings` back. ``None``
    values are left out (their default is ``None``); secrets are written in clear, for the
    child process only.
    """
    prefix = str(Settings.model_config.get("env_prefix", ""))
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr | SecretBytes):
            value = value.get_secret_value()
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, dict | list | tuple | set | BaseModel):
            text = json.dumps(to_jsonable_python(value))
        else:
            plain = to_jsonable_python(value)
            text = plain if isinstance(plain, str) else json.dumps(plain)
        env[prefix + name.upper()] = text
    return env


def worker_environment(
    base: Mapping[str, str],
    settings: Settings,
    context: WorkerContext,
    metrics_dir: Path,
    threads: int,
) -> dict[str, str]:
    """The environment of worker ``context.index``.

    Args:
        base: The supervisor's environment; its ``CLASSIFIER_*`` settings variables (any
            case) are replaced by :func:`settings_environment` of :func:`worker_settings`.
        settings: The supervisor's settings.
        context: The worker's context (:data:`WORKER_ENV`).
        metrics_dir: prometheus-client's multiprocess directory (:data:`MULTIPROC_ENV`).
        threads: Default of the engine's workers and TensorFlow's inter-op threads (the
            cores divided among the workers), unless ``base`` sets them.
    """
    prefix = str(Settings.model_config.get("env_prefix", "")).lower()
    names = {prefix + name for name in Settings.model_fields}
    env = {k: v for k, v in base.items() if k.lower() not in names}
    env.setdefault(INTER_OP_ENV, str(threads))
    env.setdefault(WORKERS_ENV, str(threads))
    env.update(settings_environment(worker_settings(settings, context.index)))
    env[MULTIPROC_ENV] = str(metrics_dir)
    env[WORKER_ENV] = context.to_env()
    return env
