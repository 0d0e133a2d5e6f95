"""Stage 4: input topic → ``python -m consumer`` → output topic through a real Kafka broker.

For one stream, against fresh topics (3 partitions, as the consumer creates them):

1. start the consumer as a subprocess, wait until it owns its partitions;
2. **warm-up:** produce ``warmup`` messages and wait for their predictions; the consumer
   runs with ``CLASSIFIER_ENGINE_WARMUP=1``, so its engine compiles every batch shape on
   the first batch rather than on the first measured batch that needs a new one;
3. **saturation:** produce ``messages`` messages as fast as the producer can (a backlog the
   consumer drains at full speed) and wait for all predictions. Throughput is counted from
   the consumer's own ``produced_at`` stamps, over the window after the producer finished
   (so the producer's CPU does not count against the consumer); latency percentiles are
   reported both as ``produced_at - input_timestamp`` (mostly time queued in the backlog)
   and as the consumer's ``latency_ms`` (micro-batch received → prediction produced);
4. **paced:** for each load fraction, a producer paced at that share of the saturated rate
   for ``paced_seconds``; end-to-end latency = ``produced_at - input_timestamp`` (the input
   record's Kafka timestamp is set when the producer is handed the message);
5. the consumer's peak RSS (``VmHWM`` of ``/proc/<pid>/status``) before it is stopped.

With ``processes`` > 1 the consumer runs as ``--processes N`` (a supervisor and N workers
in one group, each with ``cores / N`` engine workers and TensorFlow inter-op threads); it
counts as started once every worker owns partitions, and its RSS is the sum over the
supervisor and its workers.

Predictions are read back only after each phase, so the reader's CPU does not compete
with the consumer while it is measured.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.kafka_io import (
    READY_TIMEOUT_S,
    Decoder,
    E2EError,
    Encoder,
    create_topics,
    delete_topics,
    json_value,
    produce_all,
    produce_paced,
    read_predictions,
    wait_for,
)
from deploy.consumer_process import ConsumerProcess, ConsumerStartError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- consumer


def consumer_flags() -> set[str]:
    """Flags ``python -m consumer --help`` lists (the CLI is evolving; only use those)."""
    out = subprocess.run(
        [sys.executable, "-m", "consumer", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", out.stdout + out.stderr))


def batch_log_summary(log_path: Path, since_line: int = 0) -> dict[str, float]:
    """Averages of the consumer's ``batch_done`` log lines from line ``since_line`` on.

    Returns:
        ``batches``, mean ``size``, mean ``inference_ms`` and ``batch_ms``, and the share of
        batch time spent in inference (``inference_share``); empty if no batch was logged.
    """
    sizes: list[float] = []
    inference: list[float] = []
    batch: list[float] = []
    lines = log_path.read_text(errors="replace").splitlines()[since_line:]
    for line in lines:
        if '"batch_done"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        sizes.append(float(record.get("size", 0)))
        inference.append(float(record.get("inference_ms", 0.0)))
        batch.append(float(record.get("batch_ms", 0.0)))
    if not sizes:
        return {}
    return {
        "batches": len(sizes),
        "mean_size": float(np.mean(sizes)),
        "mean_inference_ms": float(np.mean(inference)),
        "mean_batch_ms": float(np.mean(batch)),
        "inference_share": float(np.sum(inference) / max(1e-9, np.sum(batch))),
    }


def log_lines(log_path: Path) -> int:
    """Number of lines in the consumer's log so far."""
    return len(log_path.read_bytes().splitlines())


def consumer_args(
    bundle: Path,
    bootstrap: str,
    topics: Mapping[str, str],
    group_id: str,
    max_batch_size: int,
    max_wait_ms: int,
    processes: int = 1,
) -> list[str]:
    """``python -m consumer`` flags of a benchmark run (no metrics port, no reload polling).

    Args:
        topics: ``in``, ``out`` and ``dlq`` topic names.

    Raises:
        E2EError: ``processes`` > 1 and the consumer has no ``--processes`` flag.
    """
    flags = consumer_flags()
    args = [
        "--bundle", str(bundle),
        "--bootstrap-servers", bootstrap,
        "--input-topic", topics["in"],
        "--output-topic", topics["out"],
        "--dead-letter-topic", topics["dlq"],
        "--group-id", group_id,
        "--max-batch-size", str(max_batch_size),
        "--max-wait-ms", str(max_wait_ms),
    ]  # fmt: skip
    optional = {"--metrics-port": "0", "--reload-interval-s": "0"}
    for flag, value in optional.items():
        if flag in flags:
            args += [flag, value]
    if processes != 1:
        if "--processes" not in flags:
            raise E2EError("this consumer has no --processes flag")
        args += ["--processes", str(processes)]
    return args


