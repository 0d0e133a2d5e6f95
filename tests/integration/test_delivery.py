"""Delivery guarantees against a real broker: crashes, transactions, rebalances, outages."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from deploy import local_kafka
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    Collector,
    Topics,
    held_out_articles,
    log_events,
    offsets_in_order,
    produce,
    start_consumer,
    wait_exit,
    wait_for_log,
)

BAD: list[tuple[bytes, bytes | None]] = [
    (b"bad-json", b'{"id": "x", "text": '),
    (b"bad-text", b'{"id": "x", "text": " "}'),
    (b"bad-version", b'{"id": "x", "text": "fine text", "schema_version": 9}'),
    (b"bad-null", None),
]


#: Messages produced before the first consumer starts; the rest follow its SIGKILL.
MID_STREAM = 300


def _messages(articles: list[tuple[str, str, str]]) -> list[tuple[bytes, bytes | None]]:
    """Articles keyed by 25 'tickets' (several messages per key, to check per-key order)."""
    keyed = [
        (f"ticket-{n % 25}".encode(), json.dumps({"id": i, "text": t}).encode())
        for n, (i, t, _) in enumerate(articles)
    ]
    return keyed[:150] + BAD[:2] + keyed[150:300] + BAD[2:] + keyed[300:]


def _kill_mid_stream_then_resume(
    bootstrap: str,
    topics: Topics,
    bundle: Path,
    log_path: Path,
    collector: Collector,
    articles: list[tuple[str, str, str]],
    extra: tuple[str, ...] = (),
) -> int:
    """Produce the first :data:`MID_STREAM` of the articles' messages, SIGKILL the consumer
    after its first predictions, produce the rest, restart it, wait for all. Returns how
    many predictions the killed run had made visible.

    The rest is produced only after the kill, so the kill always comes mid-stream however
    fast the first consumer drains what was there (a race the collector's polling lost).
    """
    messages, n_valid = _messages(articles), len(articles)
    produce(bootstrap, topics.input, messages[:MID_STREAM])
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = start_consumer(
        bundle, bootstrap, topics, group, log_path, "--max-batch-size", "16", *extra
    )
    assert collector.poll_until(lambda c: len(c.predictions) >= 40, 120), log_path.read_text()[
        -2000:
    ]
    first.send_signal(signal.SIGKILL)
    wait_exit(first)
    collector.poll_until(lambda c: False, 2)
    before_restart = len({p.value["id"] for p in collector.predictions})
    assert before_restart < n_valid, "the kill must come mid-stream"
    produce(bootstrap, topics.input, messages[MID_STREAM:])

    second = start_consumer(
        bundle, bootstrap, topics, group, log_path, "--max-batch-size", "64", *extra
    )
    done = collector.poll_until(
        lambda c: (
            len({p.value["id"] for p in c.predictions}) >= n_valid
            and len(c.dead_letters) >= len(BAD)
        ),
        180,
    )
    second.send_signal(signal.SIGTERM)
    assert wait_exit(second) == 0, log_path.read_text()[-2000:]
    assert done, log_path.read_text()[-3000:]
    collector.poll_until(lambda c: False, 3)
    return before_restart


def test_at_least_once_survives_sigkill(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)
    topics = Topics(new_topic("in"), new_topic("out"), new_topic("dlq"))
    collector = Collector(kafka_bootstrap, topics)
    try:
        _kill_mid_stream_then_resume(
            kafka_bootstrap, topics, bbc_bundle, tmp_path / "c.log", collector, articles
        )
    finally:
        collector.close()
    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert set(per_id) == {a[0] for a in articles}, "every valid input has a prediction"
    assert {d.key for d in collector.dead_letters} == {k for k, _ in BAD}
    assert offsets_in_order(collector.predictions, key_of=lambda o: o.key)
    duplicates = sum(per_id.values()) - len(per_id)
    print(f"at-least-once after SIGKILL: {len(per_id)} inputs, {duplicates} duplicates")


def test_exactly_once_survives_sigkill(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)
    topics = Topics(new_topic("in"), new_topic("out"), new_topic("dlq"))
    collector = Collector(kafka_bootstrap, topics, read_committed=True)
    txn = ("--exactly-once", "--transactional-id", f"txn-{uuid.uuid4().hex[:8]}")
    try:
        _kill_mid_stream_then_resume(
            kafka_bootstrap, topics, bbc_bundle, tmp_path / "c.log", collector, articles, txn
        )
    finally:
        collector.close()
    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert set(per_id) == {a[0] for a in articles}
    assert max(per_id.values()) == 1, "read_committed sees exactly one prediction per input"
    dead = Counter(d.key for d in collector.dead_letters)
    assert dead == Counter(k for k, _ in BAD), "and exactly one dead letter per bad input"
    assert offsets_in_order(collector.predictions, key_of=lambda o: o.key)


def test_rebalance_commits_revoked_work_before_giving_it_up(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    """A runs alone; B joins while messages flow; A leaves; B finishes the stream."""
    articles = held_out_articles(bbc_bundle, bbc_csv)
    messages = _messages(articles)
    first_part, last_part = messages[:300], messages[300:]
    topics = Topics(new_topic("in", partitions=6), new_topic("out"), new_topic("dlq"))
    group = f"g-{uuid.uuid4().hex[:8]}"
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a_gone = threading.Event()

    def traffic() -> None:  # a steady flow while B joins; the rest once A has left
        for i in range(0, len(first_part), 10):
            produce(kafka_bootstrap, topics.input, first_part[i : i + 10])
            time.sleep(0.25)
        a_gone.wait(120)
        produce(kafka_bootstrap, topics.input, last_part)

    collector = Collector(kafka_bootstrap, topics)
    a = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, log_a, "--max-batch-size", "8")
    producer = threading.Thread(target=traffic, daemon=True)
    try:
        producer.start()
        assert collector.poll_until(lambda c: len(c.predictions) > 0, 120), log_a.read_text()
        b = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, group, log_b, "--max-batch-size", "8"
        )
        joined = wait_for_log(
            log_b, lambda e: e.get("event") == "partitions_assigned" and e["partitions"], 120
        )
        assert joined, log_b.read_text()[-3000:]
        a.send_signal(signal.SIGTERM)
        assert wait_exit(a) == 0, log_a.read_text()[-2000:]
        a_gone.set()
        producer.join(60)
        done = collector.poll_until(
            lambda c: len({p.value["id"] for p in c.predictions}) >= len(articles), 120
        )
        b.send_signal(signal.SIGTERM)
        assert wait_exit(b) == 0, log_b.read_text()[-2000:]
        assert done, log_b.read_text()[-3000:]
        collector.poll_until(lambda c: False, 3)
    finally:
        collector.close()
    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert set(per_id) == {x[0] for x in articles}
    assert max(per_id.values()) == 1, "revoked partitions were committed before handover"
    assert offsets_in_order(collector.predictions, key_of=lambda o: o.key)
    events_a, events_b = log_events(log_a), log_events(log_b)
    revokes_a = [e for e in events_a if e["event"] == "partitions_revoked"]
    assert len(revokes_a) >= 2, "A gave partitions to B on join, and the rest on leaving"
    assert any(e["event"] == "batch_done" for e in events_a)
    assert any(e["event"] == "batch_done" for e in events_b)
    assert not any(e["event"] == "partitions_lost" for e in events_a + events_b)


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java to run its own broker")
def test_broker_outage_is_ridden_out(
    tmp_path: Path, bbc_bundle: Path, bbc_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A broker of its own is stopped mid-stream and started again; nothing is lost."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    state = tmp_path_factory.mktemp("outage-kafka")
    port = local_kafka.find_free_port_pair()
    bootstrap = local_kafka.start(port=port, state_dir=state, timeout_s=120)
    proc = None
    collector = None
    try:
        topics = Topics("in", "out", "dlq")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(t, 3, 1) for t in ("in", "out", "dlq")]).values():
            f.result(30)
        articles = held_out_articles(bbc_bundle, bbc_csv)
        messages = _messages(articles)
        half = len(messages) // 2
        produce(bootstrap, topics.input, messages[:half])
        log_path = tmp_path / "c.log"
        proc = start_consumer(
            bbc_bundle, bootstrap, topics, "g", log_path, "--max-batch-size", "16"
        )
        collector = Collector(bootstrap, topics)
        assert collector.poll_until(lambda c: len(c.predictions) >= 20, 120)

        local_kafka.stop(state_dir=state)  # the outage
        time.sleep(5)
        assert proc.poll() is None, "the consumer rides out the outage"
        local_kafka.start(port=port, state_dir=state, timeout_s=120)
        produce(bootstrap, topics.input, messages[half:])

        done = collector.poll_until(
            lambda c: len({p.value["id"] for p in c.predictions}) >= len(articles), 240
        )
        assert proc.poll() is None, log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 90) == 0, log_path.read_text()[-3000:]
        assert done, log_path.read_text()[-3000:]
    finally:
        if collector is not None:
            collector.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
        local_kafka.stop(state_dir=state, wipe=True)
    assert {p.value["id"] for p in collector.predictions} == {a[0] for a in articles}
