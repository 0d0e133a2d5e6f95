"""Drift signals on the live stream: a BBC model fed BBC articles, then 20 Newsgroups posts.

The real consumer process, the real broker, a real BBC bundle with its reference profile
(the validation split). Held-out BBC articles keep every drift score under the threshold
and the alert off; Usenet posts (other vocabulary, other lengths, no BBC category) raise
the OOV rate and the scores, and the alert fires.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

from model import load_bundle
from model.drift import QUANTITIES
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    Collector,
    Topics,
    held_out_articles,
    log_events,
    produce,
    start_consumer,
    wait_exit,
)
from tests.net import free_port, http_get, metric_value

WINDOW = 300
BATCH = 32
THRESHOLD = 0.25


def _scrape(port: int) -> str:
    return http_get(f"http://127.0.0.1:{port}/metrics")[1]


def _wait_for_window(port: int, version: str, counted: int, timeout_s: float = 30) -> str:
    """Metrics once the window has seen the committed batches of ``counted`` predictions."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = _scrape(port)
        try:
            documents = metric_value(
                metrics, "classifier_drift_window_documents", model_version=version
            )
        except KeyError:
            documents = 0.0
        done = metric_value(metrics, "classifier_predictions_total") >= counted
        if (done and documents >= WINDOW) or time.monotonic() > deadline:
            time.sleep(0.5)  # the drift observer counts a batch right after its commit
            return _scrape(port)
        time.sleep(0.3)


def test_a_shifted_vocabulary_raises_the_drift_signals_and_the_alert(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    bbc_bundle: Path,
    bbc_csv: Path,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    from training.datasets import load_named

    bundle = load_bundle(bbc_bundle)
    profile = bundle.drift_profile
    assert profile is not None, "training writes drift_profile.json"
    version = bundle.version
    bbc = [(i, t) for i, t, _ in held_out_articles(bbc_bundle, bbc_csv)][:WINDOW]
    newsgroups = load_named("20newsgroups", data_dir)
    posts = (newsgroups.test or newsgroups.train).texts[::20][:WINDOW]
    assert len(bbc) == len(posts) == WINDOW

    topics = Topics(new_topic("drift-in"), new_topic("drift-out"), new_topic("drift-dlq"))
    port = free_port()
    log_path = tmp_path / "consumer.log"
    proc = start_consumer(
        bbc_bundle, kafka_bootstrap, topics, f"drift-{uuid.uuid4().hex[:8]}", log_path,
        "--drift-window-documents", str(WINDOW), "--drift-min-documents", "100",
        "--drift-alert-after-s", "0", "--max-batch-size", str(BATCH),
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
    )  # fmt: skip
    collector = Collector(kafka_bootstrap, topics)
    try:
        produce(
            kafka_bootstrap,
            topics.input,
            [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t in bbc],
        )
        assert collector.poll_until(lambda c: len(c.predictions) >= WINDOW, 180), (
            log_path.read_text()[-3000:]
        )
        unshifted = _wait_for_window(port, version, WINDOW)
        produce(
            kafka_bootstrap,
            topics.input,
            [
                (f"ng-{n}".encode(), json.dumps({"id": f"ng-{n}", "text": t}).encode())
                for n, t in enumerate(posts)
            ],
        )
        assert collector.poll_until(lambda c: len(c.predictions) >= 2 * WINDOW, 120)
        shifted = _wait_for_window(port, version, 2 * WINDOW)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 90) == 0
    finally:
        collector.close()
    assert not collector.dead_letters

    def value(metrics: str, name: str, **labels: str) -> float:
        return metric_value(metrics, name, model_version=version, **labels)

    # The reference side is the bundle's profile.
    reference_oov = profile.oov_tokens / profile.tokens
    assert (
        abs(value(unshifted, "classifier_text_oov_rate", window="reference") - reference_oov) < 1e-9
    )
    # Unshifted: held-out BBC articles, the window full of them.
    assert WINDOW <= value(unshifted, "classifier_drift_window_documents") < WINDOW + BATCH
    for quantity in QUANTITIES:
        psi = value(unshifted, "classifier_drift_psi", quantity=quantity)
        assert 0 <= psi < THRESHOLD, (quantity, psi)
        assert value(unshifted, "classifier_drift_alert", quantity=quantity) == 0
        assert value(unshifted, "classifier_drift_alert_state", quantity=quantity, state="ok") == 1
    assert abs(value(unshifted, "classifier_text_oov_rate", window="live") - reference_oov) < 0.05

    # Shifted: the window now holds (almost) only 20 Newsgroups posts.
    live_oov = value(shifted, "classifier_text_oov_rate", window="live")
    assert live_oov > reference_oov + 0.1, (live_oov, reference_oov)
    assert value(shifted, "classifier_drift_psi", quantity="oov") > 1.0
    assert value(shifted, "classifier_drift_alert", quantity="oov") == 1
    assert value(shifted, "classifier_drift_alerts_total", quantity="oov") == 1
    alerts = [e for e in log_events(log_path) if e.get("event") == "drift_alert"]
    assert "oov" in {e["quantity"] for e in alerts}
    assert all(e["model_version"] == version for e in alerts)
