"""Scale chaos against the real broker: a consumer group that grows, shrinks and reloads.

Three separate ``python -m consumer`` processes (A, B, C) share one consumer group on a
6-partition input topic carrying held-out BBC articles, keyed: :data:`KEYS` keys, each with
its own run of sequence numbers (message id ``k07#0012`` is key ``k07``'s 13th message).
While the stream flows, one member is SIGKILLed, a fourth is added, another is SIGTERMed
and a new model version is published into the model directory they all watch. Each step
waits for an event (a log line, a prediction count, a process exit) with a deadline, never
for a fixed time, and messages are produced just before each step so that every step
happens mid-stream:

1. start A, B, C; produce part 1; wait until the three share the six partitions and every
   key has a prediction (which tells each key's input partition);
2. produce part 2 on the keys of A's partitions only, and **SIGKILL A** as soon as it has
   produced a whole micro-batch of it (its ``--log-level DEBUG`` lines say so) and the
   first prediction of that batch is on the broker. The batch's flush and offset commit
   (or transaction commit) take a few milliseconds more, so the kill often lands before
   they finish (a race): under at-least-once the batch is then predicted twice, under
   exactly-once its transaction stays open until the broker aborts it; either way the
   rest of part 2 is behind it, uncommitted (the printed summary line says what happened).
   Start D, produce part 3 (A's partitions now hold messages only a survivor can read);
3. wait until A's partitions are owned again and **D** owns some; produce part 4 and wait
   for D's first committed batch;
4. produce part 5, **SIGTERM B** and **publish** version ``v-next`` at once; B must exit 0;
5. produce part 6 (wave 1 ends) and wait until **every live member** (C, D) has logged
   ``model_swapped`` to ``v-next``;
6. produce **wave 2**: it exists only after every live member serves ``v-next``, so
   every prediction of a wave-2 message must name ``v-next``;
7. wait until every message has a prediction, SIGTERM C and D (exit 0), read the output
   topic to its end.

Checks, in both modes:

* **completeness**: every message has a prediction; nothing is dead-lettered;
* **at-least-once**: duplicates are allowed and counted (the assertion messages and the
  printed summary say how many); **exactly-once** (``--exactly-once``, every process its
  own ``--transactional-id``): a ``read_committed`` reader sees exactly one prediction per
  message;
* **per-key order**: for each key, take its predictions in output order (a key's
  predictions all go to one output partition, so that order is the partition's) and the
  sequence numbers ``s1, s2, …`` they name. Then ``s1 == 0`` and every step is either
  ``s(i+1) == s(i) + 1`` (the next message) or ``s(i+1) <= s(i)`` (a **replay**: the
  partition was read again from its last committed offset after a crash). So the first
  occurrences of the sequence numbers are in increasing order with no gap, and a duplicate
  may only appear as part of a replay, which itself runs in order from where it starts.
  Under exactly-once no replay is allowed: the numbers are exactly ``0, 1, 2, …``;
* **reload**: every prediction of a wave-2 message names ``v-next``; wave-1 predictions
  name the original version or ``v-next``.

CI-sized (about 30 s a mode on 2 cores): 500 messages, ``--max-batch-size 16``,
``--max-wait-ms 20``, ``session.timeout.ms`` 6 s (the broker's minimum, so A's partitions
are handed on soon after the SIGKILL), a 0.5 s reload interval, one engine worker and one
TensorFlow inter-op thread per process (as ``--processes`` gives each worker on a 2-core
host). Under exactly-once ``--flush-timeout-s 10`` also makes the transaction timeout 10 s:
A is not restarted, so a transaction it left open when it was killed blocks
``read_committed`` readers of the partitions it wrote (and, had it sent its offsets, the
new owner of its input partitions) until the broker aborts it: 10 s plus up to the broker's
10 s abort check (``transaction.abort.timed.out.transaction.cleanup.interval.ms``); with
the default 120 s flush timeout that would be over two minutes.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    Output,
    Topics,
    held_out_articles,
    log_events,
    model_dir_serving,
    output_of,
    produce,
    publish_version,
    start_consumer,
    wait_exit,
)

#: Input partitions; with four members at most, every member can own some.
PARTITIONS = 6
#: Keys of the input messages; each key has its own run of sequence numbers.
KEYS = 30
#: Wave-1 parts, produced before the steps of the module docstring (500 messages in all).
PARTS = (80, 80, 80, 60, 60, 40)
#: Wave 2: produced once every live member serves the new version.
WAVE_2 = 100
NEW_VERSION = "v-next"
#: Deadline of each step (s); generous, since 2 shared cores may be busy with other jobs.
STEP_TIMEOUT_S = 120.0
#: librdkafka's session and heartbeat for the members: the broker's minimum session.
GROUP_TIMING = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


# ----------------------------------------------------------------------------- the input


@dataclass(frozen=True)
class Message:
    """One input message: ``key``'s ``seq``-th, carrying one article's text."""

    key: str
    seq: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.key}#{self.seq:04d}"

    def record(self) -> tuple[bytes, bytes]:
        return self.key.encode(), json.dumps({"id": self.id, "text": self.text}).encode()


def _parse_id(message_id: str) -> tuple[str, int]:
    key, _, seq = message_id.partition("#")
    return key, int(seq)


class Stream:
    """The input messages: made part by part, each key numbering its own messages from 0.

    Article texts are taken in turn (and reused once all have been); ``wave_2_ids`` are the
    ids produced after every live member serves the new version.
    """

    def __init__(self, bootstrap: str, topic: str, texts: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.keys = [f"k{i:02d}" for i in range(KEYS)]
        self.messages: list[Message] = []
        self.wave_2_ids: set[str] = set()
        self._texts = texts
        self._next_seq = dict.fromkeys(self.keys, 0)

    def take(self, n: int, keys: list[str] | None = None) -> list[Message]:
        """The next ``n`` messages, round robin over ``keys`` (default: every key)."""
        chosen = keys or self.keys
        part = []
        for i in range(n):
            key = chosen[i % len(chosen)]
            text = self._texts[len(self.messages) % len(self._texts)]
            part.append(Message(key, self._next_seq[key], text))
            self.messages.append(part[-1])
            self._next_seq[key] += 1
        return part

    def send(self, part: list[Message]) -> None:
        """Produce ``part`` (acks=all) and wait for every acknowledgement."""
        produce(self.bootstrap, self.topic, [m.record() for m in part])

    def produce(self, n: int, wave: int = 1) -> None:
        """Make and send the next ``n`` messages over every key."""
        part = self.take(n)
        self.send(part)
        if wave == 2:
            self.wave_2_ids.update(m.id for m in part)

    @property
    def ids(self) -> set[str]:
        return {m.id for m in self.messages}


# ----------------------------------------------------------------------------- the members


@dataclass
class Member:
    """One ``python -m consumer`` process of the group, and its JSON log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in log_events(self.log) if name is None or e.get("event") == name]

    def owned(self) -> set[int]:
        """Input partitions it owns now, from its incremental (cooperative) rebalance lines."""
        owned: set[int] = set()
        for e in self.events():
            kind = e.get("event")
            if kind not in ("partitions_assigned", "partitions_revoked", "partitions_lost"):
                continue
            partitions = {int(p.rsplit("[", 1)[1].rstrip("]")) for p in e["partitions"]}
            if kind == "partitions_assigned":
                owned |= partitions
            else:
                owned -= partitions
        return owned

    def serving(self) -> str | None:
        """The model version it serves now, by its log (start-up, then each swap)."""
        version = None
        for e in self.events():
            if e.get("event") in ("consumer_started", "model_swapped"):
                version = e.get("model_version")
        return version

    def tail(self, chars: int = 1500) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log.name}), last {chars} chars:\n{text[-chars:]}"


