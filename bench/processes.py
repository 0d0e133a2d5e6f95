"""Operating stages: restart-to-first-batch (static vs dynamic membership), reload across workers.

**Restart to first batch** (:func:`restart_to_first_batch`): a consumer (one process) drains
a backlog in its input topic; it is SIGKILLed and started again at once with the same
settings; measured is the time from the restart until its first batch is committed (its
first ``batch_done`` log line), split into start-up (process start → ``consumer_started``:
imports, model load and warm-up), joining (→ first ``partitions_assigned``) and the first
batch. Without static membership the dead member stays in the group until its session
times out (``session.timeout.ms``, librdkafka's default 45 s), and the group cannot finish
the rebalance the new member asks for until then. With ``--group-instance-id`` the broker
recognises the restarted member and hands its partitions back without a rebalance.

**Reload across workers** (:func:`reload_across_workers`): ``--processes N`` serving a model
directory; a new version is published (copied beside the current one, ``current`` moved),
and measured is, per worker, the time from the publication to its ``model_swapped`` line,
with its ``model_warmed_up`` seconds. The bound is ``reload_interval_s`` (the watcher's
poll) + load + warm-up + one turn of the loop (a swap happens between micro-batches).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.kafka_io import (
    READY_TIMEOUT_S,
    E2EError,
    create_topics,
    delete_topics,
    produce_all,
    wait_for,
)
from deploy.consumer_process import ConsumerProcess, ConsumerStartError

#: librdkafka's default ``session.timeout.ms``, set explicitly in the restart stage.
SESSION_TIMEOUT_MS = 45_000


def _stamp(event: dict[str, Any]) -> float:
    """An event's ISO timestamp as epoch seconds."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _wait_event(
    consumer: ConsumerProcess, match: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    """The first log event of ``consumer`` that ``match``es, waiting up to ``timeout_s`` (s).

    Raises:
        E2EError: none within the timeout, or the process exited first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = next((e for e in consumer.events() if match(e)), None)
        if found is not None:
            return found
        if consumer.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise E2EError(f"no such log event after {timeout_s:.0f} s; log tail:\n{consumer.log_tail()}")


def _start(args: list[str], log_path: Path) -> ConsumerProcess:
    return ConsumerProcess(args, log_path)  # start-up as in production (no engine pre-warm-up)


def _consumer_args(bootstrap: str, bundle: Path, topics: dict[str, str], group: str) -> list[str]:
    return [
        "--bundle", str(bundle), "--bootstrap-servers", bootstrap,
        "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dead-letter-topic", topics["dlq"], "--group-id", group, "--metrics-port", "0",
    ]  # fmt: skip


def restart_to_first_batch(
    bootstrap: str,
    bundle: Path,
    texts: Sequence[str],
    static: bool,
    backlog: int,
    log_dir: Path,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
) -> dict[str, Any]:
    """SIGKILL a consumer with a backlog, restart it at once, time its first committed batch.

    Args:
        bootstrap: Kafka bootstrap servers.
        bundle: Model served.
        texts: Input texts (cycled).
        static: Run with ``--group-instance-id`` (static membership).
        backlog: Messages produced just before the kill.
        log_dir: Where the two runs' logs go.
        session_timeout_ms: The consumer's ``session.timeout.ms``.

    Returns:
        ``restart_to_first_batch_s`` and its parts ``start_s``, ``join_s``,
        ``first_batch_s`` (s), with ``static`` and ``session_timeout_ms``.

    Raises:
        E2EError: the broker or the consumer failed.
    """
    run = uuid.uuid4().hex[:8]
    kind = "static" if static else "dynamic"
    topics = {k: f"bench-{run}-restart-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, list(topics.values()))
    args = _consumer_args(bootstrap, bundle, topics, f"bench-restart-{run}")
    args += ["--kafka", json.dumps({"session.timeout.ms": session_timeout_ms})]
    if static:
        args += ["--group-instance-id", f"bench-{run}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    cycle = (texts[i % len(texts)] for i in range(10**12))
    first = _start(args, log_dir / f"restart-{kind}-1.log")
    second: ConsumerProcess | None = None
    try:
        try:
            first.wait_assigned(READY_TIMEOUT_S)
        except ConsumerStartError as exc:
            raise E2EError(str(exc)) from exc
        produce_all(bootstrap, topics["in"], "warm", [next(cycle) for _ in range(64)])
        wait_for(bootstrap, topics["out"], 64, 300)
        produce_all(bootstrap, topics["in"], "backlog", [next(cycle) for _ in range(backlog)])
        first.kill()
        restarted_at = time.time()
        second = _start(args, log_dir / f"restart-{kind}-2.log")
        started = _wait_event(second, lambda e: e.get("event") == "consumer_started", 300)
        assigned = _wait_event(second, lambda e: e.get("event") == "partitions_assigned", 300)
        batch = _wait_event(second, lambda e: e.get("event") == "batch_done", 300)
        result = {
            "static": static,
            "session_timeout_ms": session_timeout_ms,
            "backlog": backlog,
            "restart_to_first_batch_s": _stamp(batch) - restarted_at,
            "start_s": _stamp(started) - restarted_at,
            "join_s": _stamp(assigned) - _stamp(started),
            "first_batch_s": _stamp(batch) - _stamp(assigned),
        }
        result["consumer_exit_code"] = second.stop()
        return result
    finally:
        for consumer in (first, second):
            if consumer is not None and consumer.proc.poll() is None:
                consumer.kill()
        delete_topics(bootstrap, list(topics.values()))


def _swapped_by(worker: int) -> Callable[[dict[str, Any]], bool]:
    """Matches worker ``worker``'s ``model_swapped`` log event."""
    return lambda e: e.get("event") == "model_swapped" and e.get("worker") == worker


