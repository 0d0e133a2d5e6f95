"""Operating the consumer against a real broker: failures, slow batches, reloads, metrics."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from consumer.app import build_service
from consumer.service import ClassifierService
from consumer.settings import Settings
from model import Bundle, load_bundle
from model.drift import ReferenceProfile
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

#: Marks a poisoned text's ids (not a vocabulary id), so the model fails on that row only.
POISON_ID = -7


class Faulty:
    """A real bundle that raises on texts containing ``POISON`` (a model failure)."""

    def __init__(self, bundle: Bundle, delay_s: float = 0.0) -> None:
        self.bundle = bundle
        self.delay_s = delay_s
        self.calls = 0

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def labels(self) -> list[str]:
        return self.bundle.labels

    @property
    def drift_profile(self) -> ReferenceProfile | None:
        return self.bundle.drift_profile

    def token_ids(self, text: str) -> list[int]:
        ids = self.bundle.token_ids(text)
        return [POISON_ID, *ids] if "POISON" in text else ids

    def predict_token_ids(self, sequences: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        self.calls += 1
        time.sleep(self.delay_s)
        if any(POISON_ID in s for s in sequences):
            raise RuntimeError("tensor shape mismatch (injected)")
        return self.bundle.predict_token_ids(sequences)

    def top_k(self, p: npt.NDArray[np.float32], k: int) -> list[list[tuple[str, float]]]:
        return self.bundle.top_k(p, k)


def _settings(bootstrap: str, topics: Topics, bundle: Path, **overrides: Any) -> Settings:
    return Settings(
        bundle=bundle,
        bootstrap_servers=bootstrap,
        input_topic=topics.input,
        output_topic=topics.output,
        dead_letter_topic=topics.dead_letter,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        **overrides,
    )


def _run(service: ClassifierService) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run()), daemon=True)
    thread.start()
    return thread, result


def _topics(new_topic: TopicFactory) -> Topics:
    return Topics(new_topic("in"), new_topic("out"), new_topic("dlq"))


def _article_messages(articles: list[tuple[str, str, str]]) -> list[tuple[bytes, bytes]]:
    return [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t, _ in articles]


def test_a_message_that_breaks_the_model_is_isolated(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:120]
    messages = _article_messages(articles)
    poison = (b"poison", json.dumps({"id": "poison", "text": "POISON pill"}).encode())
    topics = _topics(new_topic)
    produce(kafka_bootstrap, topics.input, [*messages[:60], poison, *messages[60:]])
    faulty = Faulty(load_bundle(bbc_bundle))
    settings = _settings(kafka_bootstrap, topics, bbc_bundle, max_batch_size=500, max_wait_ms=2000)
    service = build_service(settings, faulty)
    thread, result = _run(service)
    collector = Collector(kafka_bootstrap, topics)
    try:
        done = collector.poll_until(
            lambda c: len(c.predictions) >= len(articles) and len(c.dead_letters) >= 1, 120
        )
    finally:
        service.request_stop()
        thread.join(60)
        collector.close()
    assert done
    assert result == [0]
    assert {p.value["id"] for p in collector.predictions} == {a[0] for a in articles}
    assert len(collector.dead_letters) == 1
    letter = collector.dead_letters[0].value
    assert letter["error_code"] == "inference_failed"
    assert "injected" in letter["reason"]
    assert service.metrics.totals().by_error == {"inference_failed": 1}
    assert faulty.calls > 2, "the failing batch was split, not dropped whole"


def test_a_slow_batch_never_exceeds_max_poll_interval(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path
) -> None:
    """Each batch takes 9 s; max.poll.interval.ms is 6 s; the consumer keeps its partitions."""
    articles = held_out_articles(bbc_bundle, bbc_csv)[:40]
    topics = _topics(new_topic)
    produce(kafka_bootstrap, topics.input, _article_messages(articles))
    slow = Faulty(load_bundle(bbc_bundle), delay_s=9.0)
    settings = _settings(
        kafka_bootstrap,
        topics,
        bbc_bundle,
        max_batch_size=20,
        pause_after_ms=500,
        kafka={"max.poll.interval.ms": 6000, "session.timeout.ms": 6000},
    )
    service = build_service(settings, slow)
    thread, result = _run(service)
    collector = Collector(kafka_bootstrap, topics)
    try:
        done = collector.poll_until(lambda c: len(c.predictions) >= len(articles), 120)
        collector.poll_until(lambda c: False, 2)
        rebalances = {  # before stopping: leaving the group revokes too
            s.labels["kind"]: s.value
            for m in service.metrics.rebalances.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
    finally:
        service.request_stop()
        thread.join(60)
        collector.close()
    assert done
    assert result == [0]
    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert max(per_id.values()) == 1, "no batch was re-delivered by a forced rebalance"
    assert rebalances.get("lost", 0) == 0
    assert rebalances.get("revoke", 0) == 0


def test_shutdown_gives_up_on_a_stuck_batch_within_the_timeout(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:10]
    topics = _topics(new_topic)
    produce(kafka_bootstrap, topics.input, _article_messages(articles))
    stuck = Faulty(load_bundle(bbc_bundle), delay_s=30.0)
    settings = _settings(kafka_bootstrap, topics, bbc_bundle, shutdown_timeout_s=2.0)
    service = build_service(settings, stuck)
    thread, result = _run(service)
    deadline = time.monotonic() + 60
    while stuck.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    asked = time.monotonic()
    service.request_stop()
    thread.join(30)
    took = time.monotonic() - asked
    assert result == [1], "an abandoned batch is reported with exit code 1"
    assert took < 8, f"shutdown took {took:.1f} s with a 2 s timeout"
    # Nothing was committed: a new consumer in the same group starts from the beginning.
    fresh = build_service(settings, load_bundle(bbc_bundle))
    thread, result = _run(fresh)
    collector = Collector(kafka_bootstrap, topics)
    try:
        assert collector.poll_until(lambda c: len(c.predictions) >= len(articles), 120)
    finally:
        fresh.request_stop()
        thread.join(60)
        collector.close()


def test_hot_reload_swaps_models_between_batches_and_refuses_a_corrupt_one(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    original = model_dir_serving(bbc_bundle, model_dir)

    articles = held_out_articles(bbc_bundle, bbc_csv)[:300]
    messages = _article_messages(articles)
    topics = _topics(new_topic)
    log_path = tmp_path / "c.log"
    proc = start_consumer(
        model_dir, kafka_bootstrap, topics, "g", log_path,
        "--reload-interval-s", "0.5", "--max-batch-size", "10",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics)
    try:
        produce(kafka_bootstrap, topics.input, messages[:100])
        assert collector.poll_until(lambda c: len(c.predictions) >= 100, 120), log_path.read_text()
        publish_version(model_dir, original, "v-corrupt", corrupt=True)
        assert wait_for_log(log_path, lambda e: e["event"] == "model_refused", 60)
        produce(kafka_bootstrap, topics.input, messages[100:200])
        assert collector.poll_until(lambda c: len(c.predictions) >= 200, 120)
        publish_version(model_dir, original, "v-next")
        assert wait_for_log(log_path, lambda e: e["event"] == "model_swapped", 60)
        produce(kafka_bootstrap, topics.input, messages[200:])
        assert collector.poll_until(lambda c: len(c.predictions) >= len(messages), 120)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc) == 0
        collector.poll_until(lambda c: False, 2)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    per_id = Counter(p.value["id"] for p in collector.predictions)
    assert set(per_id) == {a[0] for a in articles}
    assert max(per_id.values()) == 1, "no message dropped or predicted twice across swaps"
    versions = [p.value["model_version"] for p in collector.predictions[:200]]
    assert set(versions) == {original.name}, "the corrupt version never served"
    late = {p.value["model_version"] for p in collector.predictions[200:]}
    assert late == {"v-next"}
    events = log_events(log_path)
    refused = [e for e in events if e["event"] == "model_refused"]
    assert len(refused) == 1
    assert "corrupt" in refused[0]["error"]
    assert [e["model_version"] for e in events if e["event"] == "model_swapped"] == ["v-next"]


def test_low_confidence_routing_metrics_and_health(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:200]
    bundle = load_bundle(bbc_bundle)
    confidence = bundle.predict_proba([t for _, t, _ in articles]).max(axis=1)
    threshold = float(np.median(confidence))  # half the articles fall below it
    topics = _topics(new_topic)
    review = new_topic("review")
    bad = [
        (b"bad-1", b"not json"),
        (b"bad-2", b'{"id": "x", "text": "' + b"a" * 150_000 + b'"}'),  # default limit 100 kB
    ]
    produce(kafka_bootstrap, topics.input, [*_article_messages(articles), *bad])
    port = free_port()
    log_path = tmp_path / "c.log"
    base = f"http://127.0.0.1:{port}"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, "g", log_path,
        "--low-confidence-threshold", str(threshold), "--review-topic", review,
        "--metrics-port", str(port), "--stats-interval-ms", "500",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics, review_topic=review)
    try:
        done = collector.poll_until(
            lambda c: len(c.predictions) >= len(articles) and len(c.dead_letters) >= 2, 120
        )
        collector.poll_until(lambda c: False, 2)
        time.sleep(1.5)  # a statistics interval, for the lag gauge
        health, ready = http_get(f"{base}/healthz"), http_get(f"{base}/readyz")
        status, metrics = http_get(f"{base}/metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        wait_exit(proc)
        collector.close()
    assert done, log_path.read_text()[-3000:]

    low = {p.value["id"] for p in collector.predictions if p.value["low_confidence"]}
    assert all(
        (p.value["confidence"] < threshold) == p.value["low_confidence"]
        for p in collector.predictions
    )
    assert 0 < len(low) < len(articles)
    assert {r.value["id"] for r in collector.reviews} == low
    assert {d.value["error_code"] for d in collector.dead_letters} == {
        "invalid_json",
        "text_too_large",
    }

    assert health == (200, "ok\n")
    assert ready == (200, "ok\n")
    assert status == 200
    assert metric_value(metrics, "classifier_messages_consumed_total") == len(articles) + 2
    assert metric_value(metrics, "classifier_predictions_total") == len(articles)
    assert metric_value(metrics, "classifier_low_confidence_total") == len(low)
    assert metric_value(metrics, "classifier_dead_letters_total", error_code="invalid_json") == 1
    assert metric_value(metrics, "classifier_dead_letters_total", error_code="text_too_large") == 1
    assert metric_value(metrics, "classifier_batch_size_count") >= 1
    assert metric_value(metrics, "classifier_inference_seconds_count") >= 1
    assert metric_value(metrics, "classifier_end_to_end_latency_seconds_count") == len(articles)
    assert metric_value(metrics, "classifier_model_info", version=bundle.version) == 1
    assert metric_value(metrics, "classifier_rebalances_total", kind="assign") >= 1
    lags = [
        metric_value(metrics, "classifier_consumer_lag", topic=topics.input, partition=str(p))
        for p in range(3)
    ]
    assert lags == [0, 0, 0]


@pytest.mark.parametrize("flag", ["--kafka", "--bundle"])
def test_configuration_errors_name_the_setting(
    kafka_bootstrap: str, bbc_bundle: Path, tmp_path: Path, flag: str
) -> None:
    bad = {"--kafka": '{"enable.auto.commit": true}', "--bundle": str(tmp_path / "none")}[flag]
    log_path = tmp_path / "c.log"
    args = ["--kafka", bad] if flag == "--kafka" else []
    bundle = Path(bad) if flag == "--bundle" else bbc_bundle
    proc = start_consumer(bundle, kafka_bootstrap, Topics("a", "b", "c"), "g", log_path, *args)
    assert wait_exit(proc) == 2
    text = log_path.read_text()
    assert ("enable.auto.commit" in text) if flag == "--kafka" else ("training.fit" in text)


def test_a_stop_during_start_up_exits_0_without_consuming(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, tmp_path: Path
) -> None:
    """Kubernetes stops pods that are still starting; the supervisor stops a worker it has
    just restarted. Either must not die of the signal (exit -15) while the model loads."""
    topics = Topics(new_topic("early-in"), new_topic("early-out"), new_topic("early-dlq"))
    produce(kafka_bootstrap, topics.input, [(b"k", b'{"id": "a", "text": "shares rose"}')])
    log_path = tmp_path / "consumer.log"
    group = f"early-{uuid.uuid4().hex[:8]}"
    proc = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, log_path)
    assert wait_for_log(log_path, lambda e: e.get("event") == "consumer_starting", 60)
    proc.send_signal(signal.SIGTERM)  # the model takes seconds to load and warm up
    assert wait_exit(proc, 90) == 0, log_path.read_text()[-3000:]
    events = [e.get("event") for e in log_events(log_path)]
    assert "stopped_before_start" in events
    assert "batch_done" not in events  # nothing consumed, nothing committed
    # The group committed nothing: the record is still there for the next start.
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topics.input, p) for p in range(3)]
        committed = reader.committed(partitions, timeout=10)
    finally:
        reader.close()
    assert all(tp.offset < 0 for tp in committed), committed  # no offset was ever committed
