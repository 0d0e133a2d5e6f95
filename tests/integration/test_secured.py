"""Secured clusters end to end: SASL/SCRAM over TCP and over TLS, with credentials that stay secret.

The module runs a broker of its own (``deploy/local_kafka.py`` with a ``SASL_PLAINTEXT`` and a
``SASL_SSL`` listener beside the plain one, on free ports, wiped at the end): the shared
``kafka_bootstrap`` broker may be a container or an outside cluster without SASL. The test
itself produces and collects through the plain listener; only the consumer under test logs in.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from deploy import local_kafka
from tests.integration.conftest import TOPIC_READY_TIMEOUT_S, _wait_for_topic
from tests.integration.streaming import (
    REPO_ROOT,
    Collector,
    Topics,
    held_out_articles,
    log_events,
    produce,
    start_consumer,
    wait_exit,
)
from tests.net import free_port

USER = "classifier"
#: The user's password, random per run so that finding it anywhere means it leaked.
PASSWORD = f"pw-{secrets.token_hex(16)}"
WRONG_PASSWORD = f"wrong-{secrets.token_hex(16)}"
ARTICLES = 40
PREDICTIONS_TIMEOUT_S = 90.0
#: A refused login must stop the consumer this fast (model loading included), not retry.
REFUSED_EXIT_S = 30.0


@dataclass(frozen=True)
class SecuredBroker:
    """Bootstrap servers of the module's broker, per listener, and the CA its TLS cert has."""

    plain: str
    sasl_plaintext: str
    sasl_ssl: str
    ca: Path


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """A local broker with SCRAM user ``USER``/``PASSWORD`` on SASL_PLAINTEXT and SASL_SSL."""
    state = tmp_path_factory.mktemp("secured-kafka")
    port = local_kafka.find_free_port_pair()
    secured = local_kafka.find_free_port_pair()
    while {secured, secured + 1} & {port, port + 1}:
        secured = local_kafka.find_free_port_pair()
    try:
        plain = local_kafka.start(
            port=port,
            state_dir=state,
            timeout_s=120,
            sasl_port=secured,
            sasl_ssl_port=secured + 1,
            scram_users={USER: PASSWORD},
        )
    except local_kafka.LocalKafkaError as exc:
        pytest.fail(f"could not start a local Kafka broker with SASL: {exc}", pytrace=False)
    try:
        yield SecuredBroker(
            plain=plain,
            sasl_plaintext=f"{local_kafka.HOST}:{secured}",
            sasl_ssl=f"{local_kafka.HOST}:{secured + 1}",
            ca=local_kafka.ca_certificate(state),
        )
    finally:
        local_kafka.stop(state_dir=state, wipe=True)


def _topics(broker: SecuredBroker) -> Topics:
    admin = AdminClient({"bootstrap.servers": broker.plain})
    suffix = uuid.uuid4().hex[:12]
    topics = Topics(f"articles-{suffix}", f"predictions-{suffix}", f"articles-dlq-{suffix}")
    names = [topics.input, topics.output, topics.dead_letter]
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=3, replication_factor=1) for name in names],
        operation_timeout=TOPIC_READY_TIMEOUT_S,
    )
    for name in names:
        futures[name].result(timeout=TOPIC_READY_TIMEOUT_S)
        _wait_for_topic(admin, name, 3)
    return topics


def _stream_through(
    broker: SecuredBroker,
    bbc_bundle: Path,
    bbc_csv: Path,
    log_path: Path,
    bootstrap: str,
    *args: str,
) -> str:
    """Run the consumer with ``args`` over ``bootstrap`` until every article is predicted.

    Returns:
        Its ``/metrics`` page, scraped once the predictions are in.
    """
    topics = _topics(broker)
    articles = held_out_articles(bbc_bundle, bbc_csv)[:ARTICLES]
    records = [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t, _ in articles]
    produce(broker.plain, topics.input, records)
    port = free_port()
    proc = start_consumer(
        bbc_bundle, bootstrap, topics, f"secured-{uuid.uuid4().hex[:8]}", log_path,
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1", *args,
    )  # fmt: skip
    collector = Collector(broker.plain, topics)
    metrics = ""
    try:
        done = collector.poll_until(
            lambda c: len(c.predictions) >= len(articles), PREDICTIONS_TIMEOUT_S
        )
        if done:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                metrics = page.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = wait_exit(proc)
        collector.close()
    assert done, log_path.read_text()[-3000:]
    assert code == 0, log_path.read_text()[-3000:]
    assert {p.value["id"] for p in collector.predictions} == {i for i, _, _ in articles}
    assert "classifier_predictions_total" in metrics
    return metrics


