"""Shadow evaluation on the live stream: a real candidate bundle beside the serving one."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from model import load_bundle
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    Collector,
    Topics,
    held_out_articles,
    produce,
    start_consumer,
    wait_exit,
)
from tests.net import free_port, http_get, metric_value

ARTICLES = 120


def test_shadow_agreement_equals_the_offline_agreement(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    bbc_candidate_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
) -> None:
    serving, candidate = load_bundle(bbc_bundle), load_bundle(bbc_candidate_bundle)
    articles = held_out_articles(bbc_bundle, bbc_csv)[:ARTICLES]
    texts = [text for _, text, _ in articles]
    published = [serving.labels[j] for j in serving.predict_proba(texts).argmax(axis=1)]
    shadowed = [candidate.labels[j] for j in candidate.predict_proba(texts).argmax(axis=1)]
    agree = [s == c for s, c in zip(published, shadowed, strict=True)]
    assert 0 < sum(agree) < ARTICLES, "the candidate must disagree on some articles"

    topics = Topics(new_topic("shadow-in"), new_topic("shadow-out"), new_topic("shadow-dlq"))
    shadow_topic = new_topic("shadow-predictions")
    produce(
        kafka_bootstrap,
        topics.input,
        [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t, _ in articles],
    )
    port = free_port()
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, f"shadow-{uuid.uuid4().hex[:8]}", log_path,
        "--shadow-bundle", str(bbc_candidate_bundle), "--shadow-topic", shadow_topic,
        "--shadow-queue-batches", "64", "--max-batch-size", "16",
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics, review_topic=shadow_topic)
    try:
        assert collector.poll_until(
            lambda c: len(c.predictions) >= ARTICLES and len(c.reviews) >= ARTICLES, 180
        ), log_path.read_text()[-3000:]
        versions = {"serving_version": serving.version, "shadow_version": candidate.version}
        deadline = time.monotonic() + 30
        while True:
            _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
            try:
                counted = metric_value(metrics, "classifier_shadow_predictions_total", **versions)
            except KeyError:  # the shadow has not finished a batch yet
                counted = 0.0
            if counted >= ARTICLES or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 90) == 0
    finally:
        collector.close()

    assert counted == ARTICLES
    assert metric_value(metrics, "classifier_shadow_agreements_total", **versions) == sum(agree)
    assert metric_value(metrics, "classifier_shadow_skipped_batches_total") == 0
    for label, n in Counter(published).items():
        per = {**versions, "label": label}
        expected = sum(a for a, p in zip(agree, published, strict=True) if p == label)
        assert metric_value(metrics, "classifier_shadow_label_predictions_total", **per) == n
        assert metric_value(metrics, "classifier_shadow_label_agreements_total", **per) == expected
    # The published predictions are the serving model's, untouched by the shadow.
    by_id = {p.value["id"]: p.value for p in collector.predictions}
    assert [by_id[i]["label"] for i, _, _ in articles] == published
    assert {p["model_version"] for p in by_id.values()} == {serving.version}
    # The shadow topic carries the candidate's predictions, keyed like the input.
    shadow_by_id = {r.value["id"]: r for r in collector.reviews}
    assert [shadow_by_id[i].value["label"] for i, _, _ in articles] == shadowed
    assert all(r.key == r.value["id"].encode() for r in shadow_by_id.values())
    assert {r.value["model_version"] for r in shadow_by_id.values()} == {candidate.version}
    assert np.isfinite([r.value["confidence"] for r in shadow_by_id.values()]).all()