def _tails(members: list[Member]) -> str:
    return "\n".join(m.tail() for m in members)


def _wait(condition: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S) -> bool:
    """Poll ``condition`` every 0.2 s until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _batch_size(event: dict[str, Any]) -> int:
    """Records in a ``batch_started`` line's batch (``topic[p]@first-last`` ranges)."""
    total = 0
    for described in event["offsets"]:
        first, last = described.rsplit("@", 1)[1].split("-")
        total += int(last) - int(first) + 1
    return total


def produced_batch(member: Member, ids: set[str], timeout_s: float = STEP_TIMEOUT_S) -> set[str]:
    """Wait until ``member`` (started with ``--log-level DEBUG``) has produced every
    prediction of a micro-batch carrying one of ``ids``; return that batch's message ids.

    Its DEBUG log has a ``batch_started`` line per batch (with its offsets) and a
    ``predicted`` line per record as it is produced, one batch after the other; the batch's
    flush and commit (or transaction commit) come right after its last ``predicted`` line.
    Returns an empty set if no such batch is produced within ``timeout_s``.
    """
    sizes: deque[int] = deque()  # started batches whose predictions are not all out yet
    batch: set[str] = set()
    read = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with member.log.open("rb") as f:
            f.seek(read)
            chunk = f.read()
        chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
        read += len(chunk)
        for line in chunk.decode("utf-8", errors="replace").splitlines():
            if '"batch_started"' not in line and '"predicted"' not in line:
                continue
            event = json.loads(line)
            if event["event"] == "batch_started":
                sizes.append(_batch_size(event))
            elif event["event"] == "predicted" and sizes:
                batch.add(event["id"])
                if len(batch) == sizes[0]:
                    if batch & ids:
                        return batch
                    sizes.popleft()
                    batch = set()
        time.sleep(0.001)
    return set()


