"""Several consumer processes on one host (``--processes``) and static membership, for real.

Every test runs ``python -m consumer`` as an operator would, against the session's broker,
with a real bundle: nothing of Kafka or the model is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    Collector,
    Topics,
    held_out_articles,
    log_events,
    model_dir_serving,
    produce,
    publish_version,
    start_consumer,
    wait_exit,
    wait_for_log,
)
from tests.net import free_port, http_get, metric_value

READY_TIMEOUT_S = 240.0


def _messages(articles: list[tuple[str, str, str]]) -> list[tuple[bytes, bytes]]:
    return [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t, _ in articles]


def _event(name: str, **fields: Any) -> Any:
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())


def _events(log_path: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(log_path) if e.get("event") == name]


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def _high_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        return [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        c.close()


def test_two_processes_share_the_partitions_predict_once_reload_and_stop_gracefully(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    original = model_dir_serving(bbc_bundle, model_dir)
    articles = held_out_articles(bbc_bundle, bbc_csv)[:340]
    messages = _messages(articles)
    topics = Topics(new_topic("articles", partitions=4), new_topic("out"), new_topic("dlq"))
    group = f"procs-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        model_dir, kafka_bootstrap, topics, group, log_path,
        "--processes", "2", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        "--max-batch-size", "16", "--reload-interval-s", "0.5",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics)
    try:
        assert wait_for_log(log_path, _event("workers_ready"), READY_TIMEOUT_S), (
            log_path.read_text()[-3000:]
        )
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "tensorflow" not in maps, "the supervisor never loads TensorFlow"
        produce(kafka_bootstrap, topics.input, messages[:300])
        assert collector.poll_until(lambda c: len(c.predictions) >= 300, 180), log_path.read_text()[
            -3000:
        ]
        time.sleep(1.0)  # the last batches' counts reach the metric files
        ready = http_get(f"{base}/readyz")
        health = http_get(f"{base}/healthz")
        _, metrics = http_get(f"{base}/metrics")

        # A corrupt version is refused by both workers, which keep serving and say so.
        publish_version(model_dir, original, "v-corrupt", corrupt=True)
        assert wait_for_log(log_path, _event("model_refused", worker=0), 60)
        assert wait_for_log(log_path, _event("model_refused", worker=1), 60)
        time.sleep(1.5)  # a status interval
        refused_ready = http_get(f"{base}/readyz")
        _, refused_metrics = http_get(f"{base}/metrics")
        # A good version is swapped in by both.
        publish_version(model_dir, original, "v-next")
        for worker in (0, 1):
            assert wait_for_log(log_path, _event("model_swapped", worker=worker), 120)
        time.sleep(1.5)
        _, swapped_metrics = http_get(f"{base}/metrics")
        produce(kafka_bootstrap, topics.input, messages[300:])
        assert collector.poll_until(lambda c: len(c.predictions) >= len(messages), 120)

        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 90) == 0, log_path.read_text()[-3000:]
        collector.poll_until(lambda c: False, 2)  # anything more would be a duplicate
    finally:
        collector.close()

    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert set(per_id) == {a[0] for a in articles}
    assert max(per_id.values()) == 1, "no failure injected: every message predicted once"
    late = {p.value["model_version"] for p in collector.predictions if p.value["id"] in
            {a[0] for a in articles[300:]}}  # fmt: skip
    assert late == {"v-next"}

    # Both workers did part of the work; /metrics adds their counts up.
    done = _events(log_path, "batch_done")
    by_worker: Counter[int] = Counter()
    for e in done:
        by_worker[e["worker"]] += e["size"]
    assert set(by_worker) == {0, 1}, by_worker
    assert min(by_worker.values()) > 0
    assert ready[0] == 200, ready
    assert ready[1].splitlines()[0] == "ok"
    assert len(ready[1].splitlines()) == 3, "one line per worker"
    assert health[0] == 200, health
    assert metric_value(metrics, "classifier_messages_consumed_total") == 300
    assert metric_value(metrics, "classifier_predictions_total") == 300
    assert metric_value(metrics, "classifier_end_to_end_latency_seconds_count") == 300
    for name in ("0", "1"):
        assert metric_value(metrics, "classifier_model_info", version=original.name, worker=name)
        assert metric_value(metrics, "classifier_worker_ready", worker=name) == 1
        assert metric_value(swapped_metrics, "classifier_model_info", version="v-next", worker=name)
    assert refused_ready[0] == 200, "a refused model does not make a worker unready"
    assert refused_ready[1].count("refused model v-corrupt") == 2, refused_ready[1]
    assert metric_value(refused_metrics, "classifier_model_reloads_total", outcome="refused") == 2
    assert metric_value(swapped_metrics, "classifier_model_reloads_total", outcome="loaded") == 2

    # SIGTERM reached both workers: each finished, committed, stopped with 0.
    stopped = _events(log_path, "consumer_stopped")
    assert sorted(e["worker"] for e in stopped) == [0, 1]
    assert sum(e["consumed"] for e in stopped) == len(messages)
    exits = _events(log_path, "worker_exited")
    assert sorted((e["worker"], e["code"], e["expected"]) for e in exits) == [
        (0, 0, True),
        (1, 0, True),
    ]
    assert _committed(kafka_bootstrap, group, topics.input, 4) == _high_watermarks(
        kafka_bootstrap, topics.input, 4
    )


def test_a_killed_worker_is_restarted_and_the_stream_completes(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:240]
    messages = _messages(articles)
    topics = Topics(new_topic("articles", partitions=4), new_topic("out"), new_topic("dlq"))
    port = free_port()
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, f"kill-{uuid.uuid4().hex[:8]}", log_path,
        "--processes", "2", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        "--max-batch-size", "8",
        # the dead worker's partitions move once its session expires (dynamic membership)
        "--kafka", json.dumps({"session.timeout.ms": 10_000}),
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics)
    try:
        assert wait_for_log(log_path, _event("workers_ready"), READY_TIMEOUT_S), (
            log_path.read_text()[-3000:]
        )
        produce(kafka_bootstrap, topics.input, messages[:120])
        assert collector.poll_until(lambda c: len(c.predictions) >= 40, 120)
        started = next(e for e in _events(log_path, "worker_started") if e["worker"] == 1)
        os.kill(started["pid"], signal.SIGKILL)
        assert wait_for_log(log_path, _event("worker_started", worker=1, restarts=1), 60), (
            log_path.read_text()[-3000:]
        )
        produce(kafka_bootstrap, topics.input, messages[120:])
        ids = {a[0] for a in articles}
        assert collector.poll_until(lambda c: {p.value["id"] for p in c.predictions} >= ids, 240), (
            log_path.read_text()[-3000:]
        )
        time.sleep(1.0)
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 90) == 0, log_path.read_text()[-3000:]
    finally:
        collector.close()

    (crash,) = [e for e in _events(log_path, "worker_exited") if not e["expected"]]
    assert (crash["worker"], crash["code"]) == (1, -signal.SIGKILL)
    assert metric_value(metrics, "classifier_worker_restarts_total", worker="1") == 1
    assert metric_value(metrics, "classifier_worker_restarts_total", worker="0") == 0
    # The killed worker's counts survive it (its counter files stay; only live gauges go).
    assert metric_value(metrics, "classifier_messages_consumed_total") == len(messages)


def test_a_restarted_static_member_resumes_without_waiting_for_the_session_timeout(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    """SIGKILL a static member; its restart gets its partitions back at once.

    A dynamic member restarted like this would wait until the dead member's session
    expires (60 s here) before the group could rebalance.
    """
    session_timeout_s = 60
    articles = held_out_articles(bbc_bundle, bbc_csv)[:100]
    messages = _messages(articles)
    topics = Topics(new_topic("articles", partitions=2), new_topic("out"), new_topic("dlq"))
    group = f"static-{uuid.uuid4().hex[:8]}"
    args = (
        "--group-instance-id", "pod-0",
        "--kafka", json.dumps({"session.timeout.ms": session_timeout_s * 1000}),
        "--max-batch-size", "8",
    )  # fmt: skip
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        produce(kafka_bootstrap, topics.input, messages[:50])
        first = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, first_log, *args)
        assert collector.poll_until(lambda c: len(c.predictions) >= 10, READY_TIMEOUT_S), (
            first_log.read_text()[-3000:]
        )
        first.kill()
        first.wait(10)
        killed_at = time.time()
        produce(kafka_bootstrap, topics.input, messages[50:])
        second = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, second_log, *args)
        ids = {a[0] for a in articles}
        assert collector.poll_until(
            lambda c: {p.value["id"] for p in c.predictions} >= ids, READY_TIMEOUT_S
        ), second_log.read_text()[-3000:]
        second.send_signal(signal.SIGTERM)
        assert wait_exit(second, 60) == 0
    finally:
        collector.close()

    started = _events(second_log, "consumer_started")[0]
    assigned = _events(second_log, "partitions_assigned")[0]
    first_batch = _events(second_log, "batch_done")[0]
    join_s = _stamp(assigned) - _stamp(started)
    assert join_s < 10, f"joined after {join_s:.1f} s: it waited for a rebalance"
    assert sorted(assigned["partitions"]) == [f"{topics.input}[0]", f"{topics.input}[1]"]
    assert _stamp(first_batch) - killed_at < session_timeout_s - 10


def test_supervisor_start_up_checks_fail_with_code_2_before_any_worker(
    kafka_bootstrap: str, bbc_bundle: Path, tmp_path: Path
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, Topics(missing, missing + "-out", missing + "-dlq"), "g",
        log_path, "--processes", "2",
    )  # fmt: skip
    assert wait_exit(proc, 60) == 2
    (failure,) = _events(log_path, "startup_failed")
    assert "do not exist" in failure["error"]
    assert not _events(log_path, "worker_started")
