"""The one measurement every system gets: the project's consumer and each peer framework.

Per system and stream, against fresh topics (3 partitions; the output topic stamps records
with ``LogAppendTime``, see below):

1. start the system as a subprocess; once it says it is up, send a probe message every
   second until a prediction comes out (MLServer's Kafka consumer has no group and reads
   only records that arrive after it started, so nothing is produced before it listens);
2. **warm-up and agreement:** the stream's first ``agree`` messages; their labels must equal
   the project's own (``Bundle.predict_proba``) ones, counted, never asserted here; the
   time they take also sizes the next phase;
3. **saturation:** a backlog produced as fast as possible and drained; ``backlog`` messages,
   fewer for a slow system (about ``saturation_s`` seconds of its warm-up rate) and at most
   :data:`BACKLOG_CAPS` for a system that loses messages under a larger one. Throughput
   is counted from the output records' timestamps after the producer flushed; CPU seconds
   (utime + stime of the process tree, ``/proc``) over that window, per 1,000 messages;
4. **paced:** an open-loop producer at ``paced_load`` x the system's own saturated rate for
   ``paced_s`` seconds;
5. peak RSS: ``VmHWM`` summed over the process tree, before it is stopped.

Latency = output record timestamp - input record timestamp (``CreateTime``: when our
producer was handed the message), joined by key (= message id; every system keys its
output like its input). The output topics use ``LogAppendTime`` (when the broker appended
the prediction) because Quix Streams' ``to_topic`` copies the input record's timestamp onto
its output record, which would make its ``CreateTime`` latency zero. Inputs and outputs are
read back after the run, so no reader competes for the cores while a system is measured.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.e2e import consumer_args, percentiles_ms, start_profile, stop_profile
from bench.kafka_io import (
    E2EError,
    Encoder,
    Headers,
    create_topics,
    delete_topics,
    output_count,
    produce_all,
    produce_paced,
    wait_for,
)
from bench.peers.common import Inference
from deploy.consumer_process import ConsumerProcess, ConsumerStartError

REPO = Path(__file__).resolve().parents[2]
PEERS_VENV = REPO / ".venv-peers"
BUILD_HINT = (
    "make peers-venv  (python3 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]')"
)
#: Peer name → (entry-point module, distribution whose version is reported).
PEERS: dict[str, tuple[str, str]] = {
    "quix": ("bench.peers.quix_app", "quixstreams"),
    "faust": ("bench.peers.faust_app", "faust-streaming"),
    "mlserver": ("bench.peers.mlserver_app", "mlserver"),
}
#: Largest saturation backlog per system (messages). MLServer's Kafka server starts one task
#: per record without limit, each ending in ``send_and_wait``; with 20,000 of them aiokafka's
#: accumulator times out (``KafkaTimeoutError`` after ``request_timeout_ms``, 40 s) and those
#: predictions are lost, never retried. 4,000 drain without a loss (docs/performance-peers.md).
BACKLOG_CAPS = {"mlserver": 4000}
MLSERVER_MODEL = "text-classifier"  # bench.peers.mlserver_app.MODEL_NAME (not importable here)
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class System:
    """One row of the table.

    Attributes:
        kind: ``project`` (``python -m consumer``) or a key of :data:`PEERS`.
        inference: ``keras`` or ``engine`` (peers; the project always uses its engine).
        processes: Consumer processes (project only).
    """

    kind: str
    inference: Inference = "keras"
    processes: int = 1

    @property
    def name(self) -> str:
        """Row name, e.g. ``project x2``, ``quix``, ``faust (engine)``."""
        if self.kind == "project":
            return "project" if self.processes == 1 else f"project x{self.processes}"
        return self.kind if self.inference == "keras" else f"{self.kind} ({self.inference})"


@dataclass(frozen=True)
class Plan:
    """Sizes of one system's run (messages, seconds)."""

    agree: int = 1000
    backlog: int = 20_000
    min_backlog: int = 500
    saturation_s: float = 30.0
    paced_load: float = 0.5
    paced_s: float = 20.0
    max_batch_size: int = 256
    #: The project's ``--max-wait-ms`` (its own default: 0, no fill wait).
    max_wait_ms: int = 0
    #: The peers' batching window: faust's ``stream.take(within=)``, MLServer's
    #: ``max_batch_time`` (a time cap is how both of them batch; 0 would disable it).
    peer_max_wait_ms: int = 50
    smoke: bool = False
    profile: bool = False