# ----------------------------------------------------------------------------- the output


class Reader:
    """Reads the output and dead-letter topics from their start (no group, no commits).

    Args:
        read_committed: Only committed transactional records (the exactly-once check).
    """

    def __init__(self, bootstrap: str, topics: Topics, read_committed: bool) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"scale-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                # Short fetch long-polls: a watermark query waits behind the fetch in flight.
                "fetch.wait.max.ms": 50,
            }
        )
        metadata = self._consumer.list_topics(timeout=10)
        self._partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in (topics.output, topics.dead_letter)
            for p in metadata.topics[topic].partitions
        ]
        self._consumer.assign(self._partitions)
        self._output = topics.output
        self.predictions: list[Output] = []
        self.dead_letters: list[Output] = []

    def ids(self) -> set[str]:
        return {p.value["id"] for p in self.predictions}

    def keys(self) -> set[str]:
        return {_parse_id(p.value["id"])[0] for p in self.predictions}

    def poll(self, timeout_s: float = 0.2, batch: int = 500) -> None:
        """Read what comes within ``timeout_s``, or the first ``batch`` records."""
        for m in self._consumer.consume(batch, timeout_s):
            out = output_of(m)
            (self.predictions if out.topic == self._output else self.dead_letters).append(out)

    def poll_until(
        self,
        done: Callable[[Reader], bool],
        timeout_s: float,
        batch: int = 500,
        poll_s: float = 0.2,
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done(self) and time.monotonic() < deadline:
            self.poll(poll_s, batch)
        return done(self)

    def read_to_end(self, timeout_s: float) -> bool:
        """Read up to the topics' current ends (the last stable offsets when read_committed).

        A partition that holds nothing readable never gets a position; it counts as read.
        """
        ends = [self._consumer.get_watermark_offsets(tp, timeout=10) for tp in self._partitions]

        def at_end(_: Reader) -> bool:
            positions = self._consumer.position(self._partitions)
            return all(
                high <= low or p.offset >= high
                for p, (low, high) in zip(positions, ends, strict=True)
            )

        return self.poll_until(at_end, timeout_s)

    def close(self) -> None:
        self._consumer.close()


def order_problems(predictions: list[Output], replays_allowed: bool) -> tuple[list[str], int]:
    """What breaks the per-key order rule of the module docstring; and the replays seen."""
    problems: list[str] = []
    replays = 0
    seqs: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for p in sorted(predictions, key=lambda o: (o.partition, o.offset)):
        key, seq = _parse_id(p.value["id"])
        assert p.key == key.encode(), f"prediction of {p.value['id']} keyed {p.key!r}"
        seqs[key].append(seq)
        partitions[key].add(p.partition)
    for key, numbers in sorted(seqs.items()):
        if len(partitions[key]) > 1:
            problems.append(f"{key}: predictions in output partitions {sorted(partitions[key])}")
            continue
        if numbers[0] != 0:
            problems.append(f"{key}: first prediction is #{numbers[0]}, not #0: {numbers}")
        for before, after in itertools.pairwise(numbers):
            if after == before + 1:
                continue
            if after <= before and replays_allowed:
                replays += 1
                continue
            what = "replay" if after <= before else "gap"
            problems.append(f"{key}: #{before} followed by #{after} ({what}) in {numbers}")
            break
    return problems, replays


# ----------------------------------------------------------------------------- the test


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_group_scales_loses_members_and_reloads_mid_stream(
    exactly_once: bool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    began = time.monotonic()
    marks: dict[str, float] = {}

    def mark(step: str) -> None:
        marks[step] = round(time.monotonic() - began, 1)

    model_dir = tmp_path / "models"
    original = model_dir_serving(bbc_bundle, model_dir)
    texts = [text for _, text, _ in held_out_articles(bbc_bundle, bbc_csv)]
    topics = Topics(
        new_topic("articles", partitions=PARTITIONS), new_topic("out"), new_topic("dlq")
    )
    stream = Stream(kafka_bootstrap, topics.input, texts)
    group = f"scale-{uuid.uuid4().hex[:8]}"
    # One core's worth of threads per process, as --processes gives each worker.
    monkeypatch.setenv("CLASSIFIER_ENGINE_WORKERS", "1")
    monkeypatch.setenv("CLASSIFIER_TF_INTER_OP_THREADS", "1")

    def start(name: str, *more: str) -> Member:
        log = tmp_path / f"{name}.log"
        extra = [*more,
            "--client-id", f"{group}-{name}",
            "--max-batch-size", "16", "--max-wait-ms", "20",
            "--reload-interval-s", "0.5", "--stats-interval-ms", "0",
            "--kafka", json.dumps(GROUP_TIMING),
        ]  # fmt: skip
        if exactly_once:  # each process its own transactional id (the default would be shared)
            extra += ["--exactly-once", "--transactional-id", f"{group}-{name}-txn"]
            extra += ["--flush-timeout-s", "10"]  # transaction.timeout.ms follows: 10 s
        proc = start_consumer(model_dir, kafka_bootstrap, topics, group, log, *extra)
        return Member(name, proc, log)

    # ``reader`` is the checked view; under exactly-once ``raw`` (read_uncommitted) also
    # sees the predictions of aborted transactions, which ``reader`` must never see.
    reader = Reader(kafka_bootstrap, topics, read_committed=exactly_once)
    raw = Reader(kafka_bootstrap, topics, read_committed=False) if exactly_once else reader
    a_keys: list[str] = []
    try:
        # 1. three members share the six partitions while part 1 flows
        # A logs each prediction as it produces it (DEBUG): that times its SIGKILL
        a, b, c = start("a", "--log-level", "DEBUG"), start("b"), start("c")
        members = [a, b, c]
        stream.produce(PARTS[0])
        everything = set(range(PARTITIONS))

        def shared(live: list[Member]) -> bool:
            owned = [m.owned() for m in live]
            return all(owned) and set[int]().union(*owned) == everything

        assert _wait(lambda: shared([a, b, c])), "A, B and C never shared the partitions\n" + (
            _tails(members)
        )
        mark("three_sharing")
        every_key = set(stream.keys)
        assert raw.poll_until(lambda r: r.keys() >= every_key, STEP_TIMEOUT_S), (
            f"part 1 not predicted for every key: {sorted(every_key - raw.keys())}\n"
            + _tails(members)
        )
        partition_of = {p.value["id"].split("#")[0]: p.value["source"]["partition"]
                        for p in raw.predictions}  # fmt: skip

        # 2. SIGKILL A while it works through part 2, which only A's partitions carry
        a_partitions = a.owned()
        a_keys = [k for k in stream.keys if partition_of[k] in a_partitions] or stream.keys
        part_2 = stream.take(PARTS[1], a_keys)
        part_2_ids = {m.id for m in part_2}
        sender = threading.Thread(target=stream.send, args=(part_2,))
        sender.start()
        # once a batch of part 2 is produced and its first prediction is on the broker, i.e.
        # (if the kill is quick enough) before that batch is committed
        in_flight = produced_batch(a, part_2_ids)
        written = raw.poll_until(lambda r: bool(r.ids() & in_flight), 10, batch=1, poll_s=0.0005)
        a.proc.send_signal(signal.SIGKILL)
        sender.join(60)
        assert in_flight, "A never produced a batch of part 2\n" + a.tail(3000)
        assert written, f"A's batch {sorted(in_flight)} never reached the output topic"
        wait_exit(a.proc, 30)
        mark("a_killed")
        d = start("d")
        members.append(d)
        stream.produce(PARTS[2])

        # 3. A's partitions are owned again, D has some and commits a batch
        live = [b, c, d]
        assert _wait(lambda: shared(live)), (
            f"A's partitions {sorted(a_partitions)} not taken over, or D owns none: "
            f"{ {m.name: sorted(m.owned()) for m in live} }\n" + _tails(members)
        )
        mark("a_replaced_d_joined")
        stream.produce(PARTS[3])
        assert _wait(lambda: bool(d.events("batch_done"))), "D never committed a batch\n" + (
            _tails(members)
        )
        mark("d_working")

        # 4. SIGTERM B and publish the new version at once, mid-stream
        stream.produce(PARTS[4])
        b.proc.send_signal(signal.SIGTERM)
        publish_version(model_dir, original, NEW_VERSION)
        mark("b_terminated_v_next_published")
        assert wait_exit(b.proc, 60) == 0, "B did not stop gracefully\n" + b.tail(3000)
        mark("b_exited")

        # 5. every live member serves the new version
        stream.produce(PARTS[5])
        live = [c, d]
        assert _wait(lambda: all(m.serving() == NEW_VERSION for m in live)), (
            f"not every live member serves {NEW_VERSION}: "
            f"{ {m.name: m.serving() for m in live} }\n" + _tails(live)
        )
        mark("all_live_serve_v_next")

        # 6. wave 2, then everything predicted
        stream.produce(WAVE_2, wave=2)
        wanted = stream.ids
        done = reader.poll_until(lambda r: r.ids() >= wanted, STEP_TIMEOUT_S)
        mark("all_predicted")
        missing = sorted(wanted - reader.ids())
        assert done, (
            f"{len(missing)} of {len(wanted)} messages have no prediction, e.g. {missing[:10]}\n"
            + _tails(members)
        )

        # 7. C and D stop gracefully; read the output to its end
        for m in live:
            m.proc.send_signal(signal.SIGTERM)
        for m in live:
            assert wait_exit(m.proc, 60) == 0, f"{m.name} did not stop gracefully\n" + m.tail(3000)
        mark("c_d_exited")
        for view in {id(reader): reader, id(raw): raw}.values():
            assert view.read_to_end(60), "the output topics could not be read to their end"
        mark("stopped_and_read")
    finally:
        reader.close()
        if raw is not reader:
            raw.close()

    per_id = Counter(p.value["id"] for p in reader.predictions)
    duplicates = {i: n - 1 for i, n in per_id.items() if n > 1}
    problems, replays = order_problems(reader.predictions, replays_allowed=not exactly_once)
    versions = Counter(p.value["model_version"] for p in reader.predictions)
    stale = sorted(
        f"{p.value['id']} ({p.value['model_version']}, input partition "
        f"{p.value['source']['partition']})"
        for p in reader.predictions
        if p.value["id"] in stream.wave_2_ids and p.value["model_version"] != NEW_VERSION
    )
    lost = {m.name: len(m.events("partitions_lost")) for m in members}
    summary = (
        f"{'exactly' if exactly_once else 'at-least'}-once: {len(per_id)} messages, "
        f"{len(reader.predictions)} predictions, {sum(duplicates.values())} duplicates "
        f"({len(duplicates)} messages), {replays} replays, "
        + (
            f"{len(raw.predictions) - len(reader.predictions)} predictions of aborted "
            "transactions (read_uncommitted only), "
            if exactly_once
            else ""
        )
        + f"A's keys {len(a_keys)}, versions {dict(versions)}, "
        f"partitions_lost {lost}, steps at {marks} s"
    )
    print(summary)

    extra = sorted(set(per_id) - stream.ids)
    assert not extra, f"predictions of messages never produced: {extra[:10]}"
    assert not reader.dead_letters, [d.value for d in reader.dead_letters[:3]]
    failed = {m.name: m.events("consumer_failed") for m in members if m.events("consumer_failed")}
    assert not failed, failed
    if exactly_once:
        assert not duplicates, (
            f"read_committed saw {sum(duplicates.values())} duplicate predictions: "
            f"{sorted(duplicates.items())[:10]} ({summary})"
        )
    assert not problems, f"per-key order broken: {problems[:5]} ({summary})"
    assert not stale, (
        f"{len(stale)} wave-2 predictions were made by another version than {NEW_VERSION}, "
        f"although every live member had swapped before wave 2 was produced: {stale[:10]} "
        f"({summary})"
    )
    assert set(versions) <= {original.name, NEW_VERSION}, summary
    assert versions[original.name] > 0, f"the original version never served ({summary})"
