"""The feedback loop against the real broker and the real service, then the export for training.

One consumer classifies held-out BBC articles with ``--labels-topic``; verdicts for its
predictions are published to the labels topic — right ones, deliberately wrong ones, a
correction, verdicts for ids it never saw and records that are not verdicts — and its
``/metrics`` must show exactly the counts computed here from the predictions it published.
Then ``python -m consumer.export_feedback`` writes the CSV, which must hold exactly the
joined verdicts (the latest per id) and read with the trainer's own loader.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from consumer.feedback import OUTCOMES
from model import load_bundle
from schemas import InputMessage
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    REPO_ROOT,
    Collector,
    Topics,
    held_out_articles,
    log_events,
    produce,
    start_consumer,
    wait_exit,
    wait_for_log,
)
from tests.net import free_port, http_get, metric_value

ARTICLES = 60
JUDGED = 50  # articles 0-49 get a verdict; 40-49 a deliberately wrong one
WRONG_FROM = 40


def _scrape(port: int) -> str:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return body


def _verdict(key: str, value: dict[str, str]) -> tuple[bytes | None, bytes | None]:
    return key.encode(), json.dumps(value).encode()


def _value(metrics: str, name: str, **labels: str) -> float:
    try:
        return metric_value(metrics, name, **labels)
    except KeyError:
        return 0.0


def test_verdicts_become_live_accuracy_and_a_training_csv(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(bbc_bundle)
    version, labels = bundle.version, bundle.labels
    articles = held_out_articles(bbc_bundle, bbc_csv)[:ARTICLES]
    messages = [
        {"id": i, "text": text, **({"title": f"Headline {n}"} if n % 2 else {})}
        for n, (i, text, _) in enumerate(articles)
    ]
    topics = Topics(new_topic("fb-in"), new_topic("fb-out"), new_topic("fb-dlq"))
    labels_topic = new_topic("fb-labels")
    produce(
        kafka_bootstrap,
        topics.input,
        [(m["id"].encode(), json.dumps(m).encode()) for m in messages],
    )
    # A verdict older than the process: the join starts at the end, so it never counts live.
    stale = (messages[-1]["id"], labels[0])
    produce(
        kafka_bootstrap, labels_topic, [_verdict(stale[0], {"id": stale[0], "label": stale[1]})]
    )

    port = free_port()
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, f"fb-{uuid.uuid4().hex[:8]}", log_path,
        "--labels-topic", labels_topic, "--max-batch-size", "16",
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics)
    try:
        assert collector.poll_until(lambda c: len(c.predictions) >= ARTICLES, 120), (
            log_path.read_text()[-3000:]
        )
        predicted = {p.value["id"]: p.value["label"] for p in collector.predictions}
        assert len(predicted) == ARTICLES
        assert {p.value["model_version"] for p in collector.predictions} == {version}
        # The join remembers them once their batches are committed, and reads the labels
        # topic from its end at start: only then are verdicts published.
        assert wait_for_log(log_path, lambda e: e.get("event") == "feedback_reading", 30)
        reading = next(e for e in log_events(log_path) if e["event"] == "feedback_reading")
        assert sorted(reading["offsets"].values()) == [0, 0, 1]  # past the stale verdict
        deadline = time.monotonic() + 30
        while _value(_scrape(port), "classifier_feedback_remembered_predictions") < ARTICLES:
            assert time.monotonic() < deadline, "predictions never remembered"
            time.sleep(0.2)

        ids = [m["id"] for m in messages]
        verdicts: list[tuple[str, str]] = []  # (id, label) in publication order
        for n, i in enumerate(ids[:JUDGED]):
            if n < WRONG_FROM:
                verdicts.append((i, articles[n][2]))  # the truth
            else:
                verdicts.append((i, next(x for x in labels if x != predicted[i])))  # wrong
        correction = (ids[0], next(x for x in labels if x != verdicts[0][1]))
        records = [
            _verdict(i, {"id": i, "label": label, "reviewer": "qa"}) for i, label in verdicts
        ]
        records.append(_verdict(correction[0], {"id": correction[0], "label": correction[1]}))
        records += [
            _verdict(f"ghost-{k}", {"id": f"ghost-{k}", "label": labels[0]}) for k in range(3)
        ]
        records += [
            (b"x", b"{not json"),
            _verdict(ids[51], {"id": ids[51]}),  # no label
            _verdict(ids[55], {"id": ids[55], "label": "weather"}),  # not a label of the model
            (b"z", None),  # a tombstone
        ]
        produce(kafka_bootstrap, labels_topic, records)

        expected_outcomes = {"matched": JUDGED, "duplicate": 1, "unmatched": 3, "invalid": 4}
        assert sum(expected_outcomes.values()) == len(records)
        deadline = time.monotonic() + 30
        while True:
            metrics = _scrape(port)
            outcomes = {
                o: _value(metrics, "classifier_feedback_labels_total", outcome=o) for o in OUTCOMES
            }
            if sum(outcomes.values()) >= len(records) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 60) == 0
    finally:
        collector.close()

    assert outcomes == expected_outcomes, log_path.read_text()[-3000:]
    invalid = {
        r: _value(metrics, "classifier_feedback_invalid_labels_total", reason=r)
        for r in ("invalid_json", "bad_label", "unknown_label", "null_value")
    }
    assert invalid == {"invalid_json": 1, "bad_label": 1, "unknown_label": 1, "null_value": 1}
    confusion = Counter((predicted[i], label) for i, label in verdicts)  # first verdicts only
    for (p, a), n in confusion.items():
        cell = {"model_version": version, "predicted": p, "actual": a}
        assert _value(metrics, "classifier_feedback_predictions_total", **cell) == n, cell
    cells = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("classifier_feedback_predictions_total{")
    )
    assert cells == JUDGED
    correct = sum(predicted[i] == label for i, label in verdicts)
    assert 0 < correct <= WRONG_FROM  # the deliberately wrong verdicts are never right
    assert _value(metrics, "classifier_feedback_correct_total", model_version=version) == correct
    assert _value(metrics, "classifier_feedback_remembered_predictions") == ARTICLES

    # The export: the latest verdict per id, joined to the document the service classified.
    output = tmp_path / "feedback.csv"
    began = time.monotonic()
    export = subprocess.run(
        [
            sys.executable, "-m", "consumer.export_feedback",
            "--bundle", str(bbc_bundle),
            "--bootstrap-servers", kafka_bootstrap,
            "--input-topic", topics.input,
            "--output-topic", topics.output,
            "--dead-letter-topic", topics.dead_letter,
            "--labels-topic", labels_topic,
            "--output", str(output),
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    export_s = time.monotonic() - began
    assert export.returncode == 0, export.stderr
    latest = dict([stale, *verdicts, correction]) | {ids[55]: "weather"}  # no model check here
    documents = {m["id"]: InputMessage.model_validate(m).document for m in messages}
    expected_rows = [[i, documents[i], latest[i]] for i in sorted(latest)]
    with output.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "text", "label"]
    assert rows[1:] == expected_rows
    assert documents[ids[1]].startswith("Headline 1 ")  # title + text, as the model saw it
    summary = export.stdout.strip()
    assert summary.startswith(
        f"exported {len(latest)} verdicts to '{output}'; labels {len(records) + 1}: "
        f"matched {len(latest)}, unmatched 3 (no input record), invalid 3 (bad_label 1, "
        f"invalid_json 1, null_value 1), superseded 1; input records {ARTICLES} (unreadable 0)"
    ), summary
    assert "weather 1" in summary
    assert export_s < 30, export_s

    from training.data import load_table  # what python -m training.fit --file reads

    data = load_table(output, "text", "label")
    assert data.texts == [documents[i].strip() for i in sorted(latest)]
    assert data.labels == [latest[i] for i in sorted(latest)]
