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
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOPIC_PARTITIONS = 3
READY_TIMEOUT_S = 180.0


class E2EError(Exception):
    """The end-to-end stage could not run (broker, consumer or missing predictions)."""


# ----------------------------------------------------------------------------- broker


@contextmanager
def broker(bootstrap: str | None, state_root: Path) -> Iterator[str]:
    """Bootstrap servers of a broker to benchmark against.

    ``bootstrap``, else ``$KAFKA_BOOTSTRAP_SERVERS``, else a throw-away local KRaft broker
    (``deploy/local_kafka.py``) on free ports, stopped and wiped afterwards.

    Raises:
        E2EError: the local broker could not start.
    """
    chosen = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if chosen:
        yield chosen
        return
    from deploy import local_kafka

    state_root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="kafka-", dir=state_root))
    port = int(local_kafka.find_free_port_pair())
    print(f"» starting a local Kafka broker on 127.0.0.1:{port} ({state})", file=sys.stderr)
    try:
        started = str(local_kafka.start(port=port, state_dir=state, timeout_s=READY_TIMEOUT_S))
    except local_kafka.LocalKafkaError as exc:
        raise E2EError(f"could not start a local Kafka broker: {exc}") from exc
    try:
        yield started
    finally:
        local_kafka.stop(state_dir=state, wipe=True)


def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create ``names`` with 3 partitions each and wait until they are usable.

    Raises:
        E2EError: creation failed or timed out.
    """
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=TOPIC_PARTITIONS, replication_factor=1) for n in names],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            raise E2EError(f"cannot create topic {name}: {exc}") from exc
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if all(n in topics and len(topics[n].partitions) == TOPIC_PARTITIONS for n in names):
            return
        time.sleep(0.2)
    raise E2EError(f"topics {list(names)} not ready after 30 s")


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete ``names`` (best effort)."""
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics(list(names))
    except Exception as exc:  # cleanup must not hide the results
        print(f"warning: could not delete topics {names}: {exc}", file=sys.stderr)


