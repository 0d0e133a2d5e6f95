"""The supervisor of ``--processes N``: starts, watches, restarts and stops N workers.

The supervisor never imports TensorFlow (so nothing of it is inherited or forked).
:func:`consumer.processes.supervise` sets up the run and starts N workers as subprocesses
of ``python -m consumer`` (:mod:`consumer.workers`: settings through the environment, each
its own client id ``<client_id>-<i>``, transactional id ``<transactional_id>-<i>`` and group
instance id ``<group_instance_id>-<i>``), all in the same consumer group, so the group's
partitions are spread across them. Each worker is the one-process service, unchanged.

Rules (:class:`RestartPolicy`):

* SIGTERM/SIGINT to the supervisor is forwarded (SIGTERM) to every worker; it waits up to
  ``shutdown_timeout_s`` + :data:`STOP_MARGIN_S` for them (each finishes and commits its
  batches in flight), SIGKILLs the rest, and exits 0 when every worker exited 0, else 1.
* A worker that exits while the supervisor is not stopping is restarted after an
  exponential back-off (``initial_backoff_s`` doubled per consecutive failure, at most
  ``max_backoff_s``; a run longer than ``stable_after_s`` starts the count again).
* Exit code 2 is the consumer's start-up error (bad bundle, broker unreachable, missing
  topics): a worker that fails at start-up ``startup_failures_to_give_up`` times in a row
  stops every worker and the supervisor exits 2, instead of looping.

Threads: the main thread runs the loop (:meth:`Supervisor.run`: start, reap, back off,
restart, stop) and is the only writer; the HTTP server's threads read
:meth:`Supervisor.views` and the :class:`Phase`; signal handlers only set an event. Each
worker's process state is a :class:`WorkerState`, changed only by :meth:`Supervisor._move`
under the supervisor's lock along :data:`WORKER_TRANSITIONS`; the phase changes under the
same lock.

Health: :meth:`Supervisor.live` and :meth:`Supervisor.ready` aggregate the workers' status
files (one line each); ready means every worker is ready. Metrics: :mod:`consumer.processes`.

(Over 400 lines: the state machine, its transitions table and the restart policy are one
concept and are read together; the run's set-up lives in :mod:`consumer.processes`.)

Size: ~450 lines, kept together because the states, their transition table, the restart
policy and the views the HTTP threads read all guard the same slots under one lock; the run
around it (directory, spawning, signals, HTTP) is :mod:`consumer.processes`.
"""

from __future__ import annotations

import enum
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from consumer.workers import WorkerStatus

#: The consumer's exit code for a start-up error (see ``consumer/__main__.py``).
EXIT_STARTUP_ERROR = 2
#: Seconds a stopping worker gets beyond ``shutdown_timeout_s`` (flush, commit, leave the group).
STOP_MARGIN_S = 15.0
#: A running worker whose status is older than this (s) counts as not live.
STATUS_STALE_S = 30.0
#: Period of the supervisor's loop (s).
TICK_S = 0.2


class WorkerState(enum.Enum):
    """Where one worker slot is (its process, not its readiness: that is its status file)."""

    NEW = "new"  # not started yet
    RUNNING = "running"  # process started
    BACKING_OFF = "backing_off"  # exited unexpectedly; restarts at restart_at
    STOPPING = "stopping"  # SIGTERM sent by the supervisor
    STOPPED = "stopped"  # exited (or never restarted) while the supervisor stops


#: Allowed moves of :class:`WorkerState` (checked by :meth:`Supervisor._move`).
WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.NEW: frozenset({WorkerState.RUNNING, WorkerState.STOPPED}),
    WorkerState.RUNNING: frozenset(
        {WorkerState.BACKING_OFF, WorkerState.STOPPING, WorkerState.STOPPED}
    ),
    WorkerState.BACKING_OFF: frozenset({WorkerState.RUNNING, WorkerState.STOPPED}),
    WorkerState.STOPPING: frozenset({WorkerState.STOPPED}),
    WorkerState.STOPPED: frozenset(),
}