# ----------------------------------------------------------------------------- processes


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
    return out


def tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (utime + stime) and peak RSS (``VmHWM``, KiB) summed over ``pid``'s tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, hwm = 0.0, 0
    for p in tree_pids(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return cpu, hwm


def peer_versions() -> dict[str, str]:
    """Installed versions in ``.venv-peers`` (peers, TensorFlow, Keras, clients); {} if none."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        return {}
    names = [d for _, d in PEERS.values()] + ["tensorflow-cpu", "keras", "confluent-kafka"]
    names += ["aiokafka"]
    code = (
        "import json, importlib.metadata as m\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"print(json.dumps({{n: v(n) for n in {names!r}}}))"
    )
    import subprocess

    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return {}
    return {k: v for k, v in json.loads(out.stdout).items() if v}


def _start(
    system: System, bundle: Path, bootstrap: str, topics: dict[str, str], plan: Plan, log: Path
) -> ConsumerProcess:
    group = f"peers-{topics['in']}"
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    if system.kind == "project":
        args = consumer_args(
            bundle, bootstrap, topics, group, plan.max_batch_size, plan.max_wait_ms,
            system.processes,
        )  # fmt: skip
        return ConsumerProcess(args, log, env={**env, "CLASSIFIER_ENGINE_WARMUP": "1"})
    module = PEERS[system.kind][0]
    args = [
        "--bundle", str(bundle),
        "--bootstrap-servers", bootstrap,
        "--input-topic", topics["in"],
        "--output-topic", topics["out"],
        "--group-id", group,
        "--inference", system.inference,
        "--max-batch-size", str(plan.max_batch_size),
        "--max-wait-ms", str(plan.peer_max_wait_ms),
    ]  # fmt: skip
    command = [str(PEERS_VENV / "bin" / "python"), "-m", module]
    return ConsumerProcess(args, log, env=env, ready_event="peer_ready", command=command)


# ----------------------------------------------------------------------------- records


def _encoder(system: System) -> tuple[Encoder, Headers]:
    if system.kind != "mlserver":
        return (lambda i, t: json.dumps({"id": i, "text": t}).encode()), ()

    def v2(message_id: str, text: str) -> bytes:
        request = {"id": message_id, "inputs": [
            {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}
        ]}  # fmt: skip
        return json.dumps(request).encode()

    return v2, [("mlserver-model", MLSERVER_MODEL.encode())]


def output_label(value: bytes) -> str | None:
    """The label of a prediction: ``label`` of the project's JSON, or MLServer's output."""
    record = json.loads(value)
    if "label" in record:
        return str(record["label"])
    for output in record.get("outputs", []):
        if output.get("name") == "label":
            data = output["data"]
            while isinstance(data, list):
                data = data[0]
            return str(data)
    return None


def read_topic(bootstrap: str, topic: str, values: bool) -> dict[str, tuple[float, bytes]]:
    """Every record of ``topic`` up to its current end: key → (timestamp in s, value).

    The first record of a key wins (at-least-once systems may repeat some).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"peers-read-{uuid.uuid4().hex}",
         "enable.auto.commit": False}
    )  # fmt: skip
    parts = reader.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: dict[str, tuple[float, bytes]] = {}
    left = {p for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + 120
    try:
        while left and time.monotonic() < deadline:
            for m in reader.consume(10_000, 1.0):
                if m.error() is not None:
                    continue
                offset, partition = m.offset(), m.partition()
                if offset is not None and partition is not None and offset >= ends[partition] - 1:
                    left.discard(partition)
                key = (m.key() or b"").decode()
                if key not in out:
                    out[key] = (m.timestamp()[1] / 1000, (m.value() or b"") if values else b"")
    finally:
        reader.close()
    return out


# ----------------------------------------------------------------------------- one run


def _wait_first_output(proc: ConsumerProcess, bootstrap: str, topics: dict[str, str],
                       encode: Encoder, headers: Headers) -> int:  # fmt: skip
    """Probe until a prediction comes out; returns the output count once probes settled."""
    deadline = time.monotonic() + START_TIMEOUT_S
    probe = 0
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            break
        produce_all(bootstrap, topics["in"], f"probe{probe}", ["warm up"], encode, headers)
        probe += 1
        time.sleep(1.0)
        if output_count(bootstrap, topics["out"]) > 0:
            time.sleep(3.0)  # let the probes in flight come out
            return output_count(bootstrap, topics["out"])
    raise E2EError(f"no prediction after {START_TIMEOUT_S:.0f} s; log tail:\n{proc.log_tail()}")


def run_system(
    system: System,
    bootstrap: str,
    bundle: Path,
    texts: Sequence[str],
    expected: Sequence[str],
    plan: Plan,
    log_dir: Path,
    stream: str,
) -> dict[str, Any]:
    """Measure one system on one stream (see the module docstring).

    Args:
        texts: The stream's messages, in order (cycled as needed).
        expected: The project's labels of ``texts[:plan.agree]``.

    Returns:
        ``agreement``, ``saturation`` (msgs/s, latency ms, CPU s per 1,000 messages),
        ``paced``, ``rss_mib``, ``start_s``.

    Raises:
        E2EError: the system did not start or did not answer every message.
    """
    run = uuid.uuid4().hex[:8]
    slug = system.name.replace(" ", "").replace("(", "-").replace(")", "")
    topics = {k: f"peers-{run}-{stream}-{slug}-{k}" for k in ("in", "out", "dlq")}
    create_topics(bootstrap, [topics["in"], topics["dlq"]])
    create_topics(bootstrap, [topics["out"]], {"message.timestamp.type": "LogAppendTime"})
    log_dir.mkdir(parents=True, exist_ok=True)
    encode, headers = _encoder(system)
    cycle = (texts[i % len(texts)] for i in range(10**12))
    result: dict[str, Any] = {"system": system.name, "stream": stream}
    began = time.monotonic()
    proc = _start(system, bundle, bootstrap, topics, plan, log_dir / f"peers-{stream}-{slug}.log")
    try:
        try:
            proc.wait_assigned(START_TIMEOUT_S)
        except ConsumerStartError as exc:
            raise E2EError(str(exc)) from exc
        have = _wait_first_output(proc, bootstrap, topics, encode, headers)
        result["start_s"] = time.monotonic() - began

        warm = [next(cycle) for _ in range(plan.agree)]
        t0 = time.monotonic()
        produce_all(bootstrap, topics["in"], "warm", warm, encode, headers)
        have += len(warm)
        wait_for(bootstrap, topics["out"], have, 900)
        warm_rate = len(warm) / (time.monotonic() - t0)
        result["warmup_msgs_per_s"] = warm_rate

        if not plan.smoke:
            cap = min(plan.backlog, BACKLOG_CAPS.get(system.kind, plan.backlog))
            n = int(min(cap, max(plan.min_backlog, warm_rate * plan.saturation_s)))
            backlog = [next(cycle) for _ in range(n)]
            spy = None
            if plan.profile:
                spy = start_profile(proc.pid, log_dir / f"profile-peers-{stream}-{slug}", True)
            flushed_at = produce_all(bootstrap, topics["in"], "sat", backlog, encode, headers)
            cpu0, _ = tree_usage(proc.pid)
            have += n
            wait_for(bootstrap, topics["out"], have, max(300.0, 5 * n / warm_rate))
            cpu1, _ = tree_usage(proc.pid)
            if spy is not None:
                result["profile"] = stop_profile(spy, log_dir / f"profile-peers-{stream}-{slug}")
            result["saturation"] = {"messages": n, "flushed_at": flushed_at, "cpu_s": cpu1 - cpu0}
            rate = _saturated_rate(bootstrap, topics["out"], flushed_at)
            paced_n = max(20, int(plan.paced_load * rate * plan.paced_s))
            sent = produce_paced(
                bootstrap, topics["in"], "paced", [next(cycle) for _ in range(paced_n)],
                plan.paced_load * rate, encode, headers,
            )  # fmt: skip
            have += paced_n
            wait_for(bootstrap, topics["out"], have, 600)
            result["paced"] = {"load": plan.paced_load, "messages": paced_n, **sent}
        _, result["rss_kib"] = tree_usage(proc.pid)
    finally:
        result["exit_code"] = proc.stop(30)
    try:
        _summarise(result, bootstrap, topics, expected)
    finally:
        internal = [f"peers-{topics['in']}-__assignor-__leader"] if system.kind == "faust" else []
        delete_topics(bootstrap, [*topics.values(), *internal])  # faust's own topic too
    return result


def _saturated_rate(bootstrap: str, topic: str, flushed_at: float) -> float:
    stamps = np.sort([ts for k, (ts, _) in read_topic(bootstrap, topic, False).items()
                      if k.startswith("sat-") and ts >= flushed_at])  # fmt: skip
    if len(stamps) < 2:
        raise E2EError(f"{topic}: under 2 predictions after the backlog was flushed")
    return float((len(stamps) - 1) / max(1e-3, stamps[-1] - stamps[0]))


def _summarise(
    result: dict[str, Any], bootstrap: str, topics: dict[str, str], expected: Sequence[str]
) -> None:
    inputs = read_topic(bootstrap, topics["in"], False)
    outputs = read_topic(bootstrap, topics["out"], True)

    def latencies(prefix: str) -> list[float]:
        return [outputs[k][0] - ts for k, (ts, _) in inputs.items()
                if k.startswith(prefix) and k in outputs]  # fmt: skip

    labels = [output_label(outputs[f"warm-{i}"][1]) if f"warm-{i}" in outputs else None
              for i in range(len(expected))]  # fmt: skip
    agree = sum(a == b for a, b in zip(labels, expected, strict=True))
    result["agreement"] = {"equal": agree, "of": len(expected), "answered": sum(
        lab is not None for lab in labels)}  # fmt: skip
    sat = result.get("saturation")
    if sat is not None:
        stamps = np.sort([outputs[k][0] for k in outputs if k.startswith("sat-")])
        after = stamps[stamps >= sat["flushed_at"]]
        sat["msgs_per_s"] = float((len(after) - 1) / max(1e-3, after[-1] - after[0]))
        sat["window_messages"] = len(after)
        sat["answered"] = len(stamps)
        sat["cpu_s_per_1000"] = 1000 * sat["cpu_s"] / max(1, len(after))
        sat["e2e_ms"] = percentiles_ms(latencies("sat-"))
    if "paced" in result:
        result["paced"]["e2e_ms"] = percentiles_ms(latencies("paced-"))
        result["paced"]["answered"] = sum(k.startswith("paced-") for k in outputs)


# ----------------------------------------------------------------------------- the stage


@contextmanager
def cpu_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (no-op for None), to share a measuring machine."""
    if path is None:
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def project_labels(bundle: Path, texts: Sequence[str]) -> list[str]:
    """The project's labels of ``texts`` (``Bundle.predict_proba``, its engine)."""
    from model import load_bundle

    loaded = load_bundle(bundle)
    probs = loaded.predict_proba(list(texts))
    return [loaded.labels[int(i)] for i in np.argmax(probs, axis=1)]


def run(
    bootstrap: str,
    bundle: Path,
    streams: Mapping[str, Sequence[str]],
    systems: Sequence[System],
    plan: Plan,
    log_dir: Path,
    lock: Path | None = None,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Every system on every stream; a system that cannot run is reported, not fatal.

    Args:
        streams: Stream name → its messages in order.
        lock: A file to ``flock`` around each system's run (short holds on a shared machine).

    Returns:
        ``{"plan", "versions", "runs": {stream: {system: result}}, "failed": {...},
        "missing": hint}``.
    """
    out: dict[str, Any] = {"plan": plan.__dict__, "versions": peer_versions(), "runs": {},
                           "failed": {}}  # fmt: skip
    if any(s.kind != "project" for s in systems) and not (PEERS_VENV / "bin" / "python").exists():
        out["missing"] = f"{PEERS_VENV} not found; build it with: {BUILD_HINT}"
        systems = [s for s in systems if s.kind == "project"]
    for stream, texts in streams.items():
        with cpu_lock(lock):
            expected = project_labels(bundle, texts[: plan.agree])
        for system in systems:
            say(f"peers: {stream}: {system.name}")
            try:
                with cpu_lock(lock):
                    result = run_system(
                        system, bootstrap, bundle, texts, expected, plan, log_dir, stream
                    )
            except E2EError as exc:
                out["failed"].setdefault(system.name, {})[stream] = str(exc)[-2000:]
                say(f"peers: {stream}: {system.name} failed: {str(exc)[-300:]}")
                continue
            out["runs"].setdefault(stream, {})[system.name] = result
    return out