def output_count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` so far (sum of the partitions' high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-wm-{uuid.uuid4().hex}"})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(TOPIC_PARTITIONS)
        )
    finally:
        c.close()


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


class ConsumerProcess:
    """``python -m consumer`` as a child process, its JSON log written to ``log_path``.

    Args:
        args: Command-line flags.
        log_path: File receiving the consumer's stderr.
    """

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            # compile all of the engine's batch shapes on its first batch (the warm-up),
            # not on the first measured batch that needs one
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CLASSIFIER_ENGINE_WARMUP": "1"},
        )

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    def wait_assigned(self, timeout_s: float) -> None:
        """Block until the log shows ``partitions_assigned``.

        Raises:
            E2EError: the process exited or the timeout passed (with the log tail).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b'"partitions_assigned"' in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise E2EError(f"consumer did not get its partitions; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the consumer's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def memory_kb(self) -> dict[str, int]:
        """``VmHWM`` (peak RSS) and ``VmRSS`` in KiB from ``/proc/<pid>/status``."""
        out: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
        except OSError:
            pass
        return out

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the graceful exit (SIGKILL after ``timeout_s``); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


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


# ----------------------------------------------------------------------------- producing


#: Shortest sleep of the paced producer (s): at 2,000 messages/s it sends ~4 per wake-up
#: instead of waking 2,000 times a second on the cores the consumer is measured on.
PACED_TICK_S = 0.002


def _producer(bootstrap: str, linger_ms: int) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "batch.num.messages": 10_000,
        }
    )


def _value(message_id: str, text: str) -> bytes:
    return json.dumps({"id": message_id, "text": text}).encode()


def _produce(producer: Any, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(bootstrap: str, topic: str, prefix: str, texts: Sequence[str]) -> float:
    """Produce ``texts`` as fast as possible (ids ``<prefix>-<i>``) and flush.

    Returns:
        The wall-clock time (``time.time()``) when the last one was acknowledged.

    Raises:
        E2EError: messages still unacknowledged after 120 s.
    """
    producer = _producer(bootstrap, linger_ms=20)
    for i, text in enumerate(texts):
        key = f"{prefix}-{i}"
        _produce(producer, topic, key.encode(), _value(key, text))
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise E2EError(f"{prefix}: producer could not deliver within 120 s")
    return time.time()


def produce_paced(
    bootstrap: str, topic: str, prefix: str, texts: Sequence[str], rate: float
) -> dict[str, float]:
    """Produce ``texts`` at ``rate`` messages/s with librdkafka's default ``linger.ms=5``.

    Open loop: message ``i`` is due ``i / rate`` s after the start; late ones are sent at
    once, never skipped. The producer shares the cores with the consumer and the broker, so
    it is kept cheap: values are serialised before the clock starts, and the loop wakes at
    most every :data:`PACED_TICK_S` and sends everything due by then (a message's timestamp
    is taken when it is produced, so the tick never counts as consumer latency).

    Returns:
        ``{"seconds": elapsed, "achieved_rate": messages/s}``.
    """
    producer = _producer(bootstrap, linger_ms=5)
    keys = [f"{prefix}-{i}" for i in range(len(texts))]
    records = [(k.encode(), _value(k, t)) for k, t in zip(keys, texts, strict=True)]
    began = time.perf_counter()
    sent = 0
    while sent < len(records):
        due = min(len(records), int((time.perf_counter() - began) * rate) + 1)
        for key, value in records[sent:due]:
            _produce(producer, topic, key, value)
        sent = max(sent, due)
        producer.poll(0)
        if sent < len(records):
            wait = began + sent / rate - time.perf_counter()
            time.sleep(max(wait, PACED_TICK_S))
    elapsed = time.perf_counter() - began
    producer.flush(120)
    return {"seconds": elapsed, "achieved_rate": len(records) / max(elapsed, 1e-9)}


# ----------------------------------------------------------------------------- reading


def wait_for(bootstrap: str, topic: str, count: int, timeout_s: float) -> None:
    """Wait until ``topic`` holds at least ``count`` records.

    Raises:
        E2EError: fewer after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    have = 0
    while time.monotonic() < deadline:
        have = output_count(bootstrap, topic)
        if have >= count:
            return
        time.sleep(0.5)
    raise E2EError(f"{topic}: {have} of {count} records after {timeout_s:.0f} s")


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def read_predictions(bootstrap: str, topic: str, count: int) -> dict[str, dict[str, float]]:
    """Read ``count`` records of ``topic`` from the start.

    Returns:
        Per prediction id (the first copy wins): ``produced`` and ``input`` as epoch
        seconds and the consumer's ``latency_ms``.
    """
    from confluent_kafka import Consumer

    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([topic])
    out: dict[str, dict[str, float]] = {}
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while seen < count and time.monotonic() < deadline:
            for m in reader.consume(5000, 1.0):
                if m.error() is not None or m.value() is None:
                    continue
                seen += 1
                pred = json.loads(m.value() or b"{}")
                if pred["id"] in out:
                    continue
                out[pred["id"]] = {
                    "produced": _timestamp(pred["produced_at"]),
                    "input": _timestamp(pred["input_timestamp"])
                    if pred.get("input_timestamp")
                    else float("nan"),
                    "latency_ms": float(pred.get("latency_ms", float("nan"))),
                }
    finally:
        reader.close()
    return out


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
        profile: Record a py-spy profile of the consumer during the saturation phase.

    Raises:
        E2EError: the broker, the consumer or the predictions failed.
    """
    run = uuid.uuid4().hex[:8]
    topics = {k: f"bench-{run}-{name}-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, list(topics.values()))
    flags = consumer_flags()
    args = [
        "--bundle", str(bundle),
        "--bootstrap-servers", bootstrap,
        "--input-topic", topics["in"],
        "--output-topic", topics["out"],
        "--dead-letter-topic", topics["dlq"],
        "--group-id", f"bench-{run}",
        "--max-batch-size", str(max_batch_size),
        "--max-wait-ms", str(max_wait_ms),
    ]  # fmt: skip
    optional = {"--metrics-port": "0", "--reload-interval-s": "0"}
    for flag, value in optional.items():
        if flag in flags:
            args += [flag, value]
    args += list(extra_args)
    log_dir.mkdir(parents=True, exist_ok=True)
    consumer = ConsumerProcess(args, log_dir / f"consumer-{name}.log")
    cycle = (texts[i % len(texts)] for i in range(10**12))
    result: dict[str, Any] = {
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "consumer_args": args,
    }
    expected = 0
    try:
        began = time.monotonic()
        consumer.wait_assigned(READY_TIMEOUT_S)
        result["consumer_start_s"] = time.monotonic() - began

        warm = [next(cycle) for _ in range(warmup)]
        produce_all(bootstrap, topics["in"], "warm", warm)
        expected += len(warm)
        wait_for(bootstrap, topics["out"], expected, 600)

        since = log_lines(consumer.log_path)
        saturation = [next(cycle) for _ in range(messages)]
        spy = _start_profile(consumer.pid, log_dir / f"profile-{name}") if profile else None
        flushed_at = produce_all(bootstrap, topics["in"], "sat", saturation)
        expected += len(saturation)
        wait_for(bootstrap, topics["out"], expected, 3600)
        if spy is not None:
            result["profile"] = _stop_profile(spy, log_dir / f"profile-{name}")
        result["saturation_batches"] = batch_log_summary(consumer.log_path, since)
        preds = read_predictions(bootstrap, topics["out"], expected)
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
                bootstrap, topics["in"], prefix, [next(cycle) for _ in range(count)], rate
            )
            expected += count
            wait_for(bootstrap, topics["out"], expected, 600)
            preds = read_predictions(bootstrap, topics["out"], expected)
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


def _start_profile(pid: int, out_prefix: Path) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on ``pid`` (raw collapsed stacks, all threads).

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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _stop_profile(spy: subprocess.Popen[bytes], out_prefix: Path) -> dict[str, Any]:
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