# ----------------------------------------------------------------------------- results


def percentiles_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    arr = np.asarray(values_s, dtype=np.float64) * 1000
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        return {}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}


def _select(preds: Mapping[str, dict[str, float]], prefix: str) -> list[dict[str, float]]:
    return [v for k, v in preds.items() if k.startswith(prefix + "-")]


# ----------------------------------------------------------------------------- the stage


def run_stream(
    bootstrap: str,
    bundle: Path,
    name: str,
    texts: Sequence[str],
    messages: int,
    warmup: int,
    paced_loads: Sequence[float],
    paced_seconds: float,
    max_batch_size: int,
    max_wait_ms: int,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    profile: bool = False,
    processes: int = 1,
    encode: Encoder | None = None,
    decode: Decoder | None = None,
) -> dict[str, Any]:
    """Run stage 4 for one stream (see the module docstring) and return its measurements.

    Args:
        bootstrap: Kafka bootstrap servers.
        bundle: Model directory or bundle version served by the consumer.
        name: Stream name (topic and id prefix).
        texts: The stream's documents; cycled as needed.
        messages: Messages of the saturation phase.
        warmup: Messages sent (and awaited) before measuring.
        paced_loads: Fractions of the saturated rate to pace a producer at.
        paced_seconds: Duration of each paced phase.
        max_batch_size, max_wait_ms: Consumer micro-batch settings.
        extra_args: More ``python -m consumer`` flags.
        log_dir: Where the consumer's log (and a profile) are written.
        profile: Record a py-spy profile of the consumer during the saturation phase (one
            process only).
        processes: Consumer processes (``--processes``).
        encode: ``(id, text) → input value`` (default ``{"id", "text"}`` JSON).
        decode: Output value → prediction dict (default JSON; :mod:`bench.formats`).

    Raises:
        E2EError: the broker, the consumer or the predictions failed.
    """
    encode = encode or json_value
    decode = decode or json.loads
    run = uuid.uuid4().hex[:8]
    topics = {k: f"bench-{run}-{name}-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, list(topics.values()))
    args = consumer_args(
        bundle, bootstrap, topics, f"bench-{run}", max_batch_size, max_wait_ms, processes
    )
    if processes != 1:
        profile = False  # py-spy would sample the supervisor, which does no work
    args += list(extra_args)
    log_dir.mkdir(parents=True, exist_ok=True)
    # compile all of the engine's batch shapes on its first batch (the warm-up), not on the
    # first measured batch that needs one
    suffix = "" if processes == 1 else f"-p{processes}"
    consumer = ConsumerProcess(
        args,
        log_dir / f"consumer-{name}{suffix}.log",
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "CLASSIFIER_ENGINE_WARMUP": "1"},
    )
    cycle = (texts[i % len(texts)] for i in range(10**12))
    result: dict[str, Any] = {
        "processes": processes,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "consumer_args": args,
    }
    expected = 0
    try:
        began = time.monotonic()
        try:
            consumer.wait_assigned(READY_TIMEOUT_S)
        except ConsumerStartError as exc:
            raise E2EError(str(exc)) from exc
        result["consumer_start_s"] = time.monotonic() - began

        warm = [next(cycle) for _ in range(warmup)]
        produce_all(bootstrap, topics["in"], "warm", warm, encode)
        expected += len(warm)
        wait_for(bootstrap, topics["out"], expected, 600)

        since = log_lines(consumer.log_path)
        saturation = [next(cycle) for _ in range(messages)]
        spy = start_profile(consumer.pid, log_dir / f"profile-{name}") if profile else None
        flushed_at = produce_all(bootstrap, topics["in"], "sat", saturation, encode)
        expected += len(saturation)
        wait_for(bootstrap, topics["out"], expected, 3600)
        if spy is not None:
            result["profile"] = stop_profile(spy, log_dir / f"profile-{name}")
        result["saturation_batches"] = batch_log_summary(consumer.log_path, since)
        preds = read_predictions(bootstrap, topics["out"], expected, decode)
        sat = _select(preds, "sat")
        if len(sat) < messages:
            raise E2EError(f"{name}: only {len(sat)} of {messages} saturation predictions")
        produced = np.sort([p["produced"] for p in sat])
        overall = (len(produced) - 1) / max(1e-9, produced[-1] - produced[0])
        after = produced[produced >= flushed_at]
        steady = (len(after) - 1) / max(1e-9, after[-1] - after[0]) if len(after) > 100 else overall
        result["saturation"] = {
            "messages": len(sat),
            "msgs_per_s": steady,
            "msgs_per_s_overall": overall,
            "steady_window_messages": len(after),
            "drain_seconds": float(produced[-1] - produced[0]),
            "e2e_ms": percentiles_ms([p["produced"] - p["input"] for p in sat]),
            "processing_ms": percentiles_ms([p["latency_ms"] / 1000 for p in sat]),
        }

        paced_results = []
        for load in paced_loads:
            rate = max(1.0, load * steady)
            count = max(1, int(rate * paced_seconds))
            prefix = f"paced{round(load * 100)}"
            since = log_lines(consumer.log_path)
            sent = produce_paced(
                bootstrap, topics["in"], prefix, [next(cycle) for _ in range(count)], rate, encode
            )
            expected += count
            wait_for(bootstrap, topics["out"], expected, 600)
            preds = read_predictions(bootstrap, topics["out"], expected, decode)
            paced = _select(preds, prefix)
            paced_results.append(
                {
                    "load": load,
                    "target_rate": rate,
                    "messages": len(paced),
                    **sent,
                    "e2e_ms": percentiles_ms([p["produced"] - p["input"] for p in paced]),
                    "processing_ms": percentiles_ms([p["latency_ms"] / 1000 for p in paced]),
                    "batches": batch_log_summary(consumer.log_path, since),
                }
            )
        result["paced"] = paced_results
        result["memory_kb"] = consumer.memory_kb()
    finally:
        code = consumer.stop()
        result["consumer_exit_code"] = code
        delete_topics(bootstrap, list(topics.values()))
    return result