class Phase(enum.Enum):
    """The supervisor's own state: RUNNING → STOPPING → STOPPED, moved by its main thread."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class IllegalTransitionError(RuntimeError):
    """A worker state change that :data:`WORKER_TRANSITIONS` does not allow (a bug)."""


@dataclass(frozen=True)
class Streak:
    """A worker's consecutive failures.

    Attributes:
        crashes: Unexpected exits in a row (the back-off's exponent).
        startup_failures: Exits with :data:`EXIT_STARTUP_ERROR` in a row.
    """

    crashes: int = 0
    startup_failures: int = 0


@dataclass(frozen=True)
class RestartPolicy:
    """When an unexpectedly exited worker is restarted, and when the supervisor gives up.

    Attributes:
        initial_backoff_s: Delay before the first restart (s).
        max_backoff_s: Longest delay (s); each consecutive failure doubles it up to this.
        stable_after_s: A run at least this long (s) resets the back-off.
        startup_failures_to_give_up: Consecutive start-up errors (exit code 2) of one worker
            that stop the supervisor with code 2.
    """

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    startup_failures_to_give_up: int = 3

    def after_exit(
        self, streak: Streak, exit_code: int, ran_s: float
    ) -> tuple[Streak, float | None]:
        """Decide what follows a worker's unexpected exit.

        Args:
            streak: The worker's failures before this exit.
            exit_code: Its exit code (negative: killed by that signal).
            ran_s: How long this run lasted (s).

        Returns:
            The new streak, and the delay before the restart (s), or ``None``: give up
            (stop everything, exit with :data:`EXIT_STARTUP_ERROR`).
        """
        crashes = 1 if ran_s >= self.stable_after_s else streak.crashes + 1
        startup = streak.startup_failures + 1 if exit_code == EXIT_STARTUP_ERROR else 0
        new = Streak(crashes=crashes, startup_failures=startup)
        if startup >= self.startup_failures_to_give_up:
            return new, None
        return new, min(self.max_backoff_s, self.initial_backoff_s * 2 ** (crashes - 1))


@dataclass
class WorkerSlot:
    """One worker: its process and history (guarded by the supervisor's lock)."""

    index: int
    state: WorkerState = WorkerState.NEW
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # monotonic
    restart_at: float | None = None  # monotonic, while BACKING_OFF
    restarts: int = 0
    streak: Streak = field(default_factory=Streak)
    last_exit: int | None = None
    status: WorkerStatus | None = None


@dataclass(frozen=True)
class WorkerView:
    """A worker as ``/healthz``, ``/readyz`` and ``/metrics`` see it.

    Attributes:
        index: Its number.
        pid: Its process id (``None`` while not running).
        state: Its process state.
        live, ready: Its health.
        detail: One line saying why (model version, partitions, refused reload, restart).
        model_version: The version it serves (``None`` when unknown).
        restarts: How often it was restarted.
    """

    index: int
    pid: int | None
    state: WorkerState
    live: bool
    ready: bool
    detail: str
    model_version: str | None
    restarts: int


class Supervisor:
    """Starts, watches, restarts and stops N worker processes (see module docstring).

    Args:
        processes: Number of workers.
        spawn: Starts worker ``i``; returns its process.
        status_file: Where worker ``i`` writes its status.
        policy: Restart rules.
        stop_timeout_s: Longest wait for the workers after a stop request (s); then SIGKILL.
        on_exit: Called with the pid of every worker that exited (``mark_process_dead``).
    """

    def __init__(
        self,
        processes: int,
        spawn: Callable[[int], subprocess.Popen[bytes]],
        status_file: Callable[[int], Path],
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = 30.0 + STOP_MARGIN_S,
        on_exit: Callable[[int], None] = lambda _pid: None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._spawn = spawn
        self._status_file = status_file
        self.policy = policy or RestartPolicy()
        self._stop_timeout_s = stop_timeout_s
        self._on_exit = on_exit
        self._slots = [WorkerSlot(i) for i in range(processes)]
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self.phase = Phase.RUNNING
        self._stopping_since: float | None = None  # monotonic, set with Phase.STOPPING
        self._gave_up = False
        self._was_ready = False
        self._log = structlog.get_logger("supervisor")

    # -- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop every worker (safe from a signal handler: only sets an event)."""
        self._stop_requested.set()

    def run(self) -> int:
        """Start the workers and supervise them until they are stopped.

        Returns:
            0 when every worker stopped gracefully (exit 0) after a stop request; 1 when
            one did not (non-zero exit, or killed after the stop timeout); 2 when a worker
            kept failing at start-up (see :class:`RestartPolicy`).
        """
        for slot in self._slots:
            self._start(slot)
        while True:
            now = time.monotonic()
            if self._stop_requested.is_set() and self._stopping_since is None:
                self._begin_stop(now)
            for slot in self._slots:
                self._reap(slot, now)
            if self._stopping_since is not None:
                if all(s.state is WorkerState.STOPPED for s in self._slots):
                    break
                if now - self._stopping_since > self._stop_timeout_s:
                    self._kill_stragglers()
                    continue
            else:
                for slot in self._slots:
                    if slot.state is WorkerState.BACKING_OFF and now >= (slot.restart_at or 0):
                        self._start(slot)
            self._refresh_status()
            time.sleep(TICK_S)  # a signal handler runs at once; the loop sees it next tick
        with self._lock:
            self.phase = Phase.STOPPED
        code = self.exit_code()
        self._log.info("supervisor_stopped", code=code, exits=[s.last_exit for s in self._slots])
        return code

    def exit_code(self) -> int:
        """The supervisor's exit code once every worker is stopped (see :meth:`run`)."""
        if self._gave_up:
            return EXIT_STARTUP_ERROR
        return 0 if all(s.last_exit in (0, None) for s in self._slots) else 1

    # -- what HTTP threads read --------------------------------------------------------

    def views(self) -> list[WorkerView]:
        """Every worker as the HTTP endpoints report it (any thread)."""
        now = time.time()
        with self._lock:
            return [_view(s, now) for s in self._slots]

    def live(self) -> tuple[bool, str]:
        """``/healthz``: whether every worker is live, and why, one line per worker.

        A worker is live while it starts, runs with a fresh, live status, or waits to be
        restarted.
        """
        views = self.views()
        ok = all(v.live for v in views)
        return ok, _lines("ok" if ok else "not live", views)

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: whether every worker is ready, and why, one line per worker.

        Ready: the supervisor is not stopping and every worker has a model loaded and
        partitions assigned (a worker that refused a new model still serves the old one:
        ready, the refusal in its line).
        """
        views = self.views()
        if self.phase is not Phase.RUNNING:
            return False, _lines(self.phase.value, views)
        ok = all(v.ready for v in views)
        waiting = sum(not v.ready for v in views)
        return ok, _lines("ok" if ok else f"not ready: {waiting} of {len(views)} workers", views)

    # -- the loop's steps (main thread) ------------------------------------------------

    def _move(self, slot: WorkerSlot, new: WorkerState, **changes: Any) -> None:
        """Change ``slot``'s state (and fields) under the lock, if the move is allowed.

        Raises:
            IllegalTransitionError: :data:`WORKER_TRANSITIONS` does not allow it.
        """
        with self._lock:
            if new not in WORKER_TRANSITIONS[slot.state]:
                raise IllegalTransitionError(f"worker {slot.index}: {slot.state} -> {new}")
            slot.state = new
            for name, value in changes.items():
                setattr(slot, name, value)

    def _start(self, slot: WorkerSlot) -> None:
        self._status_file(slot.index).unlink(missing_ok=True)
        restart = slot.state is WorkerState.BACKING_OFF
        process = self._spawn(slot.index)
        self._move(
            slot,
            WorkerState.RUNNING,
            process=process,
            started_at=time.monotonic(),
            restart_at=None,
            status=None,
            restarts=slot.restarts + restart,
        )
        self._log.info("worker_started", worker=slot.index, pid=process.pid, restarts=slot.restarts)

    def _reap(self, slot: WorkerSlot, now: float) -> None:
        """If ``slot``'s process exited: record it, then restart later, give up, or stop."""
        process = slot.process
        if process is None or slot.state not in (WorkerState.RUNNING, WorkerState.STOPPING):
            return
        code = process.poll()
        if code is None:
            return
        self._on_exit(process.pid)
        ran_s = now - slot.started_at
        expected = self._stopping_since is not None
        say = self._log.info if expected and code == 0 else self._log.warning
        say(
            "worker_exited",
            worker=slot.index,
            pid=process.pid,
            code=code,
            ran_s=round(ran_s, 1),
            expected=expected,
        )
        if expected:
            self._move(slot, WorkerState.STOPPED, process=None, last_exit=code)
            return
        streak, delay = self.policy.after_exit(slot.streak, code, ran_s)
        if delay is None:
            self._log.error(
                "supervisor_giving_up",
                worker=slot.index,
                code=code,
                startup_failures=streak.startup_failures,
                reason="the worker keeps failing at start-up (exit code 2: a configuration "
                "or start-up error; its log says which)",
            )
            self._gave_up = True
            self._move(slot, WorkerState.STOPPED, process=None, last_exit=code, streak=streak)
            self.request_stop()
            self._begin_stop(now)
            return
        self._move(
            slot,
            WorkerState.BACKING_OFF,
            process=None,
            last_exit=code,
            streak=streak,
            restart_at=now + delay,
        )
        self._log.warning("worker_restart_scheduled", worker=slot.index, delay_s=delay)

    def _begin_stop(self, now: float) -> None:
        """Forward the stop to every running worker (SIGTERM); forget pending restarts."""
        if self._stopping_since is not None:
            return
        with self._lock:
            self.phase = Phase.STOPPING
            self._stopping_since = now
        self._log.info("stop_forwarded", workers=[s.index for s in self._slots])
        for slot in self._slots:
            if slot.state is WorkerState.RUNNING and slot.process is not None:
                slot.process.send_signal(signal.SIGTERM)
                self._move(slot, WorkerState.STOPPING)
            elif slot.state in (WorkerState.BACKING_OFF, WorkerState.NEW):
                self._move(slot, WorkerState.STOPPED)

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            if slot.state is WorkerState.STOPPING and slot.process is not None:
                self._log.error(
                    "worker_killed", worker=slot.index, pid=slot.process.pid,
                    reason=f"still running {self._stop_timeout_s:.0f} s after the stop",
                )  # fmt: skip
                slot.process.kill()
                slot.process.wait()
                self._on_exit(slot.process.pid)
                self._move(slot, WorkerState.STOPPED, process=None, last_exit=1)

    def _refresh_status(self) -> None:
        """Read the workers' status files; log when the workers become (not) ready."""
        for slot in self._slots:
            status = None
            if slot.state is WorkerState.RUNNING and slot.process is not None:
                status = WorkerStatus.read(self._status_file(slot.index))
                if status is not None and status.pid != slot.process.pid:
                    status = None  # the previous run's
            with self._lock:
                slot.status = status
            if status is not None and status.ready and slot.streak != Streak():
                with self._lock:
                    slot.streak = replace(slot.streak, startup_failures=0)
        ready, reason = self.ready()
        if ready != self._was_ready:
            self._was_ready = ready
            self._log.info("workers_ready" if ready else "workers_not_ready", detail=reason)


def _view(slot: WorkerSlot, now: float) -> WorkerView:
    """How ``slot`` looks to the endpoints; the caller holds the lock.

    ``now`` is wall-clock time (``time.time()``, s): status files carry wall-clock stamps.
    """
    pid = slot.process.pid if slot.process is not None else None
    status = slot.status

    def view(live: bool, ready: bool, detail: str) -> WorkerView:
        version = status.model_version if status is not None else None
        return WorkerView(slot.index, pid, slot.state, live, ready, detail, version, slot.restarts)

    if slot.state is WorkerState.BACKING_OFF:
        wait = max(0.0, (slot.restart_at or 0) - time.monotonic())
        return view(True, False, f"exited with code {slot.last_exit}; restart in {wait:.1f} s")
    if slot.state is not WorkerState.RUNNING:
        live = slot.state in (WorkerState.NEW, WorkerState.STOPPING)  # not yet / going away
        return view(live, False, slot.state.value)
    if status is None:
        return view(True, False, "starting")
    age = now - status.written_at
    if age > STATUS_STALE_S:
        return view(False, False, f"status silent for {age:.0f} s")
    detail = "ready" if status.ready else f"not ready ({status.ready_reason})"
    if not status.live:
        detail = f"not live ({status.live_reason})"
    detail += f", model {status.model_version}, {status.assigned_partitions} partitions"
    if status.model_refused:
        detail += f"; refused model {status.model_refused}"
    return view(status.live, status.ready and status.live, detail)


def _lines(head: str, views: list[WorkerView]) -> str:
    return "\n".join([head, *(f"worker {v.index} (pid {v.pid or '-'}): {v.detail}" for v in views)])