def test_credentials_from_the_environment_over_sasl_plaintext(
    secured_broker: SecuredBroker,
    bbc_bundle: Path,
    bbc_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(f"CLASSIFIER_{name}", value)
    log_path = tmp_path / "consumer.log"
    metrics = _stream_through(
        secured_broker, bbc_bundle, bbc_csv, log_path, secured_broker.sasl_plaintext,
        "--log-level", "DEBUG",
    )  # fmt: skip
    assert PASSWORD not in metrics
    assert PASSWORD not in log_path.read_text(encoding="utf-8", errors="replace")


def test_password_file_over_sasl_ssl_with_the_generated_ca(
    secured_broker: SecuredBroker, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # as `kubectl create secret --from-file` leaves it
    log_path = tmp_path / "consumer.log"
    metrics = _stream_through(
        secured_broker, bbc_bundle, bbc_csv, log_path, secured_broker.sasl_ssl,
        "--kafka-security-protocol", "SASL_SSL",
        "--kafka-sasl-mechanism", "SCRAM-SHA-512",
        "--kafka-sasl-username", USER,
        "--kafka-sasl-password-file", str(password_file),
        "--kafka-ssl-ca-location", str(secured_broker.ca),
    )  # fmt: skip
    assert PASSWORD not in metrics
    assert PASSWORD not in log_path.read_text(encoding="utf-8", errors="replace")


def test_a_wrong_password_stops_it_at_start_up(
    secured_broker: SecuredBroker,
    bbc_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLASSIFIER_KAFKA_SASL_PASSWORD", WRONG_PASSWORD)
    log_path = tmp_path / "consumer.log"
    topics = Topics("in", "out", "dlq")  # never reached: the login fails first
    began = time.monotonic()
    proc = start_consumer(
        bbc_bundle, secured_broker.sasl_plaintext, topics, "refused", log_path,
        "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--kafka-sasl-mechanism", "SCRAM-SHA-512",
        "--kafka-sasl-username", USER,
    )  # fmt: skip
    code = wait_exit(proc, timeout_s=90)
    elapsed = time.monotonic() - began
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert code == 2, text[-3000:]
    assert elapsed < REFUSED_EXIT_S, f"took {elapsed:.1f} s to give up\n{text[-3000:]}"
    (failed,) = [e for e in log_events(log_path) if e["event"] == "startup_failed"]
    assert "refused the SASL login" in failed["error"]
    assert f"user {USER!r}" in failed["error"]
    assert "SCRAM-SHA-512" in failed["error"]
    assert secured_broker.sasl_plaintext in failed["error"]
    assert WRONG_PASSWORD not in text
    assert PASSWORD not in text


def test_help_and_setting_errors_never_print_the_password(bbc_bundle: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFIER_")}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "CLASSIFIER_BUNDLE": str(bbc_bundle)}

    def consumer(*args: str, **settings_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "consumer", *args],
            cwd=REPO_ROOT, env=env | settings_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    shown = consumer(
        "--help",
        CLASSIFIER_KAFKA_SASL_PASSWORD=PASSWORD,
        CLASSIFIER_KAFKA_SASL_PASSWORD_FILE=str(password_file),
    )
    assert shown.returncode == 0, shown.stderr
    assert "--kafka-sasl-password" in shown.stdout
    assert PASSWORD not in shown.stdout + shown.stderr

    # Settings that do not fit together: a message naming them, exit 2, no password.
    refused = consumer(
        "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", USER,
        CLASSIFIER_KAFKA_SASL_PASSWORD=PASSWORD,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "needs kafka_security_protocol SASL_SSL" in refused.stderr
    assert PASSWORD not in refused.stdout + refused.stderr

    # A secret file that is not there stops it at start-up, naming the file.
    missing = tmp_path / "no-such-secret"
    unread = consumer(
        "--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "SCRAM-SHA-512",
        "--kafka-sasl-username", USER, "--kafka-sasl-password-file", str(missing),
    )  # fmt: skip
    assert unread.returncode == 2
    assert f"cannot read {str(missing)!r}" in unread.stderr