# ----------------------------------------------------------------------------- profiling


def saturated_drain(
    bootstrap: str,
    bundle: Path,
    name: str,
    texts: Sequence[str],
    messages: int,
    warmup: int,
    max_batch_size: int,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    encode: Encoder | None = None,
    decode: Decoder | None = None,
) -> dict[str, Any]:
    """:func:`run_stream`'s saturated drain alone (no paced phases, ``--max-wait-ms 0``).

    What the side-by-side stages (``bench/formats.py``, ``bench/drift.py``) compare.

    Raises:
        E2EError: the run failed.
    """
    return run_stream(
        bootstrap,
        bundle,
        name,
        texts,
        messages=messages,
        warmup=warmup,
        paced_loads=[],
        paced_seconds=0,
        max_batch_size=max_batch_size,
        max_wait_ms=0,
        log_dir=log_dir,
        extra_args=extra_args,
        encode=encode,
        decode=decode,
    )


def start_profile(
    pid: int, out_prefix: Path, subprocesses: bool = False
) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on ``pid`` (raw collapsed stacks, all threads).

    ``subprocesses`` samples ``pid``'s child processes too.

    Returns ``None`` when py-spy is not installed.
    """
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("warning: py-spy not installed (pip install '.[bench]'); no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            str(exe), "record", "--pid", str(pid), "--rate", "97", "--format", "raw",
            "--threads", "--nonblocking", "--output", str(out_prefix.with_suffix(".txt")),
            *(["--subprocesses"] if subprocesses else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def stop_profile(spy: subprocess.Popen[bytes], out_prefix: Path) -> dict[str, Any]:
    """Stop py-spy (SIGINT makes it write its output) and summarise the stacks."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    path = out_prefix.with_suffix(".txt")
    if not path.exists():
        err = spy.stderr.read().decode(errors="replace") if spy.stderr else ""
        return {"error": f"py-spy wrote nothing: {err[-500:]}"}
    from bench.report import summarise_profile

    return {"file": str(path), **summarise_profile(path)}
