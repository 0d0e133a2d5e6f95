"""The supervisor of ``--processes N``: restart and stop rules, health aggregation, settings.

The supervisor runs real (tiny) worker processes here: ``python -c`` scripts that exit with
a given code, crash once, ignore SIGTERM, or write a status file like a consumer worker.
The real consumer under a supervisor is tested against a broker in
``tests/integration/test_processes.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumer.clients import consumer_config
from consumer.metrics import HealthState
from consumer.processes import SupervisorCollector
from consumer.settings import Settings
from consumer.supervisor import (
    EXIT_STARTUP_ERROR,
    IllegalTransitionError,
    RestartPolicy,
    Streak,
    Supervisor,
    WorkerState,
)
from consumer.workers import (
    MULTIPROC_ENV,
    WORKER_ENV,
    StatusReporter,
    WorkerContext,
    WorkerStatus,
    settings_environment,
    worker_environment,
    worker_settings,
)

REPO = Path(__file__).resolve().parents[2]
FAST = RestartPolicy(initial_backoff_s=0.05, max_backoff_s=0.2, stable_after_s=60.0)

# ----------------------------------------------------------------------------- the policy


def test_back_off_doubles_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    policy = RestartPolicy(initial_backoff_s=1.0, max_backoff_s=30.0, stable_after_s=60.0)
    streak, delays = Streak(), []
    for _ in range(7):
        streak, delay = policy.after_exit(streak, 1, ran_s=5.0)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    streak, delay = policy.after_exit(streak, 1, ran_s=61.0)  # it had run a minute
    assert (streak.crashes, delay) == (1, 1.0)
    streak, delay = policy.after_exit(streak, -9, ran_s=1.0)  # SIGKILL counts as a crash
    assert delay == 2.0


def test_repeated_start_up_errors_give_up_and_other_exits_reset_the_count() -> None:
    policy = RestartPolicy(startup_failures_to_give_up=3)
    streak = Streak()
    streak, delay = policy.after_exit(streak, EXIT_STARTUP_ERROR, ran_s=3.0)
    assert delay is not None
    streak, delay = policy.after_exit(streak, EXIT_STARTUP_ERROR, ran_s=3.0)
    assert delay is not None
    assert streak.startup_failures == 2
    reset, delay = policy.after_exit(streak, 1, ran_s=3.0)  # it started, then failed
    assert reset.startup_failures == 0
    assert delay is not None
    _, delay = policy.after_exit(streak, EXIT_STARTUP_ERROR, ran_s=3.0)
    assert delay is None, "the third start-up error in a row gives up"


# ----------------------------------------------------------------------------- real processes

#: A worker: argv = status file, worker index, mode. Modes: "ready" (write a ready status
#: until SIGTERM, exit 0), "exit:<code>", "crash-once:<marker>" (exit 1 the first time, then
#: "ready"), "stubborn" (ignore SIGTERM).
WORKER = r"""
import json, os, signal, sys, time
path, index, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode.startswith("exit:"):
    sys.exit(int(mode[5:]))
if mode.startswith("crash-once:"):
    marker = mode.split(":", 1)[1]
    if not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit(1)
stop = []
on_term = (lambda *a: None) if mode == "stubborn" else (lambda *a: stop.append(1))
signal.signal(signal.SIGTERM, on_term)
refused = os.environ.get("REFUSED") if index == 1 else None
while not stop:
    status = dict(worker=index, pid=os.getpid(), written_at=time.time(), live=True,
                  live_reason="ok", ready=True, ready_reason="ok", model_version="v1",
                  model_refused=refused, assigned_partitions=2)
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(status))
    os.replace(path + ".tmp", path)
    time.sleep(0.05)
