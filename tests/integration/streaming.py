"""Helpers for end-to-end tests: run ``python -m consumer`` as a process, produce, collect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Consumer processes started by tests; the ``_reap_consumers`` fixture kills leftovers.
STARTED: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class Topics:
    """The three topics one consumer under test reads and writes."""

    input: str
    output: str
    dead_letter: str


@dataclass
class Output:
    """One record read back from an output or dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]


def output_of(message: Any) -> Output:
    """A consumed output or dead-letter record as :class:`Output` (asserts it is complete)."""
    assert message.error() is None, message.error()
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    value = message.value()
    assert topic is not None
    assert partition is not None
    assert offset is not None
    assert value is not None
    return Output(topic, partition, offset, message.key(), json.loads(value))


def start_consumer(
    bundle: Path,
    bootstrap: str,
    topics: Topics,
    group_id: str,
    log_path: Path,
    *extra_args: str,
) -> subprocess.Popen[bytes]:
    """Start the service as a separate process (as an operator would), logging to ``log_path``."""
    args = [
        sys.executable, "-m", "consumer",
        "--bundle", str(bundle),
        "--bootstrap-servers", bootstrap,
        "--input-topic", topics.input,
        "--output-topic", topics.output,
        "--dead-letter-topic", topics.dead_letter,
        "--group-id", group_id,
        *extra_args,
    ]  # fmt: skip
    if "--metrics-port" not in extra_args:
        args += ["--metrics-port", "0"]  # several consumers may run at once
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=log, env=env)
    STARTED.append(proc)
    return proc


def log_events(log_path: Path) -> list[dict[str, Any]]:
    """The JSON log lines the consumer wrote (non-JSON lines skipped)."""
    events = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    config: dict[str, Any] | None = None,
) -> int:
    """Produce ``(key, value)`` pairs with acks=all and wait for every ack; returns the count.

    ``config`` adds producer properties (e.g. ``message.max.bytes`` for large records).
    """
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **(config or {})}
    )
    failures: list[str] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    n = 0
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
        n += 1
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} test messages not acknowledged"
    assert not failures, failures
    return n


class Collector:
    """Reads the output, dead-letter (and review) topics from the beginning, in its own group.

    Args:
        read_committed: Read only committed transactional records (exactly-once checks).
        review_topic: Also collect this topic into ``reviews``.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        read_committed: bool = False,
        review_topic: str | None = None,
    ) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        self._consumer.subscribe(
            [topics.output, topics.dead_letter, *([review_topic] if review_topic else [])]
        )
        self.topics = topics
        self.review_topic = review_topic
        self.predictions: list[Output] = []
        self.dead_letters: list[Output] = []
        self.reviews: list[Output] = []

    def poll_until(self, done: Callable[[Collector], bool], timeout_s: float) -> bool:
        """Read until ``done(self)`` is true or ``timeout_s`` passes; returns ``done(self)``."""
        deadline = time.monotonic() + timeout_s
        while not done(self) and time.monotonic() < deadline:
            for m in self._consumer.consume(500, 0.5):
                out = output_of(m)
                if out.topic == self.topics.output:
                    self.predictions.append(out)
                elif out.topic == self.review_topic:
                    self.reviews.append(out)
                else:
                    self.dead_letters.append(out)
        return done(self)

    def close(self) -> None:
        """Leave the collector's group."""
        self._consumer.close()


def held_out_articles(bundle_dir: Path, csv_path: Path) -> list[tuple[str, str, str]]:
    """``(id, text, true label)`` of the BBC rows a bundle was evaluated on (its split.json)."""
    from model import load_bundle
    from training.data import load_csv
    from training.fit import SPLIT_FILE

    split = json.loads((load_bundle(bundle_dir).path / SPLIT_FILE).read_text())
    data = load_csv(csv_path, "text", "category")
    return [(f"bbc-{i}", data.texts[i], data.labels[i]) for i in split["test_indices"]]


def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """Wait for a process to exit; kill it and fail if it does not within ``timeout_s``."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def offsets_in_order(outputs: list[Output], key_of: Callable[[Output], object]) -> bool:
    """True when, per key, the input offsets of ``outputs`` (first occurrences) only increase."""
    seen: dict[object, list[int]] = {}
    for o in outputs:
        offsets = seen.setdefault(key_of(o), [])
        offset = int(o.value["source"]["offset"])
        if offset not in offsets:
            offsets.append(offset)
    return all(v == sorted(v) for v in seen.values())


def wait_for_log(path: Path, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> bool:
    """Wait until the consumer's JSON log has an event matching ``predicate``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and any(predicate(e) for e in log_events(path)):
            return True
        time.sleep(0.2)
    return False


def publish_version(model_dir: Path, source: Path, version: str, corrupt: bool = False) -> None:
    """Copy bundle ``source`` into ``model_dir`` as ``version`` (optionally corrupt) and point
    ``current`` at it, as ``training.fit`` publishes a new version."""
    from model.bundle import MANIFEST, VOCABULARY_FILE, point_current

    target = model_dir / version
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["version"] = version
    (target / MANIFEST).write_text(json.dumps(manifest))
    if corrupt:
        with (target / VOCABULARY_FILE).open("a") as f:
            f.write("garbage")
    point_current(model_dir, version)


def model_dir_serving(bundle_dir: Path, model_dir: Path) -> Path:
    """A fresh model directory whose ``current`` is a copy of ``bundle_dir``'s current
    version (so tests can publish more versions beside it); returns that version's source."""
    from model.bundle import CURRENT, point_current

    original = (bundle_dir / CURRENT).resolve()
    model_dir.mkdir()
    shutil.copytree(original, model_dir / original.name)
    point_current(model_dir, original.name)
    return original