def publish_copy(model_dir: Path, source: Path, version: str) -> None:
    """Publish a copy of bundle version ``source`` as ``version`` in ``model_dir``.

    As ``training.fit`` publishes: the version directory is complete before ``current`` is
    moved (atomically) to it.
    """
    from model.bundle import MANIFEST, point_current

    staging = model_dir / f".{version}.tmp"
    shutil.copytree(source, staging)
    manifest = json.loads((staging / MANIFEST).read_text())
    manifest["version"] = version
    (staging / MANIFEST).write_text(json.dumps(manifest))
    staging.rename(model_dir / version)
    point_current(model_dir, version)


def reload_across_workers(
    bootstrap: str,
    bundle: Path,
    processes: int,
    reload_interval_s: float,
    log_dir: Path,
) -> dict[str, Any]:
    """Publish a new model version under ``--processes N``; time each worker's swap.

    Args:
        bootstrap: Kafka bootstrap servers.
        bundle: A model directory (its ``current`` version is copied into a fresh one).
        processes: Workers.
        reload_interval_s: The consumer's ``--reload-interval-s``.
        log_dir: Where the consumer's log goes.

    Returns:
        ``workers``: per worker ``swapped_s`` (publication → ``model_swapped``) and
        ``warmup_s`` (its load's warm-up); ``all_swapped_s``: the slowest worker.

    Raises:
        E2EError: the broker or the consumer failed, or a worker did not swap in 300 s.
    """
    from model.bundle import CURRENT, point_current

    run = uuid.uuid4().hex[:8]
    topics = {k: f"bench-{run}-reload-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, list(topics.values()))
    model_dir = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    original = (bundle / CURRENT).resolve() if (bundle / CURRENT).exists() else bundle.resolve()
    shutil.copytree(original, model_dir / original.name)
    point_current(model_dir, original.name)
    args = _consumer_args(bootstrap, model_dir, topics, f"bench-reload-{run}")
    args += ["--processes", str(processes), "--reload-interval-s", str(reload_interval_s)]
    log_dir.mkdir(parents=True, exist_ok=True)
    consumer = _start(args, log_dir / "reload.log")
    try:
        try:
            consumer.wait_assigned(READY_TIMEOUT_S)
        except ConsumerStartError as exc:
            raise E2EError(str(exc)) from exc
        version = f"{original.name}-next"
        published = time.time()
        publish_copy(model_dir, original, version)
        workers: dict[str, dict[str, float | None]] = {}
        swapped: list[float] = []
        for i in range(processes):
            swap = _wait_event(consumer, _swapped_by(i), 300)
            warm = [
                e
                for e in consumer.events()
                if e.get("event") == "model_warmed_up"
                and e.get("worker") == i
                and e.get("model_version") == version
            ]
            swapped.append(_stamp(swap) - published)
            workers[str(i)] = {
                "swapped_s": swapped[-1],
                "warmup_s": float(warm[0]["seconds"]) if warm else None,
            }
        return {
            "processes": processes,
            "reload_interval_s": reload_interval_s,
            "workers": workers,
            "all_swapped_s": max(swapped),
            "consumer_exit_code": consumer.stop(),
        }
    finally:
        if consumer.proc.poll() is None:
            consumer.kill()
        delete_topics(bootstrap, list(topics.values()))
        shutil.rmtree(model_dir, ignore_errors=True)