"""


def _spawner(
    tmp_path: Path, modes: Callable[[int, int], str], env: dict[str, str] | None = None
) -> tuple[Callable[[int], subprocess.Popen[bytes]], Callable[[int], Path], list[int]]:
    """``spawn``, ``status_file`` and the list of spawned worker indexes (in order)."""
    spawned: list[int] = []

    def status_file(index: int) -> Path:
        return tmp_path / f"worker-{index}.json"

    def spawn(index: int) -> subprocess.Popen[bytes]:
        attempt = spawned.count(index)
        spawned.append(index)
        mode = modes(index, attempt)
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, str(status_file(index)), str(index), mode],
            env={**os.environ, **(env or {})},
        )

    return spawn, status_file, spawned


def _run_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()), daemon=True)
    thread.start()
    return thread, result


def _until(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_worker_failing_at_start_up_stops_everything_with_code_2(tmp_path: Path) -> None:
    spawn, status_file, spawned = _spawner(tmp_path, lambda i, _n: "exit:2" if i == 1 else "ready")
    exited: list[int] = []
    supervisor = Supervisor(2, spawn, status_file, policy=FAST, on_exit=exited.append)
    began = time.monotonic()
    assert supervisor.run() == EXIT_STARTUP_ERROR
    assert time.monotonic() - began < 20
    assert spawned.count(1) == FAST.startup_failures_to_give_up, "no endless loop"
    assert spawned.count(0) == 1
    assert len(exited) == len(spawned), "every exited worker is reported (mark_process_dead)"
    views = supervisor.views()
    assert all(v.state is WorkerState.STOPPED for v in views)


def test_a_crashed_worker_is_restarted_and_a_stop_is_forwarded(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    spawn, status_file, spawned = _spawner(
        tmp_path, lambda i, _n: f"crash-once:{marker}" if i == 0 else "ready"
    )
    supervisor = Supervisor(2, spawn, status_file, policy=FAST)
    thread, result = _run_in_thread(supervisor)
    try:
        assert _until(lambda: supervisor.ready()[0]), supervisor.ready()[1]
        _, detail = supervisor.ready()
        assert detail.splitlines()[0] == "ok"
        assert "worker 0 (pid" in detail
        assert "ready, model v1, 2 partitions" in detail
        assert spawned == [0, 1, 0], "worker 0 crashed once and was started again"
        assert [v.restarts for v in supervisor.views()] == [1, 0]
        assert supervisor.live()[0]
    finally:
        supervisor.request_stop()
        thread.join(20)
    assert result == [0], "both workers exited 0 on the forwarded SIGTERM"
    assert supervisor.ready() == (False, supervisor.ready()[1])
    assert supervisor.ready()[1].startswith("stopped")


def test_a_worker_ignoring_the_stop_is_killed_after_the_timeout(tmp_path: Path) -> None:
    spawn, status_file, _ = _spawner(tmp_path, lambda i, _n: "stubborn" if i == 0 else "ready")
    supervisor = Supervisor(2, spawn, status_file, policy=FAST, stop_timeout_s=1.0)
    thread, result = _run_in_thread(supervisor)
    assert _until(lambda: supervisor.ready()[0]), supervisor.ready()[1]
    asked = time.monotonic()
    supervisor.request_stop()
    thread.join(20)
    assert result == [1], "a worker had to be killed: not a graceful stop"
    assert time.monotonic() - asked < 5


def test_readiness_lists_a_refused_model_and_metrics_show_each_workers_version(
    tmp_path: Path,
) -> None:
    spawn, status_file, _ = _spawner(
        tmp_path, lambda _i, _n: "ready", env={"REFUSED": "v2: checksum mismatch"}
    )
    supervisor = Supervisor(2, spawn, status_file, policy=FAST)
    thread, _ = _run_in_thread(supervisor)
    try:
        assert _until(lambda: supervisor.ready()[0]), supervisor.ready()[1]
        ok, detail = supervisor.ready()
        assert ok, "a worker that refused a new model keeps serving the old one"
        assert "refused model v2: checksum mismatch" in detail.splitlines()[2]
        registry = CollectorRegistry()
        registry.register(SupervisorCollector(supervisor))
        text = generate_latest(registry).decode()
        assert 'classifier_model_info{version="v1",worker="0"} 1.0' in text
        assert 'classifier_model_info{version="v1",worker="1"} 1.0' in text
        assert 'classifier_worker_ready{worker="1"} 1.0' in text
        assert 'classifier_worker_restarts_total{worker="0"} 0.0' in text
    finally:
        supervisor.request_stop()
        thread.join(20)


def test_worker_states_move_only_along_the_table(tmp_path: Path) -> None:
    spawn, status_file, _ = _spawner(tmp_path, lambda _i, _n: "exit:0")
    supervisor = Supervisor(1, spawn, status_file)
    slot = supervisor._slots[0]
    supervisor._move(slot, WorkerState.STOPPED)
    with pytest.raises(IllegalTransitionError, match="STOPPED"):
        supervisor._move(slot, WorkerState.RUNNING)


# ----------------------------------------------------------------------------- settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(bundle=tmp_path, **values)  # type: ignore[arg-type]


def test_static_membership_sets_group_instance_id(tmp_path: Path) -> None:
    assert "group.instance.id" not in consumer_config(_settings(tmp_path))
    config = consumer_config(_settings(tmp_path, group_instance_id="pod-7"))
    assert config["group.instance.id"] == "pod-7"
    with pytest.raises(ValueError, match="group"):
        _settings(tmp_path, kafka={"group.instance.id": "x"})


def test_each_worker_gets_its_own_identities(tmp_path: Path) -> None:
    s = _settings(
        tmp_path, processes=3, client_id="cls", group_instance_id="pod-7", exactly_once=True
    )
    w = worker_settings(s, 2)
    assert (w.processes, w.client_id, w.group_instance_id) == (1, "cls-2", "pod-7-2")
    assert w.effective_transactional_id == "text-classifier-cls-2"
    assert w.metrics_port == 0
    assert consumer_config(w)["group.instance.id"] == "pod-7-2"
    assert worker_settings(_settings(tmp_path), 0).group_instance_id is None


@pytest.mark.parametrize("processes", ["auto", "1", "4"])
def test_processes_setting(tmp_path: Path, processes: str) -> None:
    s = _settings(tmp_path, processes=processes)
    expected = len(os.sched_getaffinity(0)) if processes == "auto" else int(processes)
    assert s.process_count == expected
    with pytest.raises(ValueError, match="number of processes"):
        _settings(tmp_path, processes="0")
    with pytest.raises(ValueError, match="number of processes"):
        _settings(tmp_path, processes="many")


def test_a_worker_reads_back_the_supervisors_settings_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _settings(
        tmp_path,
        processes=2,
        kafka={"session.timeout.ms": 6000},
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="classifier",
        kafka_sasl_password="secret",  # a SecretStr: passed in clear to the worker only
        exactly_once=True,
        review_topic="review",
        max_wait_ms=7,
        low_confidence_threshold=0.25,
        log_level="DEBUG",
        group_instance_id="pod-1",
    )
    context = WorkerContext(1, tmp_path / "w1.json", 1234)
    base = {"PATH": "/bin", "classifier_max_wait_ms": "999", "CLASSIFIER_ENGINE_WARMUP": "1"}
    env = worker_environment(base, s, context, tmp_path / "metrics", threads=3)
    assert "classifier_max_wait_ms" not in env, "the supervisor's own variables are replaced"
    assert env["CLASSIFIER_ENGINE_WARMUP"] == "1", "variables that are not settings stay"
    assert env["CLASSIFIER_ENGINE_WORKERS"] == "3"
    assert env[MULTIPROC_ENV] == str(tmp_path / "metrics")
    assert env["CLASSIFIER_KAFKA_SASL_PASSWORD"] == "secret"
    assert json.loads(env["CLASSIFIER_KAFKA"]) == {"session.timeout.ms": 6000}
    assert WorkerContext.from_environ(env) == context
    for key in list(os.environ):
        if key.upper().startswith("CLASSIFIER_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    back = Settings()
    assert back == worker_settings(s, 1)
    assert settings_environment(back) == settings_environment(worker_settings(s, 1))


def test_status_reporter_writes_the_workers_health(tmp_path: Path) -> None:
    health = HealthState(stuck_after_s=60)
    health.model_loaded, health.model_version, health.assigned_partitions = True, "v9", 3
    health.model_refused = "v10: bad"
    context = WorkerContext(4, tmp_path / "s.json", os.getppid())
    StatusReporter(context, health).report()
    status = WorkerStatus.read(context.status_file)
    assert status is not None
    assert (status.worker, status.pid, status.ready, status.model_version) == (
        4,
        os.getpid(),
        True,
        "v9",
    )
    assert status.model_refused == "v10: bad"
    assert WorkerStatus.read(tmp_path / "missing.json") is None
    (tmp_path / "half.json").write_text('{"worker": ')
    assert WorkerStatus.read(tmp_path / "half.json") is None
    assert WorkerContext.from_environ({}) is None
    with pytest.raises(ValueError, match=WORKER_ENV):
        WorkerContext.from_environ({WORKER_ENV: "nonsense"})


def test_the_supervisor_imports_no_tensorflow() -> None:
    code = (
        "import sys, consumer.__main__, consumer.processes, consumer.supervisor, consumer.workers\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(json.dumps(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_a_worker_whose_supervisor_is_gone_stops_itself(tmp_path: Path) -> None:
    """The reporter SIGTERMs its own process (the service's graceful stop) when re-parented."""
    code = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from consumer.metrics import HealthState\n"
        "from consumer.workers import StatusReporter, WorkerContext\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(17))\n"
        f"context = WorkerContext(0, Path({str(tmp_path / 's.json')!r}), os.getppid() + 99999)\n"
        "StatusReporter(context, HealthState(60.0), interval_s=0.05).start()\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert "supervisor_gone" in proc.stderr or "supervisor_gone" in proc.stdout
