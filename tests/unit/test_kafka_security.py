"""Credentials for secured clusters: settings, librdkafka properties, refusals, local broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from pydantic import ValidationError

from consumer.clients import _refusal, admin_config, consumer_config, security_config
from consumer.settings import Settings
from deploy import local_kafka

SECRET = "s3cr3t-never-shown"


def _sasl(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bundle": tmp_path,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "classifier",
        "kafka_sasl_password": SECRET,
    }
    return Settings(**{k: v for k, v in (values | overrides).items() if v is not None})


def test_no_security_settings_add_no_properties(tmp_path: Path) -> None:
    settings = Settings(bundle=tmp_path)
    assert security_config(settings) == {}
    assert "security.protocol" not in consumer_config(settings)


def test_password_from_the_environment_reaches_every_client_but_no_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSIFIER_KAFKA_SASL_PASSWORD", SECRET)
    settings = _sasl(tmp_path, kafka_sasl_password=None)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "classifier",
        "sasl.password": SECRET,
    }
    assert security_config(settings) == expected
    assert expected.items() <= consumer_config(settings).items()
    assert expected.items() <= admin_config(settings).items()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text


def test_password_file_is_read_once_without_its_trailing_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\r\n")
    settings = _sasl(tmp_path, kafka_sasl_password=None, kafka_sasl_password_file=secret_file)
    secret_file.unlink()  # read at start-up: later clients still get it
    assert security_config(settings)["sasl.password"] == SECRET
    copy = settings.model_copy(update={"exactly_once": True})
    assert security_config(copy)["sasl.password"] == SECRET
    assert SECRET not in repr(settings) + settings.model_dump_json()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka": {"sasl.password": SECRET}}, "sasl.password is not accepted here"),
        ({"kafka": {"sasl.username": "other"}}, r"\['sasl.username'\] are set both"),
        ({"kafka_security_protocol": "SSL"}, "needs kafka_security_protocol SASL_SSL"),
        ({"kafka_security_protocol": None}, "needs kafka_security_protocol SASL_SSL"),
        ({"kafka_sasl_username": None}, "needs kafka_sasl_username"),
        ({"kafka_sasl_password": None}, "needs one of kafka_sasl_password and"),
        ({"kafka_sasl_password_file": "/x"}, "needs one of kafka_sasl_password and"),
        ({"kafka_sasl_mechanism": None}, "needs kafka_sasl_mechanism"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_ssl_ca_location": "/no/such/ca.pem"}, "'/no/such/ca.pem' does not exist"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_ca_location": "/"},
            "kafka_ssl_ca_location needs kafka_security_protocol SSL/SASL_SSL",
        ),
    ],
)
def test_settings_that_do_not_fit_are_refused_without_the_password(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _sasl(tmp_path, **overrides)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read .*No such file"), ("", "is empty"), ("\n", "is empty")],
)
def test_an_unusable_password_file_names_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    secret_file = tmp_path / "password"
    if content is not None:
        secret_file.write_text(content)
    with pytest.raises(ValidationError, match=message) as caught:
        _sasl(tmp_path, kafka_sasl_password=None, kafka_sasl_password_file=secret_file)
    assert str(secret_file) in str(caught.value)


def test_a_refused_login_names_mechanism_and_user_not_the_password(tmp_path: Path) -> None:
    settings = _sasl(tmp_path, bootstrap_servers="broker:9096")
    refused = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid creds")
    message = _refusal(settings, [KafkaError(KafkaError._ALL_BROKERS_DOWN), refused])
    assert message is not None
    assert "broker:9096 refused the SASL login of user 'classifier'" in message
    assert "SCRAM-SHA-512" in message
    assert SECRET not in message
    handshake = _refusal(settings, [KafkaError(KafkaError._SSL, "certificate verify failed")])
    assert handshake is not None
    assert "TLS handshake" in handshake
    assert "--kafka-ssl-ca-location" in handshake
    assert _refusal(settings, [KafkaError(KafkaError._TRANSPORT, "connection refused")]) is None


# ------------------------------------------------------------------ the local broker's config


def test_plain_broker_configuration_is_unchanged(tmp_path: Path) -> None:
    text = local_kafka._server_properties_text(tmp_path, local_kafka._client_listeners(9092))
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n" in text
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:9092\n" in text
    assert "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n" in text
    assert "sasl" not in text
    assert "ssl" not in text


def test_sasl_listeners_configuration(tmp_path: Path) -> None:
    listeners = local_kafka._client_listeners(9092, sasl_port=9094, sasl_ssl_port=9095)
    props = dict(
        line.split("=", 1)
        for line in local_kafka._server_properties_text(tmp_path, listeners, "pw").splitlines()
        if not line.startswith("#")
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,SASL_SSL://127.0.0.1:9095"
    )
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert (
        "scram.ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert props["ssl.keystore.location"] == str(tmp_path / "tls" / "broker.p12")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    (tmp_path / "server.properties").write_text("\n".join(f"{k}={v}" for k, v in props.items()))
    assert local_kafka._configured_listeners(tmp_path) == listeners
    assert local_kafka._configured_port(tmp_path) == 9092


@pytest.mark.parametrize(
    ("ports", "users", "message"),
    [
        ({"sasl_port": 9093}, None, "clashes with another listener"),
        ({"sasl_port": 9094, "sasl_ssl_port": 9094}, None, "clashes with another listener"),
        ({}, {"alice": "pw"}, "need a SASL listener"),
        ({"sasl_port": 9094}, {"alice": "p,w"}, "may only use letters"),
    ],
)
def test_local_broker_refuses_bad_listener_or_user_options(
    ports: dict[str, int], users: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(local_kafka.LocalKafkaError, match=message):
        local_kafka._scram_users(local_kafka._client_listeners(9092, **ports), users)


def test_local_broker_default_user_only_with_sasl() -> None:
    plain = local_kafka._client_listeners(9092)
    sasl = local_kafka._client_listeners(9092, sasl_port=9094)
    assert local_kafka._scram_users(plain, None) == {}
    assert local_kafka._scram_users(sasl, None) == dict(local_kafka.DEFAULT_SCRAM_USERS)
